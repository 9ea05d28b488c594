"""Small real models and a training loop shared by the torch front's tests."""

from __future__ import annotations

import contextlib
import types

import pytest
import torch


class MLP(torch.nn.Module):
    """Two hidden layers, plus a side branch that only gets a gradient on even steps
    (its parameters have ``grad is None`` on odd steps)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 12), torch.nn.Tanh()
        )
        self.head = torch.nn.Linear(12, 3)
        self.side = torch.nn.Linear(6, 3)

    def forward(self, x, k):
        y = self.head(self.body(x))
        return y + self.side(x) if k % 2 == 0 else y


class ConvNet(torch.nn.Module):
    """Two convolutions and a linear read-out on 2x8x8 inputs."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 4, 3)
        self.conv2 = torch.nn.Conv2d(4, 4, 3)
        self.head = torch.nn.Linear(4 * 4 * 4, 3)
        self.side = torch.nn.Linear(3, 3)

    def forward(self, x, k):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        y = self.head(h.flatten(1))
        return self.side(y) if k % 2 == 0 else y


MODELS = {"mlp": (MLP, (6,)), "convnet": (ConvNet, (2, 8, 8))}


def make_model(kind: str, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cls, _ = MODELS[kind]
    return cls().to(dtype)


def data(kind: str, dtype: torch.dtype, steps: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    shape = MODELS[kind][1]
    xs = [torch.randn((8,) + shape, generator=g, dtype=dtype) for _ in range(steps)]
    ys = [torch.randn(8, 3, generator=g, dtype=dtype) for _ in range(steps)]
    return xs, ys


def two_groups(model: torch.nn.Module, overrides: dict) -> list[dict]:
    """The first layer's parameters in a group of their own with ``overrides``."""
    params = list(model.parameters())
    return [{"params": params[:2], **overrides}, {"params": params[2:]}]


def train(
    model,
    kind,
    make_opt,
    steps=16,
    freeze_at=8,
    scheduler=True,
    closure=False,
):
    """Train ``model``; the head's bias is frozen from step ``freeze_at`` on."""
    dtype = next(model.parameters()).dtype
    xs, ys = data(kind, dtype, steps)
    opt = make_opt(model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5) if scheduler else None
    for k in range(steps):
        if k == freeze_at:
            model.head.bias.requires_grad_(False)
            model.head.bias.grad = None

        def loss_fn(k=k):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xs[k], k), ys[k])
            loss.backward()
            return loss

        if closure:
            opt.step(loss_fn)
        else:
            loss_fn()
            opt.step()
        if sched is not None:
            sched.step()
    return opt


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """torch's default dtype set to ``dtype`` (torch keeps scalar state such as NAdam's
    ``mu_product`` in the default dtype: the precision of the parameters makes the
    comparison fair)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@pytest.fixture
def torch_models():
    return types.SimpleNamespace(
        make_model=make_model,
        data=data,
        train=train,
        two_groups=two_groups,
        default_dtype=default_dtype,
        MODELS=MODELS,
    )
