"""Record the values of schedules whose reference library is not a test dependency:
Hugging Face ``transformers``' ``get_wsd_schedule`` (warmup-stable-decay) and Keras'
``InverseTimeDecay``. Replayed by ``tests/schedules/test_recorded_schedules.py``.

Run with both libraries importable (Keras on its JAX backend)::

    KERAS_BACKEND=jax python tests/conformance/record_schedule_fixtures.py

It writes ``tests/conformance/fixtures/schedules/schedules.json`` (each case: the reference's
arguments, the gradstep call that should match, and the value at every count) and
``MANIFEST-schedules.json`` (the library versions).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "schedules"
STEPS = 60

# (id, get_wsd_schedule kwargs, gradstep.schedules.warmup_stable_decay kwargs)
WSD_CASES = [
    (
        "wsd_linear",
        dict(num_warmup_steps=5, num_stable_steps=20, num_decay_steps=25, decay_type="linear"),
        dict(warmup_steps=5, stable_steps=20, decay_steps=25, decay="linear"),
    ),
    (
        "wsd_cosine_min_ratio",
        dict(
            num_warmup_steps=8,
            num_stable_steps=10,
            num_decay_steps=30,
            decay_type="cosine",
            min_lr_ratio=0.1,
        ),
        # Hugging Face's warm-up starts at min_lr_ratio too
        dict(
            warmup_steps=8,
            stable_steps=10,
            decay_steps=30,
            decay="cosine",
            init_value=0.1,
            end_value=0.1,
        ),
    ),
    (
        "wsd_1_sqrt",
        dict(num_warmup_steps=0, num_stable_steps=12, num_decay_steps=40, decay_type="1-sqrt"),
        dict(warmup_steps=0, stable_steps=12, decay_steps=40, decay="1-sqrt"),
    ),
]

# (id, InverseTimeDecay arguments, gradstep.schedules.inverse_time_decay kwargs)
INVERSE_TIME_CASES = [
    (
        "inverse_time",
        dict(initial_learning_rate=0.5, decay_steps=4, decay_rate=0.7),
        dict(init_value=0.5, decay_steps=4, decay_rate=0.7),
    ),
    (
        "inverse_time_staircase",
        dict(initial_learning_rate=2.0, decay_steps=7, decay_rate=1.5, staircase=True),
        dict(init_value=2.0, decay_steps=7, decay_rate=1.5, staircase=True),
    ),
]


def wsd_values(kwargs: dict) -> list[float]:
    import torch
    from transformers.optimization import get_wsd_schedule

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = get_wsd_schedule(opt, **kwargs)
    out = []
    for _ in range(STEPS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def inverse_time_values(kwargs: dict) -> list[float]:
    import keras

    schedule = keras.optimizers.schedules.InverseTimeDecay(**kwargs)
    return [float(schedule(t)) for t in range(STEPS)]


def main() -> None:
    from importlib.metadata import version

    import numpy as np

    cases = []
    for case_id, reference, ours in WSD_CASES:
        cases.append(
            dict(
                id=case_id,
                reference="transformers.get_wsd_schedule",
                reference_kwargs=reference,
                schedule="warmup_stable_decay",
                kwargs=dict(peak_value=1.0, **ours),
                values=wsd_values(reference),
                rtol=1e-12,
            )
        )
    for case_id, reference, ours in INVERSE_TIME_CASES:
        cases.append(
            dict(
                id=case_id,
                reference="keras.optimizers.schedules.InverseTimeDecay",
                reference_kwargs=reference,
                schedule="inverse_time_decay",
                kwargs=ours,
                values=inverse_time_values(reference),
                rtol=2e-7,  # Keras computes in float32
            )
        )
    FIXTURES.mkdir(exist_ok=True)
    (FIXTURES / "schedules.json").write_text(json.dumps(cases, indent=1) + "\n")
    manifest = {
        "generator": "tests/conformance/record_schedule_fixtures.py",
        "steps": STEPS,
        "files": ["tests/conformance/fixtures/schedules/schedules.json"],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": version("torch"),
            "transformers": version("transformers"),
            "keras": version("keras"),
            "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": "KERAS_BACKEND=jax python tests/conformance/record_schedule_fixtures.py",
    }
    (FIXTURES / "MANIFEST-schedules.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
