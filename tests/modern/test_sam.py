"""SAM with its closure: pytorch_optimizer's SAM replayed step by step on the NumPy
front (``gradstep.closure_step``), the torch front (``opt.step(closure)``) and the
functional ``step_with_closure``; the closure form agrees with the alternating one.

The fixtures (``tests/conformance/fixtures/closure/sam.json``) come from
``tests/conformance/record_preconditioned_fixtures.py``; the loss and its gradient
are ``record_modern_fixtures.loss_and_grad``, so both sides evaluate the same NumPy
code. The reference computes the gradient norm in float32 (see each case's
``tolerance_reason``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import gradstep

HERE = Path(__file__).resolve().parent
CONFORMANCE = HERE.parent / "conformance"


def _recorder():
    spec = importlib.util.spec_from_file_location(
        "record_modern_fixtures", CONFORMANCE / "record_modern_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECORDER = _recorder()
RUNS = json.loads((CONFORMANCE / "fixtures" / "closure" / "sam.json").read_text())


def make(case):
    base = case["base"]
    kwargs = dict(case["rule_kwargs"])
    if base is not None:
        kwargs["base"] = gradstep.REGISTRY[base["rule"]].factory(**base["kwargs"])
    return gradstep.sam(**kwargs)


def check(case, losses, trajectory):
    for k, (step, loss, params) in enumerate(zip(case["steps"], losses, trajectory)):
        assert loss == pytest.approx(step["loss"], rel=case["tolerance"]["rtol"]), (case["id"], k)
        for got, want in zip(params, step["params"]):
            np.testing.assert_allclose(got, np.array(want), **case["tolerance"])


@pytest.mark.parametrize("case", RUNS, ids=[c["id"] for c in RUNS])
def test_numpy_closure_step_matches_reference(case):
    prob = case["problem"]
    params = [np.array(w) for w in prob["params0"]]
    opt = gradstep.Optimizer(params, make(case))
    losses, trajectory = [], []
    for _ in case["steps"]:
        losses.append(gradstep.closure_step(opt, lambda: RECORDER.loss_and_grad(prob, params)))
        trajectory.append([p.copy() for p in params])
    check(case, losses, trajectory)


@pytest.mark.parametrize("case", RUNS, ids=[c["id"] for c in RUNS])
def test_torch_step_with_closure_matches_reference(case):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    from gradstep.torch import TransformOptimizer

    prob = case["problem"]
    params = [torch.nn.Parameter(torch.tensor(np.array(w))) for w in prob["params0"]]
    opt = TransformOptimizer(params, make(case))
    calls = []

    def closure():
        calls.append(1)
        loss, grads = RECORDER.loss_and_grad(prob, [p.detach().numpy() for p in params])
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        return loss

    losses, trajectory = [], []
    for _ in case["steps"]:
        losses.append(opt.step(closure))
        trajectory.append([p.detach().numpy().copy() for p in params])
    assert len(calls) == 2 * len(case["steps"])
    check(case, losses, trajectory)


def test_alternating_updates_take_the_closure_steps():
    """Ascent, then descent with the gradient at the perturbed point: the same
    iterates as the closure step, the perturbed point shown in between."""
    case = RUNS[1]  # ASAM around AdamW
    prob = case["problem"]
    closure_params = [np.array(w) for w in prob["params0"]]
    by_closure = gradstep.Optimizer(closure_params, make(case))
    params = [np.array(w) for w in prob["params0"]]
    alternating = gradstep.Optimizer(params, make(case))
    for _ in range(4):
        gradstep.closure_step(by_closure, lambda: RECORDER.loss_and_grad(prob, closure_params))
        start = [p.copy() for p in params]
        alternating.step(RECORDER.loss_and_grad(prob, params)[1])
        assert any(not np.array_equal(a, b) for a, b in zip(params, start))  # perturbed
        alternating.step(RECORDER.loss_and_grad(prob, params)[1])
        for a, b in zip(params, closure_params):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_functional_step_leaves_its_inputs_alone():
    case = RUNS[0]
    prob = case["problem"]
    params = [np.array(w) for w in prob["params0"]]
    before = [p.copy() for p in params]
    transform = make(case)
    state = transform.init(params)
    loss, new, state = transform.step_with_closure(
        lambda w: RECORDER.loss_and_grad(prob, w), params, state
    )
    assert int(state["phase"]) == 0
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    assert loss == pytest.approx(case["steps"][0]["loss"], rel=1e-12)
    for got, want in zip(new, case["steps"][0]["params"]):
        np.testing.assert_allclose(got, np.array(want), **case["tolerance"])


def test_a_closure_step_after_a_lone_ascent_is_refused():
    transform = gradstep.sam(0.1)
    params = [np.ones(2)]
    state = transform.init(params)
    _, state = transform.update([np.ones(2)], state, params)
    with pytest.raises(ValueError, match="pending descent"):
        transform.step_with_closure(lambda w: (0.0, [np.ones(2)]), params, state)


def test_base_and_learning_rate_together_are_refused():
    with pytest.raises(ValueError, match="learning_rate"):
        gradstep.sam(0.5, base=gradstep.adam(0.1))
