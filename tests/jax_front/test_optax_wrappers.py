"""gradstep.compat.optax's wrappers (``MultiSteps``, ``apply_every``, ``lookahead``,
``flatten``, ``conditionally_*``, ``zero_nans``, ...) against optax 0.2.8, run side
by side on the same gradients: every step's updates and the final state (optax's
NamedTuples, field by field)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.asarray([0.5, -0.25])}


def gradient(k: int, params=PARAMS, nan_at=()):
    g = jax.tree_util.tree_map(lambda x: jnp.sin(3.0 * x + k) + 0.1 * k, params)
    if k in nan_at:
        g = dict(g, b=g["b"].at[0].set(jnp.nan))
    return g


def assert_same(got, want, rtol=2e-6, atol=2e-7):
    """Same tree structure (optax's classes, fields and keys), dtypes and values."""
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert jnp.result_type(a) == jnp.result_type(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def run(tx, steps=7, params=PARAMS, nan_at=(), apply=True, **extra):
    """``steps`` jitted updates from ``params``; every step's updates, the state."""
    state = tx.init(params)
    update = jax.jit(functools.partial(tx.update, **extra))
    seen = []
    for k in range(steps):
        grads = gradient(k, params, nan_at)
        updates, state = update(grads, state, params)
        seen.append(updates)
        if apply:
            params = optax.apply_updates(params, updates)
    return seen, state


def check(make, **kwargs):
    ours, theirs = run(make(cx), **kwargs), run(make(optax), **kwargs)
    assert_same(ours, theirs)
    return ours[1]


CASES = {
    "zero_nans": lambda m: m.chain(m.zero_nans(), m.sgd(0.1)),
    "apply_every": lambda m: m.chain(m.adam(0.1), m.apply_every(3)),
    "multi_steps_mean": lambda m: m.MultiSteps(m.adam(0.1), 3),
    "multi_steps_sum": lambda m: m.MultiSteps(m.sgd(0.1, 0.9), 2, use_grad_mean=False),
    "multi_steps_schedule": lambda m: m.MultiSteps(
        m.adamw(0.1), lambda step: jnp.where(step < 1, 1, 2)
    ).gradient_transformation(),
    "flatten": lambda m: m.flatten(m.adam(0.1)),
    "conditionally_mask": lambda m: m.conditionally_mask(m.adam(0.1), lambda step: step % 3 != 1),
    "conditionally_transform": lambda m: m.conditionally_transform(
        m.chain(m.clip(0.5), m.adam(0.1)), lambda step: step >= 2
    ),
    "in_a_chain": lambda m: m.chain(m.clip_by_global_norm(1.0), m.MultiSteps(m.lion(0.1), 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrapper_matches_optax(name):
    nan_at = (2, 5) if name == "zero_nans" else ()
    check(CASES[name], nan_at=nan_at)


def test_multi_steps_state_as_optax():
    ms = cx.MultiSteps(cx.adam(0.1), 3)
    _, state = run(ms, steps=4)
    assert isinstance(state, optax.MultiStepsState)
    assert int(state.mini_step) == 1 and int(state.gradient_step) == 1
    assert isinstance(state.inner_opt_state[0], optax.ScaleByAdamState)
    assert not bool(ms.has_updated(state))
    _, state = run(ms, steps=3)
    assert bool(ms.has_updated(state))
    assert ms.inner_opt is not None
    with pytest.raises(ValueError, match="boolean scalar"):
        bad = cx.MultiSteps(cx.sgd(0.1), 2, should_skip_update_fn=lambda u, s, p: (1, ()))
        run(bad, steps=1)


def test_multi_steps_skip_state():
    def make(m):
        return m.MultiSteps(m.adam(0.1), 2, should_skip_update_fn=m.skip_not_finite)

    state = check(make, nan_at=(2, 5), steps=6)
    assert set(state.skip_state) == {"should_skip", "num_not_finite"}


@pytest.mark.parametrize(
    "start",
    [
        PARAMS,
        # the user's own pairs: a 2-tuple of a vector and a scalar, and of two vectors
        {"t": (jnp.ones(3), jnp.float32(5.0))},
        (jnp.arange(3.0), jnp.arange(2.0)),
    ],
    ids=["dict", "pair-with-scalar", "pair-of-vectors"],
)
def test_lookahead_matches_optax(start):
    def go(m, reset):
        tx = m.lookahead(m.adam(0.1), sync_period=3, slow_step_size=0.4, reset_state=reset)
        params = optax.LookaheadParams.init_synced(start)
        state = tx.init(params)
        update = jax.jit(tx.update)
        seen = []
        for k in range(7):
            updates, state = update(gradient(k, params.fast), state, params)
            params = optax.apply_updates(params, updates)
            seen.append(updates)
        return seen, state, params

    for reset in (False, True):
        ours, theirs = go(cx, reset), go(optax, reset)
        assert_same(ours, theirs)
        assert isinstance(ours[1], optax.LookaheadState)
        assert isinstance(ours[0][0], optax.LookaheadParams)
    assert cx.LookaheadParams is optax.LookaheadParams


def test_tree_helpers_match_optax():
    new = {"a": jnp.arange(3.0), "b": jnp.ones(2)}
    old = {"a": jnp.zeros(3), "b": -jnp.ones(2)}
    assert_same(cx.incremental_update(new, old, 0.3), optax.incremental_update(new, old, 0.3))
    for steps in (jnp.asarray(4), jnp.asarray(5)):
        assert_same(
            cx.periodic_update(new, old, steps, 2), optax.periodic_update(new, old, steps, 2)
        )
    u = {"a": jnp.asarray([1.0, jnp.inf, jnp.nan])}
    assert_same(cx.skip_not_finite(u, 0, None), optax.skip_not_finite(u, 0, None))
    assert cx.microbatching is optax.microbatching


def test_with_extra_args_support():
    plain = optax.GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
    wrapped = cx.with_extra_args_support(plain)
    assert wrapped.update({"a": 1.0}, (), None, value=3.0)[0] == {"a": 1.0}
    tx = cx.adam(0.1)
    assert cx.with_extra_args_support(tx) is tx


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: cx.MultiSteps(cx.sgd(0.1), 0), "every_k_schedule=0"),
        (lambda: cx.lookahead(cx.sgd(0.1), 0, 0.5), "sync_period=0"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
    with pytest.raises(ValueError):  # optax refuses a sync period below 1 too
        optax.lookahead(optax.sgd(0.1), 0, 0.5)


def test_complex_parameters():
    """Complex parameters: stepped as optax steps them where the rules' math is
    written for complex values (Adam, momentum, scaling: tests/jax_front/
    test_optax_complex.py replays recorded trajectories), refused elsewhere (Lion)."""
    params = {"z": jnp.asarray([1 + 2j, -0.5 + 0.1j], jnp.complex64)}
    grads = {"z": jnp.asarray([0.3 - 1j, 2 + 0.5j], jnp.complex64)}
    with pytest.raises(ValueError, match="complex64 for scale_by_lion"):
        cx.lion(0.1).init(params)
    for make in (
        lambda m: m.scale(-0.1),
        lambda m: m.sgd(0.1, momentum=0.9),
        lambda m: m.adam(0.1),
    ):
        ours = make(cx).update(grads, make(cx).init(params), params)
        theirs = make(optax).update(grads, make(optax).init(params), params)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ours, theirs
        )
