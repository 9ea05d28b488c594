"""The same tensor twice in one parameter list, and overlapping views of one
tensor, behave on gradstep.torch exactly as on torch.optim (which warns about the
duplicate and steps each occurrence in turn); the same tensor in two groups raises
torch's error."""

from __future__ import annotations

import warnings

import pytest
import torch

import gradstep.torch as gt

CLASSES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {}),
    ("Adagrad", {"lr_decay": 0.01}),
    ("RMSprop", {"centered": True, "momentum": 0.5}),
    ("Adadelta", {}),
    ("Adamax", {}),
    ("NAdam", {}),
    ("RAdam", {}),
]


def _run(lib, name, kwargs, layout, steps=3, **extra):
    torch.manual_seed(0)
    if layout == "duplicate":
        p = torch.nn.Parameter(torch.randn(6))
        q = torch.nn.Parameter(torch.randn(4))
        params, tensors = [p, q, p], [p, q]
    else:  # overlapping views of one storage
        base = torch.randn(10)
        p = torch.nn.Parameter(base[0:6])
        q = torch.nn.Parameter(base[4:10])
        params, tensors = [p, q], [p, q]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = getattr(lib, name)(params, **kwargs, **extra)
    messages = [str(w.message) for w in caught if "duplicate" in str(w.message)]
    for k in range(steps):
        g = torch.Generator().manual_seed(k)
        for t in tensors:
            t.grad = torch.randn(t.shape, generator=g)
        opt.step()
    state = {
        i: {key: torch.as_tensor(v).clone() for key, v in opt.state[t].items()}
        for i, t in enumerate(tensors)
    }
    return [t.detach().clone() for t in tensors], state, messages


@pytest.mark.parametrize("layout", ["duplicate", "overlapping"])
@pytest.mark.parametrize(("name", "kwargs"), CLASSES, ids=lambda c: repr(c))
def test_matches_torch(name, kwargs, layout):
    want, want_state, want_warnings = _run(torch.optim, name, kwargs, layout)
    for extra in ({}, {"foreach": False}):
        got, got_state, got_warnings = _run(gt, name, kwargs, layout, **extra)
        assert got_warnings == want_warnings
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for i in want_state:
            assert set(got_state[i]) == set(want_state[i])
            for key in want_state[i]:
                torch.testing.assert_close(
                    got_state[i][key].to(want_state[i][key].dtype),
                    want_state[i][key],
                    rtol=1e-5,
                    atol=1e-6,
                )


def test_the_same_tensor_in_two_groups_raises_as_in_torch():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        torch.optim.Adam([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        gt.Adam([{"params": [p]}, {"params": [p]}])
