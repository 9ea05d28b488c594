"""Record reference trajectories of AdaBelief and Adan from the packages named in their
references: ``adabelief-pytorch`` (the AdaBelief authors' package) and
``adan-pytorch``.

Run from the repository root (needs torch, and both packages installed for the
recording only, never as dependencies of gradstep or of its tests)::

    pip install adabelief-pytorch==0.2.1 adan-pytorch==0.1.0 -c constraints.txt --no-deps
    python tests/conformance/record_author_fixtures.py

``adabelief-pytorch`` imports ``tabulate`` and ``colorama`` to print its change log;
the recorder passes ``print_change_log=False`` and, where ``tabulate`` is missing,
stands an empty module in for it while the package imports (only that log calls it). The cases go to
``fixtures/authors.json`` in the format of ``record_fixtures.py`` (30 steps,
gradients ``h * (w - target) + noise`` at the reference's own iterates, one column of
the first tensor always zero) and are replayed by ``test_conformance.py`` and
``test_fronts_replay.py``; ``fixtures/MANIFEST-authors.json`` records the versions.

How the packages' arguments map onto gradstep's:

- ``adabelief_pytorch.AdaBelief`` adds its single ``eps`` to the stored second
  moment every step and outside the root (``epsilon = eps_root = eps``), decays
  decoupled by default (``weight_decouple``), rectifies by default (``rectify=True``,
  with ``degenerated_to_sgd=True``: momentum SGD while :math:`\\rho_t < 5`).
  ``fixed_decay=True`` shrinks by ``1 - weight_decay`` whatever the learning rate:
  at a constant learning rate that is gradstep's decoupled decay with
  ``weight_decay / lr``. ``amsgrad`` only changes the unrectified step (with
  ``rectify=True`` it is kept but never read); gradstep has no AMSGrad form of
  AdaBelief, so only the rectified case is recorded. ``degenerated_to_sgd=False``
  is not offered.
- ``adan_pytorch.Adan`` writes its ``betas`` as the weights of the new value
  (gradstep's :math:`\\beta_i` is ``1 - betas[i]``), weighs the gradient change by
  gradstep's :math:`\\beta_2` (``correction_weight="beta2"``), decays proximally, and
  leaves the moments at zero on the first step (it only stores the gradient), while
  its bias corrections count that step: gradstep's ``skip_first_step=True``.
  ``restart_cond`` is not offered.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import sys
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "authors.json"
MANIFEST = FIXTURES / "MANIFEST-authors.json"


def _load(name: str):
    """A recorder module beside this file."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMMUNITY = _load("record_community_fixtures")  # record(), _run_torch_class()
BASE = COMMUNITY.BASE

#: the package's defaults: eps 1e-16 in and outside the root, rectified, decoupled
_AB = {"epsilon": 1e-16, "eps_root": 1e-16, "rectify": True}

ADABELIEF_CASES = [
    ("default", "AdaBelief", {"lr": 0.02}, "adabelief", {"learning_rate": 0.02, **_AB},
     {"float32": True}),
    (
        "rectify_decoupled_wd_betas_lr_change",
        "AdaBelief",
        {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.05},
        "adabelief",
        {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.05, **_AB},
        {"lrs": True, "float32": True},
    ),
    (
        "eps_coupled_wd_unrectified_lr_change",
        "AdaBelief",
        {"lr": 0.05, "eps": 1e-8, "weight_decay": 0.02, "weight_decouple": False,
         "rectify": False},
        "adabelief",
        {"learning_rate": 0.05, "epsilon": 1e-8, "eps_root": 1e-8, "weight_decay": 0.02,
         "decoupled_weight_decay": False},
        {"lrs": True, "float32": True},
    ),
    (
        "unrectified_decoupled_wd",
        "AdaBelief",
        {"lr": 0.05, "betas": (0.9, 0.99), "eps": 1e-12, "weight_decay": 0.1,
         "rectify": False},
        "adabelief",
        {"learning_rate": 0.05, "beta2": 0.99, "epsilon": 1e-12, "eps_root": 1e-12,
         "weight_decay": 0.1},
        {},
    ),
    (
        # decay by 1 - weight_decay per step: lr * (weight_decay / lr) at a constant lr
        "fixed_decay_constant_lr",
        "AdaBelief",
        {"lr": 0.05, "weight_decay": 0.004, "fixed_decay": True},
        "adabelief",
        {"learning_rate": 0.05, "weight_decay": 0.004 / 0.05, **_AB},
        {},
    ),
    (
        # amsgrad's maximum is kept but the rectified step reads the plain moment
        "amsgrad_unread_when_rectified",
        "AdaBelief",
        {"lr": 0.05, "amsgrad": True},
        "adabelief",
        {"learning_rate": 0.05, **_AB},
        {},
    ),
]  # fmt: skip


