"""Sophia on the Triton engine (under its CPU interpreter): the element function in the
kernel, the fold of the Hessian estimate into ``nu`` the transform's own torch code
around the launch, as on the numba engine.

- Triton equals eager over 13 steps (refresh steps 1, 4, 7, 10, 13 and the ordinary
  ones between), both refresh orders, estimates given every step, on refresh steps
  only, or as Hutchinson's from gradients taken with ``create_graph``, on odd sizes
  and a matrix, float32 and bfloat16 parameters, bfloat16 state;
- every step is a Triton launch and the eager update never runs (no silent
  fallback); steps without an estimate take the one-launch fast path;
- the fold runs on refresh steps given an estimate only;
- invalid inputs raise the eager errors and change nothing;
- under GradScaler a skipped refresh step folds nothing, reading no flag on the host.
"""

from __future__ import annotations

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep.engines.triton import TritonEngine
from gradstep.rules.sophia import HessianAverage

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

SIZES = [(0,), (1,), (7,), (33,), (2100,), (3, 5)]
STEPS = 13
INTERVAL = 3
TOLERANCE = {torch.float32: (2e-5, 1e-6), torch.bfloat16: (1e-2, 1e-5), "bfloat16": (1e-2, 1e-5)}


def _inputs(mode, k, params, gen):
    """The step's keywords: ``every`` (hessian= each step), ``refresh`` (hessian= on
    refresh steps only) or ``hvp`` (none: the class takes Hutchinson's estimate from
    the gradients' graph)."""
    if mode == "hvp" or (mode == "refresh" and k % INTERVAL):
        return {}
    return {"hessian": [torch.rand(p.shape, generator=gen).to(p.dtype) for p in params]}


def _quadratic_step(opt, params, mats, start, k, hvp):
    """Gradients of a quadratic with the curvature ``mats`` at the parameters whose
    value is a fixed sequence (so that 16-bit rounding differences of the engines do
    not feed back into it), with their graph for the class's ``hvp`` if asked."""
    loss = 0.0
    for p, a, x in zip(params, mats, start):
        d = (p - p.detach()).reshape(-1)
        loss = loss + 0.5 * d @ (a @ d) + torch.sin(3 * x + k).reshape(-1) @ d
    loss.backward(create_graph=hvp)


def _compare(dtype, refresh, mode, watch, state_dtype=None, lockstep=False):
    """``gradstep.torch.Sophia`` on the eager and the Triton engine side by side over
    :data:`STEPS` steps with the same inputs; compared at the end, or (``lockstep``)
    after every step, the eager values then copied into the Triton run so that each
    step starts from the same values. Checks that the Triton run launched its kernel
    on every step and never ran Sophia's own update."""
    launches = watch(TritonEngine, "launch")
    updates = watch(HessianAverage, "update", completed=False)
    gen = torch.Generator().manual_seed(5)
    start = [torch.randn(s, generator=gen).to(dtype) for s in SIZES]
    mats = []
    for x in start:
        a = torch.randn(x.numel(), x.numel(), generator=gen)
        mats.append((a @ a.T / max(x.numel(), 1) + torch.eye(x.numel())).to(dtype))
    runs = {}
    for engine in ("eager", "triton"):
        params = [torch.nn.Parameter(x.clone()) for x in start]
        runs[engine] = params, gt.Sophia(
            params, 0.05, update_interval=INTERVAL, gamma=0.5, weight_decay=0.01,
            refresh=refresh, engine=engine, state_dtype=state_dtype,
        )  # fmt: skip
    inputs_gen = torch.Generator().manual_seed(11)
    for k in range(STEPS):
        inputs = _inputs(mode, k, start, inputs_gen)
        for params, opt in runs.values():
            _quadratic_step(opt, params, mats, start, k, mode == "hvp")
            opt.step(**inputs)
            for p in params:
                p.grad = None
        if lockstep or k == STEPS - 1:
            _assert_close(*runs.values(), TOLERANCE[state_dtype or dtype])
        if lockstep:  # the next step from the eager values
            (wants, ref), (gots, opt) = runs.values()
            for want, got in zip(wants, gots):
                got.data.copy_(want.detach())
                for key, value in ref.state[want].items():
                    opt.state[got][key].copy_(value)
    assert len(launches) == STEPS
    eager_stage = _stage(runs["eager"][1])
    assert updates and all(call[0] is eager_stage for call in updates)


def _stage(opt):
    """The HessianAverage of ``opt``'s rule."""
    from gradstep._core.transform import walk

    rule = opt._rule(opt.param_groups[0])
    (stage,) = [v.transform for v in walk(rule.run) if isinstance(v.transform, HessianAverage)]
    return stage


