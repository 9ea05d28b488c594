"""The core's scaling and weight-decay stages as public transforms, their arguments
validated where they are declared.

Rules build their chains from the stages of :mod:`gradstep._core.stages` after
validating their own arguments; these are the same stages for users composing
chains by hand, so every value is checked here, once, and a value given at step
time by name is checked against the same declaration.

- ``scale(step_size)``: any finite number or a schedule; negative flips the update
  (``scale(-lr)`` is descent, as optax composes it).
- ``scale_by_learning_rate(learning_rate)``: ``[0, inf)`` or a schedule, as every
  optimizer's ``learning_rate`` (``sgd(-1.0)`` is refused): it is the descent stage.
  Gradient ascent is ``scale(+lr)``.
- ``add_decayed_weights(weight_decay)``: ``[0, inf)`` or a schedule, as every
  optimizer's ``weight_decay``.
"""

from __future__ import annotations

from typing import Any

from .._core import stages as _stages
from .._core.elementwise import Elementwise
from .._core.transform import Transform
from .._core.validate import finite, hyperparams, nonnegative


@hyperparams(step_size=finite(schedulable=True))
def scale(step_size: Any) -> Elementwise:
    """Multiply updates by ``step_size``: a finite number (negative flips the
    updates) or a schedule."""
    return _stages.scale(step_size)


@hyperparams(learning_rate=nonnegative(schedulable=True))
def scale_by_learning_rate(learning_rate: Any) -> Elementwise:
    """``u <- -learning_rate * u``: the one stage that turns a direction into a step.

    ``learning_rate`` is a number >= 0 or a schedule; a value passed to ``update``
    as ``learning_rate=...`` overrides it for that step (checked against the same
    range). For gradient ascent use :func:`scale` with a positive factor.
    """
    return _stages.scale_by_learning_rate(learning_rate)


@hyperparams(weight_decay=nonnegative(schedulable=True))
def add_decayed_weights(weight_decay: Any, mask: Any = None) -> Transform:
    """``u <- u + weight_decay * w``; ``weight_decay`` >= 0 or a schedule; ``mask``
    limits it to some leaves. Coupled or decoupled by where it sits in the chain (see
    :func:`gradstep._core.stages.add_decayed_weights`, the stage it validates)."""
    return _stages.add_decayed_weights(weight_decay, mask)
