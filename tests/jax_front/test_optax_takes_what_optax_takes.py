"""gradstep.compat.optax takes the values optax takes: numbers outside gradstep's own
ranges (a negative learning rate for ascent, ``b1 = 1``, ``clip_by_global_norm(0)``,
a decay above 1, ...) build the optimizer and step as optax steps, NaN where optax
gives NaN; at step time an injected value or a schedule out of range is computed
with, not skipped. Checked side by side with optax 0.2.8 over three steps. What
optax refuses is refused, and so is what gradstep cannot compute as optax does
(the cases in test_optax_tail_names.py, test_optax_wrappers.py, ...)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

NAN = float("nan")
PARAMS = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray([0.25, -0.75])}

CASES = [
    # learning rates below 0 (ascent) or NaN
    ("adam", (-1e-3,), {}),
    ("sgd", (-0.1,), {}),
    ("adagrad", (-0.1,), {}),
    ("lars", (-0.1,), {}),
    ("nadam", (-1e-3,), {}),
    ("sign_sgd", (-0.1,), {}),
    ("adafactor", (-1.0,), {}),
    ("adabelief", (-0.1,), {}),
    ("adam", (NAN,), {}),
    # decays and constants outside gradstep's ranges
    ("adam", (0.1,), {"b1": 1.0}),
    ("adam", (0.1,), {"b1": 1.5}),
    ("adam", (0.1,), {"b1": -0.1}),
    ("adam", (0.1,), {"b2": 1.0}),
    ("adam", (0.1,), {"eps": -1e-8}),
    ("adamax", (0.1,), {"b1": 1.0}),
    ("sgd", (0.1,), {"momentum": -0.5}),
    ("rmsprop", (0.1,), {"decay": 1.2}),
    ("lion", (0.1,), {"b1": 1.5}),
    ("trace", (1.5,), {}),
    ("ema", (1.0,), {}),
    ("adadelta", (0.1,), {"rho": 1.5}),
    ("adafactor", (0.1,), {"momentum": 1.5}),
    ("adafactor", (0.1,), {"clipping_threshold": 0.0}),
    ("radam", (0.1,), {"threshold": 3.0}),
    ("scale_by_radam", (), {"threshold": 2.0}),
    ("scale_by_belief", (), {"b2": 1.0}),
    ("yogi", (0.1,), {"b1": 1.0}),
    ("scale_by_yogi", (), {"initial_accumulator_value": -1.0}),
    ("scale_by_novograd", (), {"eps": -1e-8}),
    ("adan", (0.1,), {"b3": 1.5}),
    ("scale_by_adan", (), {"eps_root": -1.0}),
    ("fromage", (0.1,), {"min_norm": -1.0}),
    ("scale_by_sm3", (), {"b2": 1.5}),
    ("rprop", (0.1,), {"eta_minus": 1.5}),
    ("scale_by_rprop", (0.01,), {"eta_plus": 0.5}),
    ("optimistic_gradient_descent", (0.1,), {"alpha": -1.0}),
    ("scale_by_optimistic_gradient", (), {"beta": -1.0}),
    ("optimistic_adam_v2", (0.1,), {"b1": 1.0}),
    ("scale_by_distance_over_gradients", (), {"reps_rel": 0.0}),
    ("scale_by_param_block_norm", (), {"min_scale": -1.0}),
    ("scale_by_param_block_rms", (), {"min_scale": -1.0}),
    ("normalize_by_update_norm", (), {"eps": -1.0}),
    # weight decay below 0, clipping at 0 or below, a period of 0
    ("adamw", (0.1,), {"weight_decay": -0.1}),
    ("lamb", (0.1,), {"weight_decay": -0.1}),
    ("add_decayed_weights", (-0.1,), {}),
    ("clip_by_global_norm", (0.0,), {}),
    ("clip_by_global_norm", (-1.0,), {}),
    ("clip", (-1.0,), {}),
    ("apply_every", (0,), {}),
]


def _factory(module, name):
    return getattr(module, name) if hasattr(module, name) else getattr(module.contrib, name)


def _gradient(k):
    return jax.tree_util.tree_map(lambda x: jnp.sin(3.0 * x + k) + 0.1 * k, PARAMS)


def _run(tx, steps=3, params=PARAMS):
    state, out = tx.init(params), []
    for k in range(steps):
        updates, state = tx.update(_gradient(k), state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out


def _assert_same(got, want):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6, equal_nan=True
        )


@pytest.mark.parametrize(
    ("name", "args", "kwargs"), CASES, ids=[f"{n}-{a}-{k}" for n, a, k in CASES]
)
def test_a_value_optax_takes_steps_as_in_optax(name, args, kwargs):
    ours = _run(_factory(cx, name)(*args, **kwargs))
    theirs = _run(_factory(optax, name)(*args, **kwargs))
    _assert_same(ours, theirs)


def test_a_lookahead_step_beyond_the_fast_weights_as_in_optax():
    def run(m):
        tx = m.lookahead(m.sgd(0.1), sync_period=2, slow_step_size=1.5)
        params, state, out = optax.LookaheadParams.init_synced(PARAMS), None, []
        state = tx.init(params)
        for k in range(4):
            updates, state = tx.update(_gradient(k), state, params)
            params = optax.apply_updates(params, updates)
            out.append(updates)
        return out

    _assert_same(run(cx), run(optax))


def test_an_injected_value_out_of_range_is_stepped_with_not_skipped():
    """optax steps with ``b1 = 1`` (a bias correction of 0: infinite updates); the
    step is not silently skipped (zero updates, as a guard would make it)."""

    def run(m):
        tx = m.inject_hyperparams(m.adam)(learning_rate=0.1)
        params, state, out = PARAMS, tx.init(PARAMS), []
        update = jax.jit(tx.update)
        for k in range(3):
            if k == 1:
                state.hyperparams["b1"] = jnp.asarray(1.0)
            updates, state = update(_gradient(k), state, params)
            params = optax.apply_updates(params, updates)
            out.append(updates)
        return out, state.inner_state

    (ours, our_state), (theirs, their_state) = run(cx), run(optax)
    _assert_same(ours, theirs)
    _assert_same(our_state, their_state)
    assert not np.isfinite(np.asarray(ours[1]["w"])).any()


def test_a_schedule_below_zero_is_stepped_with_under_jit():
    def run(m):
        schedule = m.linear_schedule(0.1, -0.1, transition_steps=2)
        tx = m.sgd(schedule, momentum=0.9)
        params, state, out = PARAMS, tx.init(PARAMS), []
        update = jax.jit(tx.update)
        for k in range(4):
            updates, state = update(_gradient(k), state, params)
            params = optax.apply_updates(params, updates)
            out.append(updates)
        return out

    _assert_same(run(cx), run(optax))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda m: m.lookahead(m.sgd(0.1), 0, 0.5), "sync_period=0"),  # optax: ValueError
        (lambda m: m.adam("0.1"), "learning_rate='0.1'"),  # not a number at all
        (lambda m: m.exponential_decay(0.1, 10, -1.0), "decay_rate=-1.0"),
    ],
)
def test_what_optax_refuses_or_gradstep_cannot_follow_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make(cx)
