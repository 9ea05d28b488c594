"""Stochastic rounding and the Kahan-compensated parameter store in the JAX engine:
the same stream as NumPy's (bit for bit, with the step count traced under
``jax.jit``), and a whole step that agrees with the numba engine's."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
ml_dtypes = pytest.importorskip("ml_dtypes")

import jax.numpy as jnp  # noqa: E402

import gradstep  # noqa: E402
from gradstep._core.rounding import (  # noqa: E402
    random_bits,
    round_bf16_stochastic,
    slot_id,
    stream_keys,
)
from gradstep.engines.jax import JaxEngine  # noqa: E402
from gradstep.engines.jax_rounding import round_bf16_stochastic as jax_round  # noqa: E402
from gradstep.engines.jax_rounding import stream_key  # noqa: E402

BF16 = ml_dtypes.bfloat16


def test_the_jax_stream_is_numpys_bit_for_bit_under_jit():
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    x[:3] = [np.nan, np.inf, -0.0]

    @jax.jit
    def rounded(x, count):
        return jax_round(x, stream_key(9, count, 2, "mu"))

    for count in (0, 7):
        key = int(stream_keys(9, count, 2, slot_id("mu")))
        want = round_bf16_stochastic(x, random_bits(key, x.size)).view(np.uint16)
        got = np.asarray(rounded(jnp.asarray(x), jnp.int32(count))).view(np.uint16)
        np.testing.assert_array_equal(got, want)


def test_a_jax_step_rounds_as_the_numpy_engine():
    rng = np.random.default_rng(0)
    shapes = (1000, 3)
    w0 = [rng.standard_normal(n).astype(BF16) for n in shapes]
    grads = [[rng.standard_normal(n).astype(BF16) for n in shapes] for _ in range(3)]
    rule = gradstep.adamw(1e-2, stochastic_rounding=True, kahan_summation=True)
    w = [a.copy() for a in w0]
    opt = gradstep.Optimizer(w, rule, engine="eager")
    for g in grads:
        opt.step(g)
    engine = JaxEngine(rule)
    wj = [jnp.asarray(a) for a in w0]
    state = engine.init(wj)
    step = jax.jit(engine.update)
    for g in grads:
        u, state = step([jnp.asarray(a) for a in g], state, wj)
        assert u[0].dtype == jnp.float32  # the exact change of the rounded parameter
        wj = [(a + b).astype(a.dtype) for a, b in zip(wj, u)]
    # the same stream; XLA's float32 arithmetic of the Adam step differs from NumPy's
    # in the last bit now and then, which can move a rounding by one unit
    for a, b in zip(wj, w):
        a, b = np.asarray(a).astype(np.float32), b.astype(np.float32)
        assert np.mean(a != b) <= 0.01
        np.testing.assert_allclose(a, b, rtol=2**-7)
    assert state["parameter_store"]["compensation"][0].dtype == jnp.bfloat16
