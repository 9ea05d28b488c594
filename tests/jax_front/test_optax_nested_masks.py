"""Masks inside masks in gradstep.compat.optax against optax 0.2.8: directly
(``masked(masked(t, inner), outer)``) and further down (inside chains, partitions,
``apply_if_finite``, the masks of ``add_decayed_weights``/``adamw``/``lamb``/``lars``,
``freeze``, ``selective_transform``). Every inner mask or label sees the tree the
outer ones left (``MaskedNode()`` in place of each masked-out subtree), as a full
tree, a prefix or a function; the updates and the state (its tree structure with
the holes, and its values) match after jitted steps, and a mask optax refuses is
refused."""

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


# -- masks and labels further down: inside a chain (or a partition) inside a mask ----
#
# optax hands the inner transformation of a mask the whole tree with MaskedNode() in
# place of what the mask left out; every mask, label and state further in sees that
# tree. Each case is built from either module (``m``) and compared after a few jitted
# steps: the parameters, the state's tree structure (MaskedNode holes included) and
# its values.


def compare(make, steps=3):
    ours, theirs = run(make(cx), steps), run(make(optax), steps)
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def is_vector(tree):
    return jax.tree_util.tree_map(lambda x: x.ndim == 1 and x.shape[0] > 1, tree)


DEEP = {
    # the reported case: a full-tree mask inside a chain inside a prefix mask
    "mask_in_chain_in_mask": lambda m: m.chain(
        m.masked(
            m.chain(
                m.masked(m.scale(2.0), {"a": {"x": True, "y": False}, "b": False, "c": True}),
                m.scale(3.0),
            ),
            {"a": True, "b": False, "c": True},
        ),
        m.scale(-0.1),
    ),
    "stateful_mask_in_chain_in_mask": lambda m: m.masked(
        m.chain(
            m.masked(m.adam(0.1), {"a": {"x": False, "y": True}, "b": True, "c": True}),
            m.trace(0.5),
        ),
        {"a": True, "b": True, "c": False},
    ),
    "prefix_mask_deeper": lambda m: m.masked(
        m.chain(m.masked(m.sgd(0.1, 0.9), {"a": False, "b": True, "c": True}), m.scale(0.5)),
        {"a": {"x": True, "y": False}, "b": True, "c": True},
    ),
    "function_mask_deeper": lambda m: m.masked(
        m.chain(m.scale(0.5), m.masked(m.adam(0.05), is_vector)),
        {"a": True, "b": False, "c": True},
    ),
    "three_levels": lambda m: m.masked(
        m.chain(
            m.scale(2.0),
            m.masked(
                m.chain(m.masked(m.sgd(0.1, 0.5), longer_than_one), m.scale(0.5)),
                {"a": {"x": True, "y": True}, "b": False, "c": True},
            ),
        ),
        {"a": True, "b": True, "c": True},
    ),
    "partition_in_mask": lambda m: m.masked(
        m.chain(
            m.multi_transform(
                {"fast": m.adam(0.1), "slow": m.sgd(0.01, 0.9)},
                {"a": {"x": "fast", "y": "slow"}, "b": "fast", "c": "slow"},
            ),
            m.scale(0.5),
        ),
        {"a": True, "b": False, "c": True},
    ),
    "prefix_labels_in_mask": lambda m: m.masked(
        m.partition(
            {"fast": m.adam(0.1), "slow": m.sgd(0.01)}, {"a": "fast", "b": "slow", "c": "slow"}
        ),
        {"a": {"x": False, "y": True}, "b": True, "c": True},
    ),
    "label_function_in_mask": lambda m: m.masked(
        m.chain(
            m.multi_transform(
                {"vec": m.adam(0.1), "one": m.sgd(0.01)},
                lambda t: jax.tree_util.tree_map(lambda x: "vec" if x.size > 1 else "one", t),
            )
        ),
        {"a": True, "b": False, "c": True},
    ),
    "mask_in_partition": lambda m: m.multi_transform(
        {
            "p": m.chain(
                m.masked(m.adam(0.1), {"a": {"x": True, "y": False}, "b": True, "c": True})
            ),
            "q": m.chain(m.masked(m.sgd(0.1, 0.9), longer_than_one), m.scale(0.5)),
        },
        {"a": {"x": "p", "y": "q"}, "b": "q", "c": "p"},
    ),
    "decay_mask_in_mask": lambda m: m.masked(
        m.chain(
            m.scale_by_adam(),
            m.add_decayed_weights(0.1, mask={"a": {"x": True, "y": False}, "b": True, "c": True}),
            m.scale(-0.1),
        ),
        {"a": True, "b": False, "c": True},
    ),
    "adamw_function_mask_in_mask": lambda m: m.masked(
        m.chain(m.adamw(0.05, weight_decay=0.1, mask=longer_than_one), m.scale(2.0)),
        {"a": True, "b": True, "c": False},
    ),
    "lamb_mask_in_mask": lambda m: m.masked(
        m.chain(m.lamb(0.05, weight_decay=0.1, mask={"a": False, "b": True, "c": True})),
        {"a": {"x": True, "y": False}, "b": True, "c": True},
    ),
    "lars_masks_in_mask": lambda m: m.masked(
        m.chain(
            m.lars(
                0.05,
                weight_decay=0.1,
                weight_decay_mask={"a": {"x": True, "y": False}, "b": True, "c": True},
                trust_ratio_mask=longer_than_one,
            )
        ),
        {"a": True, "b": True, "c": False},
    ),
    "masks_in_apply_if_finite_in_mask": lambda m: m.masked(
        m.apply_if_finite(m.chain(m.masked(m.adam(0.1), {"a": True, "b": False, "c": True})), 3),
        {"a": {"x": True, "y": True}, "b": True, "c": False},
    ),
    "adamw_mask_in_partition": lambda m: m.multi_transform(
        {"w": m.adamw(0.1, weight_decay=0.1, mask=longer_than_one), "n": m.set_to_zero()},
        {"a": "w", "b": "w", "c": "n"},
    ),
    "freeze_in_mask": lambda m: m.masked(
        m.chain(m.freeze({"a": {"x": True, "y": False}, "b": False, "c": True}), m.sgd(0.1)),
        {"a": True, "b": True, "c": False},
    ),
    "freeze_prefix_in_mask": lambda m: m.masked(
        m.chain(m.sgd(0.1), m.freeze({"a": True, "b": False, "c": False})),
        {"a": {"x": True, "y": False}, "b": True, "c": True},
    ),
    "selective_transform_in_mask": lambda m: m.masked(
        m.chain(
            m.selective_transform(
                m.adam(0.1), freeze_mask={"a": {"x": True, "y": False}, "b": False, "c": True}
            )
        ),
        {"a": True, "b": True, "c": False},
    ),
    "selective_transform_bool_in_mask": lambda m: m.masked(
        m.selective_transform(m.adam(0.1), freeze_mask=False), {"a": True, "b": True, "c": False}
    ),
    "stateless_clips_in_mask": lambda m: m.masked(
        m.chain(
            m.masked(
                m.clip_by_block_rms(0.5), {"a": {"x": True, "y": False}, "b": True, "c": True}
            ),
            m.adaptive_grad_clip(0.1),
            m.sgd(0.5),
            m.keep_params_nonnegative(),
        ),
        {"a": True, "b": True, "c": False},
    ),
    "all_true_mask_in_mask": lambda m: m.masked(
        m.chain(m.masked(m.adam(0.1), True)), {"a": True, "b": False, "c": True}
    ),
    "all_false_mask_in_mask": lambda m: m.masked(
        m.chain(m.masked(m.adam(0.1), False), m.scale(2.0)), {"a": True, "b": False, "c": True}
    ),
    "label_function_under_function_mask": lambda m: m.masked(
        m.chain(
            m.partition(
                {"u": m.adam(0.1), "v": m.sgd(0.1)},
                lambda t: jax.tree_util.tree_map(lambda x: "u" if x.shape[0] == 2 else "v", t),
            )
        ),
        longer_than_one,
    ),
    "partition_in_partition": lambda m: m.partition(
        {
            "p": m.partition(
                {"u": m.adam(0.1), "v": m.sgd(0.1, 0.9)},
                {"a": {"x": "u", "y": "v"}, "b": "v", "c": "u"},
            ),
            "q": m.scale(0.0),
        },
        {"a": "p", "b": "q", "c": "p"},
    ),
    # inject_hyperparams inside a combinator keeps its own state, as in optax
    "inject_hyperparams_in_chain_in_mask": lambda m: m.masked(
        m.chain(
            m.inject_hyperparams(m.adamw)(
                learning_rate=0.1, mask={"a": {"x": True, "y": False}, "b": True, "c": True}
            ),
            m.scale(0.5),
        ),
        {"a": True, "b": True, "c": False},
    ),
    "inject_hyperparams_in_partition": lambda m: m.multi_transform(
        {"i": m.inject_hyperparams(m.sgd)(learning_rate=0.1, momentum=0.9), "z": m.set_to_zero()},
        {"a": "i", "b": "z", "c": "i"},
    ),
    # the state of these (MaskedState / PartitionState) at the top as well
    "freeze": lambda m: m.chain(
        m.freeze({"a": {"x": True, "y": False}, "b": False, "c": True}), m.sgd(0.1)
    ),
    "freeze_all": lambda m: m.chain(m.sgd(0.1), m.freeze(True)),
    "selective_transform": lambda m: m.selective_transform(
        m.sgd(0.1, 0.9), freeze_mask={"a": {"x": True, "y": False}, "b": False, "c": True}
    ),
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deeper_masks_and_labels_match_optax(name):
    compare(DEEP[name])


def test_a_mask_function_further_down_sees_optax_tree():
    """The very tree (MaskedNode() holes where the outer mask cut) reaches a mask
    function two levels down, at init and at each update."""

    def make(m, seen):
        def record(tree):
            seen.add(jax.tree_util.tree_structure(tree))
            return longer_than_one(tree)

        inner = m.chain(m.masked(m.sgd(0.1, 0.9), record), m.scale(0.5))
        return m.masked(inner, {"a": {"x": True, "y": False}, "b": False, "c": True})

    ours, theirs = set(), set()
    compare(lambda m: make(m, ours if m is cx else theirs))
    assert ours == theirs
    assert len(theirs) == 1


def test_optax_transform_inside_a_compat_mask_sees_optax_tree():
    """A real optax mask inside a compat chain inside a compat mask gets the same
    tree as inside optax's own."""
    inner_mask = {"a": {"x": True, "y": False}, "b": False, "c": True}
    outer_mask = {"a": True, "b": False, "c": True}

    def make(m):
        inner = optax.masked(optax.sgd(0.1, 0.9), inner_mask)
        return m.masked(m.chain(inner, m.scale(0.5)), outer_mask)

    ours, theirs = run(make(cx)), run(make(optax))
    for a, b in zip(jax.tree_util.tree_leaves(ours[0]), jax.tree_util.tree_leaves(theirs[0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_inner_full_mask_over_a_hole_further_down_is_refused_as_optax():
    def make(m):
        inner = m.masked(m.adam(0.1), {"a": {"x": True, "y": False}, "b": True, "c": False})
        return m.masked(m.chain(inner, m.scale(0.5)), {"a": False, "b": True, "c": True})

    with pytest.raises(ValueError):
        run(make(optax), steps=1)
    with pytest.raises(ValueError):
        run(make(cx), steps=1)


def test_compat_masks_inside_optax_masked():
    """A compat transformation inside real optax's mask gets optax's tree with holes
    as its parameters; its own masks work on it as optax's would."""
    inner_mask = {"a": {"x": True, "y": False}, "b": True, "c": True}

    def make(m):
        inner = m.chain(
            m.masked(m.adam(0.1), inner_mask),
            m.masked(m.add_decayed_weights(0.1, mask=longer_than_one), inner_mask),
        )
        return optax.chain(
            optax.masked(inner, {"a": True, "b": False, "c": True}), optax.scale(0.5)
        )

    compare(make)


def test_engine_holes_argument_is_checked():
    from gradstep.engines.jax import JaxEngine

    with pytest.raises(ValueError, match="holes"):
        JaxEngine(cx.sgd(0.1).transform, holes="MaskedNode")


def test_injected_learning_rate_edited_inside_a_chain_takes_effect():
    """``state[0].hyperparams["learning_rate"]`` of an injected optimizer inside a
    chain is optax's, and a new value set there is used by the next step."""

    def steps(m):
        tx = m.chain(m.inject_hyperparams(m.adam)(learning_rate=0.1), m.scale(0.5))
        params, state = PARAMS, tx.init(PARAMS)
        update = jax.jit(tx.update)
        for k in range(3):
            if k == 2:
                state[0].hyperparams["learning_rate"] = jnp.asarray(0.01)
            grads = jax.tree_util.tree_map(lambda x, k=k: jnp.cos(x + k), params)
            updates, state = update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params, state

    ours, theirs = steps(cx), steps(optax)
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "mask",
    [
        {"w": True, "n": None, "v": False},
        {"w": True, "n": False, "v": False},
        lambda p: jax.tree_util.tree_map(lambda _: True, p),
    ],
    ids=["none-label", "false-label", "callable"],
)
def test_a_none_parameter_keeps_optax_s_place_in_the_masked_state(mask):
    params = {"w": jnp.ones(2), "n": None, "v": jnp.full(2, 2.0)}

    def go(m):
        tx = m.masked(m.adam(1e-2), mask)
        updates, state = tx.update(params, tx.init(params), params)
        return updates, state

    (ours_u, ours_s), (theirs_u, theirs_s) = go(cx), go(optax)
    for got, want in ((ours_u, theirs_u), (ours_s, theirs_s)):
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
