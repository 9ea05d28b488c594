"""optax 0.2.8 with a slot stored in bfloat16 (``mu_dtype``, ``accumulator_dtype``):
recorded trajectories replayed through ``gradstep.compat.optax`` under ``jax.jit`` and
through the NumPy front (``gradstep.adam(..., mu_dtype="bfloat16")``: eager engine,
``adamw``: fused engine),
parameters and the stored slot after every step, within each case's stated
tolerance (see ``tests/conformance/record_precision_fixtures.py``)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")

import gradstep  # noqa: E402
import gradstep.compat.optax as cx  # noqa: E402
from gradstep._core.namespaces import numpy_dtype  # noqa: E402

from ._load import CONFORMANCE  # noqa: E402

FIXTURES = CONFORMANCE / "fixtures" / "precision"
CASES = json.loads((FIXTURES / "precision.json").read_text())


def _recorder():
    path = CONFORMANCE / "record_precision_fixtures.py"
    spec = importlib.util.spec_from_file_location("record_precision_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REC = _recorder()


def _given(case) -> dict:
    return {
        "params0": case["params0"],
        "grads": [{k: np.asarray(v, np.float32) for k, v in g.items()} for g in case["grads"]],
    }


def _tolerances(case) -> tuple[float, float]:
    """Absolute tolerances of the parameters and the slot, from the case's statement."""
    travel = max(
        np.max(np.abs(np.asarray(step[n]) - np.asarray(case["params0"][n])))
        for step in case["params"]
        for n in step
    )
    scale = max(np.max(np.abs(np.asarray(step[n]))) for step in case["slots"] for n in step)
    return case["params_travel_fraction"] * travel, case["slot_units"] * 2.0**-8 * scale


def _compare(case, k, params, slot):
    params_atol, slot_atol = _tolerances(case)
    for name, want in case["params"][k].items():
        np.testing.assert_allclose(
            params[name], want, rtol=0, atol=params_atol, err_msg=f"{case['id']} step {k + 1}"
        )
    for name, want in case["slots"][k].items():
        np.testing.assert_allclose(
            np.asarray(slot[name], np.float32),
            want,
            rtol=0,
            atol=slot_atol,
            err_msg=f"{case['id']} slot, step {k + 1}",
        )


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_compat_optax_matches_optax(case):
    # compat.optax's state is optax's: the slot has optax's field name
    got = REC.run(cx, case["spec"], case["slot"], 0, grads=_given(case))
    assert got["slot_dtype"] == case["slot_dtype"] == "bfloat16"
    for k in range(len(case["params"])):
        _compare(case, k, got["params"][k], got["slot"][k])


@pytest.mark.parametrize(
    "case", [c for c in CASES if c["rule"]], ids=[c["id"] for c in CASES if c["rule"]]
)
def test_numpy_front_matches_optax(case):
    name, kwargs = case["rule"]
    params = {k: np.asarray(v, np.float32) for k, v in case["params0"].items()}
    # one case per engine (each numba kernel variant costs a compile)
    engine = "fused" if name == "adamw" else "eager"
    opt = gradstep.Optimizer(params, getattr(gradstep, name)(**kwargs), engine=engine)
    for k, g in enumerate(_given(case)["grads"]):
        opt.step(g)
        mu = opt.state["scale_by_adam"]["mu"]
        assert mu["w"].dtype == numpy_dtype("bfloat16")
        _compare(case, k, params, mu)


def test_manifest_records_versions():
    manifest = json.loads((FIXTURES / "MANIFEST-precision.json").read_text())
    assert manifest["versions"]["optax"] == "0.2.8"
    assert {c["slot_dtype"] for c in CASES} == {"bfloat16"}


def test_stored_slot_lives_in_optax_state_structure():
    import jax.numpy as jnp
    import optax

    opt = cx.adam(0.05, mu_dtype=jnp.bfloat16)
    params = {"w": jnp.ones(3, jnp.float32)}
    state = opt.init(params)
    assert isinstance(state[0], optax.ScaleByAdamState)
    assert state[0].mu["w"].dtype == jnp.bfloat16 and state[0].nu["w"].dtype == jnp.float32
    _, state = opt.update({"w": jnp.full(3, 0.5, jnp.float32)}, state, params)
    assert optax.tree_utils.tree_get(state, "mu")["w"].dtype == jnp.bfloat16
    trace = cx.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16).init(params)
    assert isinstance(trace[0], optax.TraceState) and trace[0].trace["w"].dtype == jnp.bfloat16
