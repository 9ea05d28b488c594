"""Per-tensor reductions that sum values as well as squares (``sum_kinds``) and see
every tensor's totals (``totals``): each engine (eager, numba, JAX, the torch front
eager and fused) steps as the eager engine, tensors of odd sizes and two groups of
mask flags included; the torch front steps such a stage as one call."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import gradstep

_spec = importlib.util.spec_from_file_location(
    "totals_stage", Path(__file__).with_name("totals_stage.py")
)
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)
CENTRED, centring_stage, chain, data = toy.CENTRED, toy.centring_stage, toy.chain, toy.data
eager_steps, tolerance, combined = toy.eager_steps, toy.tolerance, toy.combined


def test_the_eager_step_uses_every_tensors_totals():
    """The reference itself, from the formula: a centred tensor keeps its spread and
    moves to the mean of all elements of all tensors."""
    params, (grads,) = data(np.float64, steps=1)
    updates, _ = centring_stage().update(grads, {}, params)
    flat = np.concatenate([g.ravel() for g in grads])
    mean_all, rms_all = flat.mean(), np.sqrt(np.mean(flat * flat))
    for g, u, centred in zip(grads, updates, CENTRED):
        if centred:
            scale = 0.75 / (rms_all + 0.5)
            want = (g - g.mean()) * scale + mean_all * scale if g.size else g
        else:
            want = g * 0.75 / (np.sqrt(np.mean(g * g)) + 0.5) + mean_all if g.size else g
        np.testing.assert_allclose(u, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_numba_engine_steps_as_eager(dtype):
    params, grads = data(dtype)
    want = eager_steps(chain(), params, grads)
    got = [p.copy() for p in params]
    opt = gradstep.Optimizer(got, chain(), engine="fused")
    for g in grads:
        opt.step(g)
    assert opt.engine == "fused"
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, **tolerance(dtype))


def test_the_numba_engine_calls_combine_once_per_flag_group(monkeypatch):
    """On columns: one call per group of tensors with the same flags (not one per
    tensor), each column as long as its group."""
    calls = []

    def watched(sums, flags, h):
        calls.append((len(np.atleast_1d(sums[0])), dict(flags)))
        return combined(sums, flags, h)

    stage = centring_stage()
    monkeypatch.setattr(stage, "combine", watched)
    params, (grads,) = data(np.float64, steps=1)
    rows = stage.tensor_scalar_rows(
        [[float(np.sum(g)), float(np.sum(g * g))] for g in grads],
        stage.tensor_flags(params, grads, len(grads)),
        0,
        {},
        sizes=[g.size for g in grads],
    )
    assert sorted(calls, key=str) == [(2, {"centred": True}), (3, {"centred": False})]
    want = [[v["scale"], v["shift"]] for v in _values_per_tensor(stage, params, grads)]
    np.testing.assert_allclose(rows, want, rtol=1e-15, atol=0)


def _values_per_tensor(stage, params, grads):
    """One ``combine`` call per tensor (the eager engine's)."""
    rows = [(float(np.sum(g)), float(np.sum(g * g)), float(g.size)) for g in grads]
    flags = stage.tensor_flags(params, grads, len(grads))
    return stage.tensor_scalar_values(rows, flags, {"strength": 0.75})


def _constant_schedule(count):
    return 0.75


@pytest.mark.parametrize(
    "strength, dtype",
    [(0.75, np.float32), (0.75, np.float64), (_constant_schedule, np.float32)],
    ids=["traced-f32", "traced-f64", "host-f32"],
)
def test_under_jax(strength, dtype):
    """The JAX engine traces the combine, or (a Python schedule) calls it on the host.
    Not the host call under ``jax.enable_x64``: that context is the calling thread's,
    and XLA may run a callback on another thread (here with the 100003 elements),
    where JAX checks its float64 result as float32 and fails (LARS's too)."""
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    from gradstep.jax import to_optax

    params, grads = data(dtype)
    want = eager_steps(chain(), params, grads)
    with jax.enable_x64(dtype == np.float64):
        opt = to_optax(chain(strength=strength))
        got = [jax.numpy.asarray(p) for p in params]
        state = opt.init(got)
        update = jax.jit(opt.update)
        for g in grads:
            updates, state = update([jax.numpy.asarray(x) for x in g], state, got)
            got = [p + u for p, u in zip(got, updates)]
        got = [np.asarray(p) for p in got]
    # without x64, JAX sums in float32 (the others in float64)
    tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else tolerance(dtype)
    for a, b in zip(want, got):
        assert b.dtype == dtype
        np.testing.assert_allclose(b, a, **tol)


def _torch_steps(engine, params, grads, transform=None, **options):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch as gt

    tensors = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    opt = gt.TransformOptimizer(tensors, transform or chain(), engine=engine, **options)
    for step in grads:
        for p, g in zip(tensors, step):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    return [p.detach().numpy() for p in tensors]


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_torch_front_steps_as_eager(engine, dtype, watch):
    from gradstep.engines.fused import FusedEngine

    fused = watch(FusedEngine, "step_leaves")
    params, grads = data(dtype)
    want = eager_steps(chain(), params, grads)
    got = _torch_steps(engine, params, grads)
    assert len(fused) == (len(grads) if engine == "fused" else 0)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, **tolerance(dtype))


