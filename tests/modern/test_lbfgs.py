"""L-BFGS with its closure: torch.optim.LBFGS replayed step by step, the strong-Wolfe
line search replayed trial by trial, and the closure API on the NumPy front.

The fixtures (``tests/conformance/fixtures/closure``) come from
``tests/conformance/record_modern_fixtures.py``; the loss, its gradient and the line
search's test function are taken from that script, so both sides evaluate the same
NumPy code. Iteration and evaluation counts must match exactly. Values match to
rounding: torch adds ``t * d`` with a fused multiply-add and sums dot products in its
own order, and the line search's cubic interpolation between close points amplifies
those last-bit differences, so the parameters agree to ``1e-10`` (absolute, on values
of order 1) rather than to the last bits.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep import tree

HERE = Path(__file__).resolve().parent
CONFORMANCE = HERE.parent / "conformance"
FIXTURES = CONFORMANCE / "fixtures" / "closure"
LBFGS = importlib.import_module("gradstep.rules.lbfgs")
LINE_SEARCH = importlib.import_module("gradstep.rules.line_search")


def _recorder():
    spec = importlib.util.spec_from_file_location(
        "record_modern_fixtures", CONFORMANCE / "record_modern_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECORDER = _recorder()
RUNS = json.loads((FIXTURES / "lbfgs.json").read_text())
SEARCHES = json.loads((FIXTURES / "strong_wolfe.json").read_text())
TOLERANCE = dict(rtol=1e-10, atol=1e-10)


def replay(case, counting=None):
    prob = case["problem"]
    params = [np.array(w, dtype=case["dtype"]) for w in prob["params0"]]
    opt = gradstep.Optimizer(params, gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"]))

    def closure():
        return RECORDER.loss_and_grad(prob, params)

    out = []
    for k in range(len(case["steps"])):
        ctx = {} if case["lrs"] is None else {"learning_rate": case["lrs"][k]}
        loss = gradstep.closure_step(opt, closure, **ctx)
        out.append((loss, [p.copy() for p in params], opt.state))
    return out


@pytest.mark.parametrize("case", RUNS, ids=[c["id"] for c in RUNS])
def test_closure_steps_match_torch(case):
    for k, ((loss, params, state), want) in enumerate(zip(replay(case), case["steps"])):
        where = f"{case['id']}: step {k + 1}"
        assert int(state["n_iter"]) == want["n_iter"], where
        assert int(state["func_evals"]) == want["func_evals"], where
        np.testing.assert_allclose(loss, want["loss"], **TOLERANCE, err_msg=where)
        for got, ref in zip(params, want["params"]):
            np.testing.assert_allclose(got, np.array(ref), **TOLERANCE, err_msg=where)


def test_fixtures_exercise_the_line_search_phases(monkeypatch):
    """Some replayed step extrapolates (cubic step with bounds) and some zooms."""
    calls = {"extrapolate": 0, "zoom": 0}
    original = LINE_SEARCH.cubic_minimizer

    def counting(p, q, bounds=None):
        calls["zoom" if bounds is None else "extrapolate"] += 1
        return original(p, q, bounds)

    monkeypatch.setattr(LINE_SEARCH, "cubic_minimizer", counting)
    for case in RUNS:
        replay(case)
    assert calls["extrapolate"] > 0 and calls["zoom"] > 0, calls


@pytest.mark.parametrize("case", SEARCHES, ids=[c["id"] for c in SEARCHES])
def test_strong_wolfe_matches_torch(case):
    x0, d = np.array(case["x0"]), np.array(case["direction"])
    f0, g0 = RECORDER.rosenbrock2(x0)
    trials = []

    def probe(t):
        trials.append(float(t))
        return RECORDER.rosenbrock2(x0 + t * d)

    f, g, t, evals = LINE_SEARCH.strong_wolfe(
        probe, d, case["t0"], f0, g0, g0 @ d, case["max_evals"]
    )
    assert evals == case["evals"] == len(trials)
    np.testing.assert_allclose(trials, case["trials"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(float(t), case["t"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(f, case["f"], rtol=1e-12)
    np.testing.assert_allclose(g, case["g"], rtol=1e-12, atol=1e-12)


def test_accepted_steps_satisfy_the_strong_wolfe_conditions():
    for case in SEARCHES:
        if case["max_evals"] < 25:
            continue  # out of evaluations: the best point so far, not a Wolfe point
        x0, d = np.array(case["x0"]), np.array(case["direction"])
        f0, g0 = RECORDER.rosenbrock2(x0)
        f, g, t, _ = LINE_SEARCH.strong_wolfe(
            lambda s, x0=x0, d=d: RECORDER.rosenbrock2(x0 + s * d),
            d,
            case["t0"],
            f0,
            g0,
            g0 @ d,
            case["max_evals"],
        )
        assert f <= f0 + LINE_SEARCH.C1 * t * (g0 @ d), case["id"]
        assert abs(g @ d) <= -LINE_SEARCH.C2 * (g0 @ d), case["id"]


def test_cubic_minimizer_is_exact_on_a_cubic():
    # f(t) = (t - 1)^3 / 3 - (t - 1) + 4 has its local minimum at t = 2
    f = lambda t: (t - 1) ** 3 / 3 - (t - 1) + 4
    df = lambda t: (t - 1) ** 2 - 1
    p = LINE_SEARCH._Point(1.5, f(1.5), None, df(1.5))
    q = LINE_SEARCH._Point(3.0, f(3.0), None, df(3.0))
    assert LINE_SEARCH.cubic_minimizer(p, q) == pytest.approx(2.0, rel=1e-14)
    assert LINE_SEARCH.cubic_minimizer(q, p) == pytest.approx(2.0, rel=1e-14)
    assert LINE_SEARCH.cubic_minimizer(p, q, bounds=(2.5, 4.0)) == 2.5


# -- the closure API ------------------------------------------------------------------------


def quadratic_problem(dtype=np.float64):
    rng = np.random.default_rng(3)
    h = {"w": rng.uniform(0.5, 4.0, size=(4, 3)), "b": rng.uniform(0.5, 4.0, size=3)}
    target = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    params = {"w": np.zeros((4, 3), dtype), "b": np.zeros(3, dtype)}

    def loss_and_grad(p):
        loss = sum(0.5 * float(np.sum(h[k] * (p[k] - target[k]) ** 2)) for k in p)
        return loss, {k: (h[k] * (p[k] - target[k])).astype(dtype) for k in p}

    return params, loss_and_grad


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_a_closure_step_minimizes_a_quadratic(line_search_fn):
    params, loss_and_grad = quadratic_problem()
    opt = gradstep.Optimizer(params, gradstep.lbfgs(line_search_fn=line_search_fn))
    start = gradstep.closure_step(opt, lambda: loss_and_grad(params))
    assert start > 1.0
    assert loss_and_grad(params)[0] < 1e-8  # stopped by tolerance_change (1e-9)


def test_converges_on_rosenbrock_with_the_default_settings():
    """The registry's Rosenbrock property, run the way L-BFGS is meant to be run."""
    x = np.array([-1.2, 1.0])
    opt = gradstep.Optimizer(x, gradstep.lbfgs(line_search_fn="strong_wolfe"))
    for _ in range(10):
        gradstep.closure_step(opt, lambda: RECORDER.rosenbrock2(x))
    # torch stops at the same point: the loss changes by less than tolerance_change
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-4)
    assert RECORDER.rosenbrock2(x)[0] < 1e-8


