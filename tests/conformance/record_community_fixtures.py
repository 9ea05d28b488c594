"""Record reference trajectories of the community optimizers: optax (adabelief, yogi,
novograd, contrib.madgrad, adan), pytorch-optimizer (AdaBelief, Yogi, NovoGrad, AdamP,
SGDP, MADGRAD, Adan, Ranger) and timm (AdamP, SGDP).

Run from the repository root (needs torch, pytorch-optimizer and optax/jax installed;
the tests do not)::

    python tests/conformance/record_community_fixtures.py

The cases go to ``fixtures/community.json`` in the format of ``record_fixtures.py``
(30 steps, gradients ``h * (w - target) + noise`` at the reference's own iterates,
one column of the first tensor always zero) and are replayed by
``test_conformance.py``; ``fixtures/transforms/centralize.json`` holds
``optax.centralize`` runs (replayed by ``test_centralize.py``);
``fixtures/MANIFEST-community.json`` records the library
versions. pytorch-optimizer runs its per-parameter path (``foreach=False``); timm's
optimizer files are loaded without ``import timm`` (which needs a matching
torchvision).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "community.json"
MANIFEST = FIXTURES / "MANIFEST-community.json"


def _load(name: str):
    """A recorder module beside this file."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODERN = _load("record_modern_fixtures")  # problem(), run_optax()
BASE = MODERN.BASE  # changing_lrs(), _record()

MADGRAD_OPTAX_REASON = (
    "optax.contrib.madgrad weighs each gradient by (lr + eps) * sqrt(count + 1) in "
    "float32 (the count is int32) even for float64 parameters; gradstep in float64"
)

# (id, reference, reference kwargs, gradstep rule, gradstep kwargs, options); options:
# "lrs" (the learning rate changes between steps), "float32" (also record float32),
# "shapes", "problem" ("projection"), "tolerance" ((reason, rtol, atol) for float64)
OPTAX_CASES = [
    ("adabelief", "adabelief", {"learning_rate": 0.02}, "adabelief", {"learning_rate": 0.02}, {}),
    (
        "adabelief_nesterov_eps_lr_change",
        "adabelief",
        {"learning_rate": 0.05, "b1": 0.8, "b2": 0.99, "eps": 1e-8, "eps_root": 1e-10,
         "nesterov": True},
        "adabelief",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-8,
         "eps_root": 1e-10, "nesterov": True},
        {"lrs": True, "float32": True},
    ),
    ("yogi", "yogi", {"learning_rate": 0.02}, "yogi", {"learning_rate": 0.02}, {"float32": True}),
    (
        "yogi_betas_eps_lr_change",
        "yogi",
        {"learning_rate": 0.05, "b1": 0.8, "b2": 0.99, "eps": 1e-6},
        "yogi",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6},
        {"lrs": True},
    ),
    (
        "novograd",
        "novograd",
        {"learning_rate": 0.02},
        "novograd",
        {"learning_rate": 0.02},
        {"float32": True},
    ),
    (
        "novograd_wd_betas_eps_root_lr_change",
        "novograd",
        {"learning_rate": 0.05, "b1": 0.8, "b2": 0.5, "eps": 1e-8, "eps_root": 1e-6,
         "weight_decay": 0.05},
        "novograd",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.5, "epsilon": 1e-8, "eps_root": 1e-6,
         "weight_decay": 0.05},
        {"lrs": True},
    ),
    (
        "madgrad",
        "contrib.madgrad",
        {"learning_rate": 0.02},
        "madgrad",
        {"learning_rate": 0.02},
        {"float32": True, "tolerance": (MADGRAD_OPTAX_REASON, 1e-6, 1e-8)},
    ),
    (
        "madgrad_momentum_eps_wd_lr_change",
        "contrib.madgrad",
        {"learning_rate": 0.05, "momentum": 0.5, "eps": 1e-8, "weight_decay": 0.05},
        "madgrad",
        {"learning_rate": 0.05, "momentum": 0.5, "epsilon": 1e-8, "weight_decay": 0.05},
        {"lrs": True, "tolerance": (MADGRAD_OPTAX_REASON, 1e-6, 1e-8)},
    ),
    (
        "adan",
        "adan",
        {"learning_rate": 0.02},
        "adan",
        {"learning_rate": 0.02, "eps_root": 1e-8, "correction_weight": "one_minus_beta2"},
        {"float32": True},
    ),
    (
        "adan_wd_betas_lr_change",
        "adan",
        {"learning_rate": 0.05, "b1": 0.9, "b2": 0.8, "b3": 0.95, "eps_root": 0.0,
         "weight_decay": 0.05},
        "adan",
        {"learning_rate": 0.05, "beta1": 0.9, "beta2": 0.8, "beta3": 0.95, "weight_decay": 0.05,
         "correction_weight": "one_minus_beta2", "weight_decay_mode": "decoupled"},
        {"lrs": True},
    ),
]  # fmt: skip