def _assert_close(want, got, tolerance):
    """The parameters and the state of the runs ``(params, optimizer)`` agree."""
    rtol, atol = tolerance
    for p, q in zip(want[0], got[0]):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=rtol, atol=atol)
        r, s = want[1].state[p], got[1].state[q]
        assert s.keys() == r.keys()
        for key in r:
            torch.testing.assert_close(
                s[key].float(), r[key].float(), rtol=rtol, atol=atol, msg=key
            )


@pytest.mark.parametrize("mode", ["every", "refresh", "hvp"])
@pytest.mark.parametrize("refresh", ["before", "after"])
def test_float32_triton_equals_eager(refresh, mode, watch):
    _compare(torch.float32, refresh, mode, watch)


@pytest.mark.parametrize("mode", ["every", "refresh", "hvp"])
@pytest.mark.parametrize("refresh", ["before", "after"])
@pytest.mark.parametrize("state_dtype", [None, "bfloat16"], ids=["bf16", "f32-bf16-state"])
def test_bfloat16_triton_equals_eager_step_by_step(state_dtype, refresh, mode, watch):
    """16-bit values, compared after every step (each from the same values): the
    interpreter rounds float32 to bfloat16 toward zero, torch to nearest, a one-ulp
    difference per step that the rule's division by a small ``nu`` would amplify
    over a free run."""
    dtype = torch.bfloat16 if state_dtype is None else torch.float32
    _compare(dtype, refresh, mode, watch, state_dtype=state_dtype, lockstep=True)


def test_the_engine_compiles_sophia_with_its_host_step():
    """Before the Triton engine ran host steps, this was ``NotFusable``."""
    engine = TritonEngine(gradstep.sophia(0.1))
    assert [form.name for form, _ in engine.hosts] == ["sophia"]
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    gt.Sophia([p], 0.1, engine="triton").step(hessian=[torch.ones(3)])  # required: no error
    assert not torch.equal(p.detach(), torch.ones(3))


def test_the_fold_runs_on_refresh_steps_only_and_other_steps_launch_alone(watch):
    """With estimates on refresh steps only (steps 1, 5, 9), those steps take the
    general path (their inputs checked, the fold queued around the launch); the
    steps between are the one-launch fast path."""
    folds = watch(HessianAverage, "_folded", completed=False)
    general = watch(TritonEngine, "step_leaves")
    launches = watch(TritonEngine, "launch")
    params = [torch.nn.Parameter(torch.linspace(-1, 1, n)) for n in (5, 300)]
    opt = gt.Sophia(params, 0.1, update_interval=4, engine="triton")
    for k in range(10):
        for p in params:
            p.grad = torch.cos(3 * p.detach() + k)
        opt.step(**({} if k % 4 else {"hessian": [torch.ones_like(p) for p in params]}))
    assert len(folds) == 3 and len(general) == 3 and len(launches) == 10


def test_functional_hvp_on_the_engine_equals_the_eager_update():
    """``hvp=`` through the engine itself: Hutchinson's probes drawn from (seed,
    step) on the tensors' device, the same as the eager update's."""
    transform = gradstep.sophia(0.05, update_interval=2, refresh="after", gamma=0.5)
    gen = torch.Generator().manual_seed(3)
    start = [torch.randn(s, generator=gen) for s in SIZES]
    scale = [1.0 + torch.rand(s, generator=gen) for s in SIZES]

    def hvp(z):
        return [c * v + 0.25 * v.flip(-1) for c, v in zip(scale, z)]

    ws, we = [w.clone() for w in start], [w.clone() for w in start]
    state, ref = transform.init([w.clone() for w in start]), transform.init(we)
    engine = TritonEngine(transform)
    for k in range(7):
        state = engine.step_leaves(ws, [torch.sin(w + k) for w in ws], ws, state, {"hvp": hvp})
        updates, ref = transform.update([torch.sin(w + k) for w in we], ref, we, hvp=hvp)
        we = [w + u for w, u in zip(we, updates)]
    for a, b in zip(ws, we):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-6)


def _broken_hvp(z):
    raise RuntimeError("no curvature here")


BAD = [
    ({"hessian": [torch.ones(4)]}, ValueError, "invalid hessian"),
    ({"hessian": [torch.ones(3)], "hvp": _broken_hvp}, ValueError, "hessian= and hvp= given"),
    ({"hvp": lambda z: [torch.ones(4)]}, RuntimeError, "size of tensor"),
    ({"hvp": _broken_hvp}, RuntimeError, "no curvature here"),
]


def _failed_step(run, refresh, bad):
    """One good step, then one with the inputs ``bad``: the error, and whether the
    parameter and the state stayed as they were. ``run``: ``"eager"`` (the
    transform's update) or ``"triton"`` (the engine, in place)."""
    transform = gradstep.sophia(0.1, update_interval=1, refresh=refresh)
    w = torch.linspace(-1.0, 1.0, 3)
    state = transform.init([w.clone()])

    def step(grad, **ctx):
        nonlocal w, state
        if run == "eager":
            updates, state = transform.update([grad], state, [w], **ctx)
            w = w + updates[0]
        else:
            state = engine.step_leaves([w], [grad], [w], state, ctx)

    engine = TritonEngine(transform)
    step(torch.ones(3), hessian=[torch.full((3,), 2.0)])
    before = [w.clone()] + [t.clone() for t in _tensors(state)]
    with pytest.raises(Exception) as caught:
        step(torch.full((3,), 0.5), **bad)
    after = [w] + _tensors(state)
    return caught, all(torch.equal(a, b) for a, b in zip(before, after))


