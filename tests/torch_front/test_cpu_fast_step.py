"""The CPU fast path (:class:`gradstep.torch._cpu_fast.CpuFastStep`): after a group's
step ran as one numba launch, later steps relaunch it without the per-parameter
bookkeeping, with exactly the general path's numbers, and give way to the general
path whenever anything it relies on changed."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402
from gradstep.torch import _cpu_fast  # noqa: E402

SHAPES = [(7,), (33, 5), (4, 3, 2), (1000,)]


def _params(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in SHAPES]


def _grads(k, params):
    return [(torch.sin(3 * p.detach().float() + k) * (1 + k % 3)).to(p.dtype) for p in params]


@pytest.fixture
def launches(monkeypatch):
    """The fast path's launches (True) and refusals (False), in order."""
    seen = []
    step = _cpu_fast.CpuFastStep.step

    def spied(self, *args, **kwargs):
        seen.append(step(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(_cpu_fast.CpuFastStep, "step", spied)
    return seen


def _run(make, steps=6, fast=True, edit=None, dtype=torch.float32):
    params = _params(dtype)
    opt = make(params)
    if not fast:  # the general path every step
        opt._remember_fast_step = lambda *a: None
    for k in range(steps):
        for p, g in zip(params, _grads(k, params)):
            p.grad = g
        if edit is not None:
            edit(k, opt, params)
        opt.step()
    return params, opt


MAKERS = {
    "Adam": lambda ps: gt.Adam(ps, lr=0.05),
    "AdamW-amsgrad": lambda ps: gt.AdamW(ps, lr=0.05, amsgrad=True, weight_decay=0.1),
    "SGD-momentum": lambda ps: gt.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    "RMSprop": lambda ps: gt.RMSprop(ps, lr=0.01, centered=True),
    "lion": lambda ps: gt.TransformOptimizer(ps, gradstep.lion(0.01)),
    "Adam-maximize": lambda ps: gt.Adam(ps, lr=0.05, maximize=True),
    "clip+adamw": lambda ps: gt.TransformOptimizer(
        ps, gradstep.chain(gradstep.transforms.clip_by_global_norm(0.5), gradstep.adamw(0.05))
    ),
    "Lamb": lambda ps: gt.Lamb(ps, learning_rate=0.05, weight_decay=0.01),
    # mu_product, carried between steps in each parameter's state
    "NAdam": lambda ps: gt.NAdam(ps, lr=0.05, momentum_decay=0.01),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_the_fast_path_gives_the_general_paths_numbers(name, launches):
    fast, opt = _run(MAKERS[name])
    assert launches and all(launches)  # every step after the first one
    general, ref = _run(MAKERS[name], fast=False)
    for a, b in zip(fast, general):
        assert torch.equal(a, b)
    for p, q in zip(fast, general):
        for key, value in ref.state[q].items():
            assert torch.equal(torch.as_tensor(opt.state[p][key]), torch.as_tensor(value)), key


def _replace_state(k, opt, params):
    if k == 3:
        state = opt.state[params[1]]
        key = "exp_avg" if "exp_avg" in state else next(iter(state))
        state[key] = state[key].clone()


def _replace_a_state_dict(k, opt, params):
    if k == 3:  # the same values in a new dict, new tensors: the fast path must see it
        opt.state[params[1]] = {n: v.clone() for n, v in opt.state[params[1]].items()}


def _drop_a_gradient(k, opt, params):
    if k == 3:
        params[2].grad = None


def _strided_gradient(k, opt, params):
    if k == 3:
        g = params[1].grad
        params[1].grad = g.t().contiguous().t()  # the same values, column-major


def _edit_the_count(k, opt, params):
    if k == 3:
        opt.state[params[0]]["step"].fill_(1.0)


def _new_lr(k, opt, params):
    if k == 3:
        opt.param_groups[0]["lr"] = 0.001


def _moved_parameter(k, opt, params):
    if k == 3:
        params[0].data = params[0].data.clone()


EDITS = [
    _replace_state,
    _replace_a_state_dict,
    _drop_a_gradient,
    _strided_gradient,
    _edit_the_count,
    _new_lr,
    _moved_parameter,
]


@pytest.mark.parametrize("edit", EDITS, ids=[e.__name__.strip("_") for e in EDITS])
def test_any_change_gives_way_to_the_general_path_with_its_numbers(edit, launches):
    fast, _ = _run(MAKERS["Adam"], edit=edit)
    general, _ = _run(MAKERS["Adam"], fast=False, edit=edit)
    for a, b in zip(fast, general):
        assert torch.equal(a, b)
    if edit is not _new_lr:  # a new lr is a per-step value the fast path takes
        assert False in launches


def _every_count(k, opt, params):
    if k == 3:
        for p in params:
            opt.state[p]["step"].fill_(1.0)


def _every_count_through_data(k, opt, params):
    if k == 3:  # .data: the same memory under a version counter of its own
        for p in params:
            opt.state[p]["step"].data.fill_(1.0)


@pytest.mark.parametrize("edit", [_every_count, _every_count_through_data])
def test_a_count_edited_for_every_parameter_is_read_again(edit, launches):
    """The fast path remembers the host count between steps (it writes it itself);
    an edit of every parameter's count, by a torch operation or through ``.data``
    (which leaves the version counter), is seen, and the next step uses it."""
    fast, opt = _run(MAKERS["Adam"], edit=edit)
    general, _ = _run(MAKERS["Adam"], fast=False, edit=edit)
    for a, b in zip(fast, general):
        assert torch.equal(a, b)
    assert [float(opt.state[p]["step"]) for p in fast] == [4.0] * len(fast)  # 1 + 3 steps


def test_half_precision_parameters_take_the_fast_path(launches):
    fast, _ = _run(MAKERS["AdamW-amsgrad"], dtype=torch.bfloat16)
    general, _ = _run(MAKERS["AdamW-amsgrad"], fast=False, dtype=torch.bfloat16)
    assert launches and all(launches)
    for a, b in zip(fast, general):
        assert torch.equal(a, b)


def test_a_checkpoint_taken_on_the_fast_path_resumes_exactly():
    params, opt = _run(MAKERS["Adam"], steps=4)
    saved = copy.deepcopy(opt.state_dict())  # torch's loading keeps the saved tensors
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = gt.Adam(copies, lr=0.05)
    resumed.load_state_dict(saved)
    for k in range(4, 7):
        for p, q, g in zip(params, copies, _grads(k, params)):
            p.grad, q.grad = g, g.clone()
        opt.step()
        resumed.step()
    for a, b in zip(params, copies):
        assert torch.equal(a, b)


def _new_beta1(k, opt, params):
    if k == 3:
        opt.param_groups[0]["betas"] = (0.8, 0.99)


@pytest.mark.parametrize("edit", [_new_beta1, _drop_a_gradient], ids=["new-beta1", "missed-step"])
def test_nadam_products_follow_the_general_path(edit, launches):
    """NAdam's mu_product, kept per parameter as torch keeps it, is advanced by the
    fast path with each step's own beta1; a parameter that missed a step holds
    another product, and the general path (which steps it apart) takes over."""
    fast, opt = _run(MAKERS["NAdam"], edit=edit)
    general, ref = _run(MAKERS["NAdam"], fast=False, edit=edit)
    for a, b in zip(fast, general):
        assert torch.equal(a, b)
    for p, q in zip(fast, general):
        assert torch.equal(opt.state[p]["mu_product"], ref.state[q]["mu_product"])
    assert (False in launches) is (edit is _drop_a_gradient)


def test_same_addresses_compares_every_data_pointer():
    """The fast paths' address check, torch's C++ pass where the build has it (CUDA
    builds), else one data_ptr call per tensor: the same answers."""
    from gradstep.torch import _cuda

    tensors = [torch.zeros(3), torch.zeros(5), torch.zeros(2, 2)]
    ptrs = [t.data_ptr() for t in tensors]
    indices = list(range(3))
    moved = ptrs[:2] + [ptrs[2] + 4]
    assert _cuda.same_addresses(tensors, ptrs, indices)
    assert not _cuda.same_addresses(tensors, moved, indices)
    if _cuda._ptrs_equal is not None:  # the C++ pass agrees with the Python one
        fallback = _cuda._ptrs_equal
        try:
            _cuda._ptrs_equal = None
            assert _cuda.same_addresses(tensors, ptrs, indices)
            assert not _cuda.same_addresses(tensors, moved, indices)
        finally:
            _cuda._ptrs_equal = fallback
