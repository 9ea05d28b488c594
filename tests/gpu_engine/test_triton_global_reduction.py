"""A global reduction stage (Prodigy's distance estimate) on the Triton engine: the
reduction pass, the stage's ``prepare`` and ``combine`` on the device, the carried
state stored back by the torch front."""

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T
from gradstep.engines.triton import TritonEngine

CHAINS = {
    "prodigy": lambda: gradstep.prodigy(d0=1e-3),
    "clip+prodigy coupled, no momentum, bias correction": lambda: gradstep.chain(
        T.clip_by_global_norm(0.5),
        gradstep.prodigy(
            beta1=0.0, weight_decay=0.1, decouple=False, use_bias_correction=True, d0=1e-3
        ),
    ),
}


def trajectory(transform, engine, steps=10):
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (0, 1, 7, 4100)]
    opt = gt.TransformOptimizer(params, transform, engine=engine)
    for k in range(steps):
        for p in params:
            p.grad = torch.sin(3 * p.detach() + k) + 0.1 * k
        opt.step()
    return [p.detach() for p in params], opt.state[params[1]]["d"]


@pytest.mark.parametrize("name", list(CHAINS))
def test_equals_eager_with_the_carried_state(name):
    (want, d_want), (got, d_got) = (trajectory(CHAINS[name](), e) for e in ("eager", "triton"))
    assert d_want > 1e-3
    assert d_got == pytest.approx(d_want, rel=1e-5)
    # float32 terms summed in another order move d by ~1e-7 relative, and the steps
    # with it (more where the coordinate's step is ~sign(g) and g crosses zero)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5)


def test_capturable_steps_are_refused_with_the_reason():
    engine = TritonEngine(gradstep.prodigy())
    assert "carries scalar state" in engine.device_scalars_problem()
