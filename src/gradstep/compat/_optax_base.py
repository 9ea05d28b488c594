"""What the optax-compatible modules share: argument ranges, wrapping a gradstep
transform as an optax transformation, and refusing dtype arguments."""

from __future__ import annotations

from typing import Any

from .._core.precision import StateDtype, with_state_dtype
from .._core.transform import Transform
from .._core.validate import Interval, decay_rate, nonnegative
from ..jax import GradstepTransformation, from_optax, to_optax

LR = nonnegative(schedulable=True)
DECAY = decay_rate()
EPS = nonnegative()
MOMENTUM = Interval(0.0, 1.0)
WD = nonnegative(schedulable=True)


def wrap(transform: Transform, **names: str) -> GradstepTransformation:
    """``transform`` as an optax transformation; ``names`` maps optax's argument
    names to the gradstep hyperparameters they set (for :func:`inject_hyperparams`)."""
    out = to_optax(transform)
    out.hyperparam_names = names
    return out


ADAM_NAMES = {"b1": "beta1", "b2": "beta2"}


def as_stage(t: Any) -> Transform:
    """A gradstep stage from a compat object, a gradstep transform or an optax one."""
    if isinstance(t, Transform):
        return t
    return from_optax(t)


def stored_in(owner: str, option: str, value: Any, transform: Transform, slot: str) -> Transform:
    """``transform`` with its slot ``slot`` stored in ``value`` (optax's ``mu_dtype``,
    ``accumulator_dtype``; None: the parameter's dtype), the math still in float32 or
    wider (:mod:`gradstep._core.precision`)."""
    if value is None:
        return transform
    if not StateDtype(per_slot=False).contains(value):
        raise ValueError(
            f"{owner}: invalid {option}={value!r}; valid values: "
            f"{StateDtype(per_slot=False).describe()}"
        )
    try:
        return with_state_dtype(transform, {slot: value}, owner)
    except ValueError:
        raise ValueError(
            f"{owner}: invalid {option}={value!r} with these options (their state is not "
            "kept in elementwise slots); valid values: None"
        ) from None
