"""A checkpoint whose state tensors do not fit the parameters is refused at load time,
naming the parameter and both shapes, and a refused load changes nothing; a state
entry replaced by hand is caught before any engine reads or writes it."""

from __future__ import annotations

import copy

import pytest
import torch

import gradstep
import gradstep.torch as gt


def _stepped(cls, sizes, **kwargs):
    params = [torch.nn.Parameter(torch.randn(n)) for n in sizes]
    opt = cls(params, **kwargs)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return params, opt


CLASSES = [
    (gt.Adam, {}),
    (gt.AdamW, {"amsgrad": True}),
    (gt.SGD, {"lr": 0.1, "momentum": 0.9}),
    (gt.RMSprop, {"centered": True}),
    (gt.Adagrad, {}),
    (gt.Adadelta, {}),
    (gt.Adamax, {}),
    (gt.NAdam, {}),
    (gt.RAdam, {}),
]


@pytest.mark.parametrize(("cls", "kwargs"), CLASSES, ids=lambda c: getattr(c, "__name__", ""))
@pytest.mark.parametrize("foreach", [None, False], ids=["grouped", "per_tensor"])
def test_mismatched_checkpoint_is_refused_at_load(cls, kwargs, foreach):
    kwargs = {**kwargs, "foreach": foreach}
    _, small = _stepped(cls, [3, 5], **kwargs)
    params, opt = _stepped(cls, [300_000, 5], **kwargs)  # the first parameter differs
    before = copy.deepcopy(opt.state_dict())
    values = [p.detach().clone() for p in params]
    with pytest.raises(
        ValueError,
        match=r"parameter 0 of param group 0 has shape \(3,\), "
        r"but the parameter has shape \(300000,\)",
    ):
        opt.load_state_dict(small.state_dict())
    # nothing changed: the state, the groups and the parameters
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for pid, entry in before["state"].items():
        for key, value in entry.items():
            torch.testing.assert_close(after["state"][pid][key], value, rtol=0, atol=0)
    for p, v in zip(params, values):
        assert torch.equal(p.detach(), v)
    # and the optimizer still steps
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()


def test_transform_optimizer_refuses_a_checkpoint_of_other_shapes():
    w_small = torch.nn.Parameter(torch.zeros(2, 3))
    small = gt.TransformOptimizer([w_small], gradstep.adam(1e-3))
    w_small.grad = torch.ones(2, 3)
    small.step()
    w = torch.nn.Parameter(torch.zeros(3, 2))  # same size, other shape
    opt = gt.TransformOptimizer([w], gradstep.adam(1e-3))
    with pytest.raises(
        ValueError, match=r"has shape \(2, 3\), but the parameter has shape \(3, 2\)"
    ):
        opt.load_state_dict(small.state_dict())
    assert not opt.state


def test_complex_state_for_a_real_parameter_is_refused():
    params, opt = _stepped(gt.Adam, [4])
    state = opt.state_dict()
    state["state"][0]["exp_avg"] = torch.zeros(4, dtype=torch.complex64)
    with pytest.raises(
        ValueError, match=r"state\['exp_avg'\] of parameter 0 of param group 0 is complex"
    ):
        opt.load_state_dict(state)


@pytest.mark.parametrize("fused", [True, False], ids=["auto", "eager"])
def test_state_replaced_by_hand_is_caught_every_step(fused):
    kwargs = {} if fused else {"foreach": False, "fused": False}
    params, opt = _stepped(gt.Adam, [100_000, 7], **kwargs)
    p = params[0]
    opt.state[p]["exp_avg_sq"] = torch.zeros(10)  # a smaller buffer, by hand
    w = p.detach().clone()
    step = float(opt.state[p]["step"])
    p.grad = torch.ones_like(p)
    with pytest.raises(
        ValueError,
        match=r"state\['exp_avg_sq'\] of parameter 0 of param group 0 has shape \(10,\), "
        r"but the parameter has shape \(100000,\)",
    ):
        opt.step()
    assert torch.equal(p.detach(), w)
    assert float(opt.state[p]["step"]) == step


def test_state_on_another_dtype_by_hand_is_caught():
    params, opt = _stepped(gt.Adam, [6])
    opt.state[params[0]]["exp_avg"] = torch.zeros(6, dtype=torch.int32)
    params[0].grad = torch.ones(6)
    with pytest.raises(ValueError, match=r"dtype torch.int32"):
        opt.step()