def _tensors(state):
    from gradstep._core import tree

    return [t for t in tree.leaves(state) if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("refresh", ["before", "after"])
@pytest.mark.parametrize("bad, error, match", BAD, ids=range(len(BAD)))
def test_invalid_inputs_raise_the_eager_errors_and_change_nothing(refresh, bad, error, match):
    want, want_same = _failed_step("eager", refresh, bad)
    got, same = _failed_step("triton", refresh, bad)
    assert got.type is want.type is error
    assert str(got.value) == str(want.value)
    if match is not None:
        assert match in str(got.value)
    assert want_same and same


class _NoHostRead(torch.Tensor):
    """A tensor whose value may not be read on the host."""

    READS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy"}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in cls.READS:
            raise AssertionError(f"GradScaler value read on the host ({func.__name__})")
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("refresh", ["before", "after"])
def test_a_skipped_grad_scaler_step_folds_nothing(refresh, watch):
    """GradScaler's flag is read by the kernel and by the fold's write, on the
    device: a refresh step with an infinite gradient leaves ``nu`` (and everything
    else) as it was; the other steps equal the eager engine's on the unscaled
    gradients."""
    start = [torch.linspace(-1, 1, n) for n in (7, 2100)]
    params = [torch.nn.Parameter(x.clone()) for x in start]
    ref_params = [torch.nn.Parameter(x.clone()) for x in start]

    def make(ps, engine):
        return gt.Sophia(ps, 0.05, update_interval=2, gamma=0.5, refresh=refresh, engine=engine)

    opt, ref = make(params, "triton"), make(ref_params, "eager")
    launches, eager = watch(TritonEngine, "launch"), watch(HessianAverage, "update")
    for k in range(6):
        grads = [torch.sin(3 * x + k) for x in start]
        hessian = [torch.full_like(x, 1.0 + k) for x in start]
        scale, found = 2.0 ** (k + 2), float(k == 2)  # step 3: a refresh step
        before = [p.detach().clone() for p in params]
        before += [t.clone() for p in params for t in opt.state[p].values()]
        for p, g in zip(params, grads):
            p.grad = g * scale
        opt.grad_scale = torch.tensor(scale).as_subclass(_NoHostRead)
        opt.found_inf = torch.tensor(found).as_subclass(_NoHostRead)
        opt.step(hessian=hessian)
        del opt.grad_scale, opt.found_inf
        if found:
            after = [p.detach() for p in params]
            after += [t for p in params for t in opt.state[p].values()]
            assert all(torch.equal(a, b) for a, b in zip(before, after))
            continue
        for p, g in zip(ref_params, grads):
            p.grad = g.clone()
        ref.step(hessian=hessian)
        for p, q in zip(params, ref_params):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=2e-6, atol=2e-6)
    assert len(launches) == 6 and len(eager) == 5  # the eager reference's steps only
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(
            opt.state[p]["nu"].float(), ref.state[q]["nu"].float(), rtol=2e-6, atol=2e-6
        )


@pytest.mark.parametrize("source", ["hessian", "hvp"])
def test_a_complex_parameter_steps_as_its_real_view(source, watch):
    """A complex parameter's estimate (given, or the Hessian-vector products of its
    gradient's graph) enters the Triton step as its real view, as on the eager path."""
    launches = watch(TritonEngine, "launch")
    z0 = torch.randn(40, dtype=torch.complex64, generator=torch.Generator().manual_seed(4))
    z = torch.nn.Parameter(z0.clone())
    w = torch.nn.Parameter(torch.view_as_real(z0).clone())
    runs = []
    for p in (z, w):
        opt = gt.Sophia([p], 0.05, update_interval=2, engine="triton")
        for k in range(4):
            x = torch.view_as_real(p) if p.is_complex() else p
            loss = (x.pow(4) / 4 + x).sum()
            (p.grad,) = torch.autograd.grad(loss, p, create_graph=source == "hvp")
            if source == "hessian":
                h = 3 * x.detach().pow(2) + k
                opt.step(hessian=[torch.view_as_complex(h) if p.is_complex() else h])
            else:
                opt.step()
        runs.append(opt)
    assert len(launches) == 8
    assert torch.equal(torch.view_as_real(z.detach()), w.detach())
    assert torch.equal(torch.view_as_real(runs[0].state[z]["nu"]), runs[1].state[w]["nu"])
    assert runs[1].state[w]["nu"].abs().sum() > 0  # the estimates were folded
