"""Found by the property test: ``gradstep.torch.TransformOptimizer`` kept working after
``load_state_dict`` (torch calls ``__setstate__`` with only state and groups)."""

from __future__ import annotations

import copy

import pytest

import gradstep

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")


def test_transform_optimizer_steps_after_load_state_dict():
    from gradstep.torch import TransformOptimizer

    w = torch.nn.Parameter(torch.ones(3))
    opt = TransformOptimizer([w], gradstep.adam(0.1))
    w.grad = torch.ones(3)
    opt.step()
    v = torch.nn.Parameter(w.detach().clone())
    other = TransformOptimizer([v], gradstep.adam(0.1))
    other.load_state_dict(copy.deepcopy(opt.state_dict()))  # torch shares the tensors
    for p, o in ((w, opt), (v, other)):
        p.grad = torch.full((3,), 0.5)
        o.step()
    assert torch.equal(w.detach(), v.detach())
