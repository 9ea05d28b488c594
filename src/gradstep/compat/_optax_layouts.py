"""The optax state of each compat stage (its layout over the core stage's slots)
and the helper that builds an optax optimizer as a named gradstep chain with it."""

from __future__ import annotations

from typing import Any

from .._core.stages import add_decayed_weights as _add_decayed_weights
from .._core.stages import rule as _rule
from .._core.stages import scale_by_learning_rate as _scale_by_lr
from .._core.transform import Transform
from ._optax_base import wrap
from ._optax_state import (
    Counter,
    Masked,
    Scalar,
    ScaleByAdamState,
    ScaleByAmsgradState,
    ScaleByLionState,
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    Seq,
    Slots,
    TraceState,
    Tree,
    WeightDecaySchedule,
    schedule_state,
)

# -- optax's state of each stage, over the core stage's slots ------------------------

ADAM_STATE = Slots(ScaleByAdamState, count=Scalar("count"), mu=Tree("mu"), nu=Tree("nu"))
AMSGRAD_STATE = Slots(
    ScaleByAmsgradState, count=Scalar("count"), mu=Tree("mu"), nu=Tree("nu"), nu_max=Tree("nu_max")
)
ADAMAX_STATE = Slots(ScaleByAdamState, count=Scalar("count"), mu=Tree("mu"), nu=Tree("inf_norm"))
TRACE_STATE = Slots(TraceState, trace=Tree("velocity"))
LION_STATE = Slots(ScaleByLionState, count=Counter(), mu=Tree("mu"))


def decay_state(weight_decay: Any, mask: Any):
    """optax's ``add_decayed_weights``: ``WeightDecaySchedule(count)`` for a
    schedule, in ``MaskedState`` when a mask is given."""
    inner = schedule_state(weight_decay, WeightDecaySchedule)
    return inner if mask is None else Masked(inner, all_or(mask))


def optimizer(name: str, *pairs: tuple[Transform | None, Any], **names: str):
    """A named chain of the core stages in ``pairs``, its state optax's tuple of the
    paired layouts (a ``None`` stage is left out of the core chain and has optax's
    state of nothing, such as ``EmptyState()``)."""
    chain = _rule(name, *[stage for stage, _ in pairs])
    return wrap(chain, Seq.of(chain, *pairs), **names)


def lr_stage(learning_rate: Any):
    """optax's ``scale_by_learning_rate`` and its state."""
    return _scale_by_lr(learning_rate), schedule_state(learning_rate)


def decay_stage(weight_decay: Any, mask: Any):
    return _add_decayed_weights(weight_decay, mask), decay_state(weight_decay, mask)


def direction_state(direction: Transform, amsgrad: Any = False):
    return direction, AMSGRAD_STATE if amsgrad else ADAM_STATE


def rms_state(centered: bool, bias_correction: bool = False) -> Slots:
    """optax's ``ScaleByRStdDevState(mu, nu)`` (centered) or ``ScaleByRmsState(nu)``,
    with a count (``...WithCountState``) under bias correction."""
    fields = {"mu": Tree("mu"), "nu": Tree("nu")} if centered else {"nu": Tree("nu")}
    if bias_correction:
        cls = ScaleByRStdDevWithCountState if centered else ScaleByRmsWithCountState
        return Slots(cls, count=Scalar("count"), **fields)
    return Slots(ScaleByRStdDevState if centered else ScaleByRmsState, **fields)


def all_or(mask: Any) -> Any:
    """optax's ``True`` mask (every leaf) as gradstep's ``None``."""
    return None if mask is True else mask