PYTORCH_OPTIMIZER_CASES = [
    (
        "adabelief_default",
        "AdaBelief",
        {"lr": 0.02},
        "adabelief",
        {"learning_rate": 0.02},
        {"float32": True},
    ),
    (
        "adabelief_eps_decoupled_wd_lr_change",
        "AdaBelief",
        {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-8, "weight_decay": 0.05},
        "adabelief",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-8, "eps_root": 1e-8,
         "weight_decay": 0.05},
        {"lrs": True},
    ),
    (
        "adabelief_rectify_coupled_wd",
        "AdaBelief",
        {"lr": 0.05, "betas": (0.9, 0.99), "eps": 1e-12, "rectify": True, "weight_decay": 0.01,
         "weight_decouple": False},
        "adabelief",
        {"learning_rate": 0.05, "beta2": 0.99, "epsilon": 1e-12, "eps_root": 1e-12,
         "rectify": True, "weight_decay": 0.01, "decoupled_weight_decay": False},
        {},
    ),
    ("yogi_default", "Yogi", {}, "yogi", {}, {"float32": True}),
    (
        "yogi_coupled_wd_lr_change",
        "Yogi",
        {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-4, "initial_accumulator": 1e-3,
         "weight_decay": 0.02, "weight_decouple": False},
        "yogi",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-4,
         "initial_accumulator_value": 1e-3, "weight_decay": 0.02,
         "decoupled_weight_decay": False},
        {"lrs": True},
    ),
    (
        "novograd_default",
        "NovoGrad",
        {"lr": 0.02},
        "novograd",
        {"learning_rate": 0.02, "beta1": 0.95, "beta2": 0.98, "epsilon": 1e-8},
        {"float32": True},
    ),
    (
        "novograd_grad_averaging_coupled_wd_lr_change",
        "NovoGrad",
        {"lr": 0.05, "betas": (0.9, 0.5), "weight_decay": 0.05, "grad_averaging": True},
        "novograd",
        {"learning_rate": 0.05, "beta2": 0.5, "epsilon": 1e-8, "weight_decay": 0.05,
         "grad_averaging": True},
        {"lrs": True},
    ),
    (
        "novograd_decoupled_wd",
        "NovoGrad",
        {"lr": 0.05, "weight_decay": 0.1, "weight_decouple": True},
        "novograd",
        {"learning_rate": 0.05, "beta1": 0.95, "beta2": 0.98, "epsilon": 1e-8,
         "weight_decay": 0.1, "decoupled_weight_decay": True},
        {},
    ),
    (
        "adamp_projection",
        "AdamP",
        {"lr": 0.02},
        "adamp",
        {"learning_rate": 0.02},
        {"problem": "projection", "float32": True},
    ),
    (
        "adamp_projection_wd_delta_lr_change",
        "AdamP",
        {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.1, "delta": 0.2, "wd_ratio": 0.3},
        "adamp",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1, "delta": 0.2,
         "wd_ratio": 0.3},
        {"problem": "projection", "lrs": True},
    ),
    (
        "sgdp_projection_wd",
        "SGDP",
        {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
        "sgdp",
        {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.1},
        {"problem": "projection", "float32": True},
    ),
    (
        "sgdp_nesterov_dampening_lr_change",
        "SGDP",
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "nesterov": True, "weight_decay": 0.05,
         "wd_ratio": 0.5},
        "sgdp",
        {"learning_rate": 0.05, "momentum": 0.8, "dampening": 0.3, "nesterov": True,
         "weight_decay": 0.05, "wd_ratio": 0.5},
        {"problem": "projection", "lrs": True},
    ),
    (
        "ranger_sgd_warmup",
        "Ranger",
        {"lr": 0.02, "degenerated_to_sgd": True},
        "ranger",
        {"learning_rate": 0.02},
        {"float32": True},
    ),
    (
        "ranger_wd_k_alpha_betas_lr_change",
        "Ranger",
        {"lr": 0.05, "betas": (0.9, 0.99), "alpha": 0.6, "k": 4, "eps": 1e-8,
         "weight_decay": 0.05, "degenerated_to_sgd": True},
        "ranger",
        {"learning_rate": 0.05, "beta1": 0.9, "beta2": 0.99, "slow_step_size": 0.6,
         "sync_period": 4, "epsilon": 1e-8, "weight_decay": 0.05},
        {"lrs": True, "shapes": ((3, 4), (5,), (2, 3, 2))},
    ),
    (
        "ranger_gc_conv_only",
        "Ranger",
        {"lr": 0.05, "gc_conv_only": True, "degenerated_to_sgd": True},
        "ranger",
        {"learning_rate": 0.05, "gc_min_rank": 4},
        {"shapes": ((3, 4), (5,), (2, 3, 2, 2))},
    ),
    ("madgrad_lr", "MADGRAD", {"lr": 0.02}, "madgrad", {"learning_rate": 0.02}, {"float32": True}),
    (
        "madgrad_no_momentum_decoupled_wd_lr_change",
        "MADGRAD",
        {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.05, "weight_decouple": True, "eps": 0.0},
        "madgrad",
        {"learning_rate": 0.05, "momentum": 0.0, "weight_decay": 0.05,
         "decoupled_weight_decay": True, "epsilon": 0.0},
        {"lrs": True},
    ),
    (
        # its batched path (the same arithmetic as the per-parameter one)
        "madgrad_coupled_wd_foreach",
        "MADGRAD",
        {"lr": 0.05, "weight_decay": 0.05, "foreach": True},
        "madgrad",
        {"learning_rate": 0.05, "weight_decay": 0.05},
        {},
    ),
    ("adan_default", "Adan", {"lr": 0.02}, "adan", {"learning_rate": 0.02}, {"float32": True}),
    (
        "adan_proximal_wd_lr_change",
        "Adan",
        {"lr": 0.05, "betas": (0.9, 0.8, 0.95), "weight_decay": 0.05},
        "adan",
        {"learning_rate": 0.05, "beta1": 0.9, "beta2": 0.8, "beta3": 0.95, "weight_decay": 0.05},
        {"lrs": True},
    ),
    (
        "adan_decoupled_wd",
        "Adan",
        {"lr": 0.05, "weight_decay": 0.1, "weight_decouple": True},
        "adan",
        {"learning_rate": 0.05, "weight_decay": 0.1, "weight_decay_mode": "decoupled"},
        {},
    ),
]  # fmt: skip


