"""Record reference trajectories of the modern rules: torch.optim (RAdam, Adafactor,
Muon, LBFGS) and optax (radam, lion, adafactor, contrib.muon).

Run from the repository root (needs torch and optax/jax installed; the tests do not)::

    python tests/conformance/record_modern_fixtures.py

Gradient-sequence cases go to ``fixtures/modern.json`` in the format of
``record_fixtures.py`` (30 steps, gradients ``h * (w - target) + noise`` at the
reference's own iterates, one column of the first tensor always zero) and are
replayed by ``test_conformance.py``. torch's LBFGS appears there with
``max_iter=1`` (one iteration per closure call, so a recorded gradient sequence
drives it exactly).

L-BFGS with its closure (several iterations per step, the strong-Wolfe line search)
goes to ``fixtures/closure/lbfgs.json``, replayed by ``tests/modern/test_lbfgs.py``:
each case stores the problem (a quadratic plus a Rosenbrock chain over the first
coordinates, see :func:`loss_and_grad`), the options, and per ``step(closure)`` call
the returned loss, the parameters after it and torch's ``n_iter``/``func_evals``.
Both sides evaluate the same NumPy loss and gradient, so only the optimiser differs.

``fixtures/MANIFEST-modern.json`` records the library versions.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "modern.json"
CLOSURE_OUT = FIXTURES / "closure" / "lbfgs.json"
MANIFEST = FIXTURES / "MANIFEST-modern.json"


def _base():
    """``record_fixtures.py`` beside this file (learning rates, records)."""
    spec = importlib.util.spec_from_file_location("record_fixtures", HERE / "record_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = _base()
STEPS = BASE.STEPS


def problem(seed: int, shapes: tuple, grad_scale: float = 1.0):
    """As ``record_fixtures.problem`` with chosen shapes (the first one rank >= 2)."""
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s) for s in shapes]
    target = [rng.normal(size=s) for s in shapes]
    curvature = [rng.uniform(0.5, 2.0, size=s) for s in shapes]
    noise = [[0.1 * rng.normal(size=s) for s in shapes] for _ in range(STEPS)]

    def grad(k: int, w: list[np.ndarray]) -> list[np.ndarray]:
        g = [grad_scale * (c * (x - t) + n) for x, t, c, n in zip(w, target, curvature, noise[k])]
        g[0][:, 0] = 0.0  # coordinates whose gradient is always zero
        return g

    return w0, grad


VECTOR = ((3, 4), (5,))
WITH_3D = ((3, 4), (5,), (2, 3, 4))
WITH_3D_OPTAX = ((3, 4), (5,), (4, 2, 3))
MATRICES = ((3, 4), (5, 2))

ADAFACTOR_OPTAX = {
    "relative_step": False,
    "factored": "largest_two",
    "epsilon1": 1e-30,
    "epsilon1_placement": "add",
}
OPTAX_DECAY_REASON = (
    "optax computes the second-moment decay 1 - t^-0.8 in float32 even for float64 "
    "parameters (factorized._decay_rate_pow); gradstep in float64"
)
TORCH_MUON_REASON = (
    "torch runs the Newton-Schulz iteration in bfloat16 (8-bit mantissa); gradstep in "
    "the parameter's dtype"
)

# (id, reference, reference kwargs, gradstep rule, gradstep kwargs, options)
TORCH_CASES = [
    ("radam_default", "RAdam", {}, "radam", {}, {}),
    (
        "radam_lr_change",
        "RAdam",
        {"lr": 0.05, "betas": (0.8, 0.99)},
        "radam",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99},
        {"lrs": True},
    ),
    (
        "radam_coupled_wd",
        "RAdam",
        {"lr": 0.05, "weight_decay": 0.1},
        "radam",
        {"learning_rate": 0.05, "weight_decay": 0.1},
        {},
    ),
    (
        "radam_decoupled_wd_lr_change",
        "RAdam",
        {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True},
        "radam",
        {"learning_rate": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True},
        {"lrs": True},
    ),
    (
        "radam_large_lr_small_grads",
        "RAdam",
        {"lr": 1.0, "eps": 1e-6, "betas": (0.9, 0.99)},
        "radam",
        {"learning_rate": 1.0, "epsilon": 1e-6, "beta2": 0.99},
        {"grad_scale": 1e-4},
    ),
    ("adafactor_default", "Adafactor", {}, "adafactor", {}, {"shapes": WITH_3D}),
    (
        "adafactor_relative_step_wd_lr_change",
        "Adafactor",
        {"lr": 0.5, "weight_decay": 0.05, "eps": (1e-30, 1e-3)},
        "adafactor",
        {"learning_rate": 0.5, "weight_decay": 0.05, "epsilon1": 1e-30},
        {"shapes": WITH_3D, "lrs": True},
    ),
    (
        "adafactor_decay_clip",
        "Adafactor",
        {"lr": 0.02, "beta2_decay": -0.5, "d": 1.5, "eps": (1e-12, 1e-2)},
        "adafactor",
        {
            "learning_rate": 0.02,
            "decay_rate": 0.5,
            "clipping_threshold": 1.5,
            "epsilon1": 1e-12,
            "epsilon2": 1e-2,
        },
        {"shapes": WITH_3D, "grad_scale": 10.0},
    ),
    (
        "muon_default",
        "Muon",
        {"lr": 0.02},
        "muon",
        {"learning_rate": 0.02},
        {"shapes": MATRICES, "tolerance": (TORCH_MUON_REASON, 2e-2, 5e-3)},
    ),
    (
        "muon_plain_momentum_rms_lr_change",
        "Muon",
        {
            "lr": 0.02,
            "nesterov": False,
            "adjust_lr_fn": "match_rms_adamw",
            "weight_decay": 0.0,
            "momentum": 0.9,
        },
        "muon",
        {
            "learning_rate": 0.02,
            "nesterov": False,
            "update_scale": "rms",
            "weight_decay": 0.0,
            "momentum": 0.9,
        },
        {"shapes": MATRICES, "lrs": True, "tolerance": (TORCH_MUON_REASON, 2e-2, 5e-3)},
    ),
    (
        "lbfgs_one_iteration",
        "LBFGS",
        {"lr": 1.0, "max_iter": 1, "history_size": 5},
        "lbfgs",
        {"learning_rate": 1.0, "max_iter": 1, "history_size": 5},
        {"closure_grads": True},
    ),
    (
        "lbfgs_one_iteration_short_history_lr_change",
        "LBFGS",
        {"lr": 0.5, "max_iter": 1, "history_size": 2, "tolerance_change": 1e-7},
        "lbfgs",
        {"learning_rate": 0.5, "max_iter": 1, "history_size": 2, "tolerance_change": 1e-7},
        {"closure_grads": True, "lrs": True},
    ),
]

OPTAX_CASES = [
    (
        "radam",
        "radam",
        {"learning_rate": 0.05},
        "radam",
        {"learning_rate": 0.05, "threshold_rule": "greater_equal", "epsilon_placement": "outside"},
        {},
    ),
    (
        "radam_nesterov_eps_root_lr_change",
        "radam",
        {"learning_rate": 0.05, "b1": 0.8, "b2": 0.99, "nesterov": True, "eps_root": 1e-8},
        "radam",
        {
            "learning_rate": 0.05,
            "beta1": 0.8,
            "beta2": 0.99,
            "nesterov": True,
            "eps_root": 1e-8,
            "threshold_rule": "greater_equal",
            "epsilon_placement": "outside",
        },
        {"lrs": True},
    ),
    (
        "lion",
        "lion",
        {"learning_rate": 0.01},
        "lion",
        {"learning_rate": 0.01, "weight_decay": 1e-3},
        {},
    ),
    (
        "lion_masked_lr_change",
        "lion",
        {"learning_rate": 0.01, "b1": 0.95, "b2": 0.98, "weight_decay": 0.1, "mask": [True, False]},
        "lion",
        {
            "learning_rate": 0.01,
            "beta1": 0.95,
            "beta2": 0.98,
            "weight_decay": 0.1,
            "mask": [True, False],
        },
        {"lrs": True},
    ),
    (
        "adafactor_unfactored",
        "adafactor",
        {"learning_rate": 0.05},
        "adafactor",
        {"learning_rate": 0.05, "min_dim_size_to_factor": 128, **ADAFACTOR_OPTAX},
        {"shapes": WITH_3D_OPTAX, "tolerance": (OPTAX_DECAY_REASON, 1e-6, 1e-9)},
    ),
    (
        "adafactor_factored_momentum_wd_lr_change",
        "adafactor",
        {
            "learning_rate": 0.05,
            "min_dim_size_to_factor": 2,
            "momentum": 0.9,
            "weight_decay_rate": 0.01,
            "clipping_threshold": 0.5,
        },
        "adafactor",
        {
            "learning_rate": 0.05,
            "min_dim_size_to_factor": 2,
            "momentum": 0.9,
            "weight_decay": 0.01,
            "weight_decay_scale": "none",
            "clipping_threshold": 0.5,
            **ADAFACTOR_OPTAX,
        },
        # the block-RMS clipping (active here) normalises away optax's float32 decay
        {"shapes": WITH_3D_OPTAX, "lrs": True},
    ),
    (
        "muon",
        "contrib.muon",
        {"learning_rate": 0.02},
        "muon",
        {
            "learning_rate": 0.02,
            "weight_decay": 0.0,
            "epsilon": 1e-8,
            "epsilon_placement": "add",
            "bias_correction": True,
            "update_scale": "width_in_out",
        },
        {"shapes": MATRICES},
    ),
    (
        "muon_plain_momentum_rms_wd_lr_change",
        "contrib.muon",
        {
            "learning_rate": 0.02,
            "nesterov": False,
            "consistent_rms": 0.2,
            "weight_decay": 0.01,
            "beta": 0.9,
        },
        "muon",
        {
            "learning_rate": 0.02,
            "nesterov": False,
            "update_scale": "rms",
            "weight_decay": 0.01,
            "momentum": 0.9,
            "epsilon": 1e-8,
            "epsilon_placement": "add",
            "bias_correction": True,
        },
        {"shapes": MATRICES, "lrs": True},
    ),
]

FLOAT32_CASES = {
    "torch": {
        "radam_default",
        "radam_lr_change",
        "adafactor_default",
        "lbfgs_one_iteration",
        "muon_default",
    },
    "optax": {"radam", "lion_masked_lr_change", "adafactor_factored_momentum_wd_lr_change", "muon"},
}


# -- gradient-sequence cases ------------------------------------------------------------


def run_torch(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import torch

    w0, grad = problem(seed, options.get("shapes", VECTOR), options.get("grad_scale", 1.0))
    tdtype = getattr(torch, dtype)
    params = [torch.tensor(w, dtype=tdtype) for w in w0]
    extra = {} if name in ("LBFGS", "Muon") else {"foreach": False}
    opt = getattr(torch.optim, name)(params, **kwargs, **extra)
    lrs = BASE.changing_lrs(opt.param_groups[0]["lr"]) if options.get("lrs") else None

    def step(g, k):
        for p, x in zip(params, g):
            p.grad = torch.tensor(x, dtype=p.dtype)
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        if options.get("closure_grads"):
            # LBFGS(max_iter=1) calls the closure once per step: the recorded gradient
            opt.step(lambda: torch.tensor(0.0, dtype=tdtype))
        else:
            opt.step()
        return [p.detach().numpy().copy() for p in params]

    return BASE._record(w0, grad, lrs, dtype, params, step)


def run_optax(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    w0, grad = problem(seed, options.get("shapes", VECTOR), options.get("grad_scale", 1.0))
    factory = optax
    for part in name.split("."):
        factory = getattr(factory, part)
    kwargs = dict(kwargs)
    if name == "adafactor" and "momentum" in kwargs:
        kwargs["dtype_momentum"] = getattr(jnp, dtype)  # optax's default is float32
    lrs = BASE.changing_lrs(kwargs["learning_rate"]) if options.get("lrs") else None
    if lrs:  # only the learning rate changes; every other argument stays as given
        static = tuple(k for k in kwargs if k != "learning_rate")
        opt = optax.inject_hyperparams(factory, static_args=static)(**kwargs)
    else:
        opt = factory(**kwargs)
    params = [jnp.asarray(w, dtype=dtype) for w in w0]
    state = {"opt": opt.init(params), "params": params}

    def step(g, k):
        if lrs is not None:
            state["opt"].hyperparams["learning_rate"] = jnp.asarray(lrs[k], dtype=dtype)
        g = [jnp.asarray(x, dtype=dtype) for x in g]
        updates, state["opt"] = opt.update(g, state["opt"], state["params"])
        state["params"] = optax.apply_updates(state["params"], updates)
        return [np.asarray(jax.device_get(p)) for p in state["params"]]

    return BASE._record(w0, grad, lrs, dtype, params, step)


def record(library: str, cases: list, runner, seed0: int) -> list[dict]:
    out = []
    for seed, (case_id, ref, ref_kwargs, rule, rule_kwargs, options) in enumerate(cases, seed0):
        dtypes = ["float64"] + (["float32"] if case_id in FLOAT32_CASES[library] else [])
        for dtype in dtypes:
            data = runner(ref, ref_kwargs, dtype, options, seed)
            reference = f"torch.optim.{ref}" if library == "torch" else f"optax.{ref}"
            case = {
                "id": f"{library}-{case_id}-{dtype}",
                "reference": reference,
                "reference_kwargs": {
                    k: list(v) if isinstance(v, tuple) else v for k, v in ref_kwargs.items()
                },
                "rule": rule,
                "rule_kwargs": rule_kwargs,
                "dtype": dtype,
                **data,
            }
            # a stated tolerance replaces float64's; float32's default already covers
            # optax's float32 decay schedule, not torch's bfloat16 Newton-Schulz
            if "tolerance" in options and (dtype == "float64" or ref == "Muon"):
                reason, rtol, atol = options["tolerance"]
                case["tolerance"] = {"rtol": rtol, "atol": atol}
                case["tolerance_reason"] = reason
            out.append(case)
    return out


# -- L-BFGS with a closure --------------------------------------------------------------


def closure_problem(seed: int) -> dict:
    """A quadratic over two tensors plus a Rosenbrock chain over the first coordinates
    of the flattened parameters (the data :func:`loss_and_grad` needs)."""
    rng = np.random.default_rng(seed)
    shapes = ((3, 4), (5,))
    return {
        "shapes": [list(s) for s in shapes],
        "curvature": [rng.uniform(0.5, 2.0, size=s).tolist() for s in shapes],
        "target": [rng.normal(size=s).tolist() for s in shapes],
        "rosenbrock_weight": 0.5,
        "rosenbrock_count": 4,
        "params0": [(0.8 * rng.normal(size=s)).tolist() for s in shapes],
    }


def loss_and_grad(prob: dict, params: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """``sum 0.5 h (w - target)^2 + a * sum_i [100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2]``
    with ``x`` the flattened parameters and ``i < rosenbrock_count``."""
    loss = 0.0
    grads = []
    for w, h, t in zip(params, prob["curvature"], prob["target"]):
        h, t = np.asarray(h), np.asarray(t)
        loss += 0.5 * float(np.sum(h * (w - t) ** 2))
        grads.append(h * (w - t))
    x = np.concatenate([w.ravel() for w in params])
    a, n = prob["rosenbrock_weight"], prob["rosenbrock_count"]
    gx = np.zeros_like(x)
    for i in range(n):
        r1, r2 = x[i + 1] - x[i] ** 2, 1.0 - x[i]
        loss += a * (100.0 * r1**2 + r2**2)
        gx[i] += a * (-400.0 * x[i] * r1 - 2.0 * r2)
        gx[i + 1] += a * 200.0 * r1
    offset = 0
    for k, w in enumerate(params):
        grads[k] = grads[k] + gx[offset : offset + w.size].reshape(w.shape)
        offset += w.size
    return loss, grads


# (id, torch kwargs, gradstep kwargs, number of step() calls, per-call lr or None,
#  problem seed)
CLOSURE_CASES = [
    (
        "fixed_step_short_history",
        {"lr": 0.2, "max_iter": 10, "history_size": 4},
        {"learning_rate": 0.2, "max_iter": 10, "history_size": 4},
        4,
        None,
        100,
    ),
    (
        "strong_wolfe_default",
        {"line_search_fn": "strong_wolfe"},
        {"line_search_fn": "strong_wolfe"},
        3,
        None,
        101,
    ),
    (
        # the line search runs out of evaluations (max_eval) inside a step
        "strong_wolfe_tight_budget",
        {"line_search_fn": "strong_wolfe", "history_size": 3, "max_iter": 15, "max_eval": 10},
        {"line_search_fn": "strong_wolfe", "history_size": 3, "max_iter": 15, "max_eval": 10},
        4,
        None,
        110,
    ),
    (
        # a first trial far too long: the zoom phase does most of the work
        "strong_wolfe_long_first_step",
        {"line_search_fn": "strong_wolfe", "lr": 4.0, "max_iter": 8, "history_size": 5},
        {"line_search_fn": "strong_wolfe", "learning_rate": 4.0, "max_iter": 8, "history_size": 5},
        4,
        None,
        103,
    ),
    (
        # converges: the later calls stop at once on the gradient tolerance
        "strong_wolfe_to_convergence",
        {"line_search_fn": "strong_wolfe", "tolerance_grad": 1e-6, "tolerance_change": 1e-10},
        {"line_search_fn": "strong_wolfe", "tolerance_grad": 1e-6, "tolerance_change": 1e-10},
        6,
        None,
        104,
    ),
    (
        "fixed_step_lr_change",
        {"lr": 0.3, "max_iter": 5, "history_size": 6},
        {"learning_rate": 0.3, "max_iter": 5, "history_size": 6},
        5,
        [0.3, 0.1, 0.6, 1.0, 0.5],
        105,
    ),
]


def run_torch_closure(torch_kwargs: dict, prob: dict, calls: int, lrs) -> list[dict]:
    import torch

    params = [torch.tensor(np.array(w), dtype=torch.float64) for w in prob["params0"]]
    opt = torch.optim.LBFGS(params, **torch_kwargs)

    def closure():
        loss, grads = loss_and_grad(prob, [p.detach().numpy() for p in params])
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float64)
        return torch.tensor(loss, dtype=torch.float64)

    out = []
    for k in range(calls):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        loss = float(opt.step(closure))
        state = opt.state[params[0]]
        out.append(
            {
                "loss": loss,
                "params": [p.detach().numpy().tolist() for p in params],
                "n_iter": int(state["n_iter"]),
                "func_evals": int(state["func_evals"]),
            }
        )
    return out


def record_closure() -> list[dict]:
    out = []
    for case_id, torch_kwargs, rule_kwargs, calls, lrs, seed in CLOSURE_CASES:
        prob = closure_problem(seed)
        out.append(
            {
                "id": f"torch-lbfgs-closure-{case_id}-float64",
                "reference": "torch.optim.LBFGS",
                "reference_kwargs": torch_kwargs,
                "rule": "lbfgs",
                "rule_kwargs": rule_kwargs,
                "dtype": "float64",
                "problem": prob,
                "lrs": lrs,
                "steps": run_torch_closure(torch_kwargs, prob, calls, lrs),
            }
        )
    return out


# -- the strong-Wolfe line search alone ---------------------------------------------------


def rosenbrock2(x: np.ndarray) -> tuple[float, np.ndarray]:
    """The 2-D Rosenbrock function and its gradient."""
    r1, r2 = x[1] - x[0] ** 2, 1.0 - x[0]
    grad = np.array([-400.0 * x[0] * r1 - 2.0 * r2, 200.0 * r1])
    return float(100.0 * r1**2 + r2**2), grad


# (id, start x, direction ("-g" or a vector), first trial t, evaluation budget)
LINE_SEARCH_CASES = [
    ("accepts_first_trial", [-1.2, 1.0], [1.0, 0.0], 0.05, 25),
    ("too_long_zooms", [-1.2, 1.0], "-g", 1.0, 25),
    ("too_short_extrapolates", [-1.2, 1.0], [1.0, 0.0], 1e-4, 25),
    ("extrapolation_out_of_budget", [-1.2, 1.0], [1.0, 0.0], 1e-4, 2),
    ("zoom_out_of_budget", [-1.2, 1.0], "-g", 1.0, 3),
    ("single_evaluation", [-1.2, 1.0], "-g", 1.0, 0),
    ("valley_direction", [0.5, 0.0], [0.3, 1.0], 2.0, 25),
    ("overshoots_into_the_wall", [0.0, 0.0], [1.0, 0.2], 3.0, 25),
]


def record_line_searches() -> list[dict]:
    import torch
    from torch.optim.lbfgs import _strong_wolfe

    out = []
    for case_id, x0, direction, t, max_ls in LINE_SEARCH_CASES:
        x0 = np.array(x0)
        f0, g0 = rosenbrock2(x0)
        d = -g0 if direction == "-g" else np.array(direction)
        evaluated = []

        def obj(x, step, d_t, x0=x0, d=d, evaluated=evaluated):
            trial = x0 + float(step) * d
            evaluated.append(float(step))
            f, g = rosenbrock2(trial)
            return f, torch.tensor(g, dtype=torch.float64)

        d_t = torch.tensor(d, dtype=torch.float64)
        g_t = torch.tensor(g0, dtype=torch.float64)
        f, g, t_out, evals = _strong_wolfe(obj, None, t, d_t, f0, g_t, g_t.dot(d_t), max_ls=max_ls)
        out.append(
            {
                "id": f"torch-strong_wolfe-{case_id}",
                "reference": "torch.optim.lbfgs._strong_wolfe",
                "x0": x0.tolist(),
                "direction": d.tolist(),
                "t0": t,
                "max_evals": max_ls,
                "trials": evaluated,
                "f": float(f),
                "g": np.asarray(g).tolist(),
                "t": float(t_out),
                "evals": int(evals),
            }
        )
    return out


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import optax
    import torch

    for name in ("LBFGS", "RAdam", "Adafactor", "Muon"):
        assert hasattr(torch.optim, name), f"torch {torch.__version__} has no optim.{name}"
    records = record("torch", TORCH_CASES, run_torch, 200) + record(
        "optax", OPTAX_CASES, run_optax, 300
    )
    OUT.write_text(json.dumps(records, indent=0))
    print(f"modern.json: {len(records)} trajectories")
    closure = record_closure()
    CLOSURE_OUT.parent.mkdir(parents=True, exist_ok=True)
    CLOSURE_OUT.write_text(json.dumps(closure, indent=0))
    print(f"closure/lbfgs.json: {len(closure)} closure-driven runs")
    searches = record_line_searches()
    (FIXTURES / "closure" / "strong_wolfe.json").write_text(json.dumps(searches, indent=0))
    print(f"closure/strong_wolfe.json: {len(searches)} line searches")
    manifest = {
        "generator": "tests/conformance/record_modern_fixtures.py",
        "steps": STEPS,
        "files": ["modern.json", "closure/lbfgs.json", "closure/strong_wolfe.json"],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
