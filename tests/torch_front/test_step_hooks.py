"""Step hooks run once per step, for every kind of class of the torch front.

torch wraps a class's ``step`` with the hooks when it makes the class's first
instance; a subclass whose ``step`` called ``super().step()`` then ran them twice
once an instance of the parent class had been made in the process (the schedule-free
classes and every class named after a registry entry)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

from torch.optim.optimizer import register_optimizer_step_pre_hook  # noqa: E402

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402

MAKERS = {
    "Adam": lambda ps: gt.Adam(ps, lr=0.01),
    "Lion": lambda ps: gt.Lion(ps, learning_rate=1e-3),
    "AdamWScheduleFree": lambda ps: gt.AdamWScheduleFree(ps, lr=0.01),
    "SGDScheduleFree": lambda ps: gt.SGDScheduleFree(ps, lr=0.01),
    "sophia": lambda ps: gt.optimizer_class("sophia")(ps),
    "TransformOptimizer": lambda ps: gt.TransformOptimizer(ps, gradstep.adam(0.01)),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_hooks_run_once_per_step(name):
    p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6))
    for make in MAKERS.values():  # an instance of every class: torch hooks each one
        make([torch.nn.Parameter(torch.ones(2))])
    opt = MAKERS[name]([p])
    if hasattr(opt, "train"):
        opt.train()
    calls = []
    opt.register_step_pre_hook(lambda *a: calls.append("pre"))
    opt.register_step_post_hook(lambda *a: calls.append("post"))
    pre = register_optimizer_step_pre_hook(lambda *a: calls.append("all"))
    try:
        for _ in range(2):
            p.grad = p.detach() * 0.5
            opt.step()
    finally:
        pre.remove()
    assert calls == ["all", "pre", "post"] * 2
