"""Adaptive gradient clipping's fused form on the Triton engine (under its CPU
interpreter): vectors step as on the eager engine; a matrix with layout "torch" (a
unit per row) is refused before anything is written."""

from __future__ import annotations

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep.engines.plan import Unsupported
from gradstep.engines.triton import TritonEngine
from gradstep.transforms import adaptive_clip

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)


def make(**options):
    return gradstep.chain(adaptive_clip(0.05, **options), gradstep.adam(0.01))


def _run(engine, shapes, dtype, steps=4, **options):
    gen = torch.Generator().manual_seed(6)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in shapes]
    opt = gt.TransformOptimizer(params, make(**options), engine=engine)
    for k in range(steps):
        for i, p in enumerate(params):
            # every other gradient small: its unit is within the limit, not clipped
            scale = 1.0 if i % 2 else 1e-3
            p.grad = (torch.sin(3 * p.detach() + k) * scale).to(dtype)
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize(
    "options, shapes",
    [({}, [(0,), (1,), (7,), (2100,)]), ({"layout": "torch"}, [(7,), (300,), (1,)])],
    ids=["jax", "torch"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vectors_run_on_triton_and_equal_eager(options, shapes, dtype, watch):
    launches = watch(TritonEngine, "launch")
    want = _run("eager", shapes, dtype, **options)
    assert not launches
    got = _run("triton", shapes, dtype, **options)
    assert len(launches) >= 4
    tol = {"rtol": 2e-6, "atol": 2e-7} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 0}
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)


def test_a_torch_layout_matrix_is_refused_before_anything_is_written():
    params = [torch.linspace(-1, 1, 12), torch.linspace(-1, 1, 12).reshape(3, 4)]
    grads = [torch.cos(3 * p) for p in params]
    transform = make(layout="torch")
    state = transform.init([p.numpy() for p in params])
    before = [p.clone() for p in params]
    with pytest.raises(Unsupported, match=r"whole tensor only, not on a tensor of shape \(3, 4\)"):
        TritonEngine(transform).step_leaves(params, grads, params, state, {})
    for p, b in zip(params, before):
        assert torch.equal(p, b)
