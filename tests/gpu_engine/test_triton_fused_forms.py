"""Fused forms on the Triton engine (under its CPU interpreter): AdamP's and SGDP's
projection, Ranger's centralisation, CAME's factored moments and Ranger21's AGC,
normalisation and step run on vectors as the stages they equal there, as on the numba
engine; other shapes and, for CAME, 16-bit parameters are refused before anything is
written."""

from __future__ import annotations

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep.engines.plan import Unsupported
from gradstep.engines.triton import TritonEngine

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

RULES = {
    "adamp": lambda: gradstep.adamp(0.01, weight_decay=0.1),
    "sgdp": lambda: gradstep.sgdp(0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
    "ranger": lambda: gradstep.ranger(0.01),
    "came": lambda: gradstep.came(0.01),
    # AGC, the normalisation and the step (a per-tensor reduction with totals)
    "ranger21": lambda: gradstep.ranger21(0.05, num_iterations=20, num_warmup_steps=2),
}


def _run(make, engine, shapes, dtype=torch.float32, steps=7):
    gen = torch.Generator().manual_seed(2)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in shapes]
    opt = gt.TransformOptimizer(params, make(), engine=engine)
    for k in range(steps):
        for i, p in enumerate(params):
            p.grad = (torch.sin(3 * p.detach().float() + k) * (1 + i)).to(dtype)
        opt.step()
    return [p.detach().clone() for p in params], opt


@pytest.fixture
def launches(watch):
    """The steps the Triton engine launched (the first through ``step_leaves``, the
    next ones through the front's fast path)."""
    return watch(TritonEngine, "launch")


@pytest.mark.parametrize("name", list(RULES))
def test_vectors_run_on_triton_and_equal_eager(name, launches):
    shapes = [(0,), (1,), (7,), (2100,)]
    want, _ = _run(RULES[name], "eager", shapes)
    assert not launches
    got, _ = _run(RULES[name], "triton", shapes)
    assert len(launches) >= 7  # every step (CAME: an empty vector has a bucket of its own)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("name", [name for name in RULES if name != "ranger21"])
def test_a_matrix_is_refused_before_anything_is_written(name):
    make = RULES[name]
    params = [torch.linspace(-1, 1, 12), torch.linspace(-1, 1, 12).reshape(3, 4)]
    grads = [torch.cos(3 * p) for p in params]
    state = make().init([p.numpy() for p in params])
    before = [p.clone() for p in params]
    with pytest.raises(Unsupported, match=r"rank < 2 only, not on a tensor of shape \(3, 4\)"):
        TritonEngine(make()).step_leaves(params, grads, params, state, {})
    for p, b in zip(params, before):
        assert torch.equal(p, b)


def test_a_required_triton_engine_names_the_refused_shape():
    p = torch.nn.Parameter(torch.ones(3, 4))
    opt = gt.TransformOptimizer([p], gradstep.adamp(0.01), engine="triton")
    p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match=r"required .* not on a tensor of shape \(3, 4\)"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3, 4))
    assert not opt.state[p] or all(
        not isinstance(v, torch.Tensor) or v.dim() == 0 or not v.any()
        for v in opt.state[p].values()
    )


def test_came_leaves_16bit_parameters_to_its_own_update():
    """CAME's moments round a 16-bit gradient's updates between stages, which the
    kernels would not: refused on float16, run on float32."""
    engine = TritonEngine(gradstep.came(0.01))
    w = [torch.ones(5, dtype=torch.float16)]
    with pytest.raises(Unsupported, match="32- and 64-bit parameters only"):
        engine.step_leaves(w, [torch.ones_like(w[0])], w, gradstep.came(0.01).init(w), {})
    assert torch.equal(w[0], torch.ones(5, dtype=torch.float16))
