"""psgd_kron against kron-torch's ``Kron``: recorded trajectories replayed with the
reference's own probe vectors and balancing draws (``probe_source``), through the NumPy
front, the torch front and the JAX front (under ``jax.jit``); the default
update-probability schedule step by step; and bit-exact resume with gradstep's seeded
probes.

Fixtures: ``fixtures/psgd_kron/psgd_kron.json``, written by
``record_psgd_kron_fixtures.py`` (versions in ``fixtures/MANIFEST-psgd-kron.json``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep._core.namespaces import namespace_of
from gradstep.rules.psgd_schedule import update_probability, updates_now

FIXTURES = Path(__file__).parent / "fixtures"
DATA = json.loads((FIXTURES / "psgd_kron" / "psgd_kron.json").read_text())
CASES = DATA["cases"]
#: float32: the reference's order of the einsum contractions against gradstep's
#: products along axes, compounded over 30 fitted steps; float64: kron-torch solves
#: the triangular systems in float32 even for float64 factors (``_solve_triangular_right``)
TOLERANCE = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-5, atol=1e-6)}


def recorded_source(case: dict):
    """A probe source playing back the reference's draws of each step; with a traced
    step count (``jax.jit``) it looks them up in per-tensor tables."""
    steps = len(case["probes"])
    tables = [
        np.stack([np.asarray(case["probes"][k][i], case["dtype"]) for k in range(steps)])
        for i in range(len(case["probes"][0]))
    ]
    balances = np.asarray(case["balance"], np.float32)

    def source(seed, count, likes):
        ns = namespace_of(likes[0])
        if not ns.is_traced(count):
            probes = [ns.astype(ns.constant(t[count], x), x) for t, x in zip(tables, likes)]
            return probes, bool(balances[count])
        index = ns.reshape(count, (1,))
        probes = [
            ns.reshape(ns.take(ns.astype(ns.constant(t, x), x), index, 0), np.shape(x))
            for t, x in zip(tables, likes)
        ]
        return probes, ns.reshape(ns.take(ns.constant(balances, likes[0]), index, 0), ()) > 0.5

    return source


def replay_numpy(case: dict) -> list:
    dtype = np.dtype(case["dtype"])
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    transform = gradstep.psgd_kron(**case["rule_kwargs"], probe_source=recorded_source(case))
    opt = gradstep.Optimizer(params, transform)
    out = []
    for grads in case["grads"]:
        opt.step([np.array(g, dtype=dtype) for g in grads])
        out.append([p.copy() for p in params])
    return out


def replay_torch(case: dict) -> list:
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch as gt

    dtype = getattr(torch, case["dtype"])
    params = [torch.tensor(np.array(w), dtype=dtype) for w in case["params0"]]
    cls = gt.optimizer_class("psgd_kron")
    opt = cls(params, **case["rule_kwargs"], probe_source=recorded_source(case))
    out = []
    for grads in case["grads"]:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(np.array(g), dtype=dtype)
        opt.step()
        out.append([p.detach().numpy().copy() for p in params])
    return out


def replay_jax(case: dict) -> list:
    """Through ``gradstep.jax.to_optax``, the update under ``jax.jit``."""
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    import jax.numpy as jnp

    from gradstep.jax import apply_updates, to_optax

    with jax.enable_x64(case["dtype"] == "float64"):
        params = [jnp.asarray(np.array(w, case["dtype"])) for w in case["params0"]]
        rule = gradstep.psgd_kron(**case["rule_kwargs"], probe_source=recorded_source(case))
        opt = to_optax(rule)
        step = jax.jit(opt.update)
        state = opt.init(params)
        out = []
        for grads in case["grads"]:
            g = [jnp.asarray(np.array(x, case["dtype"])) for x in grads]
            updates, state = step(g, state, params)
            params = apply_updates(params, updates)
            out.append([np.asarray(p) for p in params])
    return out


def check(case: dict, got: list) -> None:
    for k, (step_got, step_want) in enumerate(zip(got, case["trajectory"])):
        for i, (g, w) in enumerate(zip(step_got, step_want)):
            assert g.dtype == np.dtype(case["dtype"])
            np.testing.assert_allclose(
                g,
                np.array(w),
                **TOLERANCE[case["dtype"]],
                err_msg=f"{case['id']}: step {k + 1}, tensor {i}",
            )


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_numpy_front_matches_kron_torch(case):
    check(case, replay_numpy(case))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_torch_front_matches_kron_torch(case):
    check(case, replay_torch(case))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_jax_front_matches_kron_torch(case):
    check(case, replay_jax(case))


def test_cases_cover_the_paths():
    """Both settings balance at least once, in both dtypes, and every step draws one
    probe per tensor (the reference updated its preconditioner every step)."""
    assert {c["dtype"] for c in CASES} == {"float32", "float64"}
    for c in CASES:
        assert any(c["balance"]), c["id"]
        assert all(len(p) == len(c["params0"]) for p in c["probes"])


def test_schedule_matches_kron_torch():
    """The default schedule's update decision at every step 0..5999, and its
    probability to 2 ulp: torch's float32 ``exp`` (a vectorised approximation) and
    NumPy's differ in the last bits, which no decision of these steps depends on."""
    want_p = np.array(DATA["schedule"]["probability"], np.float32)
    got_p = np.array([update_probability(n, None) for n in range(len(want_p))])
    np.testing.assert_array_max_ulp(got_p, want_p, maxulp=2)
    counter, got = 0, []
    for n in range(len(want_p)):
        update = updates_now(counter, n, None)
        counter = 0 if update else counter + 1
        got.append(update)
    assert got == DATA["schedule"]["updates"]
    assert sum(got) < len(got)  # the schedule does skip updates