@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_the_torch_front_steps_a_totals_stage_as_one_call(engine, watch):
    """Parameters the front would step in separate buckets (foreach=False: one per
    parameter) are stepped together: each tensor's scalars need every tensor's
    totals."""
    import gradstep.torch as gt
    from gradstep._core.separable import separable

    assert not separable(chain())
    runs = watch(gt.TransformOptimizer, "_run")
    params, grads = data(np.float64, shapes=[(7,), (1,), (30,), (3, 5), (4,)])
    want = eager_steps(chain(), params, grads)
    got = _torch_steps(engine, params, grads, foreach=False)
    assert len(runs) == len(grads)  # one call per step
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    # without totals each tensor is stepped alone: a call per parameter (a mask of
    # None: a list is the whole group's)
    assert separable(chain(totals=False))
    runs.clear()
    _torch_steps(engine, params, grads, chain(totals=False, centred=None), foreach=False)
    assert len(runs) == len(grads) * len(params)


@pytest.mark.parametrize(
    "kinds", [("squares",), ("squares", "means"), ("sums", "squares", "sums"), "sums"]
)
def test_invalid_sum_kinds_are_refused(kinds):
    with pytest.raises(ValueError, match=r"sum_kinds=.*valid values"):
        centring_stage(sum_kinds=kinds)


def test_the_torch_front_steps_mixed_dtypes_as_one_eager_call(watch):
    """Parameters of two dtypes (two buckets) are one step of the transform's own
    update; a required fused engine says why it cannot."""
    pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch as gt

    params, grads = data(np.float64, shapes=[(7,), (1,), (30,), (3, 5), (4,)])
    dtypes = [np.float64, np.float32, np.float64, np.float32, np.float32]
    params = [p.astype(d) for p, d in zip(params, dtypes)]
    grads = [[g.astype(d) for g, d in zip(step, dtypes)] for step in grads]
    want = eager_steps(chain(), params, grads)
    runs = watch(gt.TransformOptimizer, "_run")
    got = _torch_steps("auto", params, grads)
    assert len(runs) == len(grads)
    for a, b in zip(want, got):
        assert b.dtype == a.dtype
        np.testing.assert_allclose(b, a, rtol=2e-6, atol=2e-6)
    with pytest.raises(RuntimeError, match="couples the group's parameters"):
        _torch_steps("fused", params, grads)


def _lbsgd():
    return gradstep.lbsgd(0.1, momentum=0.5, warmup_strategy="lars")


def test_lbsgd_lars_multiplier_takes_columns_of_tensors():
    """Its combine is element operations (engines call it on columns of several
    tensors' sums), the same numbers as a call per tensor."""
    from gradstep.rules.lbsgd import _lars_multiplier

    g2, w2 = np.array([4.0, 0.0, 1e-6, 9.0]), np.array([1.0, 2.0, 1e6, 0.0])
    h = {"learning_rate": 0.1, "weight_decay": 0.0}
    columns = _lars_multiplier((g2, w2), {}, h)["neg_lr"]
    each = [_lars_multiplier((float(a), float(b)), {}, h)["neg_lr"] for a, b in zip(g2, w2)]
    np.testing.assert_array_equal(columns, each)
    np.testing.assert_allclose(each, [-0.1 * 0.5, -10.0, -10.0, -0.001], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbsgd_lars_runs_fused_on_several_tensors(dtype):
    rng = np.random.default_rng(4)
    params = [rng.normal(size=n).astype(dtype) for n in (5, 1, 100003, 17)]
    grads = [[np.sin(3 * p + k).astype(dtype) + 0.1 for p in params] for k in range(3)]
    want = eager_steps(_lbsgd(), params, grads)
    got = [p.copy() for p in params]
    opt = gradstep.Optimizer(got, _lbsgd(), engine="fused")
    for g in grads:
        opt.step(g)
    assert opt.engine == "fused"
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, **tolerance(dtype))
