"""Overflow and underflow probes against torch.optim: float32 gradients from 1e-30 to
3e38, every rule torch has. Wherever torch's parameters stay finite, gradstep's do
too and agree with them (the arithmetic is ordered to be at least as overflow-safe as
torch's: square root of the moment first, then the bias correction)."""

from __future__ import annotations

import pytest
import torch

import gradstep.torch as gt

MAGNITUDES = [1e-30, 1e-20, 1e19, 1e20, 3e38]

CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {}),
    ("AdamW", {"amsgrad": True}),
    ("Adagrad", {}),
    ("RMSprop", {}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9, "centered": True}),
    ("Adadelta", {}),
    ("Adamax", {}),
    ("NAdam", {}),
    ("RAdam", {}),
]


def _run(cls, kwargs: dict, magnitude: float, strided: bool) -> torch.Tensor:
    start = torch.tensor([0.5, -0.25, 1.0, 2.0], dtype=torch.float32)
    if strided:
        # a strided view runs the eager engine on torch operations; a contiguous
        # tensor runs the fused kernel (or NumPy views)
        base = torch.zeros(4, 2, dtype=torch.float32)
        base[:, 0] = start
        p = torch.nn.Parameter(base[:, 0])
        assert not p.is_contiguous()
    else:
        p = torch.nn.Parameter(start)
    opt = cls([p], **kwargs)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0])
    for k in range(8):  # past RAdam's rectification threshold
        p.grad = sign * magnitude * (1.0 if k % 2 == 0 else 0.5)
        opt.step()
    return p.detach().clone()


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("magnitude", MAGNITUDES, ids=lambda m: f"{m:g}")
@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=lambda c: repr(c))
def test_finite_wherever_torch_is(name, kwargs, magnitude, strided):
    expected = _run(getattr(torch.optim, name), kwargs, magnitude, strided=False)
    got = _run(getattr(gt, name), kwargs, magnitude, strided)
    finite = torch.isfinite(expected)
    assert torch.isfinite(got[finite]).all(), (
        f"{name} at |g|={magnitude:g}: torch {expected.tolist()}, gradstep {got.tolist()}"
    )
    torch.testing.assert_close(got[finite], expected[finite], rtol=2e-5, atol=1e-6)


def test_sign_keeps_nan_on_torch_as_numpy_does():
    """signSGD with a NaN gradient: the eager torch engine gives NumPy's NaN (torch's
    own sign maps NaN to 0), so every engine and front agree."""
    import gradstep

    results = {}
    for engine in ("auto", "eager"):
        p = torch.nn.Parameter(torch.tensor([0.5]))
        opt = gt.TransformOptimizer([p], gradstep.signsgd(0.01), engine=engine)
        p.grad = torch.tensor([float("nan")])
        opt.step()
        results[engine] = p.detach().clone()
    assert torch.isnan(results["auto"]).all() and torch.isnan(results["eager"]).all()
