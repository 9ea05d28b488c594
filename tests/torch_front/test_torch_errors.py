"""torch.optim's own error inputs (its OptimizerInfo database, recorded by
``tests/conformance/record_torch_extra_fixtures.py``) raise the same exception type,
with a message matching torch's own test's pattern, from gradstep.torch's class of
the same name; construction errors at construction, step errors at the first step."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch

import gradstep.torch as gt

FIXTURES = Path(__file__).parents[1] / "conformance" / "fixtures"
FIXTURE = FIXTURES / "torch_front" / "error_inputs.json"
INPUTS = json.loads(FIXTURE.read_text())
ERRORS = {"TypeError": TypeError, "ValueError": ValueError, "RuntimeError": RuntimeError}


def decode(value, tensors: dict):
    """The inverse of the recorder's ``encode`` (a repeated tensor is the same object)."""
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "tuple" in value:
        return tuple(decode(v, tensors) for v in value["tuple"])
    if "dict" in value:
        return {k: decode(v, tensors) for k, v in value["dict"].items()}
    if "tensor_ref" in value:
        return tensors[value["tensor_ref"]]
    entry = value["tensor"]
    dtype = getattr(torch, entry["dtype"])
    shape = tuple(entry["shape"])
    if "values" in entry:
        t = torch.tensor(entry["values"], dtype=dtype).reshape(shape)
    else:
        t = torch.rand(shape, dtype=dtype)
    if entry["layout"] == "sparse_coo":
        t = t.to_sparse()
    if entry["grad"]:
        t.grad = torch.rand_like(t)
    if entry["parameter"]:
        t = torch.nn.Parameter(t)
    tensors[entry["index"]] = t
    return t


def case_id(case: dict) -> str:
    return f"{case['class']}-{case['desc']}"


def test_every_torch_class_is_covered():
    assert {c["class"] for c in INPUTS} <= set(gt.__all__)


@pytest.mark.parametrize("case", INPUTS, ids=case_id)
def test_torch_error_input(case):
    cls = getattr(gt, case["class"])
    tensors: dict = {}
    params = decode(case["params"], tensors)
    kwargs = decode(case["kwargs"], tensors)
    pattern = case["error_regex"]
    if case["error_type"] == "UserWarning":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls(params, **kwargs)
        assert any(re.search(pattern, str(w.message)) for w in caught), caught
        return
    error = ERRORS[case["error_type"]]
    if case["error_on"] == "construction":
        with pytest.raises(error, match=pattern):
            cls(params, **kwargs)
    else:
        opt = cls(params, **kwargs)
        with pytest.raises(error, match=pattern):
            opt.step()


def test_lbfgs_takes_an_unknown_line_search_and_refuses_it_at_the_step_as_torch():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = gt.LBFGS([p], line_search_fn="foo")  # torch makes it too

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        opt.step(closure)
    assert p.detach().tolist() == [1.0, -2.0]
    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        torch.optim.LBFGS([p], line_search_fn="foo").step(closure)


def test_lbfgs_takes_history_size_0_and_fails_at_its_first_curvature_pair_as_torch():
    """torch makes LBFGS(history_size=0) and raises IndexError where it would keep a
    pair; gradstep raises the same type there, leaving the parameters as they were."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = gt.LBFGS([p], history_size=0)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    with pytest.raises(IndexError):
        opt.step(closure)
    assert p.detach().tolist() == [1.0, -2.0]
    with pytest.raises(IndexError):
        torch.optim.LBFGS([p], history_size=0).step(closure)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad"])
def test_an_integer_parameter_is_taken_and_never_stepped_as_torch(name):
    """A counter kept as ``nn.Parameter(..., requires_grad=False)`` in the list: torch
    makes the optimizer and steps the others (gradstep refused it when made)."""

    def run(module):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 4))
        count = torch.nn.Parameter(torch.zeros((), dtype=torch.int64), requires_grad=False)
        opt = getattr(module, name)([count, w], lr=0.1)
        for k in range(3):
            w.grad = torch.sin(w.detach() + k)
            opt.step()
        return w.detach(), count.item()

    (ours, our_count), (theirs, their_count) = run(gt), run(torch.optim)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    assert our_count == their_count == 0
