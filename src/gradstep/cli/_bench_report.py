"""What every ``gradstep bench`` backend shares: medians, the machine, table cells."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import gradstep


def median_time(step: Callable[[int], None], repeats: int, warmup: int = 2) -> float:
    for k in range(warmup):
        step(k)
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        step(warmup + k)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> dict[str, Any]:
    info = {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gradstep": gradstep.__version__,
    }
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.get_num_threads()
    except ImportError:  # pragma: no cover - numba is a requirement
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1e3 * seconds:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}"


def percent(part: float, whole: float) -> str:
    return "n/a" if not whole else f"{100 * part / whole:.3f}%"
