"""The Triton engine's fast path (:class:`gradstep.torch._cuda.FastStep`) for chains
with a global reduction (clip_by_global_norm + AdamW, LAMB's trust ratios), a
maximising stage, and values a class carries between steps (NAdam's mu_product):
after the first step every step is one relaunch, with the general path's numbers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402
from gradstep.torch import _cuda  # noqa: E402

SHAPES = [(7,), (33, 5), (1000,)]

MAKERS = {
    "clip+adamw": lambda ps: gt.TransformOptimizer(
        ps, gradstep.chain(gradstep.transforms.clip_by_global_norm(0.5), gradstep.adamw(0.05))
    ),
    "Lamb": lambda ps: gt.Lamb(ps, learning_rate=0.05, weight_decay=0.01),
    "Adam-maximize": lambda ps: gt.Adam(ps, lr=0.05, maximize=True),
    "NAdam": lambda ps: gt.NAdam(ps, lr=0.05, momentum_decay=0.01),
}


@pytest.fixture
def launches(monkeypatch):
    """The Triton fast path's launches (True) and refusals (False), in order."""
    seen = []
    step = _cuda.FastStep.step

    def spied(self, *args, **kwargs):
        seen.append(step(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(_cuda.FastStep, "step", spied)
    return seen


def _run(name, fast=True, steps=5):
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    opt = MAKERS[name](params)
    for group in opt.param_groups:
        group["engine"] = "triton"
    if not fast:
        opt._remember_fast_step = lambda *a: None
    for k in range(steps):
        for p in params:
            p.grad = torch.sin(3 * p.detach() + k) * (1 + k % 3)
        if k == 3 and name == "NAdam":  # a scheduler's beta1: the step's own, as torch
            opt.param_groups[0]["betas"] = (0.8, 0.99)
        opt.step()
    return params, opt


@pytest.mark.parametrize("name", list(MAKERS))
def test_every_step_after_the_first_is_one_relaunch_with_the_general_numbers(name, launches):
    fast, opt = _run(name)
    # NAdam's new betas rebuild its rule: that step takes the general path
    assert launches == [True] * (3 if name == "NAdam" else 4)
    general, ref = _run(name, fast=False)
    for a, b in zip(fast, general):
        assert torch.equal(a, b)
    for p, q in zip(fast, general):
        for key, value in ref.state[q].items():
            assert torch.equal(torch.as_tensor(opt.state[p][key]), torch.as_tensor(value)), key


def test_a_step_with_the_last_steps_scalars_copies_none_to_the_device():
    """Constant scalars (SGD's learning rate and momentum) are copied once; a new
    learning rate is copied at its step, with the numbers of a fresh optimizer."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    opt = gt.SGD(params, lr=0.1, momentum=0.9)
    for group in opt.param_groups:
        group["engine"] = "triton"
    seen = []
    for k in range(4):
        for p in params:
            p.grad = torch.cos(p.detach() + k)
        if k == 3:
            opt.param_groups[0]["lr"] = 0.05
        opt.step()
        tables = next(iter(opt._runtime().fused.values())).engine._tables
        seen.append(tables._last_scalars[1])
    assert seen[1] is seen[2] and seen[3] is not seen[2]
    assert any(abs(abs(v) - 0.05) < 1e-7 for v in seen[3].tolist())
    zero, negative_zero = tables.scalars([0.0], True), tables.scalars([-0.0], True)
    assert zero is not negative_zero and torch.signbit(negative_zero).all()


def test_capturable_nadam_keeps_its_product_beside_the_count():
    """capturable=True: NAdam's mu_product follows the step count (on the device on
    CUDA) by tensor operations, with the host path's numbers."""

    def run(capturable):
        gen = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
        opt = gt.NAdam(params, lr=0.01, capturable=capturable)
        for group in opt.param_groups:
            group["engine"] = "triton"
        for k in range(5):
            for p in params:
                p.grad = torch.sin(p.detach() + k)
            opt.step()
        return params, opt

    on_device, opt = run(True)
    on_host, ref = run(False)
    for p, q in zip(on_device, on_host):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)
        product, want = opt.state[p]["mu_product"], ref.state[q]["mu_product"]
        assert product.device == opt.state[p]["step"].device
        torch.testing.assert_close(product, want, rtol=1e-6, atol=0)
