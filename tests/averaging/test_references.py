"""Replay the averaging references recorded by
``tests/conformance/record_schedulefree_fixtures.py``:

- schedulefree ``SGDScheduleFree`` / ``AdamWScheduleFree`` read in evaluation mode
  (``x``), from ``tests/conformance/fixtures/schedulefree.json`` (its training-mode
  trajectories are replayed by the generic conformance test), and with learning
  rates changed before steps, given to gradstep as a schedule;
- ``optax.MultiSteps`` (:func:`gradstep.transforms.accumulate`), ``optax.lookahead``
  and ``torch.optim.swa_utils.AveragedModel`` with an EMA
  (:func:`gradstep.transforms.parameter_ema` with ``start="first"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep import modes, transforms

HERE = Path(__file__).parent / "fixtures"
SCHEDULE_FREE = json.loads(
    (Path(__file__).parents[1] / "conformance" / "fixtures" / "schedulefree.json").read_text()
)
LR_CHANGES = json.loads((HERE / "schedulefree_lr_changes.json").read_text())
WRAPPERS = json.loads((HERE / "wrappers.json").read_text())
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}


def _check(case: dict, got: list, key: str) -> None:
    for k, (step_got, step_want) in enumerate(zip(got, case[key], strict=True)):
        for i, (g, w) in enumerate(zip(step_got, step_want, strict=True)):
            assert g.dtype == np.dtype(case["dtype"])
            np.testing.assert_allclose(
                g, np.array(w), **TOLERANCE[case["dtype"]], err_msg=f"{case['id']} {key}: {k}, {i}"
            )


def _schedule_free(case: dict, engine: str, schedule: bool = False):
    dtype = np.dtype(case["dtype"])
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    kwargs = dict(case["rule_kwargs"])
    if schedule:
        lrs = case["lrs"]
        kwargs["learning_rate"] = lambda k: lrs[k]
    transform = gradstep.REGISTRY[case["rule"]].factory(**kwargs)
    opt = gradstep.Optimizer(params, transform, engine=engine)
    train, evaluation = [], []
    for grads in case["grads"]:
        opt.step([np.array(g, dtype=dtype) for g in grads])
        train.append([p.copy() for p in params])
        if case["toggled"]:  # as the reference: .eval(), read, .train()
            modes.set_mode(opt, "eval")
            evaluation.append([p.copy() for p in params])
            modes.set_mode(opt, "train")
        else:
            x = modes.schedule_free_eval_params(opt.transform, opt.state, params)
            evaluation.append([np.array(p) for p in x])
    return train, evaluation


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize("case", SCHEDULE_FREE, ids=[c["id"] for c in SCHEDULE_FREE])
def test_schedulefree_read_in_both_modes(case, engine):
    train, evaluation = _schedule_free(case, engine)
    _check(case, train, "trajectory")
    _check(case, evaluation, "eval_trajectory")


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize("case", LR_CHANGES, ids=[c["id"] for c in LR_CHANGES])
def test_schedulefree_learning_rate_changes_as_a_schedule(case, engine):
    train, evaluation = _schedule_free(case, engine, schedule=True)
    _check(case, train, "trajectory")
    _check(case, evaluation, "eval_trajectory")


def test_schedulefree_fixtures_cover_the_options():
    kwargs = [c["rule_kwargs"] for c in SCHEDULE_FREE]
    for option in ("warmup_steps", "weight_decay", "r", "weight_lr_power"):
        assert any(option in k for k in kwargs), option
    assert {c["reference"] for c in SCHEDULE_FREE} == {
        "schedulefree.SGDScheduleFree",
        "schedulefree.AdamWScheduleFree",
    }
    assert {c["toggled"] for c in SCHEDULE_FREE} == {True, False}
    assert {c["dtype"] for c in SCHEDULE_FREE} == {"float32", "float64"}
    manifest = json.loads(
        (Path(__file__).parents[1] / "conformance/fixtures/MANIFEST-schedulefree.json").read_text()
    )
    assert manifest["versions"]["schedulefree"] == "1.4.1"


def _wrapped(case: dict):
    inner = gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"])
    return getattr(transforms, case["wrapper"])(inner, **case["wrapper_kwargs"])


def _engines(case: dict) -> list[str]:
    # accumulation runs the inner optimizer on some calls only: eager engine
    return ["eager"] if case["wrapper"] == "accumulate" else ["eager", "fused"]


@pytest.mark.parametrize(
    "case, engine",
    [pytest.param(c, e, id=f"{c['id']}-{e}") for c in WRAPPERS for e in _engines(c)],
)
def test_wrapper_matches_reference(case, engine):
    dtype = np.dtype(case["dtype"])
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    opt = gradstep.Optimizer(params, _wrapped(case), engine=engine)
    assert opt.engine == engine
    got, averages = [], []
    for grads in case["grads"]:
        opt.step([np.array(g, dtype=dtype) for g in grads])
        got.append([p.copy() for p in params])
        if "eval_trajectory" in case:
            with modes.evaluating(opt):
                averages.append([p.copy() for p in params])
    _check(case, got, "trajectory")
    if "eval_trajectory" in case:
        _check(case, averages, "eval_trajectory")


def test_wrapper_fixtures_cover_the_options():
    refs = {c["reference"] for c in WRAPPERS}
    assert refs == {"optax.MultiSteps", "optax.lookahead", "torch.optim.swa_utils.AveragedModel"}
    acc = [c for c in WRAPPERS if c["wrapper"] == "accumulate"]
    assert {c["wrapper_kwargs"]["reduce"] for c in acc} == {"mean", "sum"}
    # the skipping cases really contain non-finite gradients
    skipping = [c for c in acc if c["wrapper_kwargs"]["skip_nonfinite"]]
    assert skipping
    for c in skipping:
        assert any(not np.all(np.isfinite(np.array(g[1], dtype=float))) for g in c["grads"])
