"""Learning-rate tuning and seeds of ``gradstep compare``: the same budget of trials
for every optimizer on every problem.

A tuned optimizer gets ``points`` trials on a log grid around its default learning
rate (a decade apart), then ``extra`` more: while the best trial sits at an edge of
what was tried, the grid is widened on that side by a decade; otherwise the extra
trials refine around the best (half a decade either side). If the best still
sits at an edge, the result is flagged. When every rate of the grid diverges, the
tuner first tries smaller rates, a decade at a time below the smallest, until one
does not diverge or it reaches its floor, ``RESCUE_DECADES`` decades below the
grid's smallest rate (at most that many more trials, on top of the budget); the
extra trials then go on from there. If none finishes, the result says so, with
the floor. Trials are scored on the first seed by steps
to target, then by the final monitored loss (validation loss on data: test data never
choose). The chosen rate then runs on the other seeds of a stochastic problem.
"""

from __future__ import annotations

import math

from . import _compare_race as race

#: (grid points, extra trials) per preset
BUDGETS = {"quick": (3, 2), "default": (5, 2), "full": (7, 3)}
DECADE = 10.0
HALF_DECADE = 10.0**0.5
#: how many decades below the grid's smallest rate the tuner goes when every rate of
#: the grid diverges (its floor: that rate divided by DECADE**RESCUE_DECADES)
RESCUE_DECADES = 6


def _round(lr: float) -> float:
    return float(f"{lr:.3g}")


def grid(lr: float, points: int) -> list[float]:
    """``points`` rates around ``lr``, a decade apart (``lr`` in the middle)."""
    half = points // 2
    return [_round(lr * DECADE**k) for k in range(-half, points - half)]


def next_trial(tried: dict[float, tuple], allowed) -> tuple[float | None, str]:
    """The next learning rate to try given ``tried`` (rate -> score), and why."""
    rates = sorted(tried)
    best = min(rates, key=lambda r: (tried[r], r))
    if not math.isfinite(tried[best][1]):
        return None, "no trial finished"
    for edge, factor in ((rates[0], 1 / DECADE), (rates[-1], DECADE)):
        if best == edge and len(rates) > 1:
            candidate = _round(best * factor)
            if allowed(candidate) and candidate not in tried:
                return candidate, "widen"
    for factor in (1 / HALF_DECADE, HALF_DECADE):
        candidate = _round(best * factor)
        if allowed(candidate) and candidate not in tried:
            return candidate, "refine"
    return None, "nothing left to try"


def at_edge(tried: dict[float, tuple], best: float) -> bool:
    rates = sorted(tried)
    return len(rates) > 1 and best in (rates[0], rates[-1])


def rescue(runs: dict, trial, allowed) -> dict | None:
    """When every trial so far diverged: trial smaller rates, a decade at a time below
    the smallest, until one does not diverge or the floor is reached. Returns what was
    done (None when no rescue was needed)."""
    if not runs or any(x.status != "diverged" for x in runs.values()):
        return None
    start = min(runs)
    floor = _round(start / DECADE**RESCUE_DECADES)
    out = {"floor": floor, "tried": [], "first_finished": None}
    for k in range(1, RESCUE_DECADES + 1):
        rate = _round(start / DECADE**k)
        if not allowed(rate) or rate in runs:
            continue
        trial(rate)
        out["tried"].append(rate)
        if runs[rate].status != "diverged":
            out["first_finished"] = rate if runs[rate].status == "ok" else None
            break
    return out


def tune(problem, entry, *, steps, seed, backend, engine, points, extra, tick):
    """The best of ``points + extra`` trials on ``seed`` (and of the rescue's, when the
    whole grid diverges: :func:`rescue`); ``run.tuning`` holds the sweep."""
    budget = points + extra
    lr = entry.learning_rate
    ranges = getattr(entry.spec, "ranges", {})
    if entry.skip or lr is None or lr <= 0 or "learning_rate" not in ranges:
        run = race.run_one(problem, entry, steps=steps, seed=seed, backend=backend, engine=engine)
        if not entry.skip:
            run.tuning = {"trials": [], "reason": "no numeric learning_rate to sweep"}
        tick(budget)
        return run
    allowed = ranges["learning_rate"].contains
    runs: dict[float, race.Run] = {}

    counted = 0  # trials of the budget (the rescue's come on top, unticked)

    def trial(rate: float, *, in_budget: bool = True) -> None:
        nonlocal counted
        runs[rate] = race.run_one(
            problem,
            entry,
            steps=steps,
            seed=seed,
            backend=backend,
            engine=engine,
            learning_rate=rate,
        )
        if in_budget:
            counted += 1
            tick(1)

    for rate in grid(lr, points):
        if allowed(rate) and rate not in runs:
            trial(rate)
    rescued = rescue(runs, lambda rate: trial(rate, in_budget=False), allowed)
    while counted < budget:
        rate, _why = next_trial({r: x.score() for r, x in runs.items()}, allowed)
        if rate is None:
            break
        trial(rate)
    tick(budget - counted)
    scores = {r: x.score() for r, x in runs.items()}
    best = min(scores, key=lambda r: (scores[r], r))
    chosen = runs[best]
    flag = None
    if chosen.status != "ok":  # every trial failed: report the default's run
        chosen = runs.get(_round(lr), chosen)
        flag = "no learning rate tried finished"
        if rescued and rescued["tried"]:
            flag += f" (smaller rates tried, down to {min(runs):g})"
    elif at_edge(scores, best):
        side = "smallest" if best == min(scores) else "largest"
        flag = f"best learning rate {best:g} is the {side} tried: the optimum may lie beyond"
    chosen.tuning = {
        "trials": [
            {
                "learning_rate": r,
                "status": runs[r].status,
                "steps_to_target": runs[r].steps_to_target,
                "monitored_loss": runs[r].monitored,
            }
            for r in sorted(runs)
        ],
        "chosen": chosen.learning_rate,
        "edge": flag,
        "rescue": rescued,
    }
    if rescued and rescued["first_finished"] is not None:
        chosen.notes.append(
            f"tuning on {problem.name}: every rate of the grid diverged; smaller rates "
            f"tried, {rescued['first_finished']:g} the first to finish"
        )
    if flag:
        chosen.notes.append(f"tuning on {problem.name}: {flag}")
    return chosen


def race_pair(problem, entry, *, steps, seeds, backend, engine, tuned, points, extra, tick):
    """One optimizer on one problem: tuned (or at its defaults) on the first seed, then
    the same learning rate on the other seeds."""
    common = dict(steps=steps, backend=backend, engine=engine)
    if tuned:
        run = tune(problem, entry, seed=seeds[0], points=points, extra=extra, tick=tick, **common)
    else:
        run = race.run_one(problem, entry, seed=seeds[0], **common)
        tick(1)
    extra_kw = {}
    if tuned and run.learning_rate is not None and entry.learning_rate is not None:
        extra_kw["learning_rate"] = run.learning_rate
    for s in seeds[1:]:
        run.replicas.append(race.run_one(problem, entry, seed=s, **common, **extra_kw))
        tick(1)
    return run


def units(tuned: bool, seeds: int, points: int, extra: int) -> int:
    """Progress units of one pair."""
    return (points + extra if tuned else 1) + seeds - 1
