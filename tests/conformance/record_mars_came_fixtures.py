"""Record reference trajectories of MARS (pytorch-optimizer's ``MARS``) and CAME (the
authors' package ``came_pytorch``, and pytorch-optimizer's ``CAME``).

Run from the repository root (needs torch, pytorch_optimizer and came-pytorch
installed; the tests need none of them)::

    python tests/conformance/record_mars_came_fixtures.py

It writes ``fixtures/mars_came.json`` in the format of ``record_fixtures.py`` (30
steps, gradients ``h * (w - target) + noise`` at the reference's own iterates, one
column of the first tensor always zero; a (3, 4) and a (5,) tensor, so CAME's factored
and unfactored paths both run), replayed by ``test_conformance.py``, and
``tests/recent/fixtures/mars_default_split.json``, pytorch-optimizer's MARS with its
default ``optimize_1d=False`` (tensors of rank < 2 take AdamW), replayed by
``tests/recent/test_mars_came.py`` as a partition of ``mars`` and ``adamw``; and
``fixtures/MANIFEST-mars-came.json`` with the library versions.
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
OUT = FIXTURES / "mars_came.json"
SPLIT_OUT = HERE.parent / "recent" / "fixtures" / "mars_default_split.json"
MANIFEST = FIXTURES / "MANIFEST-mars-came.json"
SEED0 = 900  # problems of their own, distinct from the other recorders'


def _base():
    """``record_fixtures.py`` beside this file (problem, learning rates, records)."""
    spec = importlib.util.spec_from_file_location("record_fixtures", HERE / "record_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = _base()

# pytorch-optimizer's MARS steps tensors of rank < 2 with AdamW unless optimize_1d
# (see gradstep.mars's Differences); its per-tensor loop, not the foreach one
MARS_EVERY_TENSOR = {"optimize_1d": True, "foreach": False}

# its epsilon on the uncorrected root, and 1e-15 inside the root
PYTORCH_OPTIMIZER_ROOT = {"epsilon_placement": "outside_uncorrected", "eps_root": 1e-15}

# (id, reference, reference kwargs, gradstep rule, gradstep kwargs, options); the
# reference is "pytorch_optimizer.<class>" or "came_pytorch.CAME" (torch.optim-like).
# options: "lrs" (the learning rate changes between steps), "float32" (also record
# float32), "grad_scale" (scales the problem's gradients).
CASES = [
    (
        "mars_adamw",
        "pytorch_optimizer.MARS",
        {"lr": 0.01, **MARS_EVERY_TENSOR},
        "mars",
        {"learning_rate": 0.01, **PYTORCH_OPTIMIZER_ROOT},
        {"float32": True},
    ),
    (
        "mars_adamw_gamma_decay_lr_change",
        "pytorch_optimizer.MARS",
        {
            "lr": 0.02,
            "betas": (0.9, 0.95),
            "gamma": 0.1,
            "weight_decay": 0.1,
            "eps": 1e-6,
            **MARS_EVERY_TENSOR,
        },
        "mars",
        {
            "learning_rate": 0.02,
            "beta1": 0.9,
            "beta2": 0.95,
            "gamma": 0.1,
            "weight_decay": 0.1,
            "epsilon": 1e-6,
            **PYTORCH_OPTIMIZER_ROOT,
        },
        {"lrs": True},
    ),
    (
        # small gradients: the correction's norm crosses the clipping norm 1
        "mars_adamw_small_grads",
        "pytorch_optimizer.MARS",
        {"lr": 0.01, "betas": (0.8, 0.99), "gamma": 0.05, **MARS_EVERY_TENSOR},
        "mars",
        {
            "learning_rate": 0.01,
            "beta1": 0.8,
            "gamma": 0.05,
            **PYTORCH_OPTIMIZER_ROOT,
        },
        {"grad_scale": 0.2, "float32": True},
    ),
    (
        "mars_lion_decay",
        "pytorch_optimizer.MARS",
        {"lr": 0.01, "mars_type": "lion", "weight_decay": 0.05, **MARS_EVERY_TENSOR},
        "mars",
        {"learning_rate": 0.01, "variant": "lion", "weight_decay": 0.05},
        {"float32": True},
    ),
    (
        "came",
        "came_pytorch.CAME",
        {"lr": 0.01},
        "came",
        {"learning_rate": 0.01},
        {"float32": True},
    ),
    (
        "came_betas_clip_decay_lr_change",
        "came_pytorch.CAME",
        {
            "lr": 0.02,
            "betas": (0.8, 0.99, 0.999),
            "eps": (1e-30, 1e-12),
            "clip_threshold": 0.5,
            "weight_decay": 0.1,
        },
        "came",
        {
            "learning_rate": 0.02,
            "beta1": 0.8,
            "beta2": 0.99,
            "beta3": 0.999,
            "epsilon2": 1e-12,
            "clipping_threshold": 0.5,
            "weight_decay": 0.1,
        },
        {"lrs": True, "float32": True},
    ),
    (
        "came_decay_lr_change",
        "pytorch_optimizer.CAME",
        {"lr": 0.01, "weight_decay": 0.05, "eps2": 1e-14, "foreach": False},
        "came",
        {"learning_rate": 0.01, "weight_decay": 0.05, "epsilon2": 1e-14},
        {"lrs": True, "float32": True},
    ),
]


# pytorch-optimizer's MARS with its default optimize_1d=False: (id, reference kwargs,
# gradstep mars kwargs for the tensors of rank >= 2, gradstep adamw kwargs for the
# others, options); replayed by tests/recent/test_mars_came.py
SPLIT_CASES = [
    (
        "mars_default_split",
        {"lr": 0.01, "weight_decay": 0.05, "foreach": False},
        {"learning_rate": 0.01, "weight_decay": 0.05, **PYTORCH_OPTIMIZER_ROOT},
        {
            "learning_rate": 0.003,
            "beta1": 0.9,
            "beta2": 0.95,
            "weight_decay": 0.1,
            "epsilon_placement": "outside_uncorrected",
        },
        {"float32": True},
    ),
]


def _reference_class(reference: str):
    library, name = reference.split(".", 1)
    if library == "pytorch_optimizer":
        import pytorch_optimizer

        return getattr(pytorch_optimizer, name)
    import came_pytorch

    return getattr(came_pytorch, name)


def run(reference: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import torch

    w0, grad = BASE.problem(seed, options.get("grad_scale", 1.0))
    params = [torch.tensor(w, dtype=getattr(torch, dtype)) for w in w0]
    opt = _reference_class(reference)(params, **kwargs)
    lrs = BASE.changing_lrs(opt.param_groups[0]["lr"]) if options.get("lrs") else None
    return BASE._record(
        w0, grad, lrs, dtype, params, lambda g, k: BASE._torch_step(opt, params, g, k, lrs)
    )


def _plain(value):
    """A reference argument as JSON stores it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def record() -> list[dict]:
    out = []
    for seed, (case_id, reference, ref_kwargs, rule, rule_kwargs, options) in enumerate(
        CASES, SEED0
    ):
        library = reference.split(".", 1)[0]
        for dtype in ["float64"] + (["float32"] if options.get("float32") else []):
            data = run(reference, ref_kwargs, dtype, options, seed)
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


