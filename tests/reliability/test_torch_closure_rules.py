"""A rule that re-evaluates the loss itself (L-BFGS) runs through
``gradstep.torch.TransformOptimizer`` as through ``gradstep.torch.LBFGS``: the same
trajectory as torch.optim.LBFGS, and a clear error without a closure."""

from __future__ import annotations

import pytest
import torch

import gradstep
import gradstep.torch as gt


def _loss(params):
    a, b = params
    return ((a - 1.0) ** 2).sum() + (a**4).sum() + ((b + 0.5) ** 2).sum() * 3.0


def _run(make, steps=4):
    torch.manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(3, dtype=torch.float64)),
        torch.nn.Parameter(torch.randn(2, 2, dtype=torch.float64)),
    ]
    opt = make(params)
    losses = []

    def closure():
        opt.zero_grad()
        loss = _loss(params)
        loss.backward()
        return loss

    for _ in range(steps):
        losses.append(opt.step(closure).item())
    return losses, [p.detach().clone() for p in params], opt


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_transform_optimizer_runs_lbfgs_like_torch(line_search):
    expected, want, _ = _run(lambda ps: torch.optim.LBFGS(ps, line_search_fn=line_search))
    got, have, opt = _run(
        lambda ps: gt.TransformOptimizer(ps, gradstep.lbfgs(line_search_fn=line_search))
    )
    assert got == pytest.approx(expected, rel=1e-9)
    for a, b in zip(have, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert set(opt.state[opt.param_groups[0]["params"][0]]) >= {"n_iter", "func_evals"}


def test_lbfgs_without_a_closure_says_so():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = gt.TransformOptimizer([w], gradstep.lbfgs())
    w.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="requires a closure"):
        opt.step()
