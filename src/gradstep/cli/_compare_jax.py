"""``gradstep compare --backend jax``: one run through :func:`gradstep.jax.to_optax`.

The problems' gradients are computed in NumPy (the same numbers as the NumPy backend)
and handed to the optax transformation as JAX arrays; its ``update`` is jitted once per
run. Optimizers that need a closure (L-BFGS) have no optax form: they step through
their transform's functional ``step_with_closure(loss_and_grad, params, state)``, the
same rule the other fronts drive.
"""

from __future__ import annotations

import numpy as np

from ._compare_loop import Run, train


def available() -> str | None:
    """``None`` when the JAX backend can run here, else why not."""
    try:
        import jax  # noqa: F401

        from gradstep.jax import to_optax  # noqa: F401
    except ImportError as error:
        return f"--backend jax needs JAX and gradstep.jax ({error}): pip install jax optax"
    return None


def run_jax(problem, entry, steps: int, seed: int, **overrides) -> Run:
    """One run in float64 (the NumPy backend's precision); JAX's global x64 setting is
    restored afterwards, so code running after the race sees what it set itself."""
    import jax

    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        return train(
            problem, entry, steps, seed, lambda: JaxStepper(problem, entry, seed, overrides)
        )
    finally:
        jax.config.update("jax_enable_x64", before)


class JaxStepper:
    """The transform as an optax transformation, its ``update`` jitted once per run;
    an optimizer that needs a closure steps through ``step_with_closure``."""

    engine = "jax"

    def __init__(self, problem, entry, seed: int, overrides: dict):
        import jax
        import jax.numpy as jnp

        from gradstep.jax import apply_updates, to_optax

        self.problem = problem
        self.jnp, self.apply_updates = jnp, apply_updates
        self._params = {k: np.array(v, dtype=np.float64) for k, v in problem.init(seed).items()}
        self.transform = entry.transform(seed, **overrides)
        if "needs_closure" in entry.spec.capabilities:
            self.state = self.transform.init(self._params)
        else:
            tx = to_optax(self.transform, fallback="host")
            self.update = jax.jit(tx.update)
            self.jparams = {k: jnp.asarray(v) for k, v in self._params.items()}
            self.state = tx.init(self.jparams)
        self._grads = None

    def params(self) -> dict:
        return self._params

    def gradient(self, batch) -> float:
        loss, self._grads = self.problem.loss_and_grad(self._params, batch)
        return loss

    def apply(self) -> None:
        g = {n: self.jnp.asarray(v) for n, v in self._grads.items()}
        updates, self.state = self.update(g, self.state, self.jparams)
        self.jparams = self.apply_updates(self.jparams, updates)
        self._params = {n: np.asarray(v) for n, v in self.jparams.items()}

    def closure_step(self, batch, counted) -> float:
        def loss_and_grad(p):
            counted()
            return self.problem.loss_and_grad({n: np.asarray(v) for n, v in p.items()}, batch)

        loss, self._params, self.state = self.transform.step_with_closure(
            loss_and_grad, self._params, self.state
        )
        return loss
