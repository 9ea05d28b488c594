"""``nonfinite_policy(..., "skip")`` through gradstep.torch: a skipped step changes
nothing (parameters, moments, torch's ``step``), and the run equals the NumPy
front's step for step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep.transforms import nonfinite_policy

NAN, INF = float("nan"), float("inf")

RULES = {
    "adam": lambda: gradstep.adam(0.1),
    "radam": lambda: gradstep.radam(0.05),
    "nadam": lambda: gradstep.nadam(0.05),
    "adagrad": lambda: gradstep.adagrad(0.1),
    "rmsprop": lambda: gradstep.rmsprop(0.01),
}

# the first step is skipped too: state exists but nothing is counted
SPOILED = {0, 2, 3}


def _grads(steps: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(steps):
        g = rng.standard_normal(5).astype(np.float32)
        if k in SPOILED:
            g[k % 5] = NAN if k % 2 else INF
        out.append(g)
    return out


@pytest.mark.parametrize("strided", [False, True], ids=["numpy_views", "torch_ops"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_skipped_steps_change_nothing_and_match_numpy(name, strided):
    transform = nonfinite_policy(RULES[name](), "skip")
    start = np.linspace(-1.0, 1.0, 5, dtype=np.float32)
    grads = _grads(7)

    w = start.copy()
    ref = gradstep.Optimizer([w], transform)
    expected = []
    for g in grads:
        ref.step([g])
        expected.append(w.copy())

    if strided:
        base = torch.zeros(5, 2)
        base[:, 0] = torch.from_numpy(start)
        p = torch.nn.Parameter(base[:, 0])
    else:
        p = torch.nn.Parameter(torch.from_numpy(start.copy()))
    opt = gt.TransformOptimizer([p], transform)
    finite_steps = 0
    for k, (g, want) in enumerate(zip(grads, expected)):
        before = {
            key: v.clone() if isinstance(v, torch.Tensor) else v for key, v in opt.state[p].items()
        }
        w_before = p.detach().clone()
        p.grad = torch.from_numpy(g)
        opt.step()
        if k in SPOILED:
            assert torch.equal(p.detach(), w_before), f"step {k} moved the parameter"
            for key, value in before.items():
                if key in ("notfinite_count", "total_notfinite"):
                    continue
                now = opt.state[p][key]
                assert torch.equal(torch.as_tensor(now), torch.as_tensor(value)), (
                    f"step {k} changed state[{key!r}]"
                )
        else:
            finite_steps += 1
        assert float(opt.state[p]["step"]) == finite_steps
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-6, atol=1e-7)
