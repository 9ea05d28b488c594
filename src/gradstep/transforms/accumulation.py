r"""Gradient accumulation: one step of an optimizer per k mini-steps.

Symbols: :math:`g_i` the gradient of mini-step :math:`i` (0-based within the
window), :math:`a` field ``acc``, :math:`k` ``every_k`` (a number, or a schedule of
the number of optimizer steps made so far).

.. math::

    \text{mean: } a \leftarrow a + (g_i - a)/(i+1) \qquad
    \text{sum: } a \leftarrow a + g_i

On the last mini-step of a window (:math:`i = k-1`) the wrapped optimizer takes one
step on :math:`a` (the running mean is :math:`\frac1k\sum_i g_i`), :math:`a` returns
to 0 and ``gradient_step`` advances; on the other mini-steps the update is 0 and the
wrapped optimizer's state does not change, so its step count, bias corrections and
schedules count optimizer steps, not mini-steps.

With ``skip_nonfinite=True`` a mini-step whose gradients are not all finite is
skipped as if it never happened: zero update, and ``acc``, ``mini_step`` and the
wrapped optimizer's state untouched; only the diagnostic ``total_notfinite`` counts
it.

This wrapper is not elementwise (the wrapped optimizer runs only on some calls): the
NumPy front runs it on the eager engine.

References:
  optax ``MultiSteps`` (google-deepmind/optax, ``optax/transforms/_accumulation.py``).
  Welford (1962): Note on a Method for Calculating Corrected Sums of Squares and
  Products. Technometrics 4(3) (the running mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import namespace_of
from .._core.skip import all_finite
from .._core.transform import Transform
from .._core.validate import BOOL, Interval, OneOf, check, hyperparams

REDUCTIONS = ("mean", "sum")
_K = Interval(1, integer=True, schedulable=True)


class Accumulate(Transform):
    """Run ``inner`` once every ``every_k`` calls on the accumulated gradients."""

    per_parameter_state = ("acc",)  # lists indexed by parameter

    traceable = False  # Python control flow on the counts: JAX runs it on the host

    def __init__(self, inner: Transform, every_k: Any, reduce: str, skip_nonfinite: bool):
        self.inner = inner
        self.every_k = every_k
        self.reduce = reduce
        self.skip_nonfinite = skip_nonfinite
        self.name = inner.name

    def window(self, gradient_step: int) -> int:
        """The number of mini-steps of the window that starts at ``gradient_step``."""
        k = self.every_k(gradient_step) if callable(self.every_k) else self.every_k
        check("accumulate", "every_k", k, Interval(1, integer=True))
        return int(k)

    def init(self, params: Any) -> dict:
        return {
            "mini_step": np.zeros((), np.int64),
            "gradient_step": np.zeros((), np.int64),
            "acc": _tree.tree_map(_zeros, params),
            "inner": self.inner.init(params),
            "total_notfinite": np.zeros((), np.int64),
        }

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        zeros = _tree.unflatten(td, [_zeros(g) for g in g_leaves])
        if self.skip_nonfinite and not all_finite(g_leaves):
            total = np.asarray(int(state["total_notfinite"]) + 1, np.int64)
            return zeros, {**state, "total_notfinite": total}

        mini = int(state["mini_step"])
        step = int(state["gradient_step"])
        k = self.window(step)
        acc_leaves = _tree.leaves_like(td, state["acc"])
        if self.reduce == "mean":
            acc_leaves = [
                a + (g - a) / namespace_of(a).scalar_caster(a)(mini + 1)
                for g, a in zip(g_leaves, acc_leaves)
            ]
        else:
            acc_leaves = [
                namespace_of(a).stored_like(g + a, a) for g, a in zip(g_leaves, acc_leaves)
            ]
        acc = _tree.unflatten(td, acc_leaves)

        new_state = {
            "mini_step": np.asarray((mini + 1) % k, np.int64),
            "gradient_step": state["gradient_step"],
            "acc": acc,
            "inner": state["inner"],
            "total_notfinite": state["total_notfinite"],
        }
        if mini != k - 1:
            return zeros, new_state
        updates, new_state["inner"] = self.inner.update(acc, state["inner"], params, **ctx)
        new_state["acc"] = _tree.tree_map(lambda a: namespace_of(a).zeros_like(a), acc)
        new_state["gradient_step"] = np.asarray(step + 1, np.int64)
        return updates, new_state


def _zeros(x: Any) -> Any:
    """Zeros shaped like ``x`` in its floating dtype, of its library (on its device)."""
    return namespace_of(x).zeros(tuple(x.shape) if hasattr(x, "shape") else (), x)


@hyperparams(every_k=_K, reduce=OneOf(REDUCTIONS), skip_nonfinite=BOOL)
def accumulate(
    inner: Transform, every_k: Any = 2, reduce: str = "mean", *, skip_nonfinite: bool = True
) -> Accumulate:
    r"""Accumulate gradients over ``every_k`` mini-steps, then step ``inner`` once.

    Args:
      inner: the optimizer to step once per window.
      every_k: :math:`k`, an integer >= 1, or a schedule of the number of optimizer
        steps made so far returning one. Default 2.
      reduce: ``"mean"`` (running mean, optax ``use_grad_mean=True``) or ``"sum"``.
        Default ``"mean"``.
      skip_nonfinite: skip mini-steps with NaN or infinite gradients without
        touching the state (counted in ``total_notfinite``). Default True.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([0.0])
      >>> opt = gradstep.Optimizer(w, gradstep.transforms.accumulate(gradstep.sgd(1.0), 3))
      >>> for g in (1.0, np.nan, 2.0, 6.0):
      ...     opt.step(np.array([g]))
      >>> w  # one SGD step on the mean of 1, 2 and 6; the NaN mini-step is skipped
      array([-3.])

    Differences: optax ``MultiSteps`` computes the inner update on every call and
    keeps only the last one of a window (same result), accumulates in float32 by
    default (gradstep in the gradient's dtype) and skips nothing unless given
    ``should_skip_update_fn=skip_not_finite``. Keras ``gradient_accumulation_steps``
    averages by summing and dividing by k; torch has no wrapper (accumulate
    ``.grad`` across backward calls).
    """
    if not isinstance(inner, Transform):
        raise TypeError(f"accumulate: expected a transform, got {type(inner).__name__}")
    return Accumulate(inner, every_k, reduce, skip_nonfinite)
