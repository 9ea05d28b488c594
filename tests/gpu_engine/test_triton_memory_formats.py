"""A ``channels_last`` parameter runs through the Triton engine's one launch (its
C-contiguous view of memory, state in its memory format), under Triton's interpreter
on CPU tensors, and equals the eager engine."""

from __future__ import annotations

import copy

import torch

import gradstep
import gradstep.torch as gt
from gradstep.torch import _cuda, _engines


def _run(engine: str, monkeypatch=None):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3).to(memory_format=torch.channels_last)
    opt = gt.TransformOptimizer(
        conv.parameters(), gradstep.adamw(1e-2, weight_decay=0.1), engine=engine
    )
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(2, 3, 7, 7, generator=g).to(memory_format=torch.channels_last)
        opt.zero_grad()
        conv(x).square().mean().backward()
        opt.step()
    return conv, opt


def test_channels_last_runs_on_the_triton_engine_as_eager(monkeypatch):
    eager, fast = [], []
    run_eager, fast_step = _engines.EngineRuns._run_eager, _cuda.FastStep.step
    monkeypatch.setattr(
        _engines.EngineRuns,
        "_run_eager",
        lambda self, *a, **k: eager.append(1) or run_eager(self, *a, **k),
    )

    def spied(self, *args, **kwargs):
        fast.append(fast_step(self, *args, **kwargs))
        return fast[-1]

    monkeypatch.setattr(_cuda.FastStep, "step", spied)
    conv, opt = _run("triton")
    assert not eager
    assert fast == [True, True]  # the steps after the first: one launch, no bookkeeping
    monkeypatch.undo()
    ref, _ = _run("eager")
    for a, b in zip(conv.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-7)
    state = opt.state[conv.weight]
    assert all(state[k].stride() == conv.weight.stride() for k in state if state[k].dim() == 4)
    assert copy.deepcopy(opt.state_dict())  # the state is ordinary tensors
