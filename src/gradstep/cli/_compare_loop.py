"""The one training loop of ``gradstep compare``: an optimizer on a problem, stepped
through a backend's stepper, recorded as a :class:`Run`.

A *stepper* is what differs between backends (``_compare_numpy``, ``_compare_torch``,
``_compare_jax``); everything else -- the batches, counting gradient evaluations,
divergence, the evaluation schedule, the loss curve, the path on 2-D functions,
timing, the final scores -- happens here once. A stepper has:

- ``engine``: the name the report gives the run's engine;
- ``params()``: the parameters now, as a dict of NumPy arrays;
- ``gradient(batch)``: compute the loss and the gradient at the current
  parameters; return the loss (the gradient stays with the stepper);
- ``apply()``: step the optimizer with that gradient;
- ``closure_step(batch, counted)``: one step of an optimizer that re-evaluates the
  loss through a closure; ``counted()`` is called once per evaluation; return the
  loss at the step's start.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _compare_score as score

#: a run is diverged when its loss or a parameter is not finite, or when the loss grows
#: past this many times its starting value
DIVERGENCE_FACTOR = 1e6


@dataclass
class Run:
    """One optimizer on one problem."""

    optimizer: str
    problem: str
    status: str = "ok"  # ok, diverged, skipped, error
    reason: str = ""
    learning_rate: float | None = None
    steps: int = 0
    curve_steps: list[int] = field(default_factory=list)
    curve_loss: list[float] = field(default_factory=list)
    path: np.ndarray | None = None  # (steps + 1, 2) for 2-D functions
    final: dict[str, float] = field(default_factory=dict)
    steps_to_target: int | None = None
    diverged_at: int | None = None
    wall_s: float = 0.0
    step_s: float = 0.0
    engine: str = ""
    evaluations: int = 0
    notes: list[str] = field(default_factory=list)
    tuning: dict | None = None
    schedule: str | None = None  # the learning rate, when it is a schedule
    seed: int = 0
    replicas: list[Run] = field(default_factory=list)  # the same run on the other seeds

    @property
    def final_loss(self) -> float | None:
        return None if self.status != "ok" else self.final.get("loss")

    @property
    def monitored(self) -> float | None:
        """The last value of the monitored loss (validation on data), when ok."""
        if self.status != "ok":
            return None
        return self.final.get("val_loss", self.final.get("loss"))

    def score(self) -> tuple[float, float]:
        """What tuning minimises: steps to target, then the final monitored loss
        (validation loss on data; infinite when not ok)."""
        loss = self.monitored
        loss = math.inf if loss is None or not math.isfinite(loss) else loss
        steps = math.inf if self.steps_to_target is None else self.steps_to_target
        return (steps, loss)

    @property
    def seeds(self) -> list[Run]:
        return [self, *self.replicas]


def eval_every(problem, steps: int) -> int:
    """Steps between evaluations of the monitored loss (every step on 2-D functions)."""
    return 1 if problem.kind == "surface" else max(1, steps // 50)


def diverged(loss: float, start: float) -> bool:
    return not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * max(1.0, abs(start))


def finite(tree: dict) -> bool:
    return all(bool(np.isfinite(v).all()) for v in tree.values())


def train(problem, entry, steps: int, seed: int, make_stepper: Callable) -> Run:
    """Run ``entry`` on ``problem`` for ``steps`` gradient evaluations through the
    stepper ``make_stepper()`` builds (built here, so its warnings are the run's)."""
    run = Run(entry.name, problem.name)
    batches = problem.batches(steps, seed)
    every = eval_every(problem, steps)
    closure = "needs_closure" in entry.spec.capabilities

    def counted() -> None:
        run.evaluations += 1

    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        stepper = make_stepper()
        run.engine = stepper.engine
        params = stepper.params()
        path = [params["xy"].copy()] if problem.kind == "surface" else None
        start = problem.monitor(params)
        record(run, 0, start)
        t0 = time.perf_counter()
        step_time = 0.0
        for k, batch in enumerate(batches, start=1):
            if closure:
                s0 = time.perf_counter()
                loss = float(stepper.closure_step(batch, counted))
                step_time += time.perf_counter() - s0
                if diverged(loss, start):
                    run.status, run.diverged_at = "diverged", k - 1
                    break
            else:
                loss = float(stepper.gradient(batch))
                counted()
                if diverged(loss, start):
                    run.status, run.diverged_at = "diverged", k - 1
                    break
                s0 = time.perf_counter()
                stepper.apply()
                step_time += time.perf_counter() - s0
            params = stepper.params()
            if path is not None:
                path.append(np.array(params["xy"], dtype=np.float64))
            x = run.evaluations if closure else k  # steps count gradient evaluations
            if closure or k % every == 0 or k == steps:
                loss = problem.monitor(params)
                if diverged(loss, start) or not finite(params):
                    run.status, run.diverged_at = "diverged", x
                    break
                record(run, x, loss)
            if closure and run.evaluations >= steps:
                break  # a closure step spends several evaluations of the budget
        run.wall_s = time.perf_counter() - t0
        run.step_s = step_time
    run.notes += sorted({str(w.message) for w in caught if "gradstep" in str(w.message)})
    return finish(run, problem, stepper.params(), path, steps)


def record(run: Run, k: int, loss: float) -> None:
    run.curve_steps.append(k)
    run.curve_loss.append(float(loss))


def finish(run: Run, problem, params, path, steps: int) -> Run:
    run.steps = steps if run.diverged_at is None else run.diverged_at
    run.steps_to_target = score.steps_to_target(
        run.curve_steps,
        run.curve_loss,
        problem.target,
        ok=run.status == "ok",
        width=score.SMOOTHING if problem.stochastic else 1,
    )
    if path is not None:
        run.path = np.array(path[: run.steps + 1])
    if run.status == "ok":
        with np.errstate(all="ignore"):
            run.final = problem.evaluate(params)
    return run
