"""The skip-a-step wrapper: run the inner transform only on steps whose gradients
are all finite (and, optionally, whose squared global norm is below a bound).

A stage kind the engines must know (its control flow reads array values, so the
JAX engine runs a traceable equivalent), hence in the core;
:func:`gradstep.transforms.skip_nonfinite` builds it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import tree as _tree
from .namespaces import namespace_of
from .transform import Transform


class SkipNonfinite(Transform):
    """Run ``inner`` only on steps whose gradients are all finite and, with
    ``max_squared_norm``, whose sum of squares is below it (a step that fails counts
    as a non-finite one)."""

    def __init__(
        self,
        inner: Transform,
        max_consecutive_errors: int | None,
        max_squared_norm: float | None = None,
    ):
        self.inner = inner
        self.max_consecutive_errors = max_consecutive_errors
        self.max_squared_norm = max_squared_norm
        self.name = inner.name

    def init(self, params: Any) -> dict:
        return {
            "inner": self.inner.init(params),
            "notfinite_count": np.zeros((), np.int64),
            "total_notfinite": np.zeros((), np.int64),
        }

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        leaves = _tree.leaves(grads)
        finite = all_finite(leaves)
        bound = getattr(self, "max_squared_norm", None)  # absent in older pickles
        if finite and bound is not None:
            finite = sum(namespace_of(g).sum_of_squares(g) for g in leaves) < bound
        run_of_errors = 0 if finite else int(state["notfinite_count"]) + 1
        limit = self.max_consecutive_errors
        counters = {
            "notfinite_count": np.asarray(run_of_errors, np.int64),
            "total_notfinite": np.asarray(int(state["total_notfinite"]) + (not finite), np.int64),
        }
        if finite or (limit is not None and run_of_errors > limit):
            updates, inner_state = self.inner.update(grads, state["inner"], params, **ctx)
        else:
            updates = _tree.tree_map(lambda g: namespace_of(g).zeros_like(g), grads)
            inner_state = state["inner"]
        return updates, {"inner": inner_state, **counters}

    def skipped(self, state: dict) -> bool:
        """Whether the update that produced ``state`` skipped ``inner`` (fronts that
        count steps themselves count only the steps taken)."""
        run = int(state["notfinite_count"])
        limit = self.max_consecutive_errors
        return run > 0 and (limit is None or run <= limit)


def all_finite(leaves: list) -> bool:
    """Every element of every array of ``leaves`` is finite: each one's largest
    magnitude is (a NaN or an infinity makes it NaN or infinite), computed by the
    array's own library (a host read of one number per array)."""
    return all(math.isfinite(float(namespace_of(g).max_abs(g))) for g in leaves)
