"""Every schedule runs inside ``jax.jit`` as ``jax.numpy`` operations on the traced
count (no host callback), with the values it gives on Python integers: to float64
rounding where JAX has 64-bit types, to float32 rounding without."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
import jax.numpy as jnp  # noqa: E402

from gradstep import schedules as S  # noqa: E402

CASES = {
    "constant": lambda: S.constant(0.3),
    "piecewise_constant": lambda: S.piecewise_constant([10, 40], [1.0, 0.5, 0.1]),
    "step_decay": lambda: S.step_decay(0.5, 7, 0.8),
    "exponential_decay": lambda: S.exponential_decay(1.0, 9, 0.7, transition_begin=5),
    "exponential_decay-staircase-end": lambda: S.exponential_decay(
        1.0, 9, 0.7, staircase=True, end_value=0.2
    ),
    "exponential_decay-growing": lambda: S.exponential_decay(0.1, 5, 1.5, end_value=2.0),
    "polynomial_decay": lambda: S.polynomial_decay(1.0, 0.01, 2.0, 60, transition_begin=3),
    "cosine_decay": lambda: S.cosine_decay(1.0, 50, alpha=0.1),
    "linear_warmup": lambda: S.linear_warmup(1.0, 20, init_value=0.1),
    "warmup_cosine_decay": lambda: S.warmup_cosine_decay(0.0, 1.0, 10, 80, end_value=0.05),
    "join": lambda: S.join([S.linear_warmup(1.0, 10), S.cosine_decay(1.0, 40)], [10]),
    "inverse_time_decay": lambda: S.inverse_time_decay(1.0, 7, 0.3, staircase=True),
    "warmup_exponential_decay": lambda: S.warmup_exponential_decay(0.0, 1.0, 10, 8, 0.5),
    "warmup_stable_decay": lambda: S.warmup_stable_decay(1.0, 10, 30, 20),
    "cosine_warm_restarts": lambda: S.cosine_warm_restarts(1.0, 7, period_mult=2, end_value=0.01),
    "cyclic-triangular2": lambda: S.cyclic(0.1, 1.0, 6, mode="triangular2"),
    "cyclic-exp_range": lambda: S.cyclic(0.1, 1.0, 5, step_size_down=3, mode="exp_range"),
    "one_cycle": lambda: S.one_cycle(120, 1.0),
    "one_cycle-torch": lambda: S.one_cycle(90, 1.0, anneal="linear", convention="torch"),
    "one_cycle-torch-final": lambda: S.one_cycle(90, 1.0, pct_final=0.8, convention="torch"),
    "piecewise_interpolate": lambda: S.piecewise_interpolate(1.0, [10, 30], [0.5, 2.0]),
    "piecewise_interpolate-cos": lambda: S.piecewise_interpolate(1.0, [10, 30], [0.5, 2.0], "cos"),
    "swa_learning_rate": lambda: S.swa_learning_rate(1.0, 0.05, anneal_steps=12),
}
COUNTS = np.array([0, 1, 2, 5, 9, 10, 11, 29, 30, 31, 59, 60, 61, 100, 127, 500, 10**6])


def _python(schedule) -> np.ndarray:
    return np.array([schedule(int(t)) for t in COUNTS])


@pytest.mark.parametrize("name", list(CASES))
def test_jit_traces_the_schedule_with_its_python_values(name):
    schedule = CASES[name]()
    assert schedule.traceable
    want = _python(schedule)
    jitted = jax.jit(schedule)
    with jax.enable_x64(True):
        got64 = np.array([jitted(jnp.asarray(t, jnp.int32)) for t in COUNTS])
        np.testing.assert_allclose(got64, want, rtol=1e-12, atol=1e-15)
        assert "callback" not in str(jax.make_jaxpr(schedule)(jnp.asarray(3)))
    got32 = np.array([jitted(jnp.asarray(t, jnp.int32)) for t in COUNTS])
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["piecewise_constant", "join", "one_cycle", "cyclic-triangular2"])
def test_an_array_of_counts_gives_an_array_of_values(name):
    schedule = CASES[name]()
    counts = jnp.asarray(COUNTS[:-1].reshape(4, 4), jnp.int32)
    got = np.asarray(jax.jit(schedule)(counts))
    assert got.shape == (4, 4)
    np.testing.assert_allclose(got.ravel(), _python(schedule)[:-1], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(jax.vmap(schedule)(counts.ravel())), got.ravel(), rtol=1e-6, atol=1e-7
    )


def test_a_join_with_a_plain_python_function_is_not_traceable():
    schedule = S.join([S.constant(1.0), lambda t: 0.5 * t], [5])
    assert not schedule.traceable
    assert schedule(7) == 1.0  # the second schedule at its local count 2


def test_growing_exponential_decay_caps_at_its_end_value_for_huge_counts():
    """The power overflows a float: the cap is the value (it raised OverflowError)."""
    schedule = S.exponential_decay(0.1, 5, 1.5, end_value=2.0)
    assert schedule(10**6) == 2.0
