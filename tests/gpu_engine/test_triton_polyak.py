"""polyak_sgd on the Triton engine (its global reduction stage: the squared norm as
a reduction pass, the step size from the stage's ``combine`` on the device), through
the torch front, equal to the eager engine; the loss given each step."""

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep.engines.triton import TritonEngine

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

RULES = {
    "sps": dict(max_learning_rate=0.7, scaling=0.5, f_min=0.8, epsilon=1e-4),
    "sps+": dict(max_learning_rate=0.7, scaling=0.5, f_min=0.8, epsilon=1e-4, variant="sps+"),
}


def trajectory(rule, engine, steps=8):
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (0, 1, 7, 4100)]
    opt = gt.TransformOptimizer(params, gradstep.polyak_sgd(**rule), engine=engine)
    for k in range(steps):
        for p in params:
            p.grad = torch.sin(3 * p.detach() + k) + 0.1 * k
        # the loss falls below f* on some steps
        opt.param_groups[0]["value"] = 1.2 + torch.sin(torch.tensor(1.3 * k)).item()
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("variant", list(RULES))
def test_equals_eager(variant):
    want, got = (trajectory(RULES[variant], e) for e in ("eager", "triton"))
    assert not torch.equal(want[3], trajectory(RULES[variant], "eager", steps=0)[3])
    for a, b in zip(got, want):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_the_engine_compiles_it():
    engine = TritonEngine(gradstep.polyak_sgd())
    assert [st.is_global for st in engine.stages] == [False, True]


def test_a_step_without_the_value_raises_and_changes_nothing():
    p = torch.nn.Parameter(torch.linspace(-1, 1, 9))
    opt = gt.TransformOptimizer([p], gradstep.polyak_sgd(), engine="triton")
    p.grad = torch.ones_like(p)
    for step in range(3):  # the first step's general path, then the repeated launch
        opt.param_groups[0]["value"] = 2.0 if step != 1 else None
        before = p.detach().clone()
        if step == 1:
            with pytest.raises(ValueError, match="needs value="):
                opt.step()
            assert torch.equal(p.detach(), before)
        else:
            opt.step()
            assert not torch.equal(p.detach(), before)
