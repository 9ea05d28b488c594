"""skip_large_updates on gradstep.torch: a group the front steps in several calls
(one per dtype) is judged on the squared norm of the whole step, as on NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.transforms import skip_large_updates

torch = pytest.importorskip("torch", reason="torch is a test dependency")


def test_split_group_is_judged_on_the_whole_step():
    import gradstep.torch as gt

    transform = skip_large_updates(gradstep.adam(0.1), 1.0)
    dtypes = [np.float32, np.float64]
    starts = [np.linspace(-1, 1, 4).astype(d) for d in dtypes]
    # each tensor's squares sum to 0.64 (below the bound), both together to 1.28
    # (above it) on steps 1 and 3
    steps = [[np.full(4, 0.4 if k in (1, 3) else 0.1, d) for d in dtypes] for k in range(5)]
    ws = [s.copy() for s in starts]
    ref = gradstep.Optimizer(ws, transform)
    params = [torch.nn.Parameter(torch.from_numpy(s.copy())) for s in starts]
    opt = gt.TransformOptimizer(params, transform)
    for k, gs in enumerate(steps):
        ref.step(gs)
        for p, g in zip(params, gs):
            p.grad = torch.from_numpy(g)
        opt.step()
        for p, w in zip(params, ws):
            np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-6, err_msg=f"step {k}")
    assert int(ref.state["total_notfinite"]) == 2
    assert {int(opt.state[p]["total_notfinite"]) for p in params} == {2}
    assert {float(opt.state[p]["step"]) for p in params} == {3.0}
