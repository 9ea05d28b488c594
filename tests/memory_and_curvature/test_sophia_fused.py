"""Sophia on the numba engine: the element function compiled, the fold of the Hessian
estimate into ``nu`` a host step with the eager update's own code.

- fused equals eager (float64 tightly, float32 within rounding) over 25 steps, for
  every update interval, both refresh orders, estimates given every step, on refresh
  steps only, or as Hutchinson's from ``hvp=``, on odd sizes and a matrix;
- the fold runs on refresh steps given an estimate only (``hvp`` is called then);
- a checkpoint resumes exactly;
- invalid inputs raise the eager errors and change nothing;
- the torch class steps its CPU parameters on the numba engine with its inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine
from gradstep.rules.sophia import HessianAverage

SIZES = [(0,), (1,), (7,), (100003,), (3, 5)]
STEPS = 25
TOLERANCE = {np.float64: {"rtol": 1e-12, "atol": 1e-14}, np.float32: {"rtol": 2e-5, "atol": 1e-6}}


def _hvp(z):
    """Products with a fixed symmetric, non-diagonal curvature per tensor."""
    out = []
    for v in z:
        flat = v.reshape(-1)
        d = 1.0 + np.arange(flat.size, dtype=v.dtype) % 5
        mixed = d * flat + 0.25 * (np.roll(flat, 1) + np.roll(flat, -1))
        out.append(mixed.reshape(v.shape).astype(v.dtype))
    return out


def _inputs(mode, k, interval, params, rng):
    """The step's keywords: ``every`` (hessian= each step), ``refresh`` (hessian= on
    refresh steps only) or ``hvp``."""
    if mode == "hvp":
        return {"hvp": _hvp}
    if mode == "refresh" and k % interval:
        return {}
    return {"hessian": [np.abs(rng.normal(size=p.shape)).astype(p.dtype) for p in params]}


def _run(engine, dtype, interval, refresh, mode, sizes=SIZES, steps=STEPS, opt_out=None):
    rng = np.random.default_rng(7)
    params = [rng.normal(size=s).astype(dtype) for s in sizes]
    transform = gradstep.sophia(
        0.05, update_interval=interval, refresh=refresh, gamma=0.5, weight_decay=0.01
    )
    opt = gradstep.Optimizer(params, transform, engine=engine)
    for k in range(steps):
        grads = [(np.sin(3 * p + k) + 0.1 * k).astype(dtype) for p in params]
        opt.step(grads, **_inputs(mode, k, interval, params, rng))
        assert opt.engine == engine
    if opt_out is not None:
        opt_out.append(opt)
    return params, opt.state_dict()


def _assert_same(got, want, dtype):
    (gp, gs), (wp, ws) = got, want
    for a, b in zip(gp, wp):
        np.testing.assert_allclose(a, b, **TOLERANCE[dtype])
    assert gs.keys() == ws.keys()
    for key in ws:
        np.testing.assert_allclose(gs[key], ws[key], **TOLERANCE[dtype], err_msg=key)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", ["every", "refresh", "hvp"])
@pytest.mark.parametrize("refresh", ["before", "after"])
@pytest.mark.parametrize("interval", [1, 3, 10])
def test_fused_equals_eager(interval, refresh, mode, dtype):
    want = _run("eager", dtype, interval, refresh, mode)
    got = _run("fused", dtype, interval, refresh, mode)
    _assert_same(got, want, dtype)


def test_sophia_compiles_with_a_host_step():
    """(The Triton engine runs the same host step: tests/gpu_engine/test_triton_sophia.py.)"""
    engine = FusedEngine(gradstep.sophia(0.1))
    assert [form.name for form, _ in engine.hosts] == ["sophia"]
    assert engine.refusal(SIZES, np.float32) is None


@pytest.mark.parametrize("mode", ["every", "hvp"])
def test_the_fold_runs_on_refresh_steps_only(watch, mode):
    folds, probes = watch(HessianAverage, "_folded", completed=False), []

    def hvp(z):
        probes.append(1)
        return _hvp(z)

    params = [np.ones(5, np.float32)]
    opt = gradstep.Optimizer(params, gradstep.sophia(0.1, update_interval=4), engine="fused")
    for _ in range(10):
        extra = {"hvp": hvp} if mode == "hvp" else {"hessian": [np.ones(5, np.float32)]}
        opt.step([np.full(5, 0.5, np.float32)], **extra)
        assert opt.engine == "fused"
    assert len(folds) == 3  # steps 1, 5 and 9
    assert len(probes) == (3 if mode == "hvp" else 0)


PRECISIONS = [
    (np.float16, {}),
    (np.float32, {"state_dtype": "bfloat16"}),
    (np.float32, {"state_dtype": "bfloat16", "stochastic_rounding": True}),
    (np.float32, {"kahan_summation": True}),
]


@pytest.mark.parametrize("refresh", ["before", "after"])
@pytest.mark.parametrize("dtype, options", PRECISIONS, ids=["f16", "bf16", "bf16-sr", "kahan"])
def test_16bit_storage_matches_eager_bit_for_bit(dtype, options, refresh):
    """The fold is the eager code on the stored ``nu``: the same values, stored."""
    out = {}
    for engine in ("eager", "fused"):
        w = np.random.default_rng(0).normal(size=5000).astype(dtype)
        transform = gradstep.sophia(0.05, update_interval=2, refresh=refresh, **options)
        opt = gradstep.Optimizer([w], transform, engine=engine)
        rng = np.random.default_rng(1)
        for _ in range(8):
            g, h = rng.normal(size=(2, 5000)).astype(dtype)
            opt.step([g], hessian=[np.abs(h)])
            assert opt.engine == engine
        out[engine] = (w, opt.state_dict())
    np.testing.assert_array_equal(out["fused"][0], out["eager"][0])
    for key, value in out["eager"][1].items():
        np.testing.assert_array_equal(out["fused"][1][key], value, err_msg=key)


@pytest.mark.parametrize("refresh", ["before", "after"])
@pytest.mark.parametrize("mode", ["every", "hvp"])
def test_a_checkpoint_resumes_exactly(refresh, mode):
    dtype, interval = np.float32, 3
    opts: list = []
    whole = _run("fused", dtype, interval, refresh, mode, opt_out=opts)
    # the same run, stopped after 11 steps, saved, loaded into a new optimizer
    rng = np.random.default_rng(7)
    params = [rng.normal(size=s).astype(dtype) for s in SIZES]

    def make(ps):
        transform = gradstep.sophia(
            0.05, update_interval=interval, refresh=refresh, gamma=0.5, weight_decay=0.01
        )
        return gradstep.Optimizer(ps, transform, engine="fused")

    opt = make(params)
    for k in range(STEPS):
        if k == 11:
            saved = opt.state_dict()
            params = [p.copy() for p in params]
            opt = make(params)
            opt.load_state_dict(saved)
        grads = [(np.sin(3 * p + k) + 0.1 * k).astype(dtype) for p in params]
        opt.step(grads, **_inputs(mode, k, interval, params, rng))
        assert opt.engine == "fused"
    for a, b in zip(params, whole[0]):
        np.testing.assert_array_equal(a, b)
    for key, value in opt.state_dict().items():
        np.testing.assert_array_equal(value, whole[1][key], err_msg=key)


def _broken_hvp(z):
    raise RuntimeError("no curvature here")


BAD = [
    ({"hessian": [np.ones(4)]}, ValueError, "invalid hessian"),
    ({"hessian": [np.ones(3)], "hvp": _hvp}, ValueError, "hessian= and hvp= given"),
    ({"hessian": [np.ones(3), np.ones(3)]}, ValueError, "sophia: hessian"),
    ({"hvp": lambda z: [np.ones(4)]}, ValueError, None),
    ({"hvp": lambda z: []}, ValueError, "sophia: hvp"),
    ({"hvp": _broken_hvp}, RuntimeError, "no curvature here"),
]


def _failed_step(engine, refresh, interval, bad):
    """One good step, then a step with the inputs ``bad``: its error message, and
    whether the parameters and the state stayed as they were."""
    w = np.linspace(-1.0, 1.0, 3)
    transform = gradstep.sophia(0.1, update_interval=interval, refresh=refresh)
    opt = gradstep.Optimizer([w], transform, engine=engine)
    opt.step([np.ones(3)], hessian=[np.full(3, 2.0)])
    before_w, before_state = w.copy(), opt.state_dict()
    with pytest.raises(Exception) as caught:
        opt.step([np.full(3, 0.5)], **bad)
    same = np.array_equal(w, before_w) and all(
        np.array_equal(value, before_state[key]) for key, value in opt.state_dict().items()
    )
    assert opt.engine == engine
    return caught, same


@pytest.mark.parametrize("refresh", ["before", "after"])
@pytest.mark.parametrize("bad, error, match", BAD, ids=range(len(BAD)))
def test_invalid_inputs_raise_the_eager_errors_and_change_nothing(refresh, bad, error, match):
    """On a refresh step (interval 1): the eager engine's error, before anything is
    written (``"after"``: the estimate is taken before the launch too)."""
    want, want_same = _failed_step("eager", refresh, 1, bad)
    got, same = _failed_step("fused", refresh, 1, bad)
    assert got.type is want.type is error
    assert str(got.value) == str(want.value)
    if match is not None:
        assert match in str(got.value)
    assert want_same and same


def test_an_estimate_is_checked_on_other_steps_too():
    for engine in ("eager", "fused"):
        caught, same = _failed_step(engine, "before", 10, {"hessian": [np.ones(4)]})
        assert caught.type is ValueError and "invalid hessian" in str(caught.value)
        assert same


def _torch_run(engine, inputs, steps=12, dtype="float64"):
    """``gradstep.torch.Sophia`` on CPU over a quadratic with a fixed curvature per
    tensor (gradients taken with ``create_graph``); ``inputs(k, params)``: the step's
    keywords. Returns the parameters and the curvature matrices."""
    torch = pytest.importorskip("torch", reason="the torch class of Sophia")
    import gradstep.torch as gt

    dt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(5)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen, dtype=dt)) for n in (7, 1, 40)]
    mats = []
    for p in params:
        a = torch.randn(p.numel(), p.numel(), generator=gen, dtype=dt)
        mats.append(a @ a.T / p.numel() + torch.eye(p.numel(), dtype=dt))
    opt = gt.Sophia(params, 0.05, update_interval=3, gamma=0.5, engine=engine)
    for k in range(steps):
        loss = 0.0
        for p, a in zip(params, mats):
            d = p - p.detach()
            loss = loss + 0.5 * d @ (a @ d) + torch.sin(p.detach() + k) @ p
        loss.backward(create_graph=True)
        opt.step(**inputs(k, params))
        for p in params:
            p.grad = None
    return [p.detach().numpy().copy() for p in params], [a.numpy() for a in mats]


def _given(k, params):
    import torch

    return {"hessian": [torch.full_like(p, 1.0 + k % 4).detach() for p in params]}


@pytest.mark.parametrize("inputs", [_given, lambda k, params: {}], ids=["hessian", "hvp"])
def test_the_torch_class_steps_cpu_parameters_on_the_numba_engine(watch, inputs):
    calls = watch(FusedEngine, "step_leaves", completed=False)
    got, mats = _torch_run("fused", inputs)
    assert len(calls) == 12 and all(isinstance(c[0], FusedEngine) for c in calls)
    if inputs is _given:
        want, _ = _torch_run("eager", inputs)  # the torch tensors' own update
    else:
        # the functional NumPy path with the same curvature: the same Rademacher
        # probes (NumPy draws from (seed, step) over the same shapes)
        import torch

        gen = torch.Generator().manual_seed(5)
        want = [torch.randn(n, generator=gen, dtype=torch.float64).numpy() for n in (7, 1, 40)]
        opt = gradstep.Optimizer(want, gradstep.sophia(0.05, update_interval=3, gamma=0.5))
        for k in range(12):
            grads = [np.sin(w + k) for w in want]
            opt.step(grads, hvp=lambda z: [a @ v for a, v in zip(mats, z)])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_the_torch_class_checks_its_inputs_on_the_numba_engine(watch):
    torch = pytest.importorskip("torch", reason="the torch class of Sophia")
    import gradstep.torch as gt

    calls = watch(FusedEngine, "step_leaves", completed=False)
    params = [torch.nn.Parameter(torch.ones(3))]
    params[0].grad = torch.ones(3)
    opt = gt.Sophia(params, 0.1, update_interval=1, engine="fused")
    opt.step(hessian=[torch.full((3,), 2.0)])
    before = params[0].detach().clone()
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[params[0]].items()}
    for bad in ([torch.ones(4)], [torch.full((3,), float("nan")), torch.ones(3)]):
        with pytest.raises(ValueError, match="hessian"):
            opt.step(hessian=bad)
    assert len(calls) == 2  # the good step, and the bad shape: refused in the engine
    assert torch.equal(params[0].detach(), before)
    for key, value in opt.state[params[0]].items():
        assert torch.equal(value, state[key]) if torch.is_tensor(value) else value == state[key]


def test_a_host_value_that_does_not_fit_is_refused_before_anything_is_written(monkeypatch):
    """A host step whose values do not fit their slot arrays (here a fold that
    returns the wrong shape) is refused (Unsupported) with the state untouched."""
    from gradstep._core import tree as _tree
    from gradstep.engines.plan import Unsupported

    original = HessianAverage._folded

    def misshapen(self, td, nu, *args):
        out = original(self, td, nu, *args)
        return _tree.unflatten(td, [np.append(v, 0.0) for v in _tree.leaves_like(td, out)])

    transform = gradstep.sophia(0.05, update_interval=1)
    w = np.linspace(-1.0, 1.0, 5000).astype(np.float32)
    state = transform.init([w])
    engine = FusedEngine(transform)
    engine.step([w], [np.ones_like(w)], state, {})  # no estimate: the kernel alone
    before_w, before = w.copy(), [np.array(a, copy=True) for a in _leaves(state)]
    monkeypatch.setattr(HessianAverage, "_folded", misshapen)
    with pytest.raises(Unsupported, match="host step computes"):
        engine.step([w], [np.ones_like(w)], state, {"hessian": [np.ones_like(w)]})
    np.testing.assert_array_equal(w, before_w)
    for a, b in zip(_leaves(state), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("refresh", ["before", "after"])
def test_a_step_the_engine_refuses_folds_nothing(refresh):
    """A refresh step with a valid estimate whose arrays the engine refuses (a
    gradient of the wrong shape, a read-only slot) leaves ``nu`` as it was."""
    from gradstep.engines.plan import Unsupported

    transform = gradstep.sophia(0.05, update_interval=1, refresh=refresh)
    w = np.linspace(-1.0, 1.0, 7)
    state = transform.init([w])
    engine = FusedEngine(transform)
    engine.step([w], [np.ones_like(w)], state, {"hessian": [np.ones_like(w)]})
    before_w, before = w.copy(), [np.array(a, copy=True) for a in _leaves(state)]
    with pytest.raises(ValueError, match="shape"):
        engine.step([w], [np.ones(6)], state, {"hessian": [np.full_like(w, 3.0)]})
    state["sophia"]["inner"]["mu"][0].flags.writeable = False
    with pytest.raises(Unsupported, match="read-only"):
        engine.step([w], [np.ones_like(w)], state, {"hessian": [np.full_like(w, 3.0)]})
    np.testing.assert_array_equal(w, before_w)
    for a, b in zip(_leaves(state), before):
        np.testing.assert_array_equal(a, b)


def _leaves(state):
    from gradstep._core import tree

    return tree.leaves(state)


def test_the_folded_second_moment_refuses_8bit_storage():
    """The Hessian estimates are folded into nu outside the element function, which
    would read 8-bit codes as numbers: refused on every front, the other slot may be
    8-bit and nu may be 16-bit."""
    import torch

    import gradstep.torch as gt

    with pytest.raises(ValueError, match="slot 'nu' of 'sophia' is updated outside"):
        gradstep.sophia(1e-3, state_dtype="int8")
    with pytest.raises(ValueError, match="slot 'nu' of 'sophia'"):
        gradstep.sophia(1e-3, state_dtype={"nu": "int8"})
    with pytest.raises(ValueError, match="slot 'nu' of 'sophia'"):
        gt.Sophia([torch.nn.Parameter(torch.ones(3))], state_dtype="int8")
    w = [np.linspace(-1, 1, 5000).astype(np.float32)]
    opt = gradstep.Optimizer(
        w, gradstep.sophia(1e-3, update_interval=1, state_dtype={"mu": "int8", "nu": "bfloat16"})
    )
    for _ in range(3):
        opt.step([np.cos(3 * w[0])], hessian=[np.abs(np.sin(w[0]))])
    assert np.all(np.isfinite(w[0])) and np.abs(w[0]).max() <= 1.01
