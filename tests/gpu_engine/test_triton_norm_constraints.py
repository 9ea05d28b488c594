"""Lasagne's norm constraints as device passes of the Triton engine, under Triton's
interpreter: the same updates as the eager engine within float32 tolerance."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T
from gradstep.engines.triton import TritonEngine

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

SHAPES = ((7,), (33, 5), (2100,), (3, 4, 5))


def run(transform, engine, steps=3, scale=1.0):
    gen = torch.Generator().manual_seed(11)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    opt = gt.TransformOptimizer(params, transform, engine=engine)
    for k in range(steps):
        for p in params:
            p.grad = scale * (torch.sin(3 * p.detach() + k) + 0.1 * k)
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["outside", "inside"])
@pytest.mark.parametrize(
    "make",
    [
        lambda m: T.constrain_total_norm(m),
        lambda m: gradstep.chain(T.constrain_total_norm(m, epsilon=1e-3), gradstep.adam(1e-2)),
        lambda m: gradstep.chain(gradstep.momentum(0.1, 0.9), T.constrain_total_norm(m)),
    ],
    ids=["alone", "before-adam", "after-momentum"],
)
def test_total_norm_constraint_runs_on_the_triton_engine_as_eager(make, max_norm):
    TritonEngine(make(max_norm))  # compiles: no NotFusable
    got = run(make(max_norm), "triton", scale=10.0)
    want = run(make(max_norm), "eager", scale=10.0)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)


def test_total_norm_constraint_stage_is_lasagnes_function():
    """The stage scales the updates as the array function does (Lasagne's
    ``min(N, m) / (N + epsilon)``, also inside the ball)."""
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    for max_norm in (0.5, 1e3):
        stage = T.constrain_total_norm(max_norm, epsilon=1e-3)
        got, _ = stage.update(grads, stage.init(grads), grads)
        want = gradstep.total_norm_constraint(grads, max_norm, 1e-3)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


AXIS_SHAPES = ((33, 5), (4, 3, 5), (6, 2, 3, 3), (2, 3, 4, 5, 6), (1, 1), (0, 4))


def run_shapes(transform, engine, shapes, steps=3, dtype=torch.float32, start=None):
    gen = torch.Generator().manual_seed(13)
    params = [
        torch.nn.Parameter(torch.randn(s, generator=gen).to(start or dtype).to(dtype))
        for s in shapes
    ]
    opt = gt.TransformOptimizer(params, transform, engine=engine)
    for k in range(steps):
        for i, p in enumerate(params):
            p.grad = (i + 1) * torch.sin(3 * p.detach() + k) + 0.1 * k
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize(
    "make, shapes",
    [
        # Lasagne's default axes: each column of a dense weight, each conv filter
        (lambda: T.constrain_norm(0.5), AXIS_SHAPES),
        (lambda: gradstep.chain(T.constrain_norm(0.3, epsilon=1e-3), gradstep.adam(1e-2)),
         AXIS_SHAPES),
        (lambda: gradstep.chain(gradstep.momentum(0.1, 0.9), T.constrain_norm(1e3)), AXIS_SHAPES),
        # given axes: whole 1-D tensors, a middle axis (kept axes in two runs), and
        # every other axis of a 5-D tensor (three runs)
        (lambda: T.constrain_norm(0.7, norm_axes=(0,)), ((7,), (2100,), (5, 6))),
        (lambda: T.constrain_norm(0.7, norm_axes=(1,)), ((4, 3, 5), (2, 5, 3, 2))),
        (lambda: T.constrain_norm(0.7, norm_axes=(1, 3)), ((2, 3, 4, 5, 6),)),
        (lambda: T.constrain_norm(0.7, norm_axes=(-1,)), ((3, 1500),)),
    ],
    ids=["default", "before-adam", "after-momentum-inside", "axis0", "middle", "alternate",
         "last-axis-long-rows"],
)  # fmt: skip
def test_norm_constraint_over_axes_runs_on_the_triton_engine_as_eager(make, shapes):
    engine = TritonEngine(make())
    assert any(st.is_axis_norm for st in engine.stages)
    got = run_shapes(make(), "triton", shapes)
    want = run_shapes(make(), "eager", shapes)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)


def test_norm_constraint_over_axes_in_float64_and_bfloat16():
    """float64 against eager float64; bfloat16 (whose eager math is NumPy-only)
    against eager float32 from the same start, within bfloat16's rounding."""
    make = lambda: gradstep.chain(T.constrain_norm(0.5), gradstep.adam(1e-2))  # noqa: E731
    shapes = ((33, 5), (4, 3, 5))
    for dtype, eager, tol in (
        (torch.float64, torch.float64, 1e-12),
        (torch.bfloat16, torch.float32, 3e-2),
    ):
        got = run_shapes(make(), "triton", shapes, dtype=dtype)
        want = run_shapes(make(), "eager", shapes, dtype=eager, start=dtype)
        for a, b in zip(got, want):
            torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


