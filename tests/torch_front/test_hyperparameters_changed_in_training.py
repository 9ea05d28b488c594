"""Hyperparameters that schedulers change during training, as torch.optim reads them.

``OneCycleLR`` and ``CyclicLR`` (``cycle_momentum=True``, their default) write
``betas`` or ``momentum`` into the param groups every step. Most rules read them
afresh each step, as torch does; NAdam's momentum-schedule product is the one that
torch accumulates, each step multiplying in that step's own beta1, and a product
derived from the step count and the current beta1 differed (by 5e-4 after five
steps below).
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


@pytest.mark.parametrize("name", ["NAdam", "Adam", "AdamW", "RAdam", "Adamax", "SGD", "RMSprop"])
def test_one_cycle_schedule_with_cycled_momentum_follows_torch(name):
    momentum = {"momentum": 0.5} if name in {"SGD", "RMSprop"} else {}

    def train(cls):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        opt = cls(model.parameters(), lr=0.001, **momentum)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=12)
        gen = torch.Generator().manual_seed(2)
        for _ in range(10):
            opt.zero_grad()
            model(torch.randn(16, 6, generator=gen)).pow(2).mean().backward()
            opt.step()
            sched.step()
        return list(model.parameters())

    for a, b in zip(train(getattr(gt, name)), train(getattr(torch.optim, name))):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
