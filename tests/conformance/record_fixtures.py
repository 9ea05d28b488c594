"""Record reference trajectories from torch.optim and optax into fixtures.

Run from the repository root (needs torch and optax/jax installed; the tests do not)::

    python tests/conformance/record_fixtures.py

Each case runs a reference optimizer for ``STEPS`` steps on two parameter tensors,
with gradients ``h * (w - target) + noise`` computed at the reference's own iterates
(one column of the first tensor always gets a zero gradient). The fixture stores the
initial parameters, every gradient, the parameters after every step, the learning rate
of every step when it changes, and the gradstep rule and options that must reproduce
the trajectory. ``MANIFEST.json`` records the library versions.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "fixtures"
STEPS = 30
SHAPES = ((3, 4), (5,))


def changing_lrs(lr: float) -> list[float]:
    """A learning rate that changes between steps: drops, then rises again."""
    return [lr if k < 10 else lr * 0.3 if k < 20 else lr * 1.7 for k in range(STEPS)]


def problem(seed: int, grad_scale: float):
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s) for s in SHAPES]
    target = [rng.normal(size=s) for s in SHAPES]
    curvature = [rng.uniform(0.5, 2.0, size=s) for s in SHAPES]
    noise = [[0.1 * rng.normal(size=s) for s in SHAPES] for _ in range(STEPS)]

    def grad(k: int, w: list[np.ndarray]) -> list[np.ndarray]:
        g = [grad_scale * (c * (x - t) + n) for x, t, c, n in zip(w, target, curvature, noise[k])]
        g[0][:, 0] = 0.0  # coordinates whose gradient is always zero
        return g

    return w0, grad


# (id, reference, reference kwargs, gradstep rule, gradstep kwargs, options)
TORCH_CASES = [
    ("sgd_plain", "SGD", {"lr": 0.1}, "sgd", {"learning_rate": 0.1}, {}),
    (
        "sgd_wd_large_lr",
        "SGD",
        {"lr": 0.6, "weight_decay": 0.05},
        "sgd",
        {"learning_rate": 0.6, "weight_decay": 0.05},
        {},
    ),
    (
        "sgd_momentum_lr_change",
        "SGD",
        {"lr": 0.05, "momentum": 0.9},
        "momentum",
        {"learning_rate": 0.05, "momentum": 0.9, "lr_in_buffer": False},
        {"lrs": True},
    ),
    (
        "sgd_momentum_dampening_wd",
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.5, "weight_decay": 0.01},
        "momentum",
        {
            "learning_rate": 0.05,
            "momentum": 0.9,
            "dampening": 0.5,
            "lr_in_buffer": False,
            "weight_decay": 0.01,
        },
        {},
    ),
    (
        "sgd_nesterov_wd_lr_change",
        "SGD",
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
        "nesterov_momentum",
        {"learning_rate": 0.05, "momentum": 0.8, "lr_in_buffer": False, "weight_decay": 0.01},
        {"lrs": True},
    ),
    (
        "adagrad_default",
        "Adagrad",
        {"lr": 0.01},
        "adagrad",
        {"learning_rate": 0.01, "epsilon": 1e-10, "epsilon_placement": "outside"},
        {},
    ),
    (
        "adagrad_decay_init_wd",
        "Adagrad",
        {"lr": 0.5, "lr_decay": 0.05, "initial_accumulator_value": 0.1, "weight_decay": 0.01},
        "adagrad",
        {
            "learning_rate": 0.5,
            "epsilon": 1e-10,
            "epsilon_placement": "outside",
            "lr_decay": 0.05,
            "initial_accumulator_value": 0.1,
            "weight_decay": 0.01,
        },
        {},
    ),
    (
        "adagrad_large_lr",
        "Adagrad",
        {"lr": 2.0, "eps": 1e-6},
        "adagrad",
        {"learning_rate": 2.0, "epsilon": 1e-6, "epsilon_placement": "outside"},
        {"lrs": True},
    ),
    (
        "rmsprop_default",
        "RMSprop",
        {"lr": 0.01},
        "rmsprop",
        {"learning_rate": 0.01, "rho": 0.99, "epsilon": 1e-8, "epsilon_placement": "outside"},
        {},
    ),
    (
        "rmsprop_centered",
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "centered": True},
        "rmsprop",
        {
            "learning_rate": 0.01,
            "rho": 0.9,
            "epsilon": 1e-8,
            "epsilon_placement": "outside",
            "centered": True,
        },
        {},
    ),
    (
        "rmsprop_momentum_lr_change",
        "RMSprop",
        {"lr": 0.01, "momentum": 0.9},
        "rmsprop",
        {
            "learning_rate": 0.01,
            "rho": 0.99,
            "epsilon": 1e-8,
            "epsilon_placement": "outside",
            "momentum": 0.9,
            "lr_in_buffer": False,
        },
        {"lrs": True},
    ),
    (
        "rmsprop_centered_momentum_wd",
        "RMSprop",
        {
            "lr": 0.02,
            "alpha": 0.95,
            "centered": True,
            "momentum": 0.5,
            "weight_decay": 0.01,
            "eps": 1e-6,
        },
        "rmsprop",
        {
            "learning_rate": 0.02,
            "rho": 0.95,
            "epsilon": 1e-6,
            "epsilon_placement": "outside",
            "centered": True,
            "momentum": 0.5,
            "lr_in_buffer": False,
            "weight_decay": 0.01,
        },
        {},
    ),
    ("adadelta_default", "Adadelta", {}, "adadelta", {"learning_rate": 1.0, "rho": 0.9}, {}),
    (
        "adadelta_wd_lr_change",
        "Adadelta",
        {"lr": 0.5, "rho": 0.95, "weight_decay": 0.01},
        "adadelta",
        {"learning_rate": 0.5, "rho": 0.95, "weight_decay": 0.01},
        {"lrs": True},
    ),
    ("adam_default", "Adam", {}, "adam", {}, {}),
    (
        "adam_lr_change",
        "Adam",
        {"lr": 0.1, "betas": (0.8, 0.99)},
        "adam",
        {"learning_rate": 0.1, "beta1": 0.8, "beta2": 0.99},
        {"lrs": True},
    ),
    (
        "adam_amsgrad",
        "Adam",
        {"lr": 0.05, "amsgrad": True},
        "adam",
        {"learning_rate": 0.05, "amsgrad": True},
        {},
    ),
    (
        "adam_coupled_wd",
        "Adam",
        {"lr": 0.05, "weight_decay": 0.1},
        "adam",
        {"learning_rate": 0.05, "weight_decay": 0.1},
        {},
    ),
    (
        "adam_large_lr_small_grads",
        "Adam",
        {"lr": 1.0, "eps": 1e-6},
        "adam",
        {"learning_rate": 1.0, "epsilon": 1e-6},
        {"grad_scale": 1e-4},
    ),
    ("adamw_default", "AdamW", {"lr": 0.01}, "adamw", {"learning_rate": 0.01}, {}),
    (
        "adamw_amsgrad_lr_change",
        "AdamW",
        {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True},
        "adamw",
        {"learning_rate": 0.05, "weight_decay": 0.1, "amsgrad": True},
        {"lrs": True},
    ),
    ("adamax_default", "Adamax", {}, "adamax", {"epsilon_placement": "in_max"}, {}),
    (
        "adamax_wd_lr_change",
        "Adamax",
        {"lr": 0.1, "weight_decay": 0.05},
        "adamax",
        {"learning_rate": 0.1, "weight_decay": 0.05, "epsilon_placement": "in_max"},
        {"lrs": True},
    ),
]

OPTAX_CASES = [
    ("sgd", "sgd", {"learning_rate": 0.1}, "sgd", {"learning_rate": 0.1}, {}),
    (
        "sgd_momentum_lr_change",
        "sgd",
        {"learning_rate": 0.05, "momentum": 0.9},
        "momentum",
        {"learning_rate": 0.05, "momentum": 0.9, "lr_in_buffer": False},
        {"lrs": True},
    ),
    (
        "sgd_nesterov",
        "sgd",
        {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
        "nesterov_momentum",
        {"learning_rate": 0.05, "momentum": 0.9, "lr_in_buffer": False},
        {},
    ),
    ("adam", "adam", {"learning_rate": 0.05}, "adam", {"learning_rate": 0.05}, {}),
    (
        "adam_large_lr_small_grads",
        "adam",
        {"learning_rate": 1.0, "b1": 0.8, "b2": 0.99},
        "adam",
        {"learning_rate": 1.0, "beta1": 0.8, "beta2": 0.99},
        {"grad_scale": 1e-4, "lrs": True},
    ),
    (
        "amsgrad",
        "amsgrad",
        {"learning_rate": 0.05},
        "adam",
        {"learning_rate": 0.05, "amsgrad": "corrected"},
        {},
    ),
    (
        "adamw",
        "adamw",
        {"learning_rate": 0.05},
        "adamw",
        {"learning_rate": 0.05, "weight_decay": 1e-4},
        {},
    ),
    (
        "adamw_masked",
        "adamw",
        {"learning_rate": 0.05, "weight_decay": 0.1, "mask": [True, False]},
        "adamw",
        {"learning_rate": 0.05, "weight_decay": 0.1, "mask": [True, False]},
        {},
    ),
    (
        "rmsprop",
        "rmsprop",
        {"learning_rate": 0.01},
        "rmsprop",
        {"learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-8},
        {},
    ),
    (
        "rmsprop_centered_momentum_lr_change",
        "rmsprop",
        {"learning_rate": 0.01, "centered": True, "momentum": 0.9},
        "rmsprop",
        {"learning_rate": 0.01, "rho": 0.9, "epsilon": 1e-8, "centered": True, "momentum": 0.9},
        {"lrs": True},
    ),
    (
        "rmsprop_eps_outside",
        "rmsprop",
        {"learning_rate": 0.01, "decay": 0.95, "eps_in_sqrt": False},
        "rmsprop",
        {"learning_rate": 0.01, "rho": 0.95, "epsilon": 1e-8, "epsilon_placement": "outside"},
        {},
    ),
    (
        "adagrad",
        "adagrad",
        {"learning_rate": 0.5},
        "adagrad",
        {"learning_rate": 0.5, "epsilon": 1e-7, "initial_accumulator_value": 0.1},
        {},
    ),
    (
        "adadelta",
        "adadelta",
        {"learning_rate": 1.0},
        "adadelta",
        {"learning_rate": 1.0, "rho": 0.9},
        {},
    ),
    (
        "adadelta_wd",
        "adadelta",
        {"learning_rate": 0.5, "rho": 0.95, "weight_decay": 0.01},
        "adadelta",
        {"learning_rate": 0.5, "rho": 0.95, "weight_decay": 0.01},
        {},
    ),
    (
        "adamax",
        "adamax",
        {"learning_rate": 0.05},
        "adamax",
        {"learning_rate": 0.05, "epsilon_placement": "in_max"},
        {},
    ),
]

FLOAT32_CASES = {
    "torch": {
        "sgd_momentum_lr_change",
        "adagrad_default",
        "rmsprop_centered",
        "adadelta_default",
        "adam_default",
        "adam_large_lr_small_grads",
        "adamw_default",
        "adamax_default",
    },
    "optax": {"adam", "rmsprop_centered_momentum_lr_change", "adamw_masked", "amsgrad"},
}


def run_torch(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import torch

    w0, grad = problem(seed, options.get("grad_scale", 1.0))
    tdtype = getattr(torch, dtype)
    params = [torch.tensor(w, dtype=tdtype) for w in w0]
    opt = getattr(torch.optim, name)(params, **kwargs, foreach=False)
    lrs = changing_lrs(opt.param_groups[0]["lr"]) if options.get("lrs") else None
    return _record(w0, grad, lrs, dtype, params, lambda g, k: _torch_step(opt, params, g, k, lrs))


def _torch_step(opt, params, grads, k, lrs):
    import torch

    for p, g in zip(params, grads):
        p.grad = torch.tensor(g, dtype=p.dtype)
    if lrs is not None:
        for group in opt.param_groups:
            group["lr"] = lrs[k]
    opt.step()
    return [p.detach().numpy().copy() for p in params]


def run_optax(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    w0, grad = problem(seed, options.get("grad_scale", 1.0))
    factory = getattr(optax, name)
    lrs = changing_lrs(kwargs["learning_rate"]) if options.get("lrs") else None
    opt = optax.inject_hyperparams(factory)(**kwargs) if lrs else factory(**kwargs)
    params = [jnp.asarray(w, dtype=dtype) for w in w0]
    state = {"opt": opt.init(params), "params": params}

    def step(g, k):
        if lrs is not None:
            state["opt"].hyperparams["learning_rate"] = jnp.asarray(lrs[k], dtype=dtype)
        g = [jnp.asarray(x, dtype=dtype) for x in g]
        updates, state["opt"] = opt.update(g, state["opt"], state["params"])
        state["params"] = optax.apply_updates(state["params"], updates)
        return [np.asarray(jax.device_get(p)) for p in state["params"]]

    return _record(w0, grad, lrs, dtype, params, step)


def _record(w0, grad, lrs, dtype, params, step) -> dict:
    current = [np.asarray(w, dtype=dtype) for w in w0]
    grads, trajectory = [], []
    for k in range(STEPS):
        g = [x.astype(dtype) for x in grad(k, [c.astype(np.float64) for c in current])]
        grads.append(g)
        current = step(g, k)
        trajectory.append(current)
    as_list = lambda arrays: [a.tolist() for a in arrays]  # noqa: E731
    return {
        "params0": as_list([np.asarray(w, dtype=dtype) for w in w0]),
        "grads": [as_list(g) for g in grads],
        "trajectory": [as_list(t) for t in trajectory],
        "lrs": lrs,
    }


def record(library: str, cases: list, runner) -> list[dict]:
    out = []
    for seed, (case_id, ref, ref_kwargs, rule, rule_kwargs, options) in enumerate(cases):
        dtypes = ["float64"] + (["float32"] if case_id in FLOAT32_CASES[library] else [])
        for dtype in dtypes:
            data = runner(ref, ref_kwargs, dtype, options, seed)
            reference = f"torch.optim.{ref}" if library == "torch" else f"optax.{ref}"
            out.append(
                {
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
            )
    return out


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import optax
    import torch

    HERE.mkdir(parents=True, exist_ok=True)
    for library, cases, runner in (
        ("torch", TORCH_CASES, run_torch),
        ("optax", OPTAX_CASES, run_optax),
    ):
        records = record(library, cases, runner)
        (HERE / f"{library}.json").write_text(json.dumps(records, indent=0))
        print(f"{library}: {len(records)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_fixtures.py",
        "steps": STEPS,
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
    (HERE / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
