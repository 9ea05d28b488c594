"""gradstep.compat.optax's ``adafactor`` and ``scale_by_factored_rms`` against optax
0.2.8, side by side on the same gradients: every step's updates and the final state
(``FactoredState`` with optax's factor shapes and dummies, field by field)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

PARAMS = {
    "w": jnp.linspace(-1.0, 1.0, 60).reshape(3, 5, 4),
    "m": jnp.linspace(0.5, 2.0, 6).reshape(2, 3),
    "b": jnp.asarray([0.5, -0.25]),
}


def run(tx, steps=6):
    params, state = PARAMS, tx.init(PARAMS)
    update = jax.jit(tx.update)
    seen = []
    for k in range(steps):
        grads = jax.tree_util.tree_map(lambda x, k=k: jnp.cos(2.0 * x + k) + 0.05 * k, PARAMS)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        seen.append(updates)
    return seen, state


def assert_same(got, want, rtol=2e-5, atol=2e-7):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert jnp.shape(a) == jnp.shape(b) and jnp.result_type(a) == jnp.result_type(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


CASES = {
    "defaults": lambda m: m.adafactor(),
    "factored_momentum_decay": lambda m: m.adafactor(
        0.05,
        min_dim_size_to_factor=2,
        momentum=0.9,
        weight_decay_rate=0.01,
        weight_decay_mask={"w": True, "m": False, "b": True},
        clipping_threshold=None,
    ),
    "schedule_unscaled": lambda m: m.adafactor(
        m.linear_schedule(0.1, 0.01, 4),
        min_dim_size_to_factor=3,
        multiply_by_parameter_scale=False,
        factored=False,
        decay_rate=0.7,
        eps=1e-20,
    ),
    "scale_by_factored_rms": lambda m: m.chain(
        m.scale_by_factored_rms(min_dim_size_to_factor=2), m.scale(-0.1)
    ),
    # optax needs these static (it would call jnp.float32 as a schedule, and trace
    # the size threshold it branches on)
    "injected": lambda m: m.inject_hyperparams(
        m.adafactor, static_args=("dtype_momentum", "min_dim_size_to_factor")
    )(learning_rate=0.1, momentum=0.8, min_dim_size_to_factor=2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_adafactor_matches_optax(name):
    ours, theirs = run(CASES[name](cx)), run(CASES[name](optax))
    if name == "injected":  # optax also injects decay_rate, eps, ...: compare the rest
        fixed = set(theirs[1].hyperparams) - set(ours[1].hyperparams)
        theirs = (
            theirs[0],
            theirs[1]._replace(
                hyperparams={k: v for k, v in theirs[1].hyperparams.items() if k not in fixed}
            ),
        )
    assert_same(ours, theirs)


def test_factored_state_shapes():
    state = cx.adafactor(min_dim_size_to_factor=2).init(PARAMS)
    assert isinstance(state[0], optax.FactoredState)
    # w is (3, 5, 4): the rows drop the largest axis (5), the columns the next one (4)
    assert state[0].v_row["w"].shape == (3, 4) and state[0].v_col["w"].shape == (3, 5)
    assert state[0].v["w"].shape == (1,) and state[0].v_row["b"].shape == (1,)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: cx.adafactor(decay_offset=3), "decay_offset=3"),
        (lambda: cx.scale_by_factored_rms(decay_rate_fn=lambda i, c: 0.5), "decay_rate_fn"),
        (lambda: cx.scale_by_factored_rms(step_offset=1), "step_offset=1"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
