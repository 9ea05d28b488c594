"""gradstep.compat.optax reproduces optax 0.2.8: recorded trajectories and final
states replayed under jax.jit through the compat namespace (the same spec builds
both).

float64 cases run with ``jax_enable_x64`` (as recorded), float32 cases without it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")

import gradstep.compat.optax as cx  # noqa: E402

from ._load import CONFORMANCE, recorder  # noqa: E402

FIXTURES = CONFORMANCE / "fixtures" / "optax_compat"
CASES = [
    case
    for path in sorted(FIXTURES.glob("optax_compat*.json"))
    for case in json.loads(path.read_text())
]
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}
REC = recorder()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_trajectory_matches_optax(case):
    grads = {
        "params0": case["params0"],
        "grads": [{k: np.asarray(v, case["dtype"]) for k, v in g.items()} for g in case["grads"]],
    }
    with jax.enable_x64(case["x64"]):
        got = REC.run(cx, case["spec"], case["dtype"], case["options"], 0, grads=grads)
    for k, (step_got, step_want) in enumerate(zip(got["trajectory"], case["trajectory"])):
        for name, want in step_want.items():
            g = step_got[name]
            assert g.dtype == np.dtype(case["dtype"])
            np.testing.assert_allclose(
                g,
                np.array(want, dtype=np.float64),
                **case.get("tolerance", TOLERANCE[case["dtype"]]),
                err_msg=f"{case['id']}: step {k + 1}, {name}",
            )
    # the state after the last step has optax's structure (the same NamedTuple
    # classes, field names and dict keys) and optax's values: code that reads optax's
    # state (state[0].mu, state.hyperparams["learning_rate"], optax.tree_utils.tree_get)
    # reads the same from gradstep's
    treedef, leaves = case["state"]["treedef"], case["state"]["leaves"]
    for name in case["options"].get("fixed_hyperparams", ()):  # see the recorder
        treedef = treedef.replace(f"'{name}': *, ", "")
        leaves = [leaf for leaf in leaves if leaf[0] != f".hyperparams['{name}']"]
    assert got["state"]["treedef"] == treedef, case["id"]
    tol = case.get("tolerance", TOLERANCE[case["dtype"]])
    for (path, dtype, value), (want_path, want_dtype, want_value) in zip(
        got["state"]["leaves"], leaves, strict=True
    ):
        if path in case["options"].get("float32_in_optax", ()):  # see the recorder
            want_dtype = dtype
        assert (path, dtype) == (want_path, want_dtype), case["id"]
        np.testing.assert_allclose(value, want_value, **tol, err_msg=f"{case['id']}: {path}")


#: contrib names without a recorded trajectory, and where they are compared with optax
CONTRIB_NOT_RECORDED = {
    # need an update argument the recorder does not give: the loss (value=), or
    # per-example gradients with a batch axis; side by side in test_optax_contrib.py
    "reduce_on_plateau",
    "differentially_private_aggregate",
    "dpsgd",
    # optax's scale_by_muon needs every leaf a matrix (the recorded problem has a
    # vector): side by side in test_optax_contrib.py
    "scale_by_muon",
    # functions of the state, or random probes drawn by each library itself (obj_fn):
    # test_optax_contrib.py
    "schedule_free_eval_params",
    "hutchinson_estimator_diag_hessian",
    # a NamedTuple of axes (no trajectory): test_optax_contrib.py
    "MuonDimensionNumbers",
}


def test_every_compat_name_has_fixtures():
    covered = set().union(*(c["names"] for c in CASES))
    public = {n for n in cx.__all__ if callable(getattr(cx, n))}
    state_classes = {n for n in public if n.endswith("State") or n == "MaskedNode"}
    not_recorded = state_classes | {
        "apply_updates",
        "GradientTransformation",
        "GradientTransformationExtraArgs",
        # tested against optax in test_optax_state.py: functions of a function
        # (not expressible in a spec) and norms (no trajectory)
        "stateless",
        "stateless_with_tree_map",
        "global_norm",
        "safe_norm",
        # a function of arrays (its gradient): against optax's in test_optax_tail_names.py
        "scale_gradient",
        # run side by side with live optax in test_optax_adafactor.py
        "adafactor",
        "scale_by_factored_rms",
        # line searches call value_fn, which fixed gradients cannot replay: recorded
        # by record_optax_lbfgs_fixtures.py, replayed in test_optax_lbfgs.py
        "lbfgs",
        "scale_by_lbfgs",
        "scale_by_zoom_linesearch",
        "scale_by_backtracking_linesearch",
        "value_and_grad_from_state",
        "ZoomLinesearchInfo",
    }
    assert public - not_recorded - covered == set()
    assert {c["dtype"] for c in CASES} == {"float32", "float64"}
    # optax.contrib's names, recorded as "contrib.NAME"
    contrib = {n for n in cx.contrib.__all__ if callable(getattr(cx.contrib, n))}
    contrib_states = {n for n in contrib if n.endswith("State")}
    recorded = contrib - contrib_states - CONTRIB_NOT_RECORDED
    assert {f"contrib.{n}" for n in recorded} - covered == set()
    assert CONTRIB_NOT_RECORDED <= contrib


def test_optaxs_optional_arguments_act_as_in_optax():
    optax = pytest.importorskip("optax", reason="optax is the reference")
    import jax.numpy as jnp

    params = {"w": jnp.asarray([1.0, -0.5, 0.25])}
    grads = [{"w": jnp.asarray([0.1, -0.2, 0.3]) * (k + 1)} for k in range(3)]

    def run(tx):
        state, out = tx.init(params), None
        for g in grads:
            out, state = tx.update(g, state, params)
        return np.asarray(out["w"])

    for corrected in (True, False):  # amsgrad's bias corrections (both or neither)
        make = {"bias_correction_mu": corrected, "bias_correction_nu": corrected}
        np.testing.assert_allclose(
            run(cx.amsgrad(0.1, **make)), run(optax.amsgrad(0.1, **make)), rtol=1e-6
        )
    with pytest.raises(ValueError, match="both True or both False"):
        cx.amsgrad(0.1, bias_correction_mu=False)
    # no learning rate: optax's identity
    np.testing.assert_array_equal(run(cx.scale_by_learning_rate()), run(optax.identity()))
    # the extra arguments of update reach the inner transformations whole
    for make in (
        lambda m, flag: m.masked(m.sgd(0.1), {"w": True}, mask_compatible_extra_args=flag),
        lambda m, flag: m.multi_transform(
            {"a": m.sgd(0.1)}, {"w": "a"}, mask_compatible_extra_args=flag
        ),
    ):
        np.testing.assert_allclose(run(make(cx, False)), run(make(optax, False)), rtol=1e-6)
        with pytest.raises(ValueError, match="mask_compatible_extra_args=True is not supported"):
            make(cx, True)
