"""``gradstep compare --backend torch``: one run through
``gradstep.torch.TransformOptimizer`` with torch parameters and autograd gradients
(closure optimizers get torch's closure convention)."""

from __future__ import annotations

import time
import warnings

import numpy as np

from ._compare_race import Entry, Run, _diverged, _eval_every, _finish, _finite, _record


def run_torch(problem, entry: Entry, steps: int, seed: int, engine: str, **overrides) -> Run:
    import torch

    from gradstep.torch import TransformOptimizer

    run = Run(entry.name, problem.name)
    init = problem.init(seed)
    tensors = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in init.items()}
    batches = problem.batches(steps, seed)
    every = _eval_every(problem, steps)
    closure_needed = "needs_closure" in entry.spec.capabilities

    def numpy_params() -> dict:
        return {k: t.detach().numpy() for k, t in tensors.items()}

    path = [init["xy"].copy()] if problem.kind == "surface" else None
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        opt = TransformOptimizer(
            list(tensors.values()), entry.transform(seed, **overrides), engine=engine
        )
        run.engine = "torch"
        start = problem.monitor(numpy_params())
        _record(run, 0, start)
        t0 = time.perf_counter()
        step_time = 0.0
        for k, batch in enumerate(batches, start=1):

            def closure(b=batch):
                run.evaluations += 1
                opt.zero_grad()
                loss = problem.torch_loss(tensors, b)
                loss.backward()
                return loss

            if closure_needed:
                s0 = time.perf_counter()
                loss = float(opt.step(closure))
                step_time += time.perf_counter() - s0
                if _diverged(loss, start):
                    run.status, run.diverged_at = "diverged", k - 1
                    break
            else:
                loss = float(closure().detach())
                if _diverged(loss, start):
                    run.status, run.diverged_at = "diverged", k - 1
                    break
                s0 = time.perf_counter()
                opt.step()
                step_time += time.perf_counter() - s0
            if path is not None:
                path.append(numpy_params()["xy"].copy())
            x = run.evaluations if closure_needed else k  # steps count gradient evaluations
            if closure_needed or k % every == 0 or k == steps:
                loss = problem.monitor(numpy_params())
                if _diverged(loss, start) or not _finite(numpy_params()):
                    run.status, run.diverged_at = "diverged", x
                    break
                _record(run, x, loss)
            if closure_needed and run.evaluations >= steps:
                break  # a closure step spends several evaluations of the budget
        run.wall_s = time.perf_counter() - t0
        run.step_s = step_time
    run.notes += sorted({str(w.message) for w in caught if "gradstep" in str(w.message)})
    return _finish(run, problem, numpy_params(), path, steps)
