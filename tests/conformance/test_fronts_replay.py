"""The recorded reference trajectories replayed through the torch and JAX fronts.

``test_conformance.py`` replays every case of ``fixtures/*.json`` on the NumPy front
(eager and fused engines). Here the same cases run as a user of the other fronts runs
them: :class:`gradstep.torch.TransformOptimizer` on CPU tensors with the eager engine
(the rules' element functions on torch operations, as on devices the fused engines do
not cover; the default engine on CPU tensors is the numba kernel the NumPy front's
fused replay already checks), and :func:`gradstep.jax.to_optax` under ``jax.jit``
(float64 cases with ``jax_enable_x64``). The learning rate of every step is written
into the param groups (torch) or passed to ``update`` (JAX), as a scheduler would.

Cases left to other tests, each with the reason in :func:`left_out`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import gradstep

FIXTURES = Path(__file__).parent / "fixtures"
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}
#: float32 under XLA: each expression is evaluated in XLA's own order (fused
#: multiply-adds, reassociated sums), so single elements near zero can sit a few
#: float32 roundings further from the reference than the NumPy engines'; float32 is
#: judged per tensor, relative to its largest value (tests/jax_front/cross_backend.py's
#: measure and tolerance)
JAX_FLOAT32 = 2e-5

CASES = [
    case
    for path in sorted(FIXTURES.glob("*.json"))
    if not path.name.startswith("MANIFEST")
    for case in json.loads(path.read_text())
]


def left_out(case: dict, front: str) -> str | None:
    """Why ``case`` is not replayed on ``front`` here (None: it is)."""
    spec = gradstep.REGISTRY[case["rule"]]
    if "needs_closure" in spec.capabilities:
        return "steps with a closure: tests/modern/test_lbfgs.py, tests/modern/test_sam.py"
    if case.get("ctx"):
        return (
            "takes per-step inputs (a Hessian estimate, the loss): "
            "tests/memory_and_curvature/test_adam_mini_sophia.py, "
            "tests/jax_front/test_optax_tail.py"
        )
    if "stochastic" in spec.capabilities:
        return "draws its noise with each library's own generator"
    fixed_tree = any(
        "mask" in name and isinstance(value, (list, tuple, dict))
        for name, value in case["rule_kwargs"].items()
    )
    if front == "torch" and fixed_tree:
        return (
            "a mask given as a fixed list: the torch front makes state one parameter "
            "at a time and refuses it (masks as functions of the parameters, or groups)"
        )
    return None


def _runs(front: str) -> list:
    return [pytest.param(case, id=case["id"]) for case in CASES if left_out(case, front) is None]


def _check(case: dict, got: list, elementwise: bool = True) -> None:
    dtype = np.dtype(case["dtype"])
    tolerance = case.get("tolerance", TOLERANCE[case["dtype"]])
    for k, (step_got, step_want) in enumerate(zip(got, case["trajectory"], strict=True)):
        for i, (g, w) in enumerate(zip(step_got, step_want, strict=True)):
            assert g.dtype == dtype, (case["id"], k, i, g.dtype)
            w = np.asarray(w, np.float64)
            where = f"{case['id']}: step {k + 1}, tensor {i}"
            if elementwise:
                np.testing.assert_allclose(g, w, **tolerance, err_msg=where)
            else:
                # non-finite values (a NaN policy's cases) where the reference has them
                finite = np.isfinite(w)
                np.testing.assert_array_equal(g[~finite], w[~finite], err_msg=where)
                g, w = g[finite].astype(np.float64), w[finite]
                if w.size:
                    error = np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-30)
                    assert error <= max(JAX_FLOAT32, tolerance["rtol"]), f"{where}: {error:.2e}"


@pytest.mark.parametrize("case", _runs("torch"))
def test_torch_front_eager_engine_follows_the_reference(case):
    torch = pytest.importorskip("torch", reason="the torch front")
    import gradstep.torch as gt

    dtype = getattr(torch, case["dtype"])
    params = [torch.nn.Parameter(torch.tensor(np.asarray(w), dtype=dtype)) for w in case["params0"]]
    transform = gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"])
    opt = gt.TransformOptimizer(params, transform, engine="eager")
    got = []
    for k, grads in enumerate(case["grads"]):
        if case.get("lrs") is not None:
            for group in opt.param_groups:
                group["lr"] = case["lrs"][k]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(np.asarray(g), dtype=dtype)
        opt.step()
        got.append([p.detach().numpy().copy() for p in params])
    _check(case, got)


@pytest.mark.parametrize("case", _runs("jax"))
def test_jax_front_follows_the_reference(case):
    jax = pytest.importorskip("jax", reason="the JAX front")
    import jax.numpy as jnp

    from gradstep.jax import apply_updates, to_optax

    dtype = case["dtype"]
    with jax.enable_x64(dtype == "float64"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX's notes on dtypes it was asked to keep
        opt = to_optax(gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"]))
        params = [jnp.asarray(np.asarray(w, dtype)) for w in case["params0"]]
        state = opt.init(params)
        update = jax.jit(opt.update)
        got = []
        for k, grads in enumerate(case["grads"]):
            extra = {} if case.get("lrs") is None else {"learning_rate": case["lrs"][k]}
            grads = [jnp.asarray(np.asarray(g, dtype)) for g in grads]
            updates, state = update(grads, state, params, **extra)
            params = apply_updates(params, updates)
            got.append([np.asarray(p) for p in params])
    _check(case, got, elementwise=dtype == "float64")


def test_every_case_runs_on_some_front_or_says_why():
    """Few cases are left out, each for a reason named above (not silently)."""
    for front in ("torch", "jax"):
        out = [c["id"] for c in CASES if left_out(c, front)]
        assert len(out) < len(CASES) // 10, (front, out)