def record_split() -> list[dict]:
    out = []
    for seed, (case_id, ref_kwargs, mars_kwargs, adamw_kwargs, options) in enumerate(
        SPLIT_CASES, SEED0 + 100
    ):
        for dtype in ["float64"] + (["float32"] if options.get("float32") else []):
            data = run("pytorch_optimizer.MARS", ref_kwargs, dtype, options, seed)
            out.append(
                {
                    "id": f"pytorch_optimizer-{case_id}-{dtype}",
                    "reference": "pytorch_optimizer.MARS",
                    "reference_kwargs": ref_kwargs,
                    "mars_kwargs": mars_kwargs,
                    "adamw_kwargs": adamw_kwargs,
                    "dtype": dtype,
                    **data,
                }
            )
    return out


def main() -> None:
    records = record()
    OUT.write_text(json.dumps(records, indent=0))
    print(f"mars, came: {len(records)} trajectories")
    split = record_split()
    SPLIT_OUT.write_text(json.dumps(split, indent=0))
    print(f"mars default split: {len(split)} trajectories")
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("torch", "pytorch_optimizer", "came-pytorch"):
        versions[package] = importlib.metadata.version(package)
    manifest = {
        "generator": "tests/conformance/record_mars_came_fixtures.py",
        "steps": BASE.STEPS,
        "files": [OUT.name, "../../recent/fixtures/mars_default_split.json"],
        "versions": versions,
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