PROJECTION_SHAPES = ((3, 4), (5,), (4, 3), (2, 3))


def projection_problem(seed: int):
    """``MODERN.problem``'s gradients over :data:`PROJECTION_SHAPES`, made to look
    scale invariant where AdamP/SGDP project: the first tensor's rows are made
    orthogonal to its rows (the channel view holds), the third tensor orthogonal to
    it as a whole (only the layer view holds); the vector and the last tensor are
    left alone."""
    w0, base = MODERN.problem(seed, PROJECTION_SHAPES, 1.0)

    def grad(k: int, w: list[np.ndarray]) -> list[np.ndarray]:
        g = base(k, w)
        rows = np.sum(g[0] * w[0], axis=1, keepdims=True) / np.sum(w[0] ** 2, axis=1, keepdims=True)
        g[0] = g[0] - rows * w[0]
        g[2] = g[2] - np.sum(g[2] * w[2]) / np.sum(w[2] ** 2) * w[2]
        return g

    return w0, grad


def _problem(seed: int, options: dict):
    if options.get("problem") == "projection":
        return projection_problem(seed)
    return MODERN.problem(seed, options.get("shapes", MODERN.VECTOR), 1.0)


def _timm_class(name: str):
    """timm's optimizer class from its own file (``import timm`` needs a matching
    torchvision; the optimizer files need only torch)."""
    import types

    import torch  # noqa: F401

    spec = importlib.util.find_spec("timm")
    package = types.ModuleType("timm_optim")
    package.__path__ = [str(Path(spec.origin).parent / "optim")]
    sys.modules.setdefault("timm_optim", package)
    module = importlib.import_module(f"timm_optim.{name.lower()}")
    return getattr(module, name)


TIMM_CASES = [
    (
        "adamp_projection_wd",
        "AdamP",
        {"lr": 0.02, "weight_decay": 0.1},
        "adamp",
        {"learning_rate": 0.02, "weight_decay": 0.1, "epsilon_placement": "outside"},
        {"problem": "projection", "float32": True},
    ),
    (
        "adamp_projection_eps_lr_change",
        "AdamP",
        {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3, "delta": 0.2},
        "adamp",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-3, "delta": 0.2,
         "epsilon_placement": "outside"},
        {"problem": "projection", "lrs": True},
    ),
    (
        "sgdp_projection_wd",
        "SGDP",
        {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
        "sgdp",
        {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.1},
        {"problem": "projection"},
    ),
]  # fmt: skip