def test_slices_of_a_tensor_are_lasagnes():
    """The runs describe the slices Lasagne's axes make (numbered row-major over the
    kept axes)."""
    stage = T.constrain_norm(1.0, norm_axes=(1, 3))
    shape = (2, 3, 4, 5, 6)
    runs, n = stage.runs(shape)
    i = np.arange(int(np.prod(shape)))
    got = sum(((i // a) % b) * c for a, b, c in runs)
    kept = np.indices(shape)[[0, 2, 4]].reshape(3, -1)
    want = np.ravel_multi_index(tuple(kept), (2, 4, 6))
    assert n == 48 and np.array_equal(got, want)
    with pytest.raises(ValueError, match="runs"):
        T.constrain_norm(1.0, norm_axes=(1, 3, 5)).runs((2,) * 7)


def test_numba_engine_still_refuses_norms_over_axes():
    from gradstep.engines.fused import FusedEngine
    from gradstep.engines.plan import NotFusable

    with pytest.raises(NotFusable):
        FusedEngine(T.constrain_norm(1.0))


def test_norm_constraint_over_axes_refuses_axes_a_tensor_lacks():
    params = [torch.nn.Parameter(torch.ones(3, 4))]
    opt = gt.TransformOptimizer(params, T.constrain_norm(1.0, norm_axes=(2,)), engine="triton")
    params[0].grad = torch.ones(3, 4)
    with pytest.raises(ValueError, match="norm_axes"):
        opt.step()
    assert torch.equal(params[0].detach(), torch.ones(3, 4))


def test_norm_constraint_over_axes_keeps_a_nan_in_its_slice():
    """A NaN gradient makes its slice's norm NaN and only that slice's updates NaN,
    as the eager engine."""
    shapes = ((6, 4), (3, 2, 5))

    def run(engine):
        params = [torch.nn.Parameter(torch.ones(s)) for s in shapes]
        opt = gt.TransformOptimizer(params, T.constrain_norm(0.5), engine=engine)
        for p in params:
            p.grad = torch.linspace(-1, 1, p.numel()).reshape(p.shape)
        params[0].grad[2, 1] = float("nan")
        params[1].grad[1, 0, 3] = float("nan")
        opt.step()
        return [p.detach() for p in params]

    for a, b in zip(run("triton"), run("eager")):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6, equal_nan=True)
        assert 0 < int(a.isnan().sum()) < a.numel()


# (the rule before the constraint, its max_norm and options, the shapes): Lasagne's
# max-norm regularisation of the new parameters' columns and filters, given axes
PARAM_CASES = {
    "sgd-default-axes": (lambda: gradstep.sgd(0.5), 0.8, {}, AXIS_SHAPES),
    "adam-eps": (lambda: gradstep.adam(0.1), 0.6, {"epsilon": 1e-3}, AXIS_SHAPES),
    "momentum-inside": (lambda: gradstep.momentum(0.1, 0.9), 1e3, {}, AXIS_SHAPES),
    "middle-axis": (lambda: gradstep.sgd(0.5), 0.7, {"norm_axes": (1,)}, ((4, 3, 5), (2, 5, 3, 2))),
    "whole-vectors": (lambda: gradstep.adam(0.2), 0.9, {"norm_axes": (0,)}, ((7,), (2100,), (6,))),
}  # fmt: skip


def _slice_norms(p, stage):
    return p.double().pow(2).sum(dim=stage.axes(p.dim()), keepdim=True).sqrt()


@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_norm_constraint_on_the_new_parameters_runs_on_the_triton_engine_as_eager(case):
    """``target="params"``: a reduction pass sums the squares of the new parameter
    ``w + u`` per slice, then the step pass writes ``(w + u) * factor``: the eager
    engine's parameters, each slice's norm at most ``max_norm``."""
    rule, max_norm, options, shapes = PARAM_CASES[case]

    def make():
        return gradstep.chain(rule(), T.constrain_norm(max_norm, **options, target="params"))

    engine = TritonEngine(make())
    assert [st.stage.of_params for st in engine.stages if st.is_axis_norm] == [True]
    got = run_shapes(make(), "triton", shapes)
    want = run_shapes(make(), "eager", shapes)
    stage = next(st.stage for st in engine.stages if st.is_axis_norm)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)
        if a.numel():
            assert float(_slice_norms(a, stage).max()) <= max_norm * (1 + 1e-6)


def test_norm_constraint_on_the_new_parameters_in_float64_and_bfloat16():
    """float64 against eager float64; bfloat16 (whose eager math is NumPy-only)
    against eager float32 from the same start, within bfloat16's rounding."""
    make = lambda: gradstep.chain(  # noqa: E731
        gradstep.adam(0.1), T.constrain_norm(0.5, target="params")
    )
    shapes = ((33, 5), (4, 3, 5), (3, 7, 2, 2))
    for dtype, eager, tol in (
        (torch.float64, torch.float64, 1e-12),
        (torch.bfloat16, torch.float32, 3e-2),
    ):
        got = run_shapes(make(), "triton", shapes, dtype=dtype)
        want = run_shapes(make(), "eager", shapes, dtype=eager, start=dtype)
        for a, b in zip(got, want):
            assert a.dtype == dtype
            torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


def test_numba_engine_refuses_norms_over_axes_of_the_parameters_too():
    from gradstep.engines.fused import FusedEngine
    from gradstep.engines.plan import NotFusable

    with pytest.raises(NotFusable):
        FusedEngine(T.constrain_norm(1.0, target="params"))
