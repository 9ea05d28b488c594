"""The cautious wrapper on the fused numba engine: a reduction pass counting the
elements each tensor's mask keeps, then the one fused pass; bit for bit the eager
engine's trajectory in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T
from gradstep.engines.fused import FusedEngine
from gradstep.engines.plan import NotFusable
from gradstep.rules.adam import scale_by_adam
from gradstep.rules.cautious import cautious

SHAPES = ((5, 7), (11,), (0,), (3,))

CHAINS = {
    "cautious_adamw": lambda: gradstep.cautious_adamw(0.05, weight_decay=0.1),
    "cautious_lion": lambda: gradstep.cautious_lion(0.02),
    # a norm clip inside the wrapper (a reduction pass before the count), and
    # pytorch-optimizer's normalization
    "clip_inside_count_plus_one": lambda: gradstep.chain(
        cautious(
            gradstep.chain(T.clip_by_global_norm(0.5), scale_by_adam()),
            normalization="count_plus_one",
        ),
        gradstep.rules.sgd(0.1),
    ),
    # a clip after it: its reduction pass recomputes the masked direction
    "clip_after_mean_floor": lambda: gradstep.chain(
        cautious(scale_by_adam(), min_fraction=0.5), T.clip_by_global_norm(0.1), gradstep.sgd(0.1)
    ),
}


def _run(make, dtype, engine, nan=False):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    opt = gradstep.Optimizer(params, make(), engine=engine)
    grads = np.random.default_rng(1)
    out = []
    for k in range(5):
        g = [grads.normal(size=s).astype(dtype) for s in SHAPES]
        g[3][:] = 0.0  # a tensor whose mask keeps nothing
        if nan and k == 2:
            g[0][1, 2] = np.nan
        opt.step(g)
        out.append([p.copy() for p in params])
    return out, opt._ran


#: chains with a norm clip: the clip's sum of squares runs in another order on the
#: fused engine (as for any norm clip), so these agree to rounding, not bit for bit
#: (float64 only: each chain compiles its own kernels, which costs test time)
WITH_NORM = {"clip_inside_count_plus_one": 1e-13, "clip_after_mean_floor": 1e-13}
RUNS = [
    (n, d)
    for n in sorted(CHAINS)
    for d in ("float64", "float32")
    if n not in WITH_NORM or d == "float64"
] + [("cautious_adamw", "float16")]  # 16-bit parameters: float32 math on both engines


@pytest.mark.parametrize(("name", "dtype"), RUNS, ids=[f"{n}-{d}" for n, d in RUNS])
def test_fused_equals_eager(name, dtype):
    want, _ = _run(CHAINS[name], dtype, "eager")
    got, ran = _run(CHAINS[name], dtype, "fused")
    assert ran == "fused"
    for step_got, step_want in zip(got, want):
        for a, b in zip(step_got, step_want):
            if name in WITH_NORM:
                np.testing.assert_allclose(a, b, rtol=WITH_NORM[name], atol=WITH_NORM[name])
            else:  # the count is exact and the mask's arithmetic the same
                np.testing.assert_array_equal(a, b)


def test_a_nan_stays_where_the_eager_engine_has_it():
    want, _ = _run(CHAINS["cautious_adamw"], "float64", "eager", nan=True)
    got, _ = _run(CHAINS["cautious_adamw"], "float64", "fused", nan=True)
    for step_got, step_want in zip(got, want):
        for a, b in zip(step_got, step_want):
            np.testing.assert_array_equal(a, b)  # NaNs in the same places


def test_masked_or_nested_cautious_is_not_fused():
    inner = cautious(scale_by_adam())
    with pytest.raises(NotFusable):
        FusedEngine(gradstep.masked(gradstep.chain(inner, gradstep.sgd(0.1)), [True]))
    with pytest.raises(NotFusable):
        FusedEngine(gradstep.chain(cautious(gradstep.chain(inner)), gradstep.sgd(0.1)))