def run_timm(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    return _run_torch_class(_timm_class(name), kwargs, dtype, options, seed)


def run_pytorch_optimizer(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import pytorch_optimizer

    cls = getattr(pytorch_optimizer, name)
    return _run_torch_class(cls, {"foreach": False, **kwargs}, dtype, options, seed)


def _run_torch_class(cls, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import torch

    w0, grad = _problem(seed, options)
    params = [torch.tensor(w, dtype=getattr(torch, dtype)) for w in w0]
    opt = cls(params, **kwargs)
    lrs = BASE.changing_lrs(opt.param_groups[0]["lr"]) if options.get("lrs") else None

    def step(g, k):
        for p, x in zip(params, g):
            p.grad = torch.tensor(x, dtype=p.dtype)
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        opt.step()
        return [p.detach().numpy().copy() for p in params]

    return BASE._record(w0, grad, lrs, dtype, params, step)


def record(library: str, cases: list, runner, seed0: int) -> list[dict]:
    out = []
    for seed, (case_id, ref, ref_kwargs, rule, rule_kwargs, options) in enumerate(cases, seed0):
        for dtype in ["float64"] + (["float32"] if options.get("float32") else []):
            stated = {}
            if "tolerance" in options and dtype == "float64":
                reason, rtol, atol = options["tolerance"]
                stated = {"tolerance": {"rtol": rtol, "atol": atol}, "tolerance_reason": reason}
            out.append(
                {
                    "id": f"{library}-{case_id}-{dtype}",
                    "reference": f"{library}.{ref}",
                    "reference_kwargs": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in ref_kwargs.items()
                    },
                    "rule": rule,
                    "rule_kwargs": rule_kwargs,
                    "dtype": dtype,
                    **runner(ref, ref_kwargs, dtype, options, seed),
                    **stated,
                }
            )
    return out


CENTRALIZE_OUT = FIXTURES / "transforms" / "centralize.json"
CENTRALIZE_SHAPES = ((3, 4), (5,), (2, 3, 2))


def record_centralize() -> list[dict]:
    """``optax.centralize()`` alone (the updates it returns) and chained before
    ``optax.adam``, on a tree with a matrix, a vector and a rank-3 tensor; replayed
    by ``tests/conformance/test_centralize.py``."""
    import jax.numpy as jnp
    import optax

    out = []
    for case_id, tail, seed in (("alone", None, 800), ("before_adam", 0.05, 801)):
        for dtype in ("float64", "float32"):
            w0, grad = MODERN.problem(seed, CENTRALIZE_SHAPES, 1.0)
            opt = (
                optax.centralize()
                if tail is None
                else optax.chain(optax.centralize(), optax.adam(tail))
            )
            params = [jnp.asarray(w, dtype=dtype) for w in w0]
            state = {"opt": opt.init(params), "params": params}

            def step(g, k, opt=opt, state=state, dtype=dtype):
                g = [jnp.asarray(x, dtype=dtype) for x in g]
                updates, state["opt"] = opt.update(g, state["opt"], state["params"])
                state["params"] = optax.apply_updates(state["params"], updates)
                return [np.asarray(p) for p in state["params"]]

            out.append(
                {
                    "id": f"optax-centralize-{case_id}-{dtype}",
                    "reference": "optax.centralize" + ("" if tail is None else " + optax.adam"),
                    "adam_learning_rate": tail,
                    "dtype": dtype,
                    **BASE._record(w0, grad, None, dtype, params, step),
                }
            )
    return out


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import optax
    import torch

    records = (
        record("optax", OPTAX_CASES, MODERN.run_optax, 500)
        + record("pytorch_optimizer", PYTORCH_OPTIMIZER_CASES, run_pytorch_optimizer, 600)
        + record("timm", TIMM_CASES, run_timm, 700)
    )
    OUT.write_text(json.dumps(records, indent=0))
    print(f"community.json: {len(records)} trajectories")
    CENTRALIZE_OUT.parent.mkdir(parents=True, exist_ok=True)
    CENTRALIZE_OUT.write_text(json.dumps(record_centralize(), indent=0))
    manifest = {
        "generator": "tests/conformance/record_community_fixtures.py",
        "steps": BASE.STEPS,
        "files": ["community.json", "transforms/centralize.json"],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
            "pytorch_optimizer": importlib.metadata.version("pytorch_optimizer"),
            "timm": importlib.metadata.version("timm"),
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
