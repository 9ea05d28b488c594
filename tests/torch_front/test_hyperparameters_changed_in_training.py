"""Hyperparameters that schedulers change during training, as torch.optim reads them.

``OneCycleLR`` and ``CyclicLR`` (``cycle_momentum=True``, their default) write
``betas`` or ``momentum`` into the param groups every step, every scheduler ``lr``.
Most rules read them afresh each step, as torch does. Two classes keep numbers that
a step computes from its own hyperparameters for the next to read
(:mod:`gradstep._core.carried`): NAdam's momentum-schedule product (each step
multiplies in its own beta1; derived from the count and today's beta1 it was 5e-4
off torch's after five steps below) and ASGD's step size and averaging weight
(computed from the rate of the step before: derived from today's, 2e-3 off after a
cosine schedule); the schedule-free classes keep the package's totals ``lr_max`` and
``weight_sum`` in the param groups (refused a changed learning rate or
interpolation, and left the group entries at their initial values).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep.torch as gt  # noqa: E402

BETA1S = [0.9, 0.5, 0.95, 0.2, 0.7, 0.85]


def _steps(make, values, key, grads_of=None):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5)) for _ in range(3)]
    opt = make(params)
    for i, value in enumerate(values):
        for j, p in enumerate(params):
            has = grads_of is None or j in grads_of[i]
            p.grad = torch.sin(p.detach() * (i + 1)) if has else None
        for group in opt.param_groups:
            group[key] = (value, group[key][1]) if key == "betas" else value
        opt.step()
    return [p.detach() for p in params], opt


@pytest.mark.parametrize("decoupled", [False, True])
def test_nadam_multiplies_each_steps_own_beta1_into_its_product(decoupled):
    kwargs = dict(lr=0.01, weight_decay=0.01, decoupled_weight_decay=decoupled)
    want, ref = _steps(lambda ps: torch.optim.NAdam(ps, **kwargs), BETA1S, "betas")
    got, opt = _steps(lambda ps: gt.NAdam(ps, **kwargs), BETA1S, "betas")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
        torch.testing.assert_close(opt.state[p]["mu_product"], ref.state[q]["mu_product"])


def test_nadam_parameters_with_other_products_at_one_count_step_apart():
    # at the third step parameters 0 and 1 have both stepped once before, at steps
    # with different beta1: one count, two products (parameter 2 steps throughout)
    grads_of = [{0, 2}, {1, 2}, {0, 1, 2}, {0, 1, 2}]
    values = BETA1S[: len(grads_of)]
    want, _ = _steps(lambda ps: torch.optim.NAdam(ps, lr=0.05), values, "betas", grads_of)
    got, _ = _steps(lambda ps: gt.NAdam(ps, lr=0.05), values, "betas", grads_of)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _train(cls, schedule, **kwargs):
    """A small model's parameters and optimizer after ten steps under ``schedule``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = cls(model.parameters(), **kwargs)
    sched = schedule(opt)
    gen = torch.Generator().manual_seed(2)
    for _ in range(10):
        opt.zero_grad()
        model(torch.randn(16, 6, generator=gen)).pow(2).mean().backward()
        opt.step()
        sched.step()
    return list(model.parameters()), opt


@pytest.mark.parametrize("name", ["NAdam", "Adam", "AdamW", "RAdam", "Adamax", "SGD", "RMSprop"])
def test_one_cycle_schedule_with_cycled_momentum_follows_torch(name):
    momentum = {"momentum": 0.5} if name in {"SGD", "RMSprop"} else {}

    def one_cycle(opt):
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=12)

    got, _ = _train(getattr(gt, name), one_cycle, lr=0.001, **momentum)
    want, _ = _train(getattr(torch.optim, name), one_cycle, lr=0.001, **momentum)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("key", "values"),
    [
        ("lr", [0.01, 0.05, 0.02, 0.1, 0.03, 0.04]),
        ("lambd", [1e-4, 1e-2, 1e-3, 0.1, 1e-4, 0.05]),
        ("alpha", [0.75, 0.5, 0.9, 0.6, 0.75, 1.0]),
        ("t0", [1e6, 2, 1, 3, 1, 0]),
    ],
)
def test_asgd_steps_with_the_step_size_and_weight_of_the_step_before(key, values):
    want, ref = _steps(lambda ps: torch.optim.ASGD(ps, lr=0.01, t0=2), values, key)
    got, opt = _steps(lambda ps: gt.ASGD(ps, lr=0.01, t0=2), values, key)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
        for name in ("ax", "eta", "mu"):
            torch.testing.assert_close(opt.state[p][name], ref.state[q][name])


def test_asgd_under_a_cosine_schedule_follows_torch():
    def cosine(opt):
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)

    got, opt = _train(gt.ASGD, cosine, lr=0.05, t0=4)
    want, ref = _train(torch.optim.ASGD, cosine, lr=0.05, t0=4)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(opt.state[a]["ax"], ref.state[b]["ax"], rtol=1e-6, atol=1e-7)


def _step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, 3, 0.5)


def _scheduled(cls, **kwargs):
    def make(params, **more):
        opt = cls(params, **kwargs, **more)
        opt.train()
        return opt

    return make


def _one_cycle(opt):
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=12)


@pytest.mark.parametrize(
    ("name", "kwargs", "schedule"),
    [
        ("AdamWScheduleFree", {"lr": 0.01, "warmup_steps": 3}, _step_lr),
        ("AdamWScheduleFree", {"lr": 0.01, "weight_decay": 0.1, "r": 0.5}, _step_lr),
        ("SGDScheduleFree", {"lr": 0.05, "warmup_steps": 2, "momentum": 0.8}, _step_lr),
        # the learning rate and the interpolation (betas[0], momentum) both cycled
        ("AdamWScheduleFree", {"lr": 0.01}, _one_cycle),
        ("SGDScheduleFree", {"lr": 0.01}, _one_cycle),
    ],
)
def test_schedule_free_under_a_scheduler_follows_the_package(name, kwargs, schedule):
    schedulefree = pytest.importorskip("schedulefree", reason="the reference package")
    got, opt = _train(_scheduled(getattr(gt, name)), schedule, **kwargs)
    want, ref = _train(_scheduled(getattr(schedulefree, name)), schedule, **kwargs)
    opt.eval()
    ref.eval()
    for a, b in zip(got, want):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)
    for key in ("k", "lr_max", "weight_sum", "scheduled_lr"):
        assert opt.param_groups[0][key] == pytest.approx(ref.param_groups[0][key], rel=1e-12)


def test_schedule_free_group_without_kept_totals_derives_them():
    # a checkpoint of an earlier gradstep kept the package's initial totals after
    # steps: the step derives them from the count, as then, instead of restarting
    # the average
    def run(forget: bool):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(6))
        opt = gt.AdamWScheduleFree([p], lr=0.01, warmup_steps=2)
        opt.train()
        for i in range(5):
            p.grad = torch.sin(p.detach() * (i + 1))
            opt.step()
            if forget and i == 2:
                opt.param_groups[0].update(weight_sum=0.0, lr_max=-1.0)
        return p.detach()

    torch.testing.assert_close(run(True), run(False), rtol=0, atol=0)
