"""GradScaler on the Triton engine: the kernel unscales the gradients and skips a step
with an infinite one, reading neither GradScaler value on the host.

Run under Triton's interpreter on CPU tensors (``engine="triton"``); a step with
``found_inf`` set must change nothing, and the others must equal the eager engine's
step on the unscaled gradients.
"""

from __future__ import annotations

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)


@pytest.mark.parametrize(
    "engine, capturable", [("triton", False), ("triton", True), ("auto", False)]
)
def test_grad_scaler_steps_match_torch_optim_and_skip_infinite_steps(engine, capturable):
    """GradScaler hands gradstep its scale and found-inf flag: the kernel unscales the
    gradients and a step with an infinite gradient changes nothing (step counts
    included), as torch.optim under the same scaler."""

    def train(make):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
        opt = make(model.parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
        data = torch.linspace(-1, 1, 48).reshape(8, 6)
        for k in range(6):
            opt.zero_grad()
            loss = (model(data) ** 2).mean() * (1 + k)
            scaler.scale(loss).backward()
            if k == 3:
                model[0].weight.grad[0, 0] = float("inf")
            scaler.step(opt)
            scaler.update()
        return model, opt

    def ours(ps):
        opt = gt.Adam(ps, lr=1e-2, capturable=capturable)
        for group in opt.param_groups:
            group["engine"] = engine
        return opt

    got, opt = train(ours)
    want, ref = train(lambda ps: torch.optim.Adam(ps, lr=1e-2, foreach=False))
    for p, q in zip(got.parameters(), want.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    steps = [float(s["step"]) for s in opt.state.values()]
    assert steps == [float(s["step"]) for s in ref.state.values()] == [5.0] * 4


def test_grad_scaler_hands_over_only_where_the_kernel_unscales():
    """On the numba and eager paths GradScaler's own unscaling (one pass that also
    finds infinities) is cheaper than checking, then unscaling again: the optimizer
    asks for the scale only where the Triton kernel takes it."""
    params = [torch.nn.Parameter(torch.ones(3))]
    opt = gt.Adam(params, lr=0.1)
    assert not opt._step_supports_amp_scaling
    for group in opt.param_groups:
        group["engine"] = "triton"
    assert opt._step_supports_amp_scaling
    assert not gt.LBFGS(params)._step_supports_amp_scaling


class _NoHostRead(torch.Tensor):
    """A tensor whose value may not be read on the host (``float``, ``bool``,
    ``item``...): the GradScaler values of a step that must not synchronise."""

    READS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy"}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in cls.READS:
            raise AssertionError(f"GradScaler value read on the host ({func.__name__})")
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: gt.Adam(ps, lr=0.1),
        lambda ps: gt.AdamW(ps, lr=0.05, weight_decay=0.1, amsgrad=True),
        lambda ps: gt.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    ],
    ids=["adam", "adamw_amsgrad", "sgd_nesterov"],
)
def test_grad_scaler_without_capturable_reads_nothing_on_the_host(make):
    """Without capturable, GradScaler's scale and found-inf flag are read in the
    kernel (as torch's fused Adam): a step with found_inf=1 changes nothing, bit for
    bit (step counts included), and the others equal the eager engine's step on the
    unscaled gradients."""
    gen = torch.Generator().manual_seed(5)
    sizes = (7, 2100, 33, 4099)
    start = [torch.randn(n, generator=gen) for n in sizes]
    params = [torch.nn.Parameter(x.clone()) for x in start]
    ref_params = [torch.nn.Parameter(x.clone()) for x in start]
    opt, ref = make(params), make(ref_params)
    for group in opt.param_groups:
        group["engine"] = "triton"
    for group in ref.param_groups:
        group["engine"] = "eager"

    def snapshot():
        state = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
        return [p.detach().clone() for p in params], state

    for k in range(6):
        grads = [torch.sin(3 * x + k) + 0.1 * k for x in start]
        found = 1.0 if k in (2, 4) else 0.0
        scale = 2.0 ** (k + 3)
        if k == 0:  # the first step builds the one-launch step
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
        else:
            before = snapshot()
            for p, g in zip(params, grads):
                p.grad = g * scale
            opt.grad_scale = torch.tensor(scale).as_subclass(_NoHostRead)
            opt.found_inf = torch.tensor(found).as_subclass(_NoHostRead)
            opt.step()
            del opt.grad_scale, opt.found_inf
            if found:
                after = snapshot()
                assert all(map(torch.equal, before[0], after[0]))
                for s0, s1 in zip(before[1], after[1]):
                    assert s0.keys() == s1.keys()
                    assert all(torch.equal(s0[key], s1[key]) for key in s0)
                continue
        for p, g in zip(ref_params, grads):
            p.grad = g.clone()
        ref.step()
        for p, q in zip(params, ref_params):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=2e-6, atol=2e-6)
    for p, q in zip(params, ref_params):
        assert opt.state[p].keys() == ref.state[q].keys()
        for key in opt.state[p]:
            torch.testing.assert_close(
                opt.state[p][key].cpu(), ref.state[q][key].cpu(), rtol=2e-6, atol=2e-6
            )