def _adan_betas(betas: tuple) -> dict:
    """gradstep's beta1..beta3 for adan-pytorch's weights of the new value."""
    return {f"beta{i}": 1.0 - b for i, b in enumerate(betas, 1)}


ADAN_CASES = [
    (
        "default",
        "Adan",
        {"lr": 0.02},
        "adan",
        {"learning_rate": 0.02, **_adan_betas((0.02, 0.08, 0.01)), "skip_first_step": True},
        {"float32": True},
    ),
    (
        "proximal_wd_betas_eps_lr_change",
        "Adan",
        {"lr": 0.05, "betas": (0.1, 0.2, 0.05), "eps": 1e-6, "weight_decay": 0.05},
        "adan",
        {"learning_rate": 0.05, **_adan_betas((0.1, 0.2, 0.05)), "epsilon": 1e-6,
         "weight_decay": 0.05, "skip_first_step": True},
        {"lrs": True, "float32": True},
    ),
    (
        "proximal_wd",
        "Adan",
        {"lr": 0.05, "weight_decay": 0.1},
        "adan",
        {"learning_rate": 0.05, **_adan_betas((0.02, 0.08, 0.01)), "weight_decay": 0.1,
         "skip_first_step": True},
        {},
    ),
]  # fmt: skip


#: what each package's cases state about the mapping (the fixture's ``note``)
NOTES = {
    "adabelief_pytorch": "eps added inside the second moment and outside the root "
    "(epsilon = eps_root = eps); rectify=True and decoupled decay by default",
    "adan_pytorch": "betas weigh the new value (beta_i = 1 - betas[i]); the first step "
    "leaves the moments at zero and only stores the gradient, the bias corrections "
    "count it (skip_first_step=True); proximal decay",
}


def _adabelief_class():
    """The authors' class, without its change-log printing dependencies."""
    if importlib.util.find_spec("tabulate") is not None:
        from adabelief_pytorch import AdaBelief

        return AdaBelief
    # stand in only while the package imports (torch looks for the real one later)
    sys.modules["tabulate"] = types.SimpleNamespace(tabulate=None)
    try:
        from adabelief_pytorch import AdaBelief
    finally:
        del sys.modules["tabulate"]
    return AdaBelief


def run_adabelief(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    cls = _adabelief_class()
    return COMMUNITY._run_torch_class(cls, {"print_change_log": False, **kwargs}, dtype,
                                      options, seed)  # fmt: skip


def run_adan(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    from adan_pytorch import Adan

    return COMMUNITY._run_torch_class(Adan, kwargs, dtype, options, seed)


def main() -> None:
    import torch

    records = COMMUNITY.record(
        "adabelief_pytorch", ADABELIEF_CASES, run_adabelief, 900
    ) + COMMUNITY.record("adan_pytorch", ADAN_CASES, run_adan, 920)
    for case in records:
        case["note"] = NOTES[case["reference"].split(".")[0]]
    OUT.write_text(json.dumps(records, indent=0))
    print(f"authors.json: {len(records)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_author_fixtures.py",
        "steps": BASE.STEPS,
        "files": ["authors.json"],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "adabelief_pytorch": importlib.metadata.version("adabelief-pytorch"),
            "adan_pytorch": importlib.metadata.version("adan-pytorch"),
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
