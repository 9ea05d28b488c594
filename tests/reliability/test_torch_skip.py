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


# a group the front steps in several calls: one per shape (Adafactor's and Muon's
# state depends on it) or per dtype; the skip must still see the whole step
SPLIT_GROUPS = {
    "adafactor_shapes": (lambda: gradstep.adafactor(0.01), [(3, 4), (5,)], [np.float32] * 2),
    "muon_shapes": (lambda: gradstep.muon(0.01), [(4, 3), (6,)], [np.float32] * 2),
    "adam_dtypes": (lambda: gradstep.adam(0.1), [(5,), (5,)], [np.float32, np.float64]),
}


@pytest.mark.parametrize("limit", [None, 1])
@pytest.mark.parametrize("case", sorted(SPLIT_GROUPS))
def test_skip_sees_the_whole_step_of_a_split_group(case, limit):
    make, shapes, dtypes = SPLIT_GROUPS[case]
    transform = gradstep.transforms.skip_nonfinite(make(), max_consecutive_errors=limit)
    rng = np.random.default_rng(1)
    starts = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    steps = []
    for k in range(5):
        gs = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
        if k in (1, 2):  # two bad steps in a row: the second is past a limit of 1
            gs[0].flat[0] = NAN
        steps.append(gs)

    ws = [s.copy() for s in starts]
    ref = gradstep.Optimizer(ws, transform)
    params = [torch.nn.Parameter(torch.from_numpy(s.copy())) for s in starts]
    opt = gt.TransformOptimizer(params, transform)
    for k, gs in enumerate(steps):
        ref.step(gs)
        for p, g in zip(params, gs):
            p.grad = torch.from_numpy(g)
        opt.step()
        for i, (p, w) in enumerate(zip(params, ws)):
            np.testing.assert_allclose(
                p.detach().numpy(), w, rtol=1e-6, atol=1e-7, err_msg=f"step {k} tensor {i}"
            )
        counts = {int(opt.state[p]["notfinite_count"]) for p in params}
        totals = {int(opt.state[p]["total_notfinite"]) for p in params}
        assert len(counts) == 1 and len(totals) == 1, (k, counts, totals)
        steps_taken = {float(opt.state[p]["step"]) for p in params}
        assert len(steps_taken) == 1, (k, steps_taken)
