"""What the optax-compatible modules share: argument ranges, wrapping a gradstep
transform as an optax transformation, and refusing dtype arguments."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._core.precision import StateDtype, dtype_name, with_state_dtype
from .._core.transform import Transform
from .._core.validate import Interval, decay_rate, nonnegative
from ..jax import GradstepTransformation, from_optax, to_optax
from ._optax_state import RAW, Ctx, Layout

LR = nonnegative(schedulable=True)
DECAY = decay_rate()
EPS = nonnegative()
MOMENTUM = Interval(0.0, 1.0)
WD = nonnegative(schedulable=True)


def wrap(transform: Transform, layout: Layout = RAW, **names: str) -> GradstepTransformation:
    """``transform`` as an optax transformation whose state is optax's (``layout``
    maps the core's state to it and back); ``names`` maps optax's argument names to
    the gradstep hyperparameters they set (for :func:`inject_hyperparams`)."""
    core = to_optax(transform)

    def init(params: Any) -> Any:
        params = concrete(params)
        return layout.to_optax(core.init(params), transform, Ctx.of(params, None), None)

    def update(updates: Any, state: Any, params: Any = None, **extra: Any):
        ctx = Ctx.of(params, updates)
        inner = layout.from_optax(state, transform, ctx)
        updates, inner = core.update(updates, inner, params, **extra)
        return updates, layout.to_optax(inner, transform, ctx, state)

    out = GradstepTransformation(init, update)
    out.transform = transform
    out.engine = core.engine
    out.layout = layout
    out.hyperparam_names = names
    return out


def with_update(t: GradstepTransformation, update: Any) -> GradstepTransformation:
    """``t`` with another ``update`` (its transform, engine and layout kept)."""
    out = GradstepTransformation(t.init, update)
    out.__dict__.update(t.__dict__)
    return out


def concrete(params: Any) -> Any:
    """Abstract leaves (``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``) as
    zeros of their shape, dtype and sharding: optax's ``init`` accepts them (its
    state starts from ``zeros_like``), and so does this layer's."""

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.ShapeDtypeStruct):
            return jnp.zeros(x.shape, x.dtype, device=x.sharding)
        return x

    return jax.tree_util.tree_map(leaf, params)


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
    if not StateDtype(per_slot=False).contains(value) or dtype_name(value) == "blockwise8":
        # optax's state classes have no field for 8-bit block scales: gradstep's own
        # rules take it (gradstep.jax.to_optax(gradstep.adam(state_dtype="int8")))
        raise ValueError(
            f"{owner}: invalid {option}={value!r}; valid values: None, float16, bfloat16, "
            "float32, float64 (8-bit state: gradstep.jax.to_optax of a gradstep rule "
            "with state_dtype='int8')"
        )
    try:
        return with_state_dtype(transform, {slot: value}, owner)
    except ValueError:
        raise ValueError(
            f"{owner}: invalid {option}={value!r} with these options (their state is not "
            "kept in elementwise slots); valid values: None"
        ) from None


def no_dtype(owner: str, name: str, value: Any) -> None:
    """Refuses a dtype argument of a transform whose state is not kept in elementwise
    slots (so :func:`stored_in` could not reach it)."""
    if value is not None:
        raise ValueError(
            f"{owner}: invalid {name}={value!r}; valid values: None (this state is not "
            "kept in elementwise slots)"
        )
