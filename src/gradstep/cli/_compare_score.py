"""How ``gradstep compare`` scores a race: time to a target that the loss *stays* under,
the median over seeds, and the AlgoPerf-style performance profile over the problems.

- A run reaches the target at the first recorded step after which its loss (smoothed
  with a trailing moving average on stochastic problems) never again exceeds it; a run
  that touches the target and climbs back has not reached it. A diverged, failed or
  skipped run never reaches it.
- With several seeds, an optimizer's time on a problem is the median over the seeds of
  the steps to target (a seed that never reaches it counts as infinitely slow, so the
  median is finite only when most seeds got there).
- The performance profile of an optimizer is ``rho(tau)``: the fraction of the scored
  problems it solved within ``tau`` times the steps of the fastest optimizer on that
  problem, for ``tau`` from 1 to :data:`TAU_MAX`. Its score is the area under
  ``rho`` over ``[1, TAU_MAX]`` divided by ``TAU_MAX - 1``: 1 means fastest everywhere,
  0 means it solved nothing within ``TAU_MAX`` times the best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: the profile runs from tau = 1 to this (AlgoPerf uses 4 for its time-to-target)
TAU_MAX = 4.0
#: width, in recorded points, of the trailing moving average on stochastic problems
SMOOTHING = 5


def smooth(loss: Sequence[float], width: int) -> np.ndarray:
    """Trailing moving average over ``width`` recorded points (shorter at the start)."""
    values = np.asarray(loss, dtype=np.float64)
    if width <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.concatenate([[0.0], values]))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - width)
    return (sums[idx] - sums[lo]) / (idx - lo)


def steps_to_target(
    steps: Sequence[int], loss: Sequence[float], target: float, *, ok: bool, width: int = 1
) -> int | None:
    """The first recorded step from which the (smoothed) loss stays at or below
    ``target`` to the end of the run; ``None`` when it never settles there or the run
    did not finish (``ok`` false)."""
    if not ok or len(loss) == 0:
        return None
    values = smooth(loss, width)
    above = np.flatnonzero(~(values <= target))  # NaN counts as above
    if len(above) == 0:
        return int(steps[0])
    last = int(above[-1])
    return None if last == len(values) - 1 else int(steps[last + 1])


def median_steps(per_seed: Sequence[int | None]) -> float:
    """Median over seeds of the steps to target, a missing one counting as infinite."""
    if not per_seed:
        return math.inf
    values = sorted(math.inf if s is None else float(s) for s in per_seed)
    n = len(values)
    mid = values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])
    return mid


def profile(times: dict[str, dict[str, float]], taus: np.ndarray) -> dict[str, np.ndarray]:
    """``rho(tau)`` per optimizer; ``times[optimizer][problem]``: median steps to target
    (``inf``: not solved). A problem nobody solved counts as unsolved for everyone."""
    names = list(times)
    problems = sorted({p for t in times.values() for p in t})
    out = {n: np.zeros(len(taus)) for n in names}
    if not problems:
        return out
    for p in problems:
        best = min(times[n].get(p, math.inf) for n in names)
        if not math.isfinite(best):
            continue
        for n in names:
            t = times[n].get(p, math.inf)
            out[n] += (t / max(best, 1.0) <= taus) if math.isfinite(t) else 0.0
    return {n: v / len(problems) for n, v in out.items()}


def taus(points: int = 121, tau_max: float = TAU_MAX) -> np.ndarray:
    return np.linspace(1.0, tau_max, points)


def area(rho: np.ndarray, grid: np.ndarray) -> float:
    """The area under ``rho`` over the grid, divided by the grid's width (0 to 1)."""
    if len(grid) < 2:
        return float(rho[0]) if len(rho) else 0.0
    widths = np.diff(grid)
    return float(np.sum(0.5 * (rho[1:] + rho[:-1]) * widths) / (grid[-1] - grid[0]))


def problem_order(entries: list[dict]) -> list[dict]:
    """One problem's optimizers, best first: finished ones (every seed ok) before any
    diverged, failed or skipped one; among finished ones by median steps to target,
    then by the median final loss the problem ranks by (validation loss on data, the
    function's value otherwise). ``entries``: dicts with ``ok``, ``time``, ``loss``."""

    def key(e):
        loss = e["loss"]
        return (
            0 if e["ok"] else 1,
            e["time"] if e["ok"] else math.inf,
            loss if e["ok"] and loss is not None and math.isfinite(loss) else math.inf,
        )

    return sorted(entries, key=key)


def leaderboard(per_problem: dict[str, list[dict]], tau_max: float = TAU_MAX) -> list[dict]:
    """The overall ranking over the scored problems.

    ``per_problem[problem]``: one dict per optimizer with ``optimizer``, ``ok`` (every
    seed finished), ``time`` (median steps to target) and ``loss``. Optimizers are
    ranked by the profile's area, then by the number of problems they finished (so a
    run that failed never sits above one that worked but was equally slow), then by
    their mean per-problem rank."""
    names = list(dict.fromkeys(e["optimizer"] for es in per_problem.values() for e in es))
    times = {n: {} for n in names}
    finished = dict.fromkeys(names, 0)
    ranks: dict[str, dict[str, int]] = {n: {} for n in names}
    solved = dict.fromkeys(names, 0)
    for p, entries in per_problem.items():
        for place, e in enumerate(problem_order(entries), start=1):
            n = e["optimizer"]
            times[n][p] = e["time"] if e["ok"] else math.inf
            finished[n] += bool(e["ok"])
            solved[n] += bool(e["ok"] and math.isfinite(e["time"]))
            ranks[n][p] = place
    grid = taus(tau_max=tau_max)
    rho = profile(times, grid)
    rows = [
        {
            "optimizer": n,
            "score": area(rho[n], grid),
            "solved": solved[n],
            "finished": finished[n],
            "mean_rank": float(np.mean(list(ranks[n].values()))) if ranks[n] else math.inf,
            "ranks": ranks[n],
            "profile": rho[n].tolist(),
        }
        for n in names
    ]
    rows.sort(key=lambda r: (-round(r["score"], 12), -r["finished"], r["mean_rank"]))
    return rows
