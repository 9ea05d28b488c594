"""Gradient clipping: by value, by each tensor's norm, by the global norm.

Clipping by a norm needs the norm first: a reduction over a tensor or over the
whole tree, whose result (one scale factor per tensor) the element math then uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Elementwise, float_dtype, resolve
from .._core.validate import Interval, hyperparams, nonnegative
from .._core.xmath import clip as _clip_op

_POSITIVE = Interval(0.0, lo_open=True, schedulable=True)


def _clipped(g, lo, hi):
    return _clip_op(g, lo, hi)


def _scaled(g, factor):
    return g * factor


@hyperparams(max_delta=nonnegative(schedulable=True))
def clip(max_delta: Any) -> Elementwise:
    """Clip every element to ``[-max_delta, max_delta]`` (torch ``clip_grad_value_``,
    optax ``clip``, Keras ``clipvalue``)."""
    return Elementwise(
        "clip",
        _clipped,
        hyperparams={"max_delta": max_delta},
        prepare=lambda h, t: {"lo": -h["max_delta"], "hi": h["max_delta"]},
    )


def _sum_sq(x: Any) -> float:
    a = np.asarray(x)
    return float(np.vdot(a, a).real) if a.size else 0.0


class _NormScaled(Elementwise):
    """An elementwise scale whose factor comes from a reduction over the updates."""

    def __init__(self, name: str, max_norm: Any, per_tensor: bool):
        super().__init__(name, _scaled, hyperparams={"max_norm": max_norm})
        self.per_tensor = per_tensor

    def factors(self, g_leaves: list, max_norm: float) -> list[float]:
        """The scale factor of each leaf (the reduction phase)."""
        if self.per_tensor:
            return [_clip_factor(_sum_sq(g) ** 0.5, max_norm) for g in g_leaves]
        total = sum(_sum_sq(g) for g in g_leaves) ** 0.5
        return [_clip_factor(total, max_norm)] * len(g_leaves)

    def update(self, grads, state, params=None, **ctx):
        g_leaves, td = _tree.flatten(grads)
        count = int(state["count"]) if self.counted else 0
        max_norm = resolve(self.hyperparams, count, ctx)["max_norm"]
        out = [
            self.element(g, float_dtype(g).type(f))
            for g, f in zip(g_leaves, self.factors(g_leaves, max_norm))
        ]
        new_state = {"count": np.asarray(count + 1, np.int64)} if self.counted else {}
        return _tree.unflatten(td, out), new_state


def _clip_factor(norm: float, max_norm: float) -> float:
    # unchanged below the threshold (optax and Keras); a NaN norm gives NaN updates
    if np.isnan(norm):
        return float("nan")
    return 1.0 if norm <= max_norm else max_norm / norm


@hyperparams(max_norm=_POSITIVE)
def clip_by_norm(max_norm: Any) -> Elementwise:
    """Scale each tensor whose L2 norm exceeds ``max_norm`` down to that norm
    (Keras ``clipnorm``)."""
    return _NormScaled("clip_by_norm", max_norm, per_tensor=True)


@hyperparams(max_norm=_POSITIVE)
def clip_by_global_norm(max_norm: Any) -> Elementwise:
    """Scale all updates by ``max_norm / N`` when their global L2 norm ``N`` exceeds
    ``max_norm`` (torch ``clip_grad_norm_`` without its epsilon, optax
    ``clip_by_global_norm``). A non-finite ``N`` gives NaN updates."""
    return _NormScaled("clip_by_global_norm", max_norm, per_tensor=False)
