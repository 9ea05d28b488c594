"""Record reference trajectories of the recent first-order rules (ADOPT, AdEMAMix and
its simplified form, the cautious wrapper around AdamW and Lion, LaProp, StableAdamW)
from pytorch-optimizer, optax.contrib, timm and bitsandbytes (32-bit state).

Run from the repository root (needs torch, pytorch_optimizer, timm, bitsandbytes, jax
and optax installed; the tests need none of them)::

    python tests/conformance/record_recent_fixtures.py

It writes ``fixtures/recent.json`` in the format of ``record_fixtures.py`` (30 steps,
gradients ``h * (w - target) + noise`` at the reference's own iterates, one column
of the first tensor always zero), replayed by ``test_conformance.py``;
``tests/recent/fixtures/cautious_wrapped.json``, the cautious wrapper around
directions no registry entry names (replayed by ``tests/recent/test_cautious.py``);
and ``fixtures/MANIFEST-recent.json`` with the library versions.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import inspect
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "recent.json"
WRAPPED_OUT = HERE.parent / "recent" / "fixtures" / "cautious_wrapped.json"
MANIFEST = FIXTURES / "MANIFEST-recent.json"
SEED0 = 700  # problems of their own, distinct from the other recorders'


def _base():
    """``record_fixtures.py`` beside this file (problem, learning rates, records)."""
    spec = importlib.util.spec_from_file_location("record_fixtures", HERE / "record_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = _base()

BNB_FLOAT32 = (
    "bitsandbytes keeps its 32-bit optimizer state in float32 also for float64 "
    "parameters, so only float32 runs are compared"
)

# (id, reference, reference kwargs, gradstep rule, gradstep kwargs, options); the
# reference is "<library>.<name>": pytorch_optimizer.<class>, timm.<class> (both
# torch.optim-like) or optax.contrib.<factory>. options: "lrs" (the learning rate
# changes between steps), "float32" (also record float32), "float32_only" (the reason
# float64 is not recorded), "grad_scale".
CASES = [
    (
        "adopt_default",
        "pytorch_optimizer.ADOPT",
        {},
        "adopt",
        {},
        {"float32": True},
    ),
    (
        "adopt_decoupled_no_clip_lr_change",
        "pytorch_optimizer.ADOPT",
        {
            "lr": 0.05,
            "betas": (0.8, 0.99),
            "weight_decay": 0.1,
            "weight_decouple": True,
            "clip_lambda": None,
            "eps": 1e-4,
        },
        "adopt",
        {
            "learning_rate": 0.05,
            "beta1": 0.8,
            "beta2": 0.99,
            "weight_decay": 0.1,
            "decoupled_weight_decay": True,
            "clip_exponent": None,
            "epsilon": 1e-4,
        },
        {"lrs": True},
    ),
    (
        "adopt_coupled_decay",
        "pytorch_optimizer.ADOPT",
        {"lr": 0.02, "weight_decay": 0.05},
        "adopt",
        {"learning_rate": 0.02, "weight_decay": 0.05},
        {"float32": True},
    ),
    (
        "adopt",
        "optax.contrib.adopt",
        {"learning_rate": 0.02},
        "adopt",
        {"learning_rate": 0.02, "clip_step": "update"},
        {"float32": True},
    ),
    (
        "adopt_nesterov_lr_change",
        "optax.contrib.adopt",
        {"learning_rate": 0.05, "b1": 0.7, "b2": 0.95, "eps": 1e-5, "nesterov": True},
        "adopt",
        {
            "learning_rate": 0.05,
            "beta1": 0.7,
            "beta2": 0.95,
            "epsilon": 1e-5,
            "nesterov": True,
            "clip_step": "update",
        },
        {"lrs": True},
    ),
    (
        "ademamix_default",
        "pytorch_optimizer.AdEMAMix",
        {"lr": 0.02},
        "ademamix",
        {"learning_rate": 0.02},
        {"float32": True},
    ),
    (
        "ademamix_warmup_coupled_decay_lr_change",
        "pytorch_optimizer.AdEMAMix",
        {
            "lr": 0.02,
            "betas": (0.8, 0.99, 0.999),
            "alpha": 3.0,
            "t_alpha_beta3": 20,
            "weight_decay": 0.1,
        },
        "ademamix",
        {
            "learning_rate": 0.02,
            "beta1": 0.8,
            "beta2": 0.99,
            "beta3": 0.999,
            "alpha": 3.0,
            "warmup_steps": 20,
            "weight_decay": 0.1,
            "decoupled_weight_decay": False,
        },
        {"lrs": True},
    ),
    (
        "ademamix_decoupled_decay",
        "optax.contrib.ademamix",
        {"learning_rate": 0.02, "weight_decay": 0.01},
        "ademamix",
        {"learning_rate": 0.02, "weight_decay": 0.01},
        {"float32": True},
    ),
    (
        "ademamix_fast_slow_eps_root_lr_change",
        "optax.contrib.ademamix",
        {"learning_rate": 0.03, "b3": 0.99, "alpha": 8.0, "eps": 1e-6, "eps_root": 1e-8},
        "ademamix",
        {
            "learning_rate": 0.03,
            "beta3": 0.99,
            "alpha": 8.0,
            "epsilon": 1e-6,
            "eps_root": 1e-8,
        },
        {"lrs": True},
    ),
    (
        "simplified_ademamix",
        "optax.contrib.simplified_ademamix",
        {"learning_rate": 0.002, "alpha": 2.0},
        "simplified_ademamix",
        {"learning_rate": 0.002, "alpha": 2.0},
        {"float32": True},
    ),
    (
        "simplified_ademamix_decay_lr_change",
        "optax.contrib.simplified_ademamix",
        {"learning_rate": 0.01, "b1": 0.9, "b2": 0.99, "weight_decay": 0.05, "eps": 1e-6},
        "simplified_ademamix",
        {
            "learning_rate": 0.01,
            "beta1": 0.9,
            "beta2": 0.99,
            "weight_decay": 0.05,
            "epsilon": 1e-6,
        },
        {"lrs": True},
    ),
    (
        "cautious_adamw",
        "timm.AdamWLegacy",
        {"lr": 0.05, "caution": True},
        "cautious_adamw",
        {"learning_rate": 0.05},
        {"float32": True},
    ),
    (
        "cautious_adamw_decay_lr_change",
        "timm.AdamWLegacy",
        {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1, "caution": True},
        "cautious_adamw",
        {
            "learning_rate": 0.02,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "weight_decay": 0.1,
        },
        {"lrs": True},
    ),
    (
        "cautious_lion",
        "timm.Lion",
        {"lr": 0.01, "caution": True},
        "cautious_lion",
        {"learning_rate": 0.01},
        {"float32": True},
    ),
    (
        "cautious_lion_decay_lr_change",
        "timm.Lion",
        {"lr": 0.02, "betas": (0.8, 0.95), "weight_decay": 0.1, "caution": True},
        "cautious_lion",
        {"learning_rate": 0.02, "beta1": 0.8, "beta2": 0.95, "weight_decay": 0.1},
        {"lrs": True},
    ),
    (
        "cautious_lion",
        "pytorch_optimizer.Lion",
        {"lr": 0.01, "cautious": True},
        "cautious_lion",
        {"learning_rate": 0.01, "normalization": "count_plus_one"},
        {"float32": True},
    ),
    (
        "cautious_lion_decay_lr_change",
        "pytorch_optimizer.Lion",
        {"lr": 0.02, "betas": (0.7, 0.9), "weight_decay": 0.05, "cautious": True},
        "cautious_lion",
        {
            "learning_rate": 0.02,
            "beta1": 0.7,
            "beta2": 0.9,
            "weight_decay": 0.05,
            "normalization": "count_plus_one",
        },
        {"lrs": True},
    ),
    # LaProp: constant learning rates only (pytorch-optimizer keeps the learning rate
    # inside its momentum; see gradstep.laprop's Differences) and no decay (applied
    # after the step there)
    (
        "laprop",
        "pytorch_optimizer.LaProp",
        {"lr": 0.02},
        "laprop",
        {"learning_rate": 0.02, "eps_root": 1e-15},
        {"float32": True},
    ),
    (
        "laprop_beta2_below_beta1",
        "pytorch_optimizer.LaProp",
        {"lr": 0.05, "betas": (0.9, 0.8), "eps": 1e-8},
        "laprop",
        {"learning_rate": 0.05, "beta1": 0.9, "beta2": 0.8, "epsilon": 1e-8, "eps_root": 1e-15},
        {"float32": True},
    ),
    (
        "stable_adamw",
        "pytorch_optimizer.StableAdamW",
        {"lr": 0.05},
        "stable_adamw",
        {"learning_rate": 0.05},
        {"float32": True},
    ),
    (
        "stable_adamw_betas_decay_lr_change",
        "pytorch_optimizer.StableAdamW",
        {"lr": 0.1, "betas": (0.8, 0.95), "weight_decay": 0.1, "eps": 1e-6},
        "stable_adamw",
        {
            "learning_rate": 0.1,
            "beta1": 0.8,
            "beta2": 0.95,
            "weight_decay": 0.1,
            "epsilon": 1e-6,
        },
        {"lrs": True},
    ),
    (
        "stable_adamw_coupled_decay",
        "pytorch_optimizer.StableAdamW",
        {"lr": 0.05, "weight_decay": 0.05, "weight_decouple": False},
        "stable_adamw",
        {"learning_rate": 0.05, "weight_decay": 0.05, "decoupled_weight_decay": False},
        {"float32": True},
    ),
    (
        "ademamix_32bit",
        "bitsandbytes.AdEMAMix",
        {"lr": 0.02},
        "ademamix",
        {"learning_rate": 0.02, "weight_decay": 0.01},
        {"float32_only": BNB_FLOAT32},
    ),
    (
        "ademamix_32bit_warmup_lr_change",
        "bitsandbytes.AdEMAMix",
        {
            "lr": 0.03,
            "betas": (0.8, 0.99, 0.999),
            "alpha": 3.0,
            "t_alpha": 20,
            "t_beta3": 20,
            "weight_decay": 0.05,
        },
        "ademamix",
        {
            "learning_rate": 0.03,
            "beta1": 0.8,
            "beta2": 0.99,
            "beta3": 0.999,
            "alpha": 3.0,
            "warmup_steps": 20,
            "weight_decay": 0.05,
        },
        {"lrs": True, "float32_only": BNB_FLOAT32},
    ),
]


# The cautious wrapper around a direction that no registry entry names: (id, reference,
# reference kwargs, gradstep direction factory in gradstep.rules, its kwargs, the
# wrapper's kwargs, learning rate, options); replayed by tests/recent/test_cautious.py
# as chain(cautious(direction, **wrapper), scale_by_learning_rate(lr)).
WRAPPED_CASES = [
    (
        "cautious_adopt",
        "pytorch_optimizer.ADOPT",
        {"lr": 0.02, "cautious": True},
        "scale_by_adopt",
        {},
        {"normalization": "count_plus_one"},
        0.02,
        {"float32": True},
    ),
    (
        "cautious_adopt_no_clip",
        "pytorch_optimizer.ADOPT",
        {"lr": 0.05, "betas": (0.8, 0.99), "clip_lambda": None, "cautious": True},
        "scale_by_adopt",
        {"beta1": 0.8, "beta2": 0.99, "clip_exponent": None},
        {"normalization": "count_plus_one"},
        0.05,
        {},
    ),
]


def _reference_class(reference: str):
    library, name = reference.split(".", 1)
    if library == "pytorch_optimizer":
        import pytorch_optimizer

        return getattr(pytorch_optimizer, name)
    if library == "bitsandbytes":
        import bitsandbytes

        return getattr(bitsandbytes.optim, name)
    return getattr(_timm_optim(), name)


@functools.cache
def _timm_optim():
    """timm's optimizers without ``import timm``, whose model layers need a
    torchvision built for the same torch (they are not needed here): the packages
    ``timm`` and ``timm.optim`` are registered as bare modules over their folders."""
    import importlib
    import types

    root = importlib.util.find_spec("timm").submodule_search_locations[0]
    for name, path in (("timm", root), ("timm.optim", f"{root}/optim")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [path]
            sys.modules[name] = module
    adamw = importlib.import_module("timm.optim.adamw")
    lion = importlib.import_module("timm.optim.lion")
    return types.SimpleNamespace(AdamWLegacy=adamw.AdamWLegacy, Lion=lion.Lion)


def run_torch_like(reference: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import torch

    w0, grad = BASE.problem(seed, options.get("grad_scale", 1.0))
    params = [torch.tensor(w, dtype=getattr(torch, dtype)) for w in w0]
    # bitsandbytes steps in its own kernels (no foreach switch); 32-bit state
    extra = {"optim_bits": 32} if reference.startswith("bitsandbytes.") else {"foreach": False}
    opt = _reference_class(reference)(params, **kwargs, **extra)
    lrs = BASE.changing_lrs(opt.param_groups[0]["lr"]) if options.get("lrs") else None
    return BASE._record(
        w0, grad, lrs, dtype, params, lambda g, k: BASE._torch_step(opt, params, g, k, lrs)
    )


def run_optax(reference: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    import optax.contrib

    w0, grad = BASE.problem(seed, options.get("grad_scale", 1.0))
    factory = getattr(optax.contrib, reference.rsplit(".", 1)[1])
    lrs = BASE.changing_lrs(kwargs["learning_rate"]) if options.get("lrs") else None
    if lrs:  # only the learning rate changes; every other argument stays as given
        kwargs = dict(kwargs)
        if "clip_value_fn" in inspect.signature(factory).parameters:
            # inject_hyperparams would evaluate this function as a schedule
            kwargs["clip_value_fn"] = inspect.signature(factory).parameters["clip_value_fn"].default
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


def _plain(value):
    """A reference argument as JSON stores it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def record() -> list[dict]:
    out = []
    for seed, (case_id, reference, ref_kwargs, rule, rule_kwargs, options) in enumerate(
        CASES, SEED0
    ):
        library = reference.split(".", 1)[0]
        runner = run_optax if library == "optax" else run_torch_like
        dtypes = ["float64"] + (["float32"] if options.get("float32") else [])
        for dtype in ["float32"] if options.get("float32_only") else dtypes:
            data = runner(reference, ref_kwargs, dtype, options, seed)
            out.append(
                {
                    "id": f"{library}-{case_id}-{dtype}",
                    "reference": reference,
                    "reference_kwargs": {k: _plain(v) for k, v in ref_kwargs.items()},
                    "rule": rule,
                    "rule_kwargs": rule_kwargs,
                    "dtype": dtype,
                    **data,
                }
            )
    return out


