"""compat.optax's L-BFGS and line searches against recorded optax 0.2.8 trajectories.

Recorded by tests/conformance/record_optax_lbfgs_fixtures.py, replayed under jax.jit.

float64 cases run with ``jax_enable_x64`` (as recorded), float32 cases without it.
Tolerances: float64 ``rtol=1e-10``. float32 ``rtol=1e-3`` on values and iterates:
the fixtures were recorded with XLA's default compile settings and the test session
compiles with fewer optimisations (tests/conftest.py); XLA's fusions change the
rounding of the two-loop recursion's dot products and axpys (optax's own ``lbfgs``
moves by as much between the two settings), and an ill-conditioned objective or a
line search decision amplifies a float32 rounding difference over the steps.
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
CASES = json.loads((FIXTURES / "optax_lbfgs.json").read_text())
RTOL = {"float64": 1e-10, "float32": 1e-3}
NAMES = [
    "lbfgs",
    "scale_by_lbfgs",
    "scale_by_zoom_linesearch",
    "scale_by_backtracking_linesearch",
    "value_and_grad_from_state",
    "ScaleByLBFGSState",
    "ScaleByZoomLinesearchState",
    "ScaleByBacktrackingLinesearchState",
    "ZoomLinesearchInfo",
]


def _recorder():
    path = CONFORMANCE / "record_optax_lbfgs_fixtures.py"
    spec = importlib.util.spec_from_file_location("record_optax_lbfgs_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REC = _recorder()


def _flat(x) -> np.ndarray:
    if isinstance(x, dict):
        return np.concatenate([_flat(x[k]) for k in sorted(x)])
    return np.ravel(np.asarray(x, np.float64))


#: cases whose line search decides on a difference in the last bits, which the
#: processor changes: on an AVX2 host (AMD Zen 3) optax 0.2.8 itself, with XLA's
#: default settings, ends 1.1e-2 from its own recording of this case, and under the
#: test session's settings gradstep's zoom search takes another step than optax's at
#: step 3 (both replay the recording within 1e-14 on the host it was recorded on and
#: on every other case here)
DECIDED_IN_THE_LAST_BITS = {"quadratic-no_scale_init-float64"}


def _marked(case):
    if case["id"] not in DECIDED_IN_THE_LAST_BITS:
        return case
    reason = "a line-search decision in the last bits: see DECIDED_IN_THE_LAST_BITS"
    return pytest.param(case, marks=pytest.mark.xfail(strict=False, reason=reason))


@pytest.mark.parametrize("case", [_marked(c) for c in CASES], ids=[c["id"] for c in CASES])
def test_trajectory_matches_optax(case):
    rtol = RTOL[case["dtype"]]
    with jax.enable_x64(case["dtype"] == "float64"):
        got = REC.run(cx, case)
    # values and iterates may reach 0: an absolute floor at rtol of their scale
    scale = abs(case["values"][0])
    np.testing.assert_allclose(
        got["values"], case["values"], rtol=rtol, atol=rtol * 1e-3 * scale, err_msg=case["id"]
    )
    for k, (a, b) in enumerate(zip(got["iterates"], case["iterates"])):
        np.testing.assert_allclose(
            _flat(a), _flat(b), rtol=rtol, atol=rtol, err_msg=f"{case['id']} step {k}"
        )
    # the final state: optax's structure, paths and dtypes
    assert [s[:2] for s in got["state"]] == [s[:2] for s in case["state"]], case["id"]
    if case["dtype"] == "float64":
        for (path, _, a), (_, _, b) in zip(got["state"], case["state"]):
            a, b = _flat(a), _flat(b)
            # the memory holds differences of iterates: absolute error of the iterates
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8, err_msg=f"{case['id']} {path}")


def test_manifest_records_versions():
    manifest = json.loads((FIXTURES / "MANIFEST-optax-lbfgs.json").read_text())
    assert manifest["versions"]["optax"] == "0.2.8"
    assert manifest["versions"]["jax"]
    assert manifest["cases"] == len(CASES)


def test_fixtures_cover_the_family():
    specs = {c["spec"] for c in CASES}
    assert {"default", "memory3", "no_scale_init", "backtracking", "no_linesearch"} <= specs
    assert {"zoom3_keep", "zoom8", "scale_by_lbfgs_alone"} <= specs
    assert {c["problem"] for c in CASES} == {"quadratic", "rosenbrock2", "rosenbrock10", "logistic"}
    assert {c["dtype"] for c in CASES} == {"float32", "float64"}
    assert set(NAMES) <= set(cx.__all__)


def test_state_classes_are_optax_own():
    optax = pytest.importorskip("optax", reason="compares with optax (a test dependency)")
    for name in NAMES:
        if name[0].isupper():
            assert getattr(cx, name) is getattr(optax, name)
    opt = cx.lbfgs()
    state = opt.init(jnp.zeros(3))
    assert isinstance(state[0], optax.ScaleByLBFGSState)
    assert isinstance(state[2], optax.ScaleByZoomLinesearchState)
    assert isinstance(state[2].info, optax.ZoomLinesearchInfo)


def test_optax_value_and_grad_from_state_reads_compat_state():
    optax = pytest.importorskip("optax", reason="compares with optax (a test dependency)")

    def f(x):
        return jnp.sum((x - 1.0) ** 2)

    opt = cx.lbfgs()
    params = jnp.zeros(3)
    state = opt.init(params)
    value_and_grad = optax.value_and_grad_from_state(f)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
        return cx.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state)
    np.testing.assert_allclose(params, np.ones(3), rtol=1e-6)


def test_extra_arguments_reach_value_fn():
    def f(x, target):
        return jnp.sum((x - target) ** 2)

    opt = cx.lbfgs()
    target = jnp.array([1.0, -2.0])
    params = jnp.zeros(2)
    state = opt.init(params)
    for _ in range(3):
        value, grad = jax.value_and_grad(f)(params, target)
        updates, state = opt.update(
            grad, state, params, value=value, grad=grad, value_fn=f, target=target
        )
        params = cx.apply_updates(params, updates)
    np.testing.assert_allclose(params, target, rtol=1e-6)
    with pytest.raises(TypeError, match="not consumed by `value_fn`"):
        opt.update(grad, state, params, value=value, grad=grad, value_fn=f, target=1, other=2)


def test_value_and_grad_from_state_needs_a_stored_gradient():
    def f(x):
        return jnp.sum(x**2)

    params = jnp.ones(2)
    for opt in (
        cx.lbfgs(linesearch=None),
        cx.lbfgs(linesearch=cx.scale_by_backtracking_linesearch(5)),
    ):
        with pytest.raises(ValueError, match="'value'|'grad'"):
            cx.value_and_grad_from_state(f)(params, state=opt.init(params))
    # a stored infinite value (the first step): computed from value_fn
    opt = cx.lbfgs()
    value, grad = cx.value_and_grad_from_state(f)(params, state=opt.init(params))
    assert float(value) == 2.0
    np.testing.assert_array_equal(grad, [2.0, 2.0])


def test_verbose_reports_a_failed_search(capfd):
    def f(x):
        return jnp.sum(x**4)

    params = jnp.array([3.0, -2.0])
    value, grad = jax.value_and_grad(f)(params)
    for ls in (
        cx.scale_by_zoom_linesearch(1, verbose=True),
        cx.scale_by_backtracking_linesearch(0, max_learning_rate=10.0, verbose=True),
    ):
        updates, state = jax.jit(
            lambda p, s, ls=ls: ls.update(-grad, s, p, value=value, grad=grad, value_fn=f)
        )(params, ls.init(params))
        jax.effects_barrier()
        assert "no step size met" in capfd.readouterr().out
        assert np.all(np.isfinite(updates))


def test_complex_parameters_are_refused():
    with pytest.raises(ValueError, match="complex"):
        cx.scale_by_lbfgs().init(jnp.zeros(2, jnp.complex64))
    with pytest.raises(ValueError, match="complex"):
        cx.scale_by_zoom_linesearch(5).init(jnp.zeros(2, jnp.complex64))


ZOOM = (cx.scale_by_zoom_linesearch, {"max_linesearch_steps": 5})
BACK = (cx.scale_by_backtracking_linesearch, {"max_backtracking_steps": 5})
BAD = [
    # (factory, arguments it needs, argument, bad value)
    (cx.lbfgs, {}, "memory_size", 0),
    (cx.lbfgs, {}, "memory_size", 2.5),
    (cx.lbfgs, {}, "scale_init_precond", 1),
    (cx.lbfgs, {}, "learning_rate", -1.0),
    (cx.scale_by_lbfgs, {}, "memory_size", -3),
    (cx.scale_by_zoom_linesearch, {}, "max_linesearch_steps", 0),
    (*ZOOM, "tol", -1.0),
    (*ZOOM, "slope_rtol", 1.0),
    (*ZOOM, "curv_rtol", 0.0),
    (*ZOOM, "increase_factor", 0.5),
    (*ZOOM, "max_learning_rate", 0.0),
    (*ZOOM, "approx_dec_rtol", -1.0),
    (*ZOOM, "stepsize_precision", -1e-5),
    (*ZOOM, "initial_guess_strategy", "two"),
    (*ZOOM, "verbose", "yes"),
    (cx.scale_by_backtracking_linesearch, {}, "max_backtracking_steps", -1),
    (*BACK, "decrease_factor", 1.0),
    (*BACK, "decrease_factor", 0.0),
    (*BACK, "increase_factor", 0.9),
    (*BACK, "max_learning_rate", -1.0),
    (*BACK, "atol", -1.0),
    (*BACK, "rtol", -1.0),
    (*BACK, "slope_rtol", -0.1),
    (*BACK, "store_grad", None),
]


@pytest.mark.parametrize(
    "factory, needed, name, value",
    BAD,
    ids=[f"{f.__name__}-{n}={v!r}" for f, _, n, v in BAD],
)
def test_bad_hyperparameters_raise(factory, needed, name, value):
    with pytest.raises(ValueError) as err:
        factory(**needed, **{name: value})
    message = str(err.value)
    assert factory.__name__ in message
    assert f"{name}={value!r}" in message
    assert "valid values" in message