def test_grad_scaler_with_host_scalars_reads_the_flag_on_the_host():
    """A chain whose scalars need host values (Lasagne's uncorrected Adam) keeps its
    step count on the host: the flag is read there, and a flagged step still changes
    nothing while the others count."""
    params = [torch.nn.Parameter(torch.linspace(-1, 1, n)) for n in (5, 300)]
    opt = gt.TransformOptimizer(
        params, gradstep.adam(1e-2, epsilon_placement="outside_uncorrected"), engine="triton"
    )
    for k in range(4):
        for p in params:
            p.grad = 4.0 * torch.cos(p.detach() + k)
        if k:
            opt.grad_scale, opt.found_inf = torch.tensor(4.0), torch.tensor(float(k == 2))
        before = [p.detach().clone() for p in params]
        opt.step()
        if k == 2:
            assert all(torch.equal(a, p.detach()) for a, p in zip(before, params))
    assert [float(opt.state[p]["step"]) for p in params] == [3.0, 3.0]
    assert all(opt.state[p]["step"].device.type == "cpu" for p in params)


FIRST_STEP_CASES = {
    "adam": (gt.Adam, {"lr": 0.1}),
    "adamw_amsgrad": (gt.AdamW, {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
    # no step count, and a first step like the others (no dampening)
    "sgd_nesterov": (gt.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "capturable_adam": (gt.Adam, {"lr": 0.1, "capturable": True}),
}


@pytest.mark.parametrize("first_found", [0.0, 1.0], ids=["first_finite", "first_infinite"])
@pytest.mark.parametrize("case", list(FIRST_STEP_CASES))
def test_the_first_grad_scaler_step_reads_nothing_on_the_host(case, first_found):
    """A group's first step (the general path, which creates the state) leaves the
    found-inf flag to the kernel too. A skipped first step changes no parameter and
    leaves the state torch's fused Adam leaves: created, zero, its step count 0; the
    trajectory then equals the eager engine's over the steps that were taken."""
    cls, kwargs = FIRST_STEP_CASES[case]
    gen = torch.Generator().manual_seed(7)
    sizes = (7, 2100, 33, 4099)
    start = [torch.randn(n, generator=gen) for n in sizes]
    params = [torch.nn.Parameter(x.clone()) for x in start]
    ref_params = [torch.nn.Parameter(x.clone()) for x in start]
    opt = cls(params, **kwargs)
    # the eager reference keeps its count on the host (capturable needs CUDA there)
    ref = cls(ref_params, **{k: v for k, v in kwargs.items() if k != "capturable"})
    for group in opt.param_groups:
        group["engine"] = "triton"
    for group in ref.param_groups:
        group["engine"] = "eager"
    for k in range(4):
        grads = [torch.cos(2 * x - k) + 0.2 * k for x in start]
        found = first_found if k == 0 else float(k == 2)
        scale = 2.0 ** (k + 2)
        before = [p.detach().clone() for p in params]
        for p, g in zip(params, grads):
            p.grad = g * scale
        opt.grad_scale = torch.tensor(scale).as_subclass(_NoHostRead)
        opt.found_inf = torch.tensor(found).as_subclass(_NoHostRead)
        opt.step()
        del opt.grad_scale, opt.found_inf
        if found:
            assert all(map(torch.equal, before, [p.detach() for p in params]))
            continue
        for p, g in zip(ref_params, grads):
            p.grad = g.clone()
        ref.step()
        for p, q in zip(params, ref_params):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=2e-6, atol=2e-6)
    for p, q in zip(params, ref_params):
        assert opt.state[p].keys() == ref.state[q].keys()
        for key in opt.state[p]:
            torch.testing.assert_close(
                opt.state[p][key].cpu().float(),
                ref.state[q][key].cpu().float(),
                rtol=2e-6,
                atol=2e-6,
            )


def test_a_skipped_first_step_leaves_a_zero_state_with_step_zero():
    """As torch's fused Adam: the state is created before the kernel decides, and the
    skipped step does not count."""
    params = [torch.nn.Parameter(torch.linspace(-1, 1, n)) for n in (5, 1030)]
    opt = gt.Adam(params, lr=0.1)
    for group in opt.param_groups:
        group["engine"] = "triton"
    for p in params:
        p.grad = torch.ones_like(p)
    opt.grad_scale = torch.tensor(8.0).as_subclass(_NoHostRead)
    opt.found_inf = torch.tensor(1.0).as_subclass(_NoHostRead)
    opt.step()
    for p in params:
        state = opt.state[p]
        assert float(state["step"]) == 0.0
        assert not state["exp_avg"].any() and not state["exp_avg_sq"].any()
        assert torch.equal(p.detach(), torch.linspace(-1, 1, p.numel()))


@pytest.mark.parametrize("engine", ["eager", "triton"])
def test_a_first_step_unlike_the_others_still_skips_exactly(engine):
    """SGD's dampening spares the first step, so a skipped first step must not leave
    a momentum buffer behind (the next step is still the first): there the flag is
    read on the host, and the trajectory is the one without the skipped step."""

    def run(skip_first):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 300))
        opt = gt.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
        for group in opt.param_groups:
            group["engine"] = engine
        if skip_first:
            p.grad = torch.full_like(p, 3.0)
            opt.grad_scale, opt.found_inf = torch.tensor(2.0), torch.tensor(1.0)
            opt.step()
            del opt.grad_scale, opt.found_inf
            assert not opt.state[p]
        for k in range(2):
            p.grad = torch.sin(p.detach() + k)
            opt.step()
        return p.detach()

    torch.testing.assert_close(run(True), run(False), rtol=0, atol=0)


def test_a_skipped_first_step_of_host_scalars_counts_nothing():
    """A chain whose scalars need host values (its count stays on the host, where
    the flag is read after the launch): a skipped first step leaves the parameters
    and a zero count, and the steps after it count from there."""
    params = [torch.nn.Parameter(torch.linspace(-1, 1, n)) for n in (5, 300)]
    opt = gt.TransformOptimizer(
        params, gradstep.adam(1e-2, epsilon_placement="outside_uncorrected"), engine="triton"
    )
    for k, found in enumerate((1.0, 0.0, 0.0)):
        for p in params:
            p.grad = 4.0 * torch.cos(p.detach() + k)
        opt.grad_scale, opt.found_inf = torch.tensor(4.0), torch.tensor(found)
        before = [p.detach().clone() for p in params]
        opt.step()
        if found:
            assert all(torch.equal(a, p.detach()) for a, p in zip(before, params))
            assert [float(opt.state[p]["step"]) for p in params] == [0.0, 0.0]
    assert [float(opt.state[p]["step"]) for p in params] == [2.0, 2.0]
    assert all(opt.state[p]["step"].dtype == torch.float32 for p in params)
