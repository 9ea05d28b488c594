"""Record reference trajectories of pytorch-optimizer's Ranger21.

Run from the repository root (needs torch and pytorch-optimizer installed; the tests
do not)::

    python tests/conformance/record_ranger21_fixtures.py

The cases go to ``fixtures/ranger21.json`` in the format of ``record_fixtures.py``
(30 steps, gradients ``h * (w - target) + noise`` at the reference's own iterates,
one column of the first tensor always zero), recorded on pytorch-optimizer's
per-parameter path (``foreach=False``), and are replayed by ``test_conformance.py``
and ``test_fronts_replay.py``; ``fixtures/MANIFEST-ranger21.json`` records the
library versions.
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
OUT = FIXTURES / "ranger21.json"
MANIFEST = FIXTURES / "MANIFEST-ranger21.json"


def _load(name: str):
    """A recorder module beside this file."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMMUNITY = _load("record_community_fixtures")  # record(), run_pytorch_optimizer()

# (id, reference, reference kwargs, gradstep rule, gradstep kwargs, options) as in
# record_community_fixtures.py
CASES = [
    (
        # the defaults over a 30-step run: warm-up 6 steps, warm-down from step 21
        "ranger21_default",
        "Ranger21",
        {"lr": 0.02, "num_iterations": 30},
        "ranger21",
        {"learning_rate": 0.02, "num_iterations": 30},
        {"float32": True},
    ),
    (
        "ranger21_wd_norm_loss_agc_k_alpha_no_softplus",
        "Ranger21",
        {"lr": 0.05, "num_iterations": 40, "betas": (0.8, 0.99), "beta0": 0.5,
         "num_warm_up_iterations": 3, "num_warm_down_iterations": 25, "warm_down_min_lr": 1e-3,
         "weight_decay": 0.05, "norm_loss_factor": 0.01, "agc_clipping_value": 0.5,
         "agc_eps": 0.01, "lookahead_merge_time": 4, "lookahead_blending_alpha": 0.6,
         "eps": 1e-6, "use_softplus": False},
        "ranger21",
        {"learning_rate": 0.05, "num_iterations": 40, "beta1": 0.8, "beta2": 0.99,
         "beta0": 0.5, "num_warmup_steps": 3, "num_warmdown_steps": 25,
         "warmdown_min_lr": 1e-3, "weight_decay": 0.05, "norm_loss_factor": 0.01,
         "agc_clipping": 0.5, "agc_epsilon": 0.01, "sync_period": 4, "slow_step_size": 0.6,
         "epsilon": 1e-6, "softplus": False},
        {"float32": True, "shapes": ((3, 4), (5,), (2, 3, 2, 2))},
    ),
    (
        "ranger21_no_schedule_gc_normalization_softplus_beta",
        "Ranger21",
        {"lr": 0.03, "num_iterations": 10, "disable_lr_scheduler": True,
         "centralize_gradients": False, "normalize_gradients": False, "beta_softplus": 5.0,
         "weight_decay": 0.0},
        "ranger21",
        {"learning_rate": 0.03, "num_iterations": 10, "use_schedule": False,
         "centralize_gradients": False, "normalize_gradients": False, "softplus_beta": 5.0,
         "weight_decay": 0.0},
        {},
    ),
]  # fmt: skip


def main() -> None:
    import torch

    records = COMMUNITY.record("pytorch_optimizer", CASES, COMMUNITY.run_pytorch_optimizer, 900)
    OUT.write_text(json.dumps(records, indent=0))
    print(f"ranger21.json: {len(records)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_ranger21_fixtures.py",
        "steps": COMMUNITY.BASE.STEPS,
        "files": ["ranger21.json"],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "pytorch_optimizer": importlib.metadata.version("pytorch_optimizer"),
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
