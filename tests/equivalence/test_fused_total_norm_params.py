"""constrain_total_norm(target="params") on the numba engine: the reduction pass sums
the squares of the new parameters, the step kernel writes them scaled, as eager."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T
from gradstep.engines.fused import FusedEngine

SIZES = [(0,), (1,), (7,), (100003,), (3, 5)]


def make(max_norm, epsilon=1e-7):
    return gradstep.chain(
        gradstep.adam(0.1), T.constrain_total_norm(max_norm, epsilon, target="params")
    )


def run(transform, dtype, engine, steps=6):
    rng = np.random.default_rng(5)
    params = [rng.normal(size=s).astype(dtype) for s in SIZES]
    opt = gradstep.Optimizer(params, transform, engine=engine)
    for k in range(steps):
        opt.step([(np.sin(3 * p + k) + 0.1 * k).astype(dtype) for p in params])
    assert opt.engine == engine  # no step fell back to eager
    return params


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("max_norm, epsilon", [(30.0, 1e-7), (1e4, 1e-3)], ids=["out", "in"])
def test_total_norm_of_the_new_parameters_runs_fused_as_eager(max_norm, epsilon, dtype):
    stages = [st for st in FusedEngine(make(max_norm, epsilon)).stages if st.is_reduction]
    assert [st.stage.of_params for st in stages] == [True]
    got = run(make(max_norm, epsilon), dtype, "fused")
    want = run(make(max_norm, epsilon), dtype, "eager")
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    norm = np.sqrt(sum(np.sum(p.astype(np.float64) ** 2) for p in got))
    assert norm <= max_norm * (1 + 1e-6)
    if max_norm < 100:
        assert norm == pytest.approx(max_norm, rel=1e-5)


@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["outside", "inside"])
def test_the_stage_is_lasagnes_function_of_the_new_parameters(max_norm):
    """The eager update takes the parameters to Lasagne's ``total_norm_constraint``
    of the new parameters ``w + u`` (``min(N, m) / (N + epsilon)``, also inside)."""
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(s).astype(np.float32) for s in SIZES]
    grads = [rng.standard_normal(s).astype(np.float32) for s in SIZES]
    stage = T.constrain_total_norm(max_norm, 1e-3, target="params")
    got, _ = stage.update(grads, stage.init(params), params)
    want = gradstep.total_norm_constraint([w + g for w, g in zip(params, grads)], max_norm, 1e-3)
    for w, u, b in zip(params, got, want):
        assert u.dtype == np.float32
        np.testing.assert_allclose(w + u, b, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="params"):
        stage.update(grads, stage.init(params))
