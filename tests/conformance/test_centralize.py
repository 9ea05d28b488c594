"""Gradient centralisation against ``optax.centralize``: alone and before Adam, on the
NumPy front, on torch tensors and under ``jax.jit`` (fallback="error": it traces)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep.transforms import centralize

CASES = json.loads(
    (Path(__file__).parent / "fixtures" / "transforms" / "centralize.json").read_text()
)
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}


def transform(case: dict):
    lr = case["adam_learning_rate"]
    return centralize() if lr is None else gradstep.chain(centralize(), gradstep.adam(lr))


#: XLA sums a row's mean in another order than NumPy and optax's eager run; Adam's
#: normalisation magnifies that float32 rounding where a centred element is near 0
JIT_FLOAT32 = dict(rtol=2e-5, atol=1e-5)


def check(case: dict, trajectory: list, tolerance: dict | None = None) -> None:
    tolerance = tolerance or TOLERANCE[case["dtype"]]
    for k, (got, want) in enumerate(zip(trajectory, case["trajectory"])):
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_allclose(
                np.asarray(g), np.array(w), **tolerance, err_msg=f"step {k + 1}, {i}"
            )


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_numpy_front_matches_optax(case):
    dtype = np.dtype(case["dtype"])
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    opt = gradstep.Optimizer(params, transform(case))
    out = []
    for grads in case["grads"]:
        opt.step([np.array(g, dtype=dtype) for g in grads])
        out.append([p.copy() for p in params])
        assert all(p.dtype == dtype for p in params)
    check(case, out)


@pytest.mark.parametrize("case", CASES[:2], ids=[c["id"] for c in CASES[:2]])
def test_torch_tensors_match_optax(case):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch  # noqa: F401  (registers the torch array namespace)

    dtype = getattr(torch, case["dtype"])
    t = transform(case)
    params = [torch.tensor(w, dtype=dtype) for w in case["params0"]]
    state = t.init(params)
    out = []
    for grads in case["grads"]:
        updates, state = t.update([torch.tensor(g, dtype=dtype) for g in grads], state, params)
        params = [p + u for p, u in zip(params, updates)]
        out.append([p.numpy() for p in params])
    check(case, out)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_jax_jit_matches_optax(case):
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    import jax.numpy as jnp

    from gradstep.jax import apply_updates, to_optax

    with jax.enable_x64(case["dtype"] == "float64"):
        opt = to_optax(transform(case))
        params = [jnp.asarray(w, dtype=case["dtype"]) for w in case["params0"]]
        state = opt.init(params)
        step = jax.jit(opt.update)
        out = []
        for grads in case["grads"]:
            g = [jnp.asarray(x, dtype=case["dtype"]) for x in grads]
            updates, state = step(g, state, params)
            params = apply_updates(params, updates)
            out.append([np.asarray(p) for p in params])
    check(case, out, JIT_FLOAT32 if case["dtype"] == "float32" else None)


def test_rank_below_two_is_refused():
    with pytest.raises(ValueError, match="min_rank=1"):
        centralize(1)


def test_min_rank_leaves_lower_ranks_alone():
    g = np.arange(12.0).reshape(3, 4)
    u, _ = centralize(3).update([g], {})
    np.testing.assert_array_equal(u[0], g)
    u, _ = centralize(2).update([g], {})
    np.testing.assert_allclose(u[0].mean(axis=1), 0.0, atol=1e-15)
