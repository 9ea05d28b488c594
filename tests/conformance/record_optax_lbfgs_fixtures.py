"""Record optax's L-BFGS and line-search trajectories for ``gradstep.compat.optax``.

Run from the repository root (needs jax and optax installed; the test needs jax but
not optax)::

    python tests/conformance/record_optax_lbfgs_fixtures.py

The optax-compat recorder replays fixed gradients, which a line search cannot use (it
calls the objective), so this one runs optax's ``lbfgs`` family as its users do, on
deterministic objectives: each step takes the value and gradient from
``value_and_grad_from_state`` (or ``jax.value_and_grad`` without a line search that
keeps them) and calls ``update(grad, state, params, value=, grad=, value_fn=)``
under ``jax.jit``. Recorded per case: the value at every iterate, the iterates, and
the final state (every leaf with its path and dtype). The objectives: an
ill-conditioned quadratic (condition number 1e4, rotated), Rosenbrock in 2 and 10
dimensions, and an L2-regularised logistic regression (weights and bias as two
leaves). float64 cases are recorded with ``jax_enable_x64`` on, float32 cases with
it off. The same :func:`build` and :func:`run` replay them through
``gradstep.compat.optax`` in ``tests/jax_front/test_optax_lbfgs.py``. Output:
``fixtures/optax_compat/optax_lbfgs.json`` and ``MANIFEST-optax-lbfgs.json``.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "fixtures" / "optax_compat"
OUT = "optax_lbfgs.json"
MANIFEST = "MANIFEST-optax-lbfgs.json"


# -- objectives --------------------------------------------------------------------------


def _quadratic_data():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a = q @ np.diag(np.logspace(0, 4, 6)) @ q.T
    return a, rng.standard_normal(6)


def _logistic_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 4))
    w_true = np.array([1.5, -2.0, 0.5, 0.0])
    y = (x @ w_true + 0.3 + 0.8 * rng.standard_normal(40) > 0).astype(np.float64)
    return x, y


def problem(name: str, dtype: str):
    """``(f, params0)`` of objective ``name`` in ``dtype`` (``f`` uses jax.numpy)."""
    import jax.numpy as jnp

    if name == "quadratic":
        a, c = (jnp.asarray(v, dtype) for v in _quadratic_data())

        def f(x):
            d = x - c
            return 0.5 * d @ (a @ d)

        return f, jnp.zeros(6, dtype)
    if name.startswith("rosenbrock"):
        n = int(name.removeprefix("rosenbrock"))

        def f(x):
            return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

        return f, jnp.asarray(np.resize([-1.2, 1.0], n), dtype)
    if name == "logistic":
        x, y = (jnp.asarray(v, dtype) for v in _logistic_data())

        def f(p):
            z = x @ p["w"] + p["b"]
            return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.01 * jnp.sum(p["w"] ** 2)

        return f, {"b": jnp.asarray(0.0, dtype), "w": jnp.zeros(4, dtype)}
    raise KeyError(name)


# -- the cases ---------------------------------------------------------------------------


def _ls(fn: str, *args, **kwargs) -> dict:
    return {"fn": fn, "args": list(args), "kwargs": kwargs}


SPECS = {
    "default": _ls("lbfgs"),
    "memory3": _ls("lbfgs", memory_size=3),
    "no_scale_init": _ls("lbfgs", scale_init_precond=False),
    "backtracking": _ls(
        "lbfgs",
        linesearch=_ls(
            "scale_by_backtracking_linesearch", max_backtracking_steps=15, store_grad=True
        ),
    ),
    "backtracking_nograd": _ls(
        "lbfgs",
        linesearch=_ls(
            "scale_by_backtracking_linesearch",
            max_backtracking_steps=10,
            decrease_factor=0.5,
            increase_factor=float("inf"),
        ),
    ),
    "zoom3_keep": _ls("lbfgs", linesearch=_ls("scale_by_zoom_linesearch", max_linesearch_steps=3)),
    "zoom8": _ls(
        "lbfgs",
        memory_size=5,
        linesearch=_ls(
            "scale_by_zoom_linesearch",
            max_linesearch_steps=8,
            curv_rtol=0.5,
            approx_dec_rtol=None,
            max_learning_rate=2.0,
            initial_guess_strategy="one",
        ),
    ),
    "no_linesearch": _ls("lbfgs", learning_rate=0.5, linesearch=None),
    "scale_by_lbfgs_alone": _ls("chain", _ls("scale_by_lbfgs", memory_size=4), _ls("scale", -0.1)),
}

STEPS = {"quadratic": 6, "rosenbrock2": 10, "rosenbrock10": 12, "logistic": 7}
# every spec on the small problems, the main ones on the larger
PLAN = {
    "quadratic": list(SPECS),
    "rosenbrock2": list(SPECS),
    "rosenbrock10": ["default", "memory3", "backtracking", "zoom8"],
    "logistic": ["default", "no_scale_init", "backtracking_nograd", "zoom3_keep"],
}


# Left out: at its third step the zoom search sits at a branch point that one float32
# rounding of the direction flips (the direction of gradstep's unrolled two-loop
# recursion and of optax's scanned one differ by 6e-7 relative under the test
# session's XLA settings, and optax's own zoom search, given gradstep's direction,
# flips the same way); in float64 it is recorded.
SKIP = {("quadratic", "no_scale_init", "float32")}


def cases() -> list[dict]:
    return [
        {"id": f"{prob}-{spec}-{dtype}", "problem": prob, "spec": spec, "dtype": dtype}
        for prob, specs in PLAN.items()
        for spec in specs
        for dtype in ("float64", "float32")
        if (prob, spec, dtype) not in SKIP
    ]


def build(module, spec):
    """The object a spec describes, made from ``module`` (optax or its compat twin)."""
    if isinstance(spec, dict) and "fn" in spec:
        args = [build(module, a) for a in spec.get("args", [])]
        kwargs = {k: build(module, v) for k, v in spec.get("kwargs", {}).items()}
        return getattr(module, spec["fn"])(*args, **kwargs)
    return spec


def _keeps_value(spec: dict) -> bool:
    """Whether the optimizer's state holds the line search's value and gradient."""
    if spec["fn"] != "lbfgs":
        return False
    ls = spec["kwargs"].get("linesearch", "default")
    if ls is None:
        return False
    return (
        ls == "default"
        or ls["fn"] == "scale_by_zoom_linesearch"
        or ls["kwargs"].get("store_grad", False)
    )


def run(module, case: dict) -> dict:
    """Run ``case`` with ``module``'s optimizer under ``jax.jit``: values, iterates and
    the final state (leaves as ``[path, dtype, value]``). Needs x64 set as recorded."""
    import jax

    spec = SPECS[case["spec"]]
    f, params = problem(case["problem"], case["dtype"])
    opt = build(module, spec)
    keeps = _keeps_value(spec)
    value_and_grad = module.value_and_grad_from_state(f) if keeps else None
    takes_fn = spec["fn"] == "lbfgs" and spec["kwargs"].get("linesearch", "default") is not None

    @jax.jit
    def step(params, state):
        if keeps:
            value, grad = value_and_grad(params, state=state)
        else:
            value, grad = jax.value_and_grad(f)(params)
        if takes_fn:
            updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
        else:
            updates, state = opt.update(grad, state, params)
        return module.apply_updates(params, updates), state, value

    state = opt.init(params)
    values, iterates = [], []
    for _ in range(STEPS[case["problem"]]):
        params, state, value = step(params, state)
        values.append(float(value))
        iterates.append(_as_list(params))
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    final = [[jax.tree_util.keystr(p), str(np.asarray(v).dtype), _as_list(v)] for p, v in leaves]
    return {"values": values, "iterates": iterates, "state": final}


def _as_list(tree):
    import jax

    if isinstance(tree, dict):
        return {k: _as_list(v) for k, v in tree.items()}
    if isinstance(tree, jax.Array) or isinstance(tree, np.ndarray):
        return np.asarray(tree).tolist()
    return tree


def main() -> None:
    import jax
    import optax

    out = []
    for case in cases():
        with jax.enable_x64(case["dtype"] == "float64"):
            out.append({**case, **run(optax, case)})
        print(case["id"], out[-1]["values"][-1])
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / OUT).write_text(json.dumps(out, indent=0) + "\n")
    manifest = {
        "generator": "tests/conformance/record_optax_lbfgs_fixtures.py",
        "cases": len(out),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    (HERE / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
