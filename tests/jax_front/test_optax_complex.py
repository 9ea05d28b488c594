"""gradstep.compat.optax steps complex parameters as optax 0.2.8 does (complex first
moments, second moments from |g|^2, optax's complex state dtypes): recorded
trajectories and final states replayed under jax.jit; what has no written complex
meaning is refused.

complex128 cases run with ``jax_enable_x64`` (as recorded), complex64 cases without it.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

from ._load import CONFORMANCE  # noqa: E402

FIXTURES = CONFORMANCE / "fixtures" / "optax_compat"
CASES = json.loads((FIXTURES / "optax_complex.json").read_text())
TOLERANCE = {"complex128": dict(rtol=1e-11, atol=1e-13), "complex64": dict(rtol=2e-5, atol=2e-6)}


def _recorder():
    path = CONFORMANCE / "record_optax_complex_fixtures.py"
    spec = importlib.util.spec_from_file_location("record_optax_complex_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REC = _recorder()


def _tree(data: dict) -> dict:
    return {k: REC.decoded(v) for k, v in data.items()}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_trajectory_matches_optax(case):
    grads = {"params0": _tree(case["params0"]), "grads": [_tree(g) for g in case["grads"]]}
    with jax.enable_x64(case["x64"]):
        got = REC.run(cx, case["spec"], case["dtype"], case["options"], 0, grads=grads)
    tol = case.get("tolerance", TOLERANCE[case["dtype"]])
    for k, (step_got, step_want) in enumerate(zip(got["trajectory"], case["trajectory"])):
        for name, want in step_want.items():
            want = REC.decoded(want)
            assert step_got[name].dtype == want.dtype, (case["id"], name)
            np.testing.assert_allclose(
                step_got[name], want, **tol, err_msg=f"{case['id']}: step {k + 1}, {name}"
            )
    # optax's state: the same classes and fields, optax's dtypes (complex moments for
    # complex parameters, the second ones with a zero imaginary part) and values
    assert got["state"]["treedef"] == case["state"]["treedef"], case["id"]
    for (path, dtype, value), (want_path, want_dtype, want_value) in zip(
        got["state"]["leaves"], case["state"]["leaves"], strict=True
    ):
        assert (path, dtype) == (want_path, want_dtype), case["id"]
        np.testing.assert_allclose(
            REC.decoded(value), REC.decoded(want_value), **tol, err_msg=f"{case['id']}: {path}"
        )


def test_cases_cover_the_complex_optimizers():
    covered = set().union(*(c["names"] for c in CASES))
    expected = {"adam", "adamw", "amsgrad", "adagrad", "rmsprop", "lamb", "nadam", "radam"}
    expected |= {"sgd", "adamax", "scale_by_adam", "scale_by_rss", "scale_by_rms"}
    expected |= {"scale_by_stddev", "scale_by_amsgrad", "scale_by_radam", "scale_by_adamax"}
    expected |= {"scale_by_trust_ratio", "trace", "clip_by_global_norm", "ema", "lars"}
    expected |= {"nadamw", "adamaxw"}
    assert expected <= covered
    assert {c["dtype"] for c in CASES} == {"complex64", "complex128"}


def test_manifest_records_versions():
    manifest = json.loads((FIXTURES / "MANIFEST-optax-complex.json").read_text())
    assert manifest["versions"]["optax"] == "0.2.8"
    assert manifest["generator"] == "tests/conformance/record_optax_complex_fixtures.py"


PARAMS = {"z": jnp.asarray([1 + 2j, -0.5 + 0.1j], jnp.complex64)}
GRADS = {"z": jnp.asarray([0.3 - 1j, 2 + 0.5j], jnp.complex64)}


@pytest.mark.parametrize(
    "make, stage",
    [
        (lambda: cx.lion(0.1), "scale_by_lion"),
        (lambda: cx.adadelta(0.1), "scale_by_adadelta"),
        (lambda: cx.sign_sgd(0.1), "scale_by_sign"),
        (lambda: cx.adam(0.1, mu_dtype=jnp.bfloat16), "scale_by_adam"),
        (lambda: cx.chain(cx.clip(1.0), cx.adam(0.1)), "clip"),
    ],
)
def test_complex_parameters_without_a_written_meaning_are_refused(make, stage):
    """Stages whose math is not written for complex values (or that would store a
    complex moment in a real dtype) refuse complex parameters, naming the stage."""
    tx = make()
    with pytest.raises(ValueError, match=f"complex64 for .*{stage}"):
        tx.init(PARAMS)
    real_state = tx.init({"z": jnp.asarray([1.0, 2.0], jnp.float32)})
    with pytest.raises(ValueError, match=f"complex64 for .*{stage}"):
        tx.update(GRADS, real_state, PARAMS)


def test_to_optax_keeps_the_real_view_meaning():
    """gradstep.jax.to_optax steps complex parameters as their real and imaginary
    parts (torch.optim's meaning): Adam's second moment of each part, not |g|^2."""
    import gradstep
    from gradstep.jax import to_optax

    ours = to_optax(gradstep.adam(0.1))
    view_step, _ = ours.update(GRADS, ours.init(PARAMS), PARAMS)
    optax_step, _ = cx.adam(0.1).update(GRADS, cx.adam(0.1).init(PARAMS), PARAMS)
    g = np.asarray(GRADS["z"])
    # first Adam step: -lr * sign of each part (real view) vs -lr * g / |g| (optax)
    want_view = -0.1 * (np.sign(g.real) + 1j * np.sign(g.imag))
    np.testing.assert_allclose(np.asarray(view_step["z"]), want_view, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(optax_step["z"]), -0.1 * g / np.abs(g), rtol=1e-5)
