"""Under ``jax.jit`` hyperparameter values cannot be checked on the host: a traced
value that is NaN, infinite or outside its declared range makes the step a no-op."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
jnp = pytest.importorskip("jax.numpy", reason="needs JAX (a test dependency)")

import gradstep  # noqa: E402
from gradstep.jax import JaxEngine  # noqa: E402


def _setup():
    engine = JaxEngine(gradstep.adam(0.1))
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    return engine, params, engine.init(params)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5])
def test_a_bad_traced_override_makes_the_jitted_step_a_no_op(bad):
    engine, params, state = _setup()

    @jax.jit
    def step(params, state, lr):
        grads = jax.tree_util.tree_map(jnp.cos, params)
        updates, state = engine.update(grads, state, params, learning_rate=lr)
        return jax.tree_util.tree_map(jnp.add, params, updates), state

    p1, s1 = step(params, state, jnp.float32(0.1))
    assert not np.allclose(p1["w"], params["w"])
    p2, s2 = step(p1, s1, jnp.float32(bad))
    np.testing.assert_array_equal(p2["w"], p1["w"])
    for a, b in zip(jax.tree_util.tree_leaves(s2), jax.tree_util.tree_leaves(s1)):
        np.testing.assert_array_equal(a, b)
    p3, _ = step(p2, s2, jnp.float32(0.1))
    np.testing.assert_array_equal(p3["w"], step(p1, s1, jnp.float32(0.1))[0]["w"])


def test_a_traced_schedule_that_turns_nan_skips_those_steps():
    schedule = lambda t: jnp.where(t >= 2, jnp.nan, 0.1)  # noqa: E731 - traceable
    engine = JaxEngine(gradstep.adam(schedule))
    params = {"w": jnp.ones(3)}
    state = engine.init(params)
    update = jax.jit(engine.update)
    history = []
    for _ in range(4):
        updates, state = update({"w": jnp.ones(3)}, state, params)
        params = {"w": params["w"] + updates["w"]}
        history.append(np.asarray(params["w"]).copy())
    assert np.all(np.isfinite(history[-1]))
    np.testing.assert_array_equal(history[3], history[1])
    assert int(state["scale_by_adam"]["count"]) == 2


def test_a_python_schedule_is_checked_by_the_core_on_the_host():
    engine = JaxEngine(gradstep.adam(lambda t: float("nan")))
    params = {"w": jnp.ones(3)}
    state = engine.init(params)
    with pytest.raises(Exception, match="schedule of learning_rate"):
        updates, _ = jax.jit(engine.update)({"w": jnp.ones(3)}, state, params)
        jax.block_until_ready(updates)
