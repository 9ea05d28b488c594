"""``gradstep compare --backend jax``: one run through :func:`gradstep.jax.to_optax`.

The problems' gradients are computed in NumPy (the same numbers as the NumPy backend)
and handed to the optax transformation as JAX arrays; its ``update`` is jitted once per
run. Optimizers that need a closure (L-BFGS) have no optax form: they step through
their transform's functional ``step_with_closure(loss_and_grad, params, state)``, the
same rule the other fronts drive.
"""

from __future__ import annotations

import time
import warnings

import numpy as np


def available() -> str | None:
    """``None`` when the JAX backend can run here, else why not."""
    try:
        import jax  # noqa: F401

        from gradstep.jax import to_optax  # noqa: F401
    except ImportError as error:
        return f"--backend jax needs JAX and gradstep.jax ({error}): pip install jax optax"
    return None


def run_jax(problem, entry, steps: int, seed: int, Run, record, finish, **overrides):
    """One run in float64 (the NumPy backend's precision); JAX's global x64 setting is
    restored afterwards, so code running after the race sees what it set itself."""
    import jax

    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        return _run_x64(problem, entry, steps, seed, Run, record, finish, **overrides)
    finally:
        jax.config.update("jax_enable_x64", before)


def _run_x64(problem, entry, steps: int, seed: int, Run, record, finish, **overrides):
    import jax
    import jax.numpy as jnp

    from gradstep.jax import apply_updates, to_optax

    from ._compare_race import _diverged, _finite

    run = Run(entry.name, problem.name)
    params = {k: np.array(v, dtype=np.float64) for k, v in problem.init(seed).items()}
    batches = problem.batches(steps, seed)
    every = max(1, steps // 50) if problem.kind != "surface" else 1
    transform = entry.transform(seed, **overrides)
    closure_needed = "needs_closure" in entry.spec.capabilities
    path = [params["xy"].copy()] if problem.kind == "surface" else None
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        if closure_needed:
            state = transform.init(params)
        else:
            tx = to_optax(transform, fallback="host")
            update = jax.jit(tx.update)
            jparams = {k: jnp.asarray(v) for k, v in params.items()}
            state = tx.init(jparams)
        run.engine = "jax"
        start = problem.monitor(params)
        record(run, 0, start)
        t0 = time.perf_counter()
        step_time = 0.0
        for k, batch in enumerate(batches, start=1):
            if closure_needed:

                def loss_and_grad(p, b=batch):
                    run.evaluations += 1
                    return problem.loss_and_grad({n: np.asarray(v) for n, v in p.items()}, b)

                s0 = time.perf_counter()
                loss, params, state = transform.step_with_closure(loss_and_grad, params, state)
                step_time += time.perf_counter() - s0
            else:
                loss, grads = problem.loss_and_grad(params, batch)
                run.evaluations += 1
                if not _diverged(loss, start):
                    s0 = time.perf_counter()
                    g = {n: jnp.asarray(v) for n, v in grads.items()}
                    updates, state = update(g, state, jparams)
                    jparams = apply_updates(jparams, updates)
                    params = {n: np.asarray(v) for n, v in jparams.items()}
                    step_time += time.perf_counter() - s0
            if _diverged(float(loss), start):
                run.status, run.diverged_at = "diverged", k - 1
                break
            if path is not None:
                path.append(np.array(params["xy"], dtype=np.float64))
            x = run.evaluations if closure_needed else k  # steps count gradient evaluations
            if closure_needed or k % every == 0 or k == steps:
                loss = problem.monitor(params)
                if _diverged(loss, start) or not _finite(params):
                    run.status, run.diverged_at = "diverged", x
                    break
                record(run, k, loss)
        run.wall_s = time.perf_counter() - t0
        run.step_s = step_time
    run.notes += sorted({str(w.message) for w in caught if "gradstep" in str(w.message)})
    return finish(run, problem, params, path, steps)
