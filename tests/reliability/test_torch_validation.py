"""The torch front takes exactly the values torch.optim takes: for each class with a
torch name and a list of edge values, gradstep.torch raises iff torch.optim raises
(constructing the optimizer and taking one step)."""

from __future__ import annotations

import warnings

import pytest
import torch

import gradstep.torch as gt

INF, NAN = float("inf"), float("nan")

LR = [0.0, -0.0, -1e-3, 10.0, INF, NAN, torch.tensor(0.1), torch.tensor(-0.1)]
EPS = [0.0, -1e-8, INF, NAN, 1.0]
WEIGHT_DECAY = [0.0, -0.1, 2.0, INF, NAN]
BETAS = [
    (0.0, 0.0),
    (1.0, 0.999),
    (0.9, 1.0),
    (-0.1, 0.9),
    (0.9, -0.1),
    (1.1, 0.9),
    (0.9, 1.5),
    (NAN, 0.9),
    (0.9, NAN),
]
FLAGS = {"maximize": [True, 1, 0], "foreach": [True, False, None]}
ADAM_LIKE = {"lr": LR, "eps": EPS, "weight_decay": WEIGHT_DECAY, "betas": BETAS, **FLAGS}

EDGES: dict[str, dict[str, list]] = {
    "SGD": {
        "lr": LR,
        "momentum": [0.0, 1.0, 2.0, -0.5, INF, NAN],
        "dampening": [-1.0, 0.5, 1.0, 2.0, NAN],
        "weight_decay": WEIGHT_DECAY,
        "nesterov": [True],
        **FLAGS,
    },
    "Adam": {**ADAM_LIKE, "amsgrad": [True, 1, 0, "yes"], "decoupled_weight_decay": [1]},
    "AdamW": {**ADAM_LIKE, "amsgrad": [1]},
    "Adagrad": {
        "lr": LR,
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "lr_decay": [-1.0, 0.0, 2.0, NAN, INF],
        "initial_accumulator_value": [-1.0, 0.0, NAN, INF, 3.0],
        **FLAGS,
    },
    "RMSprop": {
        "lr": LR,
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "alpha": [-0.1, 0.0, 1.0, 1.5, NAN],
        "momentum": [-0.1, 0.0, 0.5, 1.0, 2.0, NAN],
        "centered": [True, 1],
        **FLAGS,
    },
    "Adadelta": {
        "lr": [0.0, -1.0, 5.0, NAN, INF],
        "eps": EPS,
        "weight_decay": WEIGHT_DECAY,
        "rho": [-0.1, 0.0, 1.0, 1.1, NAN],
        **FLAGS,
    },
    "Adamax": dict(ADAM_LIKE),
    # decoupled decay with the default zero decay (torch takes it: the usual bias group)
    "NAdam": {**ADAM_LIKE, "momentum_decay": [-1.0, 0.0, 1.0, NAN], "decoupled_weight_decay": [1]},
    "RAdam": {**ADAM_LIKE, "decoupled_weight_decay": [True]},
    "Adafactor": {
        "lr": [0.0, -1.0, NAN, 5.0],
        "beta2_decay": [0.0, 0.5, -2.0, NAN],
        "d": [0.5, 1.0, 3.0, NAN],
        "weight_decay": [-1.0, 0.0, 2.0, NAN],
        "eps": [(None, 0.0), (None, -1.0), (0.0, 1e-3), (-1.0, 1e-3), (NAN, 1e-3)],
        "maximize": [True],
    },
    "Muon": {
        "lr": [0.0, -1.0, NAN, 5.0],
        "weight_decay": [-1.0, 0.0, NAN],
        "momentum": [-0.1, 0.0, 1.0, 2.0, NAN],
        "eps": [0.0, -1.0, NAN],
        "ns_steps": [0, 1, -1, 99, 100, 101, 2.5],
        "nesterov": [False],
        "adjust_lr_fn": ["original", "match_rms_adamw", "other"],
    },
    "ASGD": {
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "lambd": [-1.0, 0.0, NAN],
        "alpha": [-1.0, 0.0, NAN],
        "t0": [-5.0, 0.0, NAN],
        "maximize": [True],
    },
    "Rprop": {
        "lr": LR,
        "etas": [(0.5, 1.2), (1.0, 0.5), (0.0, 1.2), (0.5, 1.0), (NAN, 1.2), (0.5, INF)],
        "step_sizes": [(0.0, 50.0), (-1.0, 1.0), (1.0, 0.5), (1e-6, INF)],
        "maximize": [True],
    },
}

CASES = [
    (name, key, value)
    for name, edges in EDGES.items()
    for key, values in edges.items()
    for value in values
]


def _outcome(cls, kwargs: dict) -> str | None:
    """None if construction and one step succeed, else the exception's type."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3, 4))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = cls([p], **kwargs)
            p.grad = torch.randn(3, 4)
            opt.step()
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return type(error).__name__
    return None


@pytest.mark.parametrize(("name", "key", "value"), CASES, ids=lambda v: repr(v))
def test_raises_iff_torch_raises(name, key, value):
    kwargs = {key: value}
    expected = _outcome(getattr(torch.optim, name), kwargs)
    got = _outcome(getattr(gt, name), kwargs)
    assert (got is None) == (expected is None), (
        f"{name}({key}={value!r}): torch.optim {'raises ' + expected if expected else 'accepts'}, "
        f"gradstep.torch {'raises ' + got if got else 'accepts'}"
    )


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"lr": 0.1, "momentum": 2.0}),
        ("SGD", {"lr": 0.1, "momentum": 0.5, "dampening": -1.0}),
        ("RMSprop", {"momentum": 2.0}),
        ("RMSprop", {"alpha": 1.5}),  # a negative average: NaN where torch has NaN
        ("Muon", {"momentum": 1.0}),
    ],
)
def test_values_outside_gradsteps_ranges_give_torchs_numbers(name, kwargs):
    # accepted, and the value really reaches the math (not a stand-in)
    torch.manual_seed(1)
    w0 = torch.randn(4, 3)
    grads = [torch.randn(4, 3) for _ in range(3)]
    results = []
    for cls in (getattr(torch.optim, name), getattr(gt, name)):
        p = torch.nn.Parameter(w0.clone())
        opt = cls([p], **kwargs)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        results.append(p.detach().clone())
    tolerance = 1e-2 if name == "Muon" else 1e-6  # torch's Newton-Schulz runs in bfloat16
    torch.testing.assert_close(
        results[1], results[0], rtol=tolerance, atol=tolerance, equal_nan=True
    )


def test_refusal_names_the_argument_and_what_torch_takes():
    p = torch.nn.Parameter(torch.zeros(2))
    # torch's own words first, then the argument and what torch takes
    with pytest.raises(
        ValueError,
        match=r"^Invalid beta parameter at index 1: 1.0 \(torch.optim.Adam takes betas\[1\] in",
    ):
        gt.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"^Invalid learning rate: -1 "):
        gt.Adam(None, lr=-1)  # before params are looked at, as torch
