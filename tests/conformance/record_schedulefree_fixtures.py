"""Record the averaging references: schedule-free, gradient accumulation, Lookahead, EMA.

Run from the repository root (needs ``schedulefree==1.4.1``, torch, jax and optax
installed; the tests need none of them)::

    python tests/conformance/record_schedulefree_fixtures.py

It writes

- ``tests/conformance/fixtures/schedulefree.json``: ``schedulefree.SGDScheduleFree``
  and ``AdamWScheduleFree`` trajectories. ``trajectory`` holds the parameters in
  training mode (``y``) after every step, the trajectory the generic conformance test
  replays; ``eval_trajectory`` holds the same run read in evaluation mode (``x``,
  after ``.eval()``); cases with ``"toggled": true`` switched ``.eval()`` /
  ``.train()`` around every read, as a training loop that evaluates every step does,
  the others read ``x`` from a copy (``tests/averaging`` replays both readings);
- ``tests/averaging/fixtures/schedulefree_lr_changes.json``: the same with the
  learning rate changed before steps (``group["lr"]``; gradstep takes it as a
  schedule);
- ``tests/averaging/fixtures/wrappers.json``: ``optax.MultiSteps`` (accumulation),
  ``optax.lookahead`` and ``torch.optim.swa_utils.AveragedModel`` with an EMA
  (parameter averaging started at the first step) trajectories;
- ``tests/conformance/fixtures/MANIFEST-schedulefree.json``: the library versions.

Gradients are ``h * (w - target) + noise`` at the reference's own training point,
with one column of the first tensor always zero. objax's EMA cannot be installed:
``tests/averaging/test_ema.py`` checks it against values derived by hand from its
documented formulas instead.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "conformance" / "fixtures"
WRAPPERS = ROOT / "tests" / "averaging" / "fixtures"
STEPS = 30
SHAPES = ((3, 4), (5,))


def problem(seed: int, grad_scale: float = 1.0, nan_steps: tuple[int, ...] = ()):
    rng = np.random.default_rng(1000 + seed)
    w0 = [rng.normal(size=s) for s in SHAPES]
    target = [rng.normal(size=s) for s in SHAPES]
    curvature = [rng.uniform(0.5, 2.0, size=s) for s in SHAPES]
    noise = [[0.1 * rng.normal(size=s) for s in SHAPES] for _ in range(STEPS)]

    def grad(k: int, w: list[np.ndarray]) -> list[np.ndarray]:
        g = [grad_scale * (c * (x - t) + n) for x, t, c, n in zip(w, target, curvature, noise[k])]
        g[0][:, 0] = 0.0  # coordinates whose gradient is always zero
        if k in nan_steps:
            g[1][k % 5] = np.nan if k % 2 else np.inf
        return g

    return w0, grad


def as_list(arrays) -> list:
    return [np.asarray(a).tolist() for a in arrays]


# -- schedulefree ----------------------------------------------------------------------

# (id, class, reference kwargs, gradstep rule, gradstep kwargs, options)
SCHEDULE_FREE_CASES = [
    (
        "sgd",
        "SGDScheduleFree",
        {"lr": 0.2},
        "schedule_free_sgd",
        {"learning_rate": 0.2},
        {"float32": True, "toggled": True},
    ),
    (
        "sgd_warmup_wd",
        "SGDScheduleFree",
        {"lr": 0.5, "momentum": 0.8, "weight_decay": 0.01, "warmup_steps": 5},
        "schedule_free_sgd",
        {"learning_rate": 0.5, "momentum": 0.8, "weight_decay": 0.01, "warmup_steps": 5},
        {},
    ),
    (
        "sgd_r_power",
        "SGDScheduleFree",
        {"lr": 0.3, "momentum": 0.6, "warmup_steps": 3, "r": 1.0, "weight_lr_power": 1.0},
        "schedule_free_sgd",
        {
            "learning_rate": 0.3,
            "momentum": 0.6,
            "warmup_steps": 3,
            "r": 1.0,
            "weight_lr_power": 1.0,
        },
        {"toggled": True},
    ),
    (
        "adamw",
        "AdamWScheduleFree",
        {"lr": 0.05},
        "schedule_free_adamw",
        {"learning_rate": 0.05},
        {"float32": True},
    ),
    (
        "adamw_warmup_wd",
        "AdamWScheduleFree",
        {"lr": 0.1, "betas": (0.8, 0.99), "weight_decay": 0.05, "warmup_steps": 10},
        "schedule_free_adamw",
        {
            "learning_rate": 0.1,
            "beta1": 0.8,
            "beta2": 0.99,
            "weight_decay": 0.05,
            "warmup_steps": 10,
        },
        {"float32": True, "toggled": True},
    ),
    (
        "adamw_r_no_lr_weighting",
        "AdamWScheduleFree",
        {"lr": 0.05, "eps": 1e-6, "r": 0.5, "weight_lr_power": 0.0, "warmup_steps": 4},
        "schedule_free_adamw",
        {
            "learning_rate": 0.05,
            "epsilon": 1e-6,
            "r": 0.5,
            "weight_lr_power": 0.0,
            "warmup_steps": 4,
        },
        {"toggled": True},
    ),
    (
        "adamw_small_grads_beta_low",
        "AdamWScheduleFree",
        {"lr": 0.1, "betas": (0.3, 0.999), "r": 2.0},
        "schedule_free_adamw",
        {"learning_rate": 0.1, "beta1": 0.3, "r": 2.0},
        {"grad_scale": 1e-4, "toggled": True},
    ),
]


def changing_lrs(lr: float) -> list[float]:
    """A learning rate that changes between steps: drops, then rises above the start."""
    return [lr if k < 10 else lr * 0.3 if k < 20 else lr * 1.7 for k in range(STEPS)]


# Learning rates changed by the caller before each step (``group["lr"]``): gradstep
# takes them as a schedule, so these live beside the wrapper fixtures, not in the
# generic conformance files (whose per-step values are step-time overrides).
SCHEDULE_FREE_LR_CASES = [
    (
        "sgd_lr_changes",
        "SGDScheduleFree",
        {"lr": 0.2, "warmup_steps": 4},
        "schedule_free_sgd",
        {"learning_rate": 0.2, "warmup_steps": 4},
        {"lrs": True},
    ),
    (
        "adamw_lr_changes",
        "AdamWScheduleFree",
        {"lr": 0.05, "weight_decay": 0.01, "r": 1.0},
        "schedule_free_adamw",
        {"learning_rate": 0.05, "weight_decay": 0.01, "r": 1.0},
        {"lrs": True, "float32": True, "toggled": True},
    ),
]


def run_schedulefree(cls_name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import schedulefree
    import torch

    w0, grad = problem(seed, options.get("grad_scale", 1.0))
    tdtype = getattr(torch, dtype)
    params = [torch.tensor(w, dtype=tdtype) for w in w0]
    opt = getattr(schedulefree, cls_name)(params, **kwargs, foreach=False)
    opt.train()
    toggled = options.get("toggled", False)
    lrs = changing_lrs(kwargs["lr"]) if options.get("lrs") else None
    grads, trajectory, eval_trajectory = [], [], []
    for k in range(STEPS):
        current = [p.detach().numpy().astype(np.float64) for p in params]
        g = [x.astype(dtype) for x in grad(k, current)]
        grads.append(g)
        for p, x in zip(params, g):
            p.grad = torch.tensor(x, dtype=tdtype)  # a fresh copy: the step overwrites it
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        opt.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
        if toggled:
            opt.eval()
            eval_trajectory.append([p.detach().numpy().copy() for p in params])
            opt.train()
        else:
            shadow = copy.deepcopy(opt)  # reads x without touching the run
            shadow.eval()
            eval_trajectory.append(
                [p.detach().numpy().copy() for p in shadow.param_groups[0]["params"]]
            )
    return {
        "params0": as_list([np.asarray(w, dtype=dtype) for w in w0]),
        "grads": [as_list(g) for g in grads],
        "trajectory": [as_list(t) for t in trajectory],
        "eval_trajectory": [as_list(t) for t in eval_trajectory],
        "toggled": toggled,
        "lrs": lrs,
    }


def record_schedulefree(cases: list, first_seed: int = 0) -> list[dict]:
    out = []
    for seed, (case_id, cls, ref_kwargs, rule, rule_kwargs, options) in enumerate(
        cases, start=first_seed
    ):
        for dtype in ["float64"] + (["float32"] if options.get("float32") else []):
            data = run_schedulefree(cls, ref_kwargs, dtype, options, seed)
            out.append(
                {
                    "id": f"schedulefree-{case_id}-{dtype}",
                    "reference": f"schedulefree.{cls}",
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


# -- wrappers: optax.MultiSteps, optax.lookahead, torch AveragedModel ----------------------

# (id, reference, wrapper, wrapper kwargs for gradstep, inner rule, inner kwargs,
#  reference description, options)
WRAPPER_CASES = [
    (
        "multisteps_adam_mean",
        "optax.MultiSteps",
        "accumulate",
        {"every_k": 3, "reduce": "mean", "skip_nonfinite": False},
        "adam",
        {"learning_rate": 0.1},
        {"inner": ("adam", {"learning_rate": 0.1}), "every_k_schedule": 3},
        {"float32": True},
    ),
    (
        "multisteps_sgd_sum_skip_nonfinite",
        "optax.MultiSteps",
        "accumulate",
        {"every_k": 4, "reduce": "sum", "skip_nonfinite": True},
        "momentum",
        {"learning_rate": 0.02, "momentum": 0.9, "lr_in_buffer": False},
        {
            "inner": ("sgd", {"learning_rate": 0.02, "momentum": 0.9}),
            "every_k_schedule": 4,
            "use_grad_mean": False,
            "should_skip_update_fn": "skip_not_finite",
        },
        {"nan_steps": (2, 7, 8, 15)},
    ),
    (
        "multisteps_adamw_mean_skip_nonfinite",
        "optax.MultiSteps",
        "accumulate",
        {"every_k": 2, "reduce": "mean", "skip_nonfinite": True},
        "adamw",
        {"learning_rate": 0.05, "weight_decay": 0.1},
        {
            "inner": ("adamw", {"learning_rate": 0.05, "weight_decay": 0.1}),
            "every_k_schedule": 2,
            "should_skip_update_fn": "skip_not_finite",
        },
        {"nan_steps": (1, 4, 5, 6, 11), "float32": True},
    ),
    (
        "lookahead_momentum",
        "optax.lookahead",
        "lookahead",
        {"sync_period": 3, "slow_step_size": 0.5},
        "momentum",
        {"learning_rate": 0.05, "momentum": 0.9, "lr_in_buffer": False},
        {
            "inner": ("sgd", {"learning_rate": 0.05, "momentum": 0.9}),
            "sync_period": 3,
            "slow_step_size": 0.5,
        },
        {"float32": True},
    ),
    (
        "lookahead_adam",
        "optax.lookahead",
        "lookahead",
        {"sync_period": 5, "slow_step_size": 0.8},
        "adam",
        {"learning_rate": 0.1},
        {"inner": ("adam", {"learning_rate": 0.1}), "sync_period": 5, "slow_step_size": 0.8},
        {},
    ),
    (
        "averaged_model_ema_sgd",
        "torch.optim.swa_utils.AveragedModel",
        "parameter_ema",
        {"momentum": 0.9, "start": "first"},
        "momentum",
        {"learning_rate": 0.05, "momentum": 0.9, "lr_in_buffer": False},
        {"optimizer": ("SGD", {"lr": 0.05, "momentum": 0.9}), "multi_avg_fn": "ema", "decay": 0.9},
        {"float32": True},
    ),
    (
        "averaged_model_ema_adam",
        "torch.optim.swa_utils.AveragedModel",
        "parameter_ema",
        {"momentum": 0.75, "start": "first"},
        "adam",
        {"learning_rate": 0.05},
        {"optimizer": ("Adam", {"lr": 0.05}), "multi_avg_fn": "ema", "decay": 0.75},
        {},
    ),
]


def _optax_transform(reference: str, description: dict, dtype: str):
    import optax

    name, kwargs = description["inner"]
    inner = getattr(optax, name)(**kwargs)
    if reference == "optax.MultiSteps":
        skip = description.get("should_skip_update_fn")
        return optax.MultiSteps(
            inner,
            every_k_schedule=description["every_k_schedule"],
            use_grad_mean=description.get("use_grad_mean", True),
            should_skip_update_fn=getattr(optax, skip) if skip else None,
            accumulator_dtype=dtype,  # gradstep accumulates in the gradient's dtype
        )
    return optax.lookahead(inner, description["sync_period"], description["slow_step_size"])


def run_optax_wrapper(reference: str, description: dict, dtype: str, options, seed) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    w0, grad = problem(seed, nan_steps=options.get("nan_steps", ()))
    tx = _optax_transform(reference, description, dtype)
    fast = [jnp.asarray(w, dtype=dtype) for w in w0]
    params = optax.LookaheadParams.init_synced(fast) if reference == "optax.lookahead" else fast
    state = tx.init(params)
    grads, trajectory = [], []
    for k in range(STEPS):
        current = params.fast if reference == "optax.lookahead" else params
        g = [x.astype(dtype) for x in grad(k, [np.asarray(c, np.float64) for c in current])]
        grads.append(g)
        updates, state = tx.update([jnp.asarray(x, dtype=dtype) for x in g], state, params)
        params = optax.apply_updates(params, updates)
        current = params.fast if reference == "optax.lookahead" else params
        trajectory.append([np.asarray(jax.device_get(p)) for p in current])
    return {
        "params0": as_list([np.asarray(w, dtype=dtype) for w in w0]),
        "grads": [as_list(g) for g in grads],
        "trajectory": [as_list(t) for t in trajectory],
    }


def run_averaged_model(description: dict, dtype: str, options, seed) -> dict:
    import torch
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    w0, grad = problem(seed)
    tdtype = getattr(torch, dtype)
    model = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(w, dtype=tdtype)) for w in w0])
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(description["decay"]))
    name, kwargs = description["optimizer"]
    opt = getattr(torch.optim, name)(model.parameters(), **kwargs, foreach=False)
    grads, trajectory, averages = [], [], []
    for k in range(STEPS):
        current = [p.detach().numpy().astype(np.float64) for p in model]
        g = [x.astype(dtype) for x in grad(k, current)]
        grads.append(g)
        for p, x in zip(model, g):
            p.grad = torch.tensor(x, dtype=tdtype)
        opt.step()
        averaged.update_parameters(model)
        trajectory.append([p.detach().numpy().copy() for p in model])
        averages.append([p.detach().numpy().copy() for p in averaged.module])
    return {
        "params0": as_list([np.asarray(w, dtype=dtype) for w in w0]),
        "grads": [as_list(g) for g in grads],
        "trajectory": [as_list(t) for t in trajectory],
        "eval_trajectory": [as_list(t) for t in averages],
    }


def record_wrappers() -> list[dict]:
    out = []
    for seed, case in enumerate(WRAPPER_CASES, start=100):
        case_id, reference, wrapper, wrapper_kwargs, inner, inner_kwargs, desc, options = case
        for dtype in ["float64"] + (["float32"] if options.get("float32") else []):
            if reference.startswith("optax."):
                data = run_optax_wrapper(reference, desc, dtype, options, seed)
            else:
                data = run_averaged_model(desc, dtype, options, seed)
            out.append(
                {
                    "id": f"{case_id}-{dtype}",
                    "reference": reference,
                    "reference_kwargs": json.loads(json.dumps(desc)),
                    "wrapper": wrapper,
                    "wrapper_kwargs": wrapper_kwargs,
                    "rule": inner,
                    "rule_kwargs": inner_kwargs,
                    "dtype": dtype,
                    **data,
                }
            )
    return out


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from importlib.metadata import version

    import optax
    import schedulefree  # noqa: F401
    import torch

    FIXTURES.mkdir(parents=True, exist_ok=True)
    WRAPPERS.mkdir(parents=True, exist_ok=True)
    sf = record_schedulefree(SCHEDULE_FREE_CASES)
    (FIXTURES / "schedulefree.json").write_text(json.dumps(sf, indent=0))
    print(f"schedulefree: {len(sf)} trajectories")
    sf_lr = record_schedulefree(SCHEDULE_FREE_LR_CASES, first_seed=50)
    (WRAPPERS / "schedulefree_lr_changes.json").write_text(json.dumps(sf_lr, indent=0))
    print(f"schedulefree with learning-rate changes: {len(sf_lr)} trajectories")
    wr = record_wrappers()
    (WRAPPERS / "wrappers.json").write_text(json.dumps(wr, indent=0))
    print(f"wrappers: {len(wr)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_schedulefree_fixtures.py",
        "steps": STEPS,
        "files": [
            "tests/conformance/fixtures/schedulefree.json",
            "tests/averaging/fixtures/schedulefree_lr_changes.json",
            "tests/averaging/fixtures/wrappers.json",
        ],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "schedulefree": version("schedulefree"),
            "torch": torch.__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    (FIXTURES / "MANIFEST-schedulefree.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