def record_wrapped() -> list[dict]:
    out = []
    for seed, case in enumerate(WRAPPED_CASES, SEED0 + 100):
        case_id, reference, ref_kwargs, direction, kwargs, wrapper, lr, options = case
        for dtype in ["float64"] + (["float32"] if options.get("float32") else []):
            data = run_torch_like(reference, ref_kwargs, dtype, options, seed)
            out.append(
                {
                    "id": f"{reference.split('.')[0]}-{case_id}-{dtype}",
                    "reference": reference,
                    "reference_kwargs": {k: _plain(v) for k, v in ref_kwargs.items()},
                    "direction": direction,
                    "direction_kwargs": kwargs,
                    "wrapper_kwargs": wrapper,
                    "learning_rate": lr,
                    "dtype": dtype,
                    **data,
                }
            )
    return out


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    records = record()
    OUT.write_text(json.dumps(records, indent=0))
    print(f"recent: {len(records)} trajectories")
    wrapped = record_wrapped()
    WRAPPED_OUT.parent.mkdir(parents=True, exist_ok=True)
    WRAPPED_OUT.write_text(json.dumps(wrapped, indent=0))
    print(f"cautious wrapped: {len(wrapped)} trajectories")
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("torch", "pytorch_optimizer", "timm", "bitsandbytes", "jax", "optax"):
        versions[package] = importlib.metadata.version(package)
    manifest = {
        "generator": "tests/conformance/record_recent_fixtures.py",
        "steps": BASE.STEPS,
        "files": [OUT.name, "../../recent/fixtures/cautious_wrapped.json"],
        "versions": versions,
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
