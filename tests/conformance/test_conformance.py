"""Replay recorded torch.optim and optax trajectories through gradstep's rules.

Each fixture names the gradstep rule and the option setting that must reproduce the
reference, on the eager and on the fused engine; the gradients are the recorded ones,
the learning rate of every step is passed when the reference changed it. Tolerances
are per dtype: float64 leaves room only for a different order of the same
floating-point operations, float32 for that order compounded over 30 steps.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine
from gradstep.engines.plan import NotFusable

FIXTURES = Path(__file__).parent / "fixtures"
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}


def load_cases() -> list[dict]:
    """Every case of every fixture file (``fixtures/*.json`` but the manifests).

    A case holds ``params0``, ``grads`` and ``trajectory`` (per step, per tensor),
    ``rule`` and ``rule_kwargs``, ``dtype``, and optionally ``lrs`` (the learning rate
    of every step), ``ctx`` (per step, a dict of hyperparameter overrides) and
    ``tolerance`` (``rtol``/``atol`` replacing the dtype's default, with the reason in
    ``tolerance_reason``).
    """
    cases = []
    for path in sorted(FIXTURES.glob("*.json")):
        if not path.name.startswith("MANIFEST"):
            cases.extend(json.loads(path.read_text()))
    return cases


CASES = load_cases()


def fusable(case: dict) -> bool:
    """The case's transform compiles on the fused engine (MXNet's NAdam schedule shared
    across parameters does not) and the engine takes the case's shapes: the engine's
    own answer, not a copy of its plan."""
    transform = gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"])
    try:
        engine = FusedEngine(transform)
    except NotFusable:
        return False
    # a fused form (AdamP's projection on vectors) may not cover the case's shapes
    return engine.refusal([np.shape(w) for w in case["params0"]]) is None


#: (engine, case): every case on the eager engine, and on the fused engine where its
#: transform compiles there; a case labelled "fused" runs with ``engine="fused"``,
#: which raises rather than falling back to eager
RUNS = [("eager", c) for c in CASES] + [("fused", c) for c in CASES if fusable(c)]


def replay(case: dict, engine: str = "eager") -> list[list[np.ndarray]]:
    dtype = np.dtype(case["dtype"])
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    spec = gradstep.REGISTRY[case["rule"]]
    transform = spec.factory(**case["rule_kwargs"])
    opt = gradstep.Optimizer(params, transform, engine=engine)
    out = []
    for k, grads in enumerate(case["grads"]):
        ctx = {} if case.get("lrs") is None else {"learning_rate": case["lrs"][k]}
        if case.get("ctx"):
            ctx.update(case["ctx"][k])
        opt.step([np.array(g, dtype=dtype) for g in grads], **ctx)
        out.append([p.copy() for p in params])
    return out


@pytest.mark.parametrize(
    ("engine", "case"), RUNS, ids=[f"{c['id']}-{engine}" for engine, c in RUNS]
)
def test_trajectory_matches_reference(case, engine):
    with warnings.catch_warnings():
        # a fused run that falls back to eager at step time fails instead
        warnings.filterwarnings("error", message="gradstep.Optimizer: running the eager")
        got = replay(case, engine)
    for k, (step_got, step_want) in enumerate(zip(got, case["trajectory"])):
        for i, (g, w) in enumerate(zip(step_got, step_want)):
            assert g.dtype == np.dtype(case["dtype"])
            np.testing.assert_allclose(
                g,
                np.array(w),
                **case.get("tolerance", TOLERANCE[case["dtype"]]),
                err_msg=f"{case['id']}: step {k + 1}, tensor {i}",
            )


def test_fused_runs_are_really_fused():
    """A case labelled fused is stepped by the fused engine, not the eager one."""
    for engine, case in RUNS:
        if engine != "fused":
            continue
        dtype = np.dtype(case["dtype"])
        params = [np.array(w, dtype=dtype) for w in case["params0"]]
        transform = gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"])
        opt = gradstep.Optimizer(params, transform, engine="fused")
        assert opt.engine == "fused", case["id"]


def test_every_registered_reference_has_fixtures():
    by_reference = {(c["reference"], c["rule"]) for c in CASES}
    for spec in gradstep.REGISTRY:
        for reference in spec.fixtures:
            assert (reference, spec.name) in by_reference, (spec.name, reference)
    for reference, rule in by_reference:
        assert reference in gradstep.REGISTRY[rule].fixtures, (rule, reference)


def test_cases_cover_the_probes():
    """Two tensors, changing learning rates, zero-gradient coordinates, float32."""
    assert all(len(c["params0"]) >= 2 for c in CASES)
    assert sum(c.get("lrs") is not None for c in CASES) >= 10
    torch_optax = [c for c in CASES if c["id"].startswith(("torch-", "optax-"))]
    assert all(np.all(np.array(c["grads"][0][0])[:, 0] == 0) for c in torch_optax)
    assert {c["dtype"] for c in CASES} == {"float32", "float64"}


def test_manifest_records_versions():
    manifest = json.loads((FIXTURES / "MANIFEST.json").read_text())
    assert manifest["versions"]["torch"].startswith("2.13.0")
    assert manifest["versions"]["optax"] == "0.2.8"
