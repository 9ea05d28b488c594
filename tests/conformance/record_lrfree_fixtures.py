"""Record reference trajectories of the learning-rate-free rules: the authors' packages
(``prodigyopt``, ``dadaptation``) and ``optax.contrib``.

Run from the repository root (needs torch, jax/optax and the reference packages
installed; the tests do not)::

    python tests/conformance/record_lrfree_fixtures.py

The cases go to ``fixtures/lrfree.json`` in the format of ``record_fixtures.py`` (30
steps, gradients ``h * (w - target) + noise`` at the reference's own iterates, one
column of the first tensor always zero) and are replayed by ``test_conformance.py``.
``fixtures/MANIFEST-lrfree.json`` records the library versions.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "lrfree.json"
MANIFEST = FIXTURES / "MANIFEST-lrfree.json"


def _base():
    """``record_fixtures.py`` beside this file (the problem, learning rates, records)."""
    spec = importlib.util.spec_from_file_location("record_fixtures", HERE / "record_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = _base()

PRODIGY_FLOAT32 = (
    "prodigyopt sums g (w0 - w) per tensor in float32 (torch.dot) and the sum cancels: "
    "its d differs from gradstep's float64 sum by ~1e-5 relative from the second step on",
    1e-3,
    1e-5,
)
DADAPT_FLOAT32 = (
    "dadaptation sums g s / (sqrt(v) + eps) per tensor in float32 (torch.dot) and the sum "
    "cancels: its d differs from gradstep's float64 sum by ~1e-5 relative",
    1e-3,
    1e-5,
)

# (id, "package.Class", reference kwargs, gradstep rule, gradstep kwargs, options)
# options: "lrs" (the learning rate changes between steps), "float32": recorded in
# float32 too, with (reason, rtol, atol) replacing float32's tolerance; "grad_scale"
CASES = [
    ("prodigy_default", "prodigyopt.Prodigy", {}, "prodigy", {}, {"float32": PRODIGY_FLOAT32}),
    (
        "prodigy_bias_correction_decoupled_wd_lr_change",
        "prodigyopt.Prodigy",
        {
            "lr": 0.5,
            "betas": (0.8, 0.99),
            "weight_decay": 0.05,
            "use_bias_correction": True,
            "d0": 1e-3,
        },
        "prodigy",
        {
            "learning_rate": 0.5,
            "beta1": 0.8,
            "beta2": 0.99,
            "weight_decay": 0.05,
            "use_bias_correction": True,
            "d0": 1e-3,
        },
        {"lrs": True, "float32": PRODIGY_FLOAT32},
    ),
    (
        "prodigy_coupled_wd_safeguard_growth",
        "prodigyopt.Prodigy",
        {
            "weight_decay": 0.1,
            "decouple": False,
            "safeguard_warmup": True,
            "growth_rate": 1.5,
            "d_coef": 0.5,
            "beta3": 0.95,
            "eps": 1e-6,
        },
        "prodigy",
        {
            "weight_decay": 0.1,
            "decouple": False,
            "safeguard_warmup": True,
            "growth_rate": 1.5,
            "d_coef": 0.5,
            "beta3": 0.95,
            "epsilon": 1e-6,
        },
        {},
    ),
    (
        "prodigy_no_momentum_decoupled_wd",
        "prodigyopt.Prodigy",
        {"betas": (0.0, 0.99), "weight_decay": 0.02, "d0": 1e-4},
        "prodigy",
        {"beta1": 0.0, "beta2": 0.99, "weight_decay": 0.02, "d0": 1e-4},
        {},
    ),
    (
        "dadapt_adam_default",
        "dadaptation.DAdaptAdam",
        {},
        "dadapt_adam",
        {},
        {"float32": DADAPT_FLOAT32},
    ),
    (
        "dadapt_adam_bias_correction_decoupled_wd_lr_change",
        "dadaptation.DAdaptAdam",
        {
            "lr": 0.5,
            "betas": (0.8, 0.99),
            "weight_decay": 0.05,
            "decouple": True,
            "use_bias_correction": True,
            "d0": 1e-3,
        },
        "dadapt_adam",
        {
            "learning_rate": 0.5,
            "beta1": 0.8,
            "beta2": 0.99,
            "weight_decay": 0.05,
            "decouple": True,
            "use_bias_correction": True,
            "d0": 1e-3,
        },
        {"lrs": True, "float32": DADAPT_FLOAT32},
    ),
    (
        "dadapt_adam_coupled_wd_growth",
        "dadaptation.DAdaptAdam",
        {"weight_decay": 0.1, "growth_rate": 1.5, "eps": 1e-6, "d0": 1e-4},
        "dadapt_adam",
        {"weight_decay": 0.1, "growth_rate": 1.5, "epsilon": 1e-6, "d0": 1e-4},
        {},
    ),
    (
        "dadapt_sgd_default",
        "dadaptation.DAdaptSGD",
        {},
        "dadapt_sgd",
        {},
        {"float32": DADAPT_FLOAT32},
    ),
    (
        "dadapt_sgd_momentum_wd_growth_lr_change",
        "dadaptation.DAdaptSGD",
        {"lr": 0.5, "momentum": 0.9, "weight_decay": 0.05, "growth_rate": 2.0, "d0": 1e-3},
        "dadapt_sgd",
        {
            "learning_rate": 0.5,
            "momentum": 0.9,
            "weight_decay": 0.05,
            "growth_rate": 2.0,
            "d0": 1e-3,
        },
        {"lrs": True, "float32": DADAPT_FLOAT32},
    ),
    (
        "dadapt_adagrad_default",
        "dadaptation.DAdaptAdaGrad",
        {},
        "dadapt_adagrad",
        {},
        {"float32": DADAPT_FLOAT32},
    ),
    (
        "dadapt_adagrad_momentum_wd_eps_lr_change",
        "dadaptation.DAdaptAdaGrad",
        {
            "lr": 0.5,
            "momentum": 0.5,
            "weight_decay": 0.05,
            "eps": 1e-4,
            "d0": 1e-3,
            "growth_rate": 3.0,
        },
        "dadapt_adagrad",
        {
            "learning_rate": 0.5,
            "momentum": 0.5,
            "weight_decay": 0.05,
            "epsilon": 1e-4,
            "d0": 1e-3,
            "growth_rate": 3.0,
        },
        {"lrs": True, "float32": DADAPT_FLOAT32},
    ),
    ("dog_default", "optax.contrib.dog", {}, "dog", {}, {"float32": True}),
    ("cocob_default", "optax.contrib.cocob", {}, "cocob", {}, {"float32": True}),
    (
        "cocob_alpha_eps_wd_lr_change",
        "optax.contrib.cocob",
        {"learning_rate": 0.5, "alpha": 10.0, "eps": 1e-4, "weight_decay": 0.01},
        "cocob",
        {"learning_rate": 0.5, "alpha": 10.0, "epsilon": 1e-4, "weight_decay": 0.01},
        {"lrs": True, "float32": True},
    ),
    (
        "dog_first_learning_rate_wd_lr_change",
        "optax.contrib.dog",
        {"learning_rate": 0.5, "init_step": ("learning_rate", 0.01), "weight_decay": 0.01},
        "dog",
        {
            "learning_rate": 0.5,
            "init_step": "learning_rate",
            "init_step_value": 0.01,
            "weight_decay": 0.01,
        },
        {"lrs": True, "float32": True},
    ),
    (
        "dog_distance_eps",
        "optax.contrib.dog",
        {"init_step": ("distance", 1e-3), "eps": 1e-6},
        "dog",
        {"init_step": "distance", "init_step_value": 1e-3, "epsilon": 1e-6},
        {},
    ),
    ("dowg_default", "optax.contrib.dowg", {}, "dowg", {}, {"float32": True}),
    (
        "dowg_initial_distance_wd_lr_change",
        "optax.contrib.dowg",
        {"learning_rate": 0.5, "init_estim_sq_dist": 0.1, "eps": 1e-3, "weight_decay": 0.01},
        "dowg",
        {"learning_rate": 0.5, "init_estim_sq_dist": 0.1, "epsilon": 1e-3, "weight_decay": 0.01},
        {"lrs": True, "float32": True},
    ),
    (
        "prodigy_wd_lr_change",
        "optax.contrib.prodigy",
        {"learning_rate": 0.5, "weight_decay": 0.05},
        "prodigy",
        {"learning_rate": 0.5, "weight_decay": 0.05, "use_bias_correction": True},
        {"lrs": True},
    ),
    (
        "prodigy_betas_coef_safeguard",
        "optax.contrib.prodigy",
        {"betas": (0.8, 0.99), "beta3": 0.9, "estim_lr_coef": 0.5, "safeguard_warmup": True},
        "prodigy",
        {
            "beta1": 0.8,
            "beta2": 0.99,
            "beta3": 0.9,
            "d_coef": 0.5,
            "safeguard_warmup": True,
            "use_bias_correction": True,
        },
        {},
    ),
    (
        "dadapt_adamw_wd_lr_change",
        "optax.contrib.dadapt_adamw",
        {"learning_rate": 0.5, "weight_decay": 0.05, "estim_lr0": 1e-3},
        "dadapt_adam",
        {
            "learning_rate": 0.5,
            "weight_decay": 0.05,
            "decouple": True,
            "use_bias_correction": True,
            "d0": 1e-3,
        },
        {"lrs": True},
    ),
    (
        "dadapt_adamw_betas",
        "optax.contrib.dadapt_adamw",
        {"betas": (0.8, 0.99), "eps": 1e-6},
        "dadapt_adam",
        {
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "use_bias_correction": True,
        },
        {},
    ),
    (
        "mechanize_adam_default",
        "optax.contrib.mechanize",
        {"base_optimizer": ("adam", {"learning_rate": 1.0})},
        "mechanic",
        {},
        {"float32": True},
    ),
    (
        "mechanize_adam_wd_eps_s_init_betas",
        "optax.contrib.mechanize",
        {
            "base_optimizer": ("adam", {"learning_rate": 0.05, "b1": 0.8, "b2": 0.99}),
            "weight_decay": 0.1,
            "eps": 1e-6,
            "s_init": 1e-4,
            "num_betas": 4,
        },
        "mechanic",
        {
            "learning_rate": 0.05,
            "beta1": 0.8,
            "beta2": 0.99,
            "weight_decay": 0.1,
            "mechanic_epsilon": 1e-6,
            "s_init": 1e-4,
            "num_betas": 4,
        },
        {"float32": True},
    ),
]


def reference_class(name: str):
    module, cls = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def run_torch_package(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import torch

    w0, grad = BASE.problem(seed, options.get("grad_scale", 1.0))
    params = [torch.tensor(w, dtype=getattr(torch, dtype)) for w in w0]
    opt = reference_class(name)(params, **kwargs)
    lrs = BASE.changing_lrs(opt.param_groups[0]["lr"]) if options.get("lrs") else None

    def step(g, k):
        for p, x in zip(params, g):
            p.grad = torch.tensor(x, dtype=p.dtype)
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        opt.step()
        return [p.detach().numpy().copy() for p in params]

    return BASE._record(w0, grad, lrs, dtype, params, step)


def run_optax(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    w0, grad = BASE.problem(seed, options.get("grad_scale", 1.0))
    factory = optax
    for part in name.split(".")[1:]:
        factory = getattr(factory, part)
    kwargs = dict(kwargs)
    if "base_optimizer" in kwargs:  # a wrapper: (optax name, its kwargs) of the rule inside
        base, base_kwargs = kwargs["base_optimizer"]
        kwargs["base_optimizer"] = getattr(optax, base)(**base_kwargs)
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


def record() -> list[dict]:
    out = []
    for seed, (case_id, ref, ref_kwargs, rule, rule_kwargs, options) in enumerate(CASES, 500):
        dtypes = ["float64"] + (["float32"] if options.get("float32") else [])
        for dtype in dtypes:
            runner = run_optax if ref.startswith("optax.") else run_torch_package
            data = runner(ref, ref_kwargs, dtype, options, seed)
            case = {
                "id": f"{ref.split('.')[0]}-{case_id}-{dtype}",
                "reference": ref,
                "reference_kwargs": {
                    k: list(v) if isinstance(v, tuple) else v for k, v in ref_kwargs.items()
                },
                "rule": rule,
                "rule_kwargs": rule_kwargs,
                "dtype": dtype,
                **data,
            }
            if dtype == "float32" and options["float32"] is not True:
                reason, rtol, atol = options["float32"]
                case["tolerance"] = {"rtol": rtol, "atol": atol}
                case["tolerance_reason"] = reason
            out.append(case)
    return out


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import torch

    records = record()
    OUT.write_text(json.dumps(records, indent=0))
    print(f"{OUT.name}: {len(records)} trajectories")
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    for package in sorted({ref.split(".")[0] for _, ref, *_ in CASES} | {"jax"}):
        from importlib.metadata import version

        versions[package] = version(package)
    manifest = {
        "generator": "tests/conformance/record_lrfree_fixtures.py",
        "steps": BASE.STEPS,
        "files": [OUT.name],
        "versions": versions,
        "platform": f"{platform.system()} {platform.machine()}",
        "command": "python tests/conformance/record_lrfree_fixtures.py",
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(" ".join(sys.argv), "->", MANIFEST.name)


if __name__ == "__main__":
    main()
