"""Record reference trajectories of kron-torch's ``Kron`` (PSGD-Kron) with its random
draws, for ``test_psgd_kron.py``.

Run from the repository root (needs torch and kron-torch 0.3.3; the tests do not)::

    TORCHDYNAMO_DISABLE=1 python tests/conformance/record_psgd_kron_fixtures.py

``TORCHDYNAMO_DISABLE=1`` runs kron-torch's ``torch.compile``'d functions eagerly
(their defined semantics; compiled code would draw its probes with inductor's own
generator, which cannot be logged). Each case steps ``Kron`` with the preconditioner
updated every step (probability 1.0) on gradients ``c * (w - target) + noise`` at its
own iterates, and records per step the probe vectors it drew (``torch.randn_like`` is
wrapped to log them) and whether it balanced its factors (its ``random.Random``
draws are logged). ``schedule`` records, for the default probability schedule, the
probability and the update decision of every step 0..5999. Output:
``fixtures/psgd_kron/psgd_kron.json``.

``GENERIC_CASES`` go to ``fixtures/psgd_kron.json``, replayed by ``test_conformance.py``
with gradstep's own probes: a probability of 0.01 updates the preconditioner first on
step 100, so in 30 steps nothing random happens and the trajectory (momentum, the
initial factors, clipping, weight decay, changing learning rates) needs no playback.
``fixtures/MANIFEST-psgd-kron.json`` records the library versions.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
OUT = HERE / "fixtures" / "psgd_kron" / "psgd_kron.json"
GENERIC_OUT = HERE / "fixtures" / "psgd_kron.json"
MANIFEST = HERE / "fixtures" / "MANIFEST-psgd-kron.json"
STEPS = 30
#: a matrix, a vector and a 1x1 tensor (diagonal factors), an axis longer than
#: max_size_triangular (diagonal beside a triangular one), a 3-axis tensor (merged)
SHAPES = [(6, 4), (5,), (1, 1), (10, 3), (2, 3, 4)]

# (id, Kron kwargs, gradstep psgd_kron kwargs); the probability is 1.0 in all
CASES = [
    (
        "defaults_small_triangular",
        {"lr": 0.01, "max_size_triangular": 8},
        {"learning_rate": 0.01, "max_size_triangular": 8},
    ),
    (
        "decay_gradient_fit_smart_one_diag",
        {
            "lr": 0.02,
            "b1": 0.5,
            "weight_decay": 0.1,
            "max_size_triangular": 8,
            "memory_save_mode": "smart_one_diag",
            "momentum_into_precond_update": False,
            "precond_lr": 0.3,
            "precond_init_scale": 0.5,
        },
        {
            "learning_rate": 0.02,
            "b1": 0.5,
            "weight_decay": 0.1,
            "max_size_triangular": 8,
            "memory_save_mode": "smart_one_diag",
            "momentum_into_precond_update": False,
            "precond_lr": 0.3,
            "precond_init_scale": 0.5,
        },
    ),
]


# (id, Kron kwargs, gradstep kwargs) with preconditioner_update_probability 0.01
GENERIC_CASES = [
    (
        "no_update_yet_decay_scale_lr_change",
        {"lr": 0.02, "b1": 0.8, "weight_decay": 0.1, "precond_init_scale": 0.5},
        {"learning_rate": 0.02, "b1": 0.8, "weight_decay": 0.1, "precond_init_scale": 0.5},
    ),
]
#: the learning rate of every step of a generic case
LRS = [0.02 * (1.0 if k < 10 else 0.5 if k < 20 else 0.25) for k in range(STEPS)]


class LoggedRandom:
    """Wraps ``random.Random``: every ``random()`` draw is appended to ``draws``."""

    def __init__(self, rng):
        self.rng, self.draws = rng, []

    def random(self):
        x = self.rng.random()
        self.draws.append(x)
        return x


def run_case(kwargs: dict, dtype: str, seed: int, probability: float = 1.0, lrs=None) -> dict:
    import torch
    from kron_torch import Kron

    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s) for s in SHAPES]
    target = [rng.normal(size=s) for s in SHAPES]
    curvature = [rng.uniform(0.5, 2.0, size=s) for s in SHAPES]
    noise = [[0.1 * rng.normal(size=s) for s in SHAPES] for _ in range(STEPS)]
    tdtype = getattr(torch, dtype)
    params = [torch.tensor(w, dtype=tdtype) for w in w0]
    extra = {} if dtype == "float32" else {"precond_dtype": torch.float64}
    opt = Kron(params, preconditioner_update_probability=probability, **kwargs, **extra)
    opt.rng = LoggedRandom(opt.rng)
    drawn: list = []
    original = torch.randn_like

    def logged(t, *a, **k):
        v = original(t, *a, **k)
        drawn.append(v.detach().numpy().copy())
        return v

    torch.manual_seed(seed)
    grads, trajectory, probes = [], [], []
    torch.randn_like = logged
    try:
        for k in range(STEPS):
            w = [p.detach().numpy().astype(np.float64) for p in params]
            g = [c * (x - t) + n for x, t, c, n in zip(w, target, curvature, noise[k])]
            g = [x.astype(dtype) for x in g]
            for p, x in zip(params, g):
                p.grad = torch.tensor(x)
            drawn.clear()
            if lrs is not None:
                opt.param_groups[0]["lr"] = lrs[k]
            opt.step()
            grads.append([x.tolist() for x in g])
            trajectory.append([p.detach().numpy().tolist() for p in params])
            probes.append([v.tolist() for v in drawn])
    finally:
        torch.randn_like = original
    return {
        "params0": [w.astype(dtype).tolist() for w in w0],
        "grads": grads,
        "trajectory": trajectory,
        "probes": probes,
        "balance": [x < 0.01 for x in opt.rng.draws],
    }


def record_schedule(n: int = 6000) -> dict:
    import torch
    from kron_torch import Kron

    opt = Kron([torch.zeros(2, requires_grad=True)])  # no gradient: only the schedule runs
    schedule = opt.param_groups[0]["preconditioner_update_probability"]
    probs, updates = [], []
    for k in range(n):
        probs.append(float(schedule(torch.tensor(float(k)))))
        opt.step()
        updates.append(int(opt._update_counter) == 0)
    return {"probability": probs, "updates": updates}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    cases = []
    for seed, (case_id, ref_kwargs, rule_kwargs) in enumerate(CASES, 1100):
        for dtype in ("float32", "float64"):
            case = {
                "id": f"kron_torch-{case_id}-{dtype}",
                "reference": "kron_torch.Kron",
                "reference_kwargs": {**ref_kwargs, "preconditioner_update_probability": 1.0},
                "rule": "psgd_kron",
                "rule_kwargs": {**rule_kwargs, "preconditioner_update_probability": 1.0},
                "dtype": dtype,
                **run_case(ref_kwargs, dtype, seed),
            }
            if dtype == "float64":
                case["reference_kwargs"]["precond_dtype"] = "float64"
            cases.append(case)
    generic = []
    for seed, (case_id, ref_kwargs, rule_kwargs) in enumerate(GENERIC_CASES, 1200):
        for dtype in ("float32", "float64"):
            data = run_case(ref_kwargs, dtype, seed, probability=0.01, lrs=LRS)
            data.pop("balance")  # drawn, but without an update nothing is balanced
            assert not any(data.pop("probes"))  # no update, no probe
            extra = {} if dtype == "float32" else {"precond_dtype": "float64"}
            generic.append(
                {
                    "id": f"kron_torch-{case_id}-{dtype}",
                    "reference": "kron_torch.Kron",
                    "reference_kwargs": {
                        **ref_kwargs,
                        "preconditioner_update_probability": 0.01,
                        **extra,
                    },
                    "rule": "psgd_kron",
                    "rule_kwargs": {**rule_kwargs, "preconditioner_update_probability": 0.01},
                    "dtype": dtype,
                    "lrs": LRS,
                    **data,
                }
            )
    GENERIC_OUT.write_text(json.dumps(generic, indent=0))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cases": cases, "schedule": record_schedule()}, indent=0))
    print(f"psgd_kron.json: {len(cases)} trajectories")
    MANIFEST.write_text(
        json.dumps(
            {
                "generator": "tests/conformance/record_psgd_kron_fixtures.py",
                "files": ["psgd_kron.json", "psgd_kron/psgd_kron.json"],
                "versions": {
                    "kron-torch": version("kron-torch"),
                    "torch": torch.__version__,
                    "numpy": np.__version__,
                    "python": sys.version.split()[0],
                },
                "platform": platform.platform(),
                "torchdynamo": "disabled (TORCHDYNAMO_DISABLE=1)",
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