def test_schedule_in_the_rule_skips_updates():
    """With a probability of 1/3 the factors change every third step only."""
    w = [np.ones((3, 2))]
    opt = gradstep.Optimizer(
        w, gradstep.psgd_kron(0.01, preconditioner_update_probability=1 / 3, seed=1)
    )
    changed = []
    for k in range(6):
        before = opt.state["scale_by_psgd_kron"]["factors"][0].copy()
        opt.step([np.full((3, 2), 1.0 + k)])
        changed.append(not np.array_equal(before, opt.state["scale_by_psgd_kron"]["factors"][0]))
    assert changed == [False, False, True, False, False, True]


def test_resume_is_bit_exact_with_seeded_probes():
    rng = np.random.default_rng(0)
    grads = [[rng.normal(size=(4, 3)), rng.normal(size=5)] for _ in range(8)]

    def run(split):
        w = [np.ones((4, 3)), np.ones(5)]
        opt = gradstep.Optimizer(w, gradstep.psgd_kron(0.05, seed=7))
        for g in grads[:split]:
            opt.step(g)
        state = copy.deepcopy(opt.state_dict())
        w2 = [x.copy() for x in w]
        opt2 = gradstep.Optimizer(w2, gradstep.psgd_kron(0.05, seed=7))
        opt2.load_state_dict(state)
        for g in grads[split:]:
            opt2.step(g)
        return w2

    straight = run(len(grads))
    for split in (0, 3):
        for a, b in zip(run(split), straight):
            np.testing.assert_array_equal(a, b)


def test_invalid_hyperparameters_are_named():
    with pytest.raises(ValueError, match="memory_save_mode"):
        gradstep.psgd_kron(memory_save_mode="some_diag")
    with pytest.raises(ValueError, match="preconditioner_update_probability"):
        gradstep.psgd_kron(preconditioner_update_probability=0.0)
    with pytest.raises(ValueError, match="probe_source"):
        gradstep.psgd_kron(probe_source=3)


def test_factor_layout_follows_the_reference_rules():
    """Which axes get a triangular factor (kron-torch's ``_init_Q_exprs`` rules) and
    how tensors of more than two axes are merged."""
    from gradstep.rules.psgd_kron import triangular_axes, work_shape

    assert triangular_axes((6, 4), 8192, 2, None) == (True, True)
    assert triangular_axes((6, 4), 8192, 2, "one_diag") == (False, True)
    assert triangular_axes((6, 4), 8192, 2, "smart_one_diag") == (False, True)
    assert triangular_axes((4, 4), 8192, 2, "smart_one_diag") == (True, True)
    assert triangular_axes((6, 4), 8192, 2, "all_diag") == (False, False)
    assert triangular_axes((1, 5), 8192, 2, None) == (False, True)
    assert triangular_axes((10, 3), 8, 2, None) == (False, True)
    assert triangular_axes((5,), 8192, 2, None) == (False,)
    assert triangular_axes((5,), 8192, 1, None) == (True,)
    assert work_shape((), True) == (1,)
    assert work_shape((2, 3, 4), True) == (6, 4)
    assert work_shape((4, 3, 2), True) == (12, 2)
    assert work_shape((2, 3, 4), False) == (2, 3, 4)
