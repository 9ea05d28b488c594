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

#: relative spread of every timed case of this run, for the contention warning
SPREADS: list[float] = []


def median_time(step: Callable[[int], None], repeats: int, warmup: int = 2) -> float:
    """The median time of ``repeats`` calls of ``step`` after ``warmup`` calls; the
    case's spread (max - min over the median) is recorded in :data:`SPREADS`."""
    for k in range(warmup):
        step(k)
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        step(warmup + k)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    if len(times) > 2 and median > 0:
        SPREADS.append((max(times) - min(times)) / median)
    return median


def load_warning() -> str | None:
    """A warning when the machine looks busy: a load average above its cores before
    the run, or timings of one case that vary by more than half their median."""
    notes = []
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        load = 0.0
    cores = os.cpu_count() or 1
    if load > 0.75 * cores:
        notes.append(f"load average {load:.1f} on {cores} cores")
    if SPREADS:
        wide = sum(s > 0.5 for s in SPREADS)
        if wide > len(SPREADS) // 4:
            notes.append(f"{wide} of {len(SPREADS)} cases varied by more than 50% between steps")
    if not notes:
        return None
    return (
        "warning: the machine looks contended (" + "; ".join(notes) + "); other jobs slow "
        "the contenders unevenly, so trust only ratios from a quiet run"
    )


def write_report(path: str | None, report: dict) -> None:
    """Write the JSON report where ``--json`` says (nowhere by default)."""
    import json

    report["spread_median"] = statistics.median(SPREADS) if SPREADS else None
    report["contention_warning"] = load_warning()
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {path}")


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


def ms(seconds: float | None, digits: int = 2) -> str:
    return "n/a" if seconds is None else f"{1e3 * seconds:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}"


def percent(part: float, whole: float) -> str:
    return "n/a" if not whole else f"{100 * part / whole:.3f}%"


def markdown_table(head: tuple[str, ...], rows: list[list[str]]) -> str:
    """A Markdown table of already formatted cells."""
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    lines += [" | ".join(cells) for cells in rows]
    return "\n".join("| " + line + " |" for line in lines)
