"""Gradient clipping: by value, by each tensor's norm, by the global norm.

Clipping by a norm needs the norm first: a reduction over a tensor or over the
whole tree, whose result (one scale factor per tensor) the element math then uses.
"""

from __future__ import annotations

from typing import Any

from .._core.elementwise import Elementwise, NormScaled
from .._core.validate import Interval, hyperparams, nonnegative
from .._core.xmath import maximum, minimum

_POSITIVE = Interval(0.0, lo_open=True, schedulable=True)


def _clipped(g, lo, hi):
    return minimum(maximum(g, lo), hi)


def _clip_bounds(h: dict, count: int) -> dict:
    return {"lo": -h["max_delta"], "hi": h["max_delta"]}


@hyperparams(max_delta=nonnegative(schedulable=True))
def clip(max_delta: Any) -> Elementwise:
    """Clip every element to ``[-max_delta, max_delta]`` (torch ``clip_grad_value_``,
    optax ``clip``, Keras ``clipvalue``)."""
    return Elementwise(
        "clip",
        _clipped,
        hyperparams={"max_delta": max_delta},
        prepare=_clip_bounds,
    )


def _clip_factor(norm: Any, h: dict) -> Any:
    # 1 below the threshold (optax and Keras), max_norm / norm above it; a NaN norm
    # gives a NaN factor. Written without branches so that every engine can run it on
    # its own arrays (the GPU engine computes it on the device).
    max_norm = h["max_norm"]
    return max_norm / maximum(norm, max_norm)


@hyperparams(max_norm=_POSITIVE)
def clip_by_norm(max_norm: Any) -> Elementwise:
    """Scale each tensor whose L2 norm exceeds ``max_norm`` down to that norm
    (Keras ``clipnorm``)."""
    return NormScaled("clip_by_norm", _clip_factor, {"max_norm": max_norm}, per_tensor=True)


@hyperparams(max_norm=_POSITIVE)
def clip_by_global_norm(max_norm: Any) -> Elementwise:
    """Scale all updates by ``max_norm / N`` when their global L2 norm ``N`` exceeds
    ``max_norm`` (torch ``clip_grad_norm_`` without its epsilon, optax
    ``clip_by_global_norm``). A non-finite ``N`` gives NaN updates."""
    return NormScaled("clip_by_global_norm", _clip_factor, {"max_norm": max_norm}, per_tensor=False)
