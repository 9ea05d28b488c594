"""polyak_sgd on the fused numba engine: the squared norm of the updates as a reduction
pass, the loss value of each step as a scalar of the kernel, the step size from the
same ``combine`` the eager engine calls; equal to the eager engine's steps."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine

SIZES = [(0,), (1,), (7,), (100003,), (3, 5)]
STEPS = 20
#: f* above some of the loss values below, so the gap is negative on those steps
F_MIN = 0.8
SETTINGS = {
    "sps": dict(max_learning_rate=0.7, scaling=0.5, f_min=F_MIN, epsilon=1e-4),
    "sps+": dict(max_learning_rate=0.7, scaling=0.5, f_min=F_MIN, epsilon=1e-4, variant="sps+"),
    # epsilon 0: the tiny gradients of TINY_STEP leave a denominator below float64's
    # machine epsilon, and the step is 0
    "sps eps=0": dict(max_learning_rate=2.0, f_min=F_MIN),
}
TINY_STEP = 4


def loss_value(k: int) -> float:
    """A loss that changes every step and falls below ``F_MIN`` on some steps."""
    return 1.2 + np.sin(1.3 * k)


def run(rule: dict, dtype, engine: str, steps: int = STEPS):
    """The parameters after each step (copies) and the final parameters."""
    rng = np.random.default_rng(5)
    params = [rng.normal(size=s).astype(dtype) for s in SIZES]
    opt = gradstep.Optimizer(params, gradstep.polyak_sgd(**rule), engine=engine)
    history = []
    for k in range(steps):
        grads = [(np.sin(3 * p + k) + 0.1 * k).astype(dtype) for p in params]
        if k == TINY_STEP:  # squares summing to ~1e-17
            grads = [np.full_like(g, 1e-11) for g in grads]
        opt.step(grads, value=loss_value(k))
        assert opt.engine == engine  # no step fell back to the eager engine
        history.append([p.copy() for p in params])
    return history


def assert_close(eager, fused, dtype):
    for a, b in zip(eager, fused):
        assert a.dtype == b.dtype and a.shape == b.shape
        scale = float(np.max(np.abs(a), initial=0.0))
        if dtype == np.float64:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * scale)
        else:
            eps = np.finfo(np.float32).eps
            bound = 4 * np.spacing(np.abs(a)) + 4 * eps * scale
            assert np.all(np.abs(a.astype(np.float64) - b) <= bound)


def test_polyak_compiles_for_the_fused_engine():
    for rule in SETTINGS.values():
        engine = FusedEngine(gradstep.polyak_sgd(**rule))
        assert [st.is_global for st in engine.stages] == [False, True]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_fused_equals_eager(setting, dtype):
    eager = run(SETTINGS[setting], dtype, "eager")
    fused = run(SETTINGS[setting], dtype, "fused")
    for k, (a, b) in enumerate(zip(eager, fused)):
        assert all(np.all(np.isfinite(p)) for p in b), f"step {k + 1}"
        assert_close(a, b, dtype)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_the_trajectory_shows_each_rule(setting):
    """The steps the comparison covers: under sps+ a loss below f* leaves the
    parameters as they were (no step uphill); with epsilon 0 so does the step whose
    squared norm is below float64's machine epsilon (tiny gradients); every other
    step moves them."""
    rule = SETTINGS[setting]
    history = run(rule, np.float64, "fused")
    below = [k for k in range(STEPS) if loss_value(k) < F_MIN]
    assert len(below) >= 3, "the loss must fall below f* on some steps"
    for k in range(1, STEPS):
        moved = any(not np.array_equal(a, b) for a, b in zip(history[k - 1], history[k]))
        still = k == TINY_STEP and rule.get("epsilon", 0.0) == 0.0
        still = still or (k in below and rule.get("variant") == "sps+")
        assert moved != still, f"step {k + 1}"


def test_below_f_min_sps_steps_uphill():
    """With the same gradient, sps moves the other way on a loss below f* (a
    negative gap) than on a loss above it."""
    out = {}
    for value in (F_MIN + 0.5, F_MIN - 0.5):
        w = np.array([1.0, -2.0, 0.5], np.float32)
        gradstep.Optimizer(w, gradstep.polyak_sgd(f_min=F_MIN), engine="fused").step(
            np.ones(3, np.float32), value=value
        )
        out[value] = w - np.array([1.0, -2.0, 0.5], np.float32)
    np.testing.assert_allclose(out[F_MIN + 0.5], -out[F_MIN - 0.5], rtol=1e-6)
    assert np.all(out[F_MIN + 0.5] < 0)


@pytest.mark.parametrize("engine", ["fused", "eager"])
def test_a_step_without_the_value_raises_and_changes_nothing(engine):
    rng = np.random.default_rng(2)
    params = [rng.normal(size=s).astype(np.float32) for s in SIZES]
    opt = gradstep.Optimizer(params, gradstep.polyak_sgd(), engine=engine)
    opt.step([np.ones_like(p) for p in params], value=3.0)
    kept = [p.copy() for p in params]
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"needs value= \(the loss at the current parameters\)"):
        opt.step([np.ones_like(p) for p in params])
    for a, b in zip(kept, params):
        np.testing.assert_array_equal(a, b)
    assert opt.state_dict().keys() == state.keys()
    # and the next step with a value runs on the same engine
    opt.step([np.ones_like(p) for p in params], value=3.0)
    assert opt.engine == engine


def test_the_loss_as_a_float32_scalar_is_taken_in_float64():
    """A float32 loss (a NumPy scalar) is widened before f* is subtracted: with f*
    1e-10 below it (no float32 number there) the gap is 1e-10, not 0."""
    value = np.float32(0.1)
    f_min = float(value) - 1e-10
    out = {}
    for engine in ("eager", "fused"):
        w = np.zeros(4)
        opt = gradstep.Optimizer(w, gradstep.polyak_sgd(f_min=f_min), engine=engine)
        opt.step(np.ones(4), value=value)
        out[engine] = w
    gap = float(value) - f_min
    np.testing.assert_allclose(out["eager"], -gap / 4.0, rtol=1e-12)
    np.testing.assert_array_equal(out["fused"], out["eager"])


@pytest.mark.parametrize("given", ["closure", "group", "PolyakSgd closure"])
def test_the_torch_front_steps_it_on_the_cpu_fused_engine(given, watch):
    """``TransformOptimizer(..., engine="fused")`` (and ``gradstep.torch.PolyakSgd``)
    on CPU tensors: the numba engine takes every step (the loss from the closure, or
    the group's ``value``), equal to the eager engine's."""
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch as gt
    from gradstep.engines import fused

    calls = watch(fused.FusedEngine, "step_leaves")  # the steps the engine completed
    results = {}
    for engine in ("eager", "fused"):
        calls.clear()
        gen = torch.Generator().manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (0, 1, 7, 3001)]
        start = ps[3].detach().clone()
        if given.startswith("PolyakSgd"):
            opt = gt.PolyakSgd(ps, **SETTINGS["sps+"], engine=engine)
        else:
            opt = gt.TransformOptimizer(ps, gradstep.polyak_sgd(**SETTINGS["sps+"]), engine=engine)
        for k in range(6):

            def closure(k=k, opt=opt, ps=ps):
                opt.zero_grad()
                loss = sum(0.5 * (p * p).sum() for p in ps) * (0.5 + 0.2 * k) - 1.0
                loss.backward()
                return loss

            if given.endswith("closure"):
                opt.step(closure)
            else:
                opt.param_groups[0]["value"] = float(closure().detach())
                opt.step()
        results[engine] = [p.detach().clone() for p in ps]
        assert len(calls) == (6 if engine == "fused" else 0)
        assert not torch.equal(results[engine][3], start)
    for a, b in zip(results["eager"], results["fused"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_the_listing_shows_it_compiled():
    from gradstep.cli.listing import engine

    assert engine(gradstep.REGISTRY["polyak_sgd"]) == "fused/reduction"
    assert engine(gradstep.REGISTRY["sgd"]) == "fused"
    assert engine(gradstep.REGISTRY["adafactor"]) == "eager/reduction"


def test_gradstep_bench_runs_it_with_a_loss_each_step(tmp_path, capsys):
    """``gradstep bench`` gives a rule stepped by the loss (``needs_value``) a value
    every step; its traffic floor is plain SGD's (read g and w, write w)."""
    import json

    from gradstep.cli import main

    out = tmp_path / "bench.json"
    args = ["bench", "--optimizers", "polyak_sgd", "--layouts", "2x100,1x0", "--repeats", "1"]
    assert main(args + ["--no-torch", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["layout"] for r in rows] == ["2x100", "1x0"]
    assert rows[0]["traffic_bytes"] == 4 * 200 * 3
    assert rows[0]["fused_s"] > 0 and rows[0]["eager_s"] > 0
    assert "| polyak_sgd | 2x100 |" in capsys.readouterr().out


@pytest.mark.parametrize("engine", ["auto", "eager"])
@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), True, "2.5", [1.0, 2.0], np.array([1.0, 2.0]), None],
    ids=["nan", "inf", "bool", "str", "list", "array", "None"],
)
def test_a_step_value_that_is_no_finite_number_is_refused_and_changes_nothing(engine, value):
    w = np.array([1.0, -2.0])
    opt = gradstep.Optimizer(w, gradstep.polyak_sgd(), engine=engine)
    opt.step(2 * w, value=5.0)
    before = w.copy()
    state = [np.array(leaf, copy=True) for leaf in gradstep.tree.leaves(opt.state)]
    with pytest.raises(ValueError, match=r"Optimizer.step: invalid value=.*valid values: a number"):
        opt.step(2 * w, value=value)
    np.testing.assert_array_equal(w, before)
    for a, b in zip(state, gradstep.tree.leaves(opt.state)):
        np.testing.assert_array_equal(a, b)
    opt.step(2 * w, value=np.asarray(2.5))  # a 0-d array is its number
