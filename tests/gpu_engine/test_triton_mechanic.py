"""Mechanic on the Triton engine: the global reduction stage after Adam's stages, its
reduction pass reading the gradient, the parameter and the reference point, its
scalar recursion on the device, the carried state stored back by the torch front."""

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep.engines.triton import TritonEngine


def trajectory(engine, steps=12):
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (0, 1, 7, 4100)]
    opt = gt.TransformOptimizer(params, gradstep.mechanic(s_init=1e-3), engine=engine)
    for k in range(steps):
        for p in params:
            p.grad = (p.detach() - 0.3) + 0.2 * torch.sin(3 * p.detach() + k)
        opt.step()
    return [p.detach() for p in params], opt.state[params[1]]


def test_equals_eager_with_the_carried_state():
    (want, s_want), (got, s_got) = (trajectory(e) for e in ("eager", "triton"))
    assert float(s_want["s1"]) > 1e-3  # the scale grew
    for key in ("s1", "r1", "m1", "v1", "s6"):
        assert float(s_got[key]) == pytest.approx(float(s_want[key]), rel=1e-5), key
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)


def test_one_reduction_pass_and_capturable_steps_refused():
    engine = TritonEngine(gradstep.mechanic())
    source = engine.source(["float32"] * engine.n_rows, "float32", set())
    assert source.count("def reduce") == 1
    assert "carries scalar state" in engine.device_scalars_problem()
