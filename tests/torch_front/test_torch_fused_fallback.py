"""With the default engine, a group the fused engine refuses at the step (its
``Unsupported``: a global reduction over 16-bit parameters) runs eagerly instead of
failing; ``engine="fused"`` still raises."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep  # noqa: E402
from gradstep.torch import TransformOptimizer  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_refused_fused_step_runs_eagerly(dtype):
    results = {}
    for engine in ("auto", "eager"):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 7, dtype=dtype))
        opt = TransformOptimizer([p], gradstep.prodigy(1.0, d0=1e-3), engine=engine)
        for k in range(3):
            p.grad = (p.detach().float() * (k + 1)).to(dtype)
            opt.step()
        results[engine] = p.detach().clone()
    assert torch.equal(results["auto"], results["eager"])


def test_a_required_fused_engine_still_refuses():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    opt = TransformOptimizer([p], gradstep.prodigy(1.0), engine="fused")
    p.grad = torch.ones_like(p)
    with pytest.raises(Exception, match="float16"):
        opt.step()