def test_step_with_closure_is_pure():
    params, loss_and_grad = quadratic_problem()
    transform = gradstep.lbfgs(max_iter=5)
    state = transform.init(params)
    before = tree.tree_map(np.copy, params)
    state_before = tree.tree_map(np.copy, state)
    loss1, new1, s1 = transform.step_with_closure(loss_and_grad, params, state)
    loss2, new2, s2 = transform.step_with_closure(loss_and_grad, params, state)
    for a, b in zip(tree.leaves(params), tree.leaves(before)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(tree.leaves(state), tree.leaves(state_before)):
        np.testing.assert_array_equal(a, b)
    assert loss1 == loss2
    for a, b in zip(tree.leaves(new1) + tree.leaves(s1), tree.leaves(new2) + tree.leaves(s2)):
        np.testing.assert_array_equal(a, b)
    assert tree.structure(new1) == tree.structure(params)


def test_float32_stays_float32_through_closure_steps():
    params, loss_and_grad = quadratic_problem(np.float32)
    opt = gradstep.Optimizer(params, gradstep.lbfgs(line_search_fn="strong_wolfe", max_iter=5))
    for _ in range(2):
        gradstep.closure_step(opt, lambda: loss_and_grad(params))
    for leaf in tree.leaves(params) + tree.leaves(opt.state):
        if np.issubdtype(np.asarray(leaf).dtype, np.floating):
            assert np.asarray(leaf).dtype == np.float32


def test_resume_mid_run_gives_the_same_closure_trajectory(tmp_path):
    def run(resume_at=None):
        params, loss_and_grad = quadratic_problem()
        params["w"] += 3.0
        make = lambda: gradstep.lbfgs(max_iter=3, history_size=4, line_search_fn="strong_wolfe")  # noqa: E731
        opt = gradstep.Optimizer(params, make())
        for k in range(4):
            if k == resume_at:
                opt.save(tmp_path / "ckpt.npz")
                opt = gradstep.Optimizer(params, make())
                opt.load(tmp_path / "ckpt.npz")
            gradstep.closure_step(opt, lambda: loss_and_grad(params))
        return params, opt.state

    p1, s1 = run()
    p2, s2 = run(resume_at=2)
    for a, b in zip(tree.leaves(p1) + tree.leaves(s1), tree.leaves(p2) + tree.leaves(s2)):
        np.testing.assert_array_equal(a, b)


def test_gradient_steps_need_one_iteration_and_no_line_search():
    params, loss_and_grad = quadratic_problem()
    grads = loss_and_grad(params)[1]
    for kwargs in ({}, {"max_iter": 1, "line_search_fn": "strong_wolfe"}):
        opt = gradstep.Optimizer(params, gradstep.lbfgs(**kwargs))
        with pytest.raises(ValueError, match="closure"):
            opt.step(grads)


def test_gradient_steps_equal_one_iteration_closure_steps():
    params_a, loss_and_grad = quadratic_problem()
    params_b = tree.tree_map(np.copy, params_a)
    a = gradstep.Optimizer(params_a, gradstep.lbfgs(0.5, max_iter=1, history_size=3))
    b = gradstep.Optimizer(params_b, gradstep.lbfgs(0.5, max_iter=1, history_size=3))
    for _ in range(6):
        a.step(loss_and_grad(params_a)[1])
        gradstep.closure_step(b, lambda: loss_and_grad(params_b))
    for x, y in zip(
        tree.leaves(params_a) + tree.leaves(a.state), tree.leaves(params_b) + tree.leaves(b.state)
    ):
        np.testing.assert_array_equal(x, y)


def test_closure_step_checks_overrides_and_transforms():
    params, loss_and_grad = quadratic_problem()
    opt = gradstep.Optimizer(params, gradstep.lbfgs())
    with pytest.raises(ValueError, match="unknown hyperparameter 'momentum'"):
        gradstep.closure_step(opt, lambda: loss_and_grad(params), momentum=0.9)
    with pytest.raises(ValueError, match="learning_rate=-1"):
        gradstep.closure_step(opt, lambda: loss_and_grad(params), learning_rate=-1)
    plain = gradstep.Optimizer(params, gradstep.adam())
    with pytest.raises(TypeError, match="does not step with a closure"):
        gradstep.closure_step(plain, lambda: loss_and_grad(params))


def test_a_failing_closure_leaves_the_parameters_as_they_were():
    params, loss_and_grad = quadratic_problem()
    params["w"] += 1.0
    before = tree.tree_map(np.copy, params)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("data loader failed")
        return loss_and_grad(params)

    opt = gradstep.Optimizer(params, gradstep.lbfgs())
    state = tree.tree_map(np.copy, opt.state)
    with pytest.raises(RuntimeError, match="data loader"):
        gradstep.closure_step(opt, closure)
    for a, b in zip(
        tree.leaves(params) + tree.leaves(opt.state), tree.leaves(before) + tree.leaves(state)
    ):
        np.testing.assert_array_equal(a, b)


def test_optimal_start_returns_at_once():
    params, loss_and_grad = quadratic_problem()
    _, g = loss_and_grad(params)
    opt = gradstep.Optimizer(params, gradstep.lbfgs(tolerance_grad=1e9))
    gradstep.closure_step(opt, lambda: loss_and_grad(params))
    assert int(opt.state["func_evals"]) == 1 and int(opt.state["n_iter"]) == 0
    assert all(np.all(p == 0) for p in tree.leaves(params))


def test_max_eval_defaults_to_five_quarters_of_max_iter():
    assert gradstep.lbfgs(max_iter=20).max_eval == 25
    assert gradstep.lbfgs(max_iter=1).max_eval == 1
    assert gradstep.lbfgs(max_iter=7, max_eval=3).max_eval == 3


def test_history_is_allocated_once_with_the_parameters():
    params, _ = quadratic_problem()
    state = gradstep.lbfgs(history_size=7).init(params)
    assert state["s"].shape == state["y"].shape == (7, 15)
    assert state["rho"].shape == (7,)
