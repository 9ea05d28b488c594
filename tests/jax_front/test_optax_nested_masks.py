"""A mask inside a mask (``masked(masked(t, inner), outer)``) in gradstep.compat.optax
against optax 0.2.8: the inner mask sees the tree the outer one left (``MaskedNode()``
in place of each masked-out subtree), as full trees, prefixes or functions; the
updates and the nested ``MaskedState`` match, and a mask optax refuses is refused."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

PARAMS = {
    "a": {"x": jnp.asarray([1.0, -2.0]), "y": jnp.asarray([0.5, 0.25, -1.0])},
    "b": jnp.asarray([3.0, -1.0]),
    "c": jnp.asarray([0.75]),
}


def run(tx, steps=3):
    params, state = PARAMS, tx.init(PARAMS)
    update = jax.jit(tx.update)
    for k in range(steps):
        grads = jax.tree_util.tree_map(lambda x, k=k: jnp.sin(x + k) + 0.2, params)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def longer_than_one(tree):
    return jax.tree_util.tree_map(lambda x: x.shape[0] > 1, tree)


CASES = {
    "full_in_full": (
        {"a": {"x": True, "y": True}, "b": False, "c": True},
        {"a": {"x": False, "y": True}, "b": True, "c": True},
    ),
    "prefix_in_prefix": (
        {"a": True, "b": False, "c": True},
        {"a": {"x": True, "y": False}, "b": True, "c": False},
    ),
    "prefix_on_a_hole": ({"a": False, "b": True, "c": True}, {"a": True, "b": True, "c": False}),
    "function_inside": ({"a": True, "b": False, "c": True}, longer_than_one),
    "function_outside": (longer_than_one, {"a": {"x": False, "y": True}, "b": True, "c": True}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_nested_masks_match_optax(name):
    outer, inner = CASES[name]
    ours = run(cx.masked(cx.masked(cx.adam(0.1), inner), outer))
    theirs = run(optax.masked(optax.masked(optax.adam(0.1), inner), outer))
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_three_masks_in_a_chain():
    def make(m):
        innermost = m.masked(m.sgd(0.1, 0.9), {"a": {"x": True, "y": False}, "b": True, "c": True})
        middle = m.masked(innermost, {"a": True, "b": False, "c": True})
        return m.chain(m.masked(middle, longer_than_one), m.scale(0.5))

    ours, theirs = run(make(cx)), run(make(optax))
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_full_inner_mask_on_a_hole_is_refused_as_optax():
    outer, inner = (
        {"a": False, "b": True, "c": True},
        {"a": {"x": True, "y": False}, "b": True, "c": False},
    )
    with pytest.raises(ValueError):
        run(optax.masked(optax.masked(optax.adam(0.1), inner), outer), steps=1)
    with pytest.raises(ValueError):
        run(cx.masked(cx.masked(cx.adam(0.1), inner), outer), steps=1)
