r"""optax 0.2.8's ``adafactor`` and ``scale_by_factored_rms`` on gradstep's Adafactor
stages (:mod:`gradstep.rules.adafactor`), with optax's ``FactoredState``.

optax's ``adafactor`` is the chain ``scale_by_factored_rms`` (:math:`g^2 + \epsilon`
in the moments, the two largest axes factored when the smaller has at least
``min_dim_size_to_factor`` elements, :math:`\hat\beta_{2,t} = 1 - t^{-c}`),
``clip_by_block_rms(clipping_threshold)``, times the learning rate (no relative
step; ``None``: no learning-rate stage), times :math:`\max(10^{-3}, \mathrm{RMS}(w))`
(``multiply_by_parameter_scale``), an undebiased ``ema(momentum)``, ``+ \lambda w``
(``weight_decay_rate``, restricted to ``weight_decay_mask``), and times -1; each is
the gradstep stage of that meaning, in optax's order, so the state is optax's
tuple. The math and symbols are in :mod:`gradstep.rules.adafactor`.

``FactoredState(count, v_row, v_col, v)`` holds, per parameter, either the row and
column factors (shapes without the largest, resp. the second largest, axis; ``v`` a
dummy ``zeros((1,))``) or the full second moment ``v`` (dummy factors of shape
``(1,)``); gradstep keeps the factors with the reduced axis as 1 and its dummies
empty. :class:`FactoredLayout` converts one into the other, leaf by leaf.

Differences: ``decay_offset``/``step_offset`` other than 0 and a ``decay_rate_fn``
other than optax's default are refused (gradstep's factored moments count from the
first step with :math:`1 - t^{-c}`); hyperparameters are validated (optax takes
any value).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.elementwise import Elementwise
from .._core.stages import add_decayed_weights as _add_decayed_weights
from .._core.stages import scale as _scale
from .._core.validate import BOOL, Interval, check, nonnegative
from .._core.validate import decay_rate as _decay_range
from ..jax import GradstepTransformation
from ..rules.adafactor import (
    ClipByBlockRms,
    OrNone,
    ScaleByFactoredRms,
    ScaleByParamBlockRms,
    factored_axes,
)
from ..transforms.ema import scale_by_ema as _scale_by_ema
from ._optax_aliases import EmaState
from ._optax_base import stored_in, wrap
from ._optax_layouts import decay_state, optimizer
from ._optax_state import EMPTY, Counter, Ctx, Layout, Slots, Tree, schedule_state, state_class

__all__ = ["FactoredState", "adafactor", "scale_by_factored_rms"]

FactoredState = state_class("FactoredState", ("count", "v_row", "v_col", "v"))

_PARAM_SCALE_FLOOR = 1e-3  # optax's scale_by_param_block_rms default min_scale


def _decay_rate_pow(i: Any, exponent: Any = 0.8) -> Any:
    """optax's default second-moment decay, :math:`1 - (i+1)^{-c}` (the only one
    gradstep's factored moments follow)."""
    return 1.0 - jnp.asarray(i + 1, jnp.float32) ** (-exponent)


def _is_default_decay(fn: Any) -> bool:
    if fn is _decay_rate_pow:
        return True
    try:
        from optax._src import factorized
    except ImportError:  # pragma: no cover - without optax
        return False
    return fn is getattr(factorized, "_decay_rate_pow", None)


class FactoredLayout(Layout):
    """optax's ``FactoredState`` over :class:`ScaleByFactoredRms`'s slots, converting
    each parameter's factors (reduced axis dropped, dummies ``zeros((1,))``) to the
    core's (reduced axis kept as 1, dummies empty) and back."""

    def _axes(self, node: ScaleByFactoredRms, ctx: Ctx) -> list:
        leaves = ctx.params if ctx.params is not None else ctx.grads
        return [factored_axes(np.shape(x), node.factored, node.min_size) for x in leaves]

    def to_optax(self, core, node, ctx, prev):
        keys = {"count", "v_row", "v_col", "v"}
        if set(core) != keys:
            raise RuntimeError(
                f"gradstep.compat.optax: FactoredState maps {sorted(keys)} but "
                f"{node.name}'s state has {sorted(core)}"
            )
        td = jax.tree_util.tree_structure(core["v"])
        leaves = {k: td.flatten_up_to(core[k]) for k in ("v_row", "v_col", "v")}
        rows, cols, full = [], [], []
        for axes, r, c, v in zip(self._axes(node, ctx), *leaves.values()):
            dummy = jnp.zeros((1,), jnp.result_type(r))
            if axes is None:
                rows.append(dummy), cols.append(dummy), full.append(v)
            else:
                rows.append(jnp.squeeze(r, axes[1]))
                cols.append(jnp.squeeze(c, axes[0]))
                full.append(dummy)
        shown = lambda xs: ctx.expand(td.unflatten(xs))  # noqa: E731
        return FactoredState(core["count"], shown(rows), shown(cols), shown(full))

    def from_optax(self, state, node, ctx):
        core = [ctx.compress(t) for t in (state.v_row, state.v_col, state.v)]
        td = jax.tree_util.tree_structure(core[2])
        leaves = [td.flatten_up_to(t) for t in core]
        rows, cols, full = [], [], []
        for axes, r, c, v in zip(self._axes(node, ctx), *leaves):
            empty = jnp.zeros((0,), jnp.result_type(r))
            if axes is None:
                rows.append(empty), cols.append(empty), full.append(v)
            else:
                rows.append(jnp.expand_dims(r, axes[1]))
                cols.append(jnp.expand_dims(c, axes[0]))
                full.append(empty)
        return {
            "count": state.count,
            "v_row": td.unflatten(rows),
            "v_col": td.unflatten(cols),
            "v": td.unflatten(full),
        }


FACTORED_STATE = FactoredLayout()


def _check_factored(owner: str, decay_rate_: Any, offset_name: str, offset: Any, eps: Any):
    check(owner, "decay_rate", decay_rate_, nonnegative())
    check(owner, "epsilon" if owner == "scale_by_factored_rms" else "eps", eps, nonnegative())
    if offset != 0:
        raise ValueError(
            f"{owner}: invalid {offset_name}={offset!r}; valid values: 0 (gradstep's "
            "factored moments count from the first step)"
        )


def _factored_stage(factored: bool, decay_rate_: Any, min_dim: int, eps: Any):
    check("scale_by_factored_rms", "factored", factored, BOOL)
    check("scale_by_factored_rms", "min_dim_size_to_factor", min_dim, Interval(0, integer=True))
    return ScaleByFactoredRms(
        decay_rate_, eps, "add", "largest_two" if factored else "none", min_dim
    )


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float = 0.8,
    step_offset: int = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: float = 1e-30,
    decay_rate_fn: Any = _decay_rate_pow,
) -> GradstepTransformation:
    """optax's ``scale_by_factored_rms``: :math:`g / \\sqrt{\\hat V}` with Adafactor's
    factored second moment (:class:`gradstep.rules.adafactor.ScaleByFactoredRms`
    with optax's options); state ``FactoredState``."""
    _check_factored("scale_by_factored_rms", decay_rate, "step_offset", step_offset, epsilon)
    if not _is_default_decay(decay_rate_fn):
        raise ValueError(
            f"scale_by_factored_rms: invalid decay_rate_fn={decay_rate_fn!r}; valid values: "
            "optax's default (1 - (i + 1) ** -decay_rate)"
        )
    stage = _factored_stage(factored, decay_rate, min_dim_size_to_factor, epsilon)
    return wrap(stage, FACTORED_STATE)


def _times_lr(g, factor):
    return g * factor


def _lr_factor(h: dict, count: int) -> dict:
    return {"factor": h["learning_rate"]}


def _learning_rate(learning_rate: Any) -> Elementwise:
    """optax's ``scale_by_learning_rate(flip_sign=False)``: times :math:`\\eta` (the
    sign is flipped by the chain's last stage, as optax's)."""
    return Elementwise(
        "learning_rate",
        _times_lr,
        hyperparams={"learning_rate": learning_rate},
        prepare=_lr_factor,
    )


_LR = OrNone(nonnegative(schedulable=True))


def adafactor(
    learning_rate: Any = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: Any = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any = None,
) -> GradstepTransformation:
    """optax's ``adafactor`` (see the module docstring): gradstep's Adafactor stages
    in optax's order, its state optax's tuple (``FactoredState``, ``EmptyState``s,
    ``ScaleByScheduleState`` for a scheduled learning rate, ``EmaState`` with
    ``momentum``, the decay's state)."""
    check("adafactor", "learning_rate", learning_rate, _LR)
    _check_factored("adafactor", decay_rate, "decay_offset", decay_offset, eps)
    check("adafactor", "multiply_by_parameter_scale", multiply_by_parameter_scale, BOOL)
    check(
        "adafactor", "clipping_threshold", clipping_threshold, OrNone(Interval(0.0, lo_open=True))
    )
    check("adafactor", "momentum", momentum, OrNone(_decay_range(schedulable=True)))
    check(
        "adafactor", "weight_decay_rate", weight_decay_rate, OrNone(nonnegative(schedulable=True))
    )
    pairs: list = [
        (_factored_stage(factored, decay_rate, min_dim_size_to_factor, eps), FACTORED_STATE)
    ]
    if clipping_threshold is not None:
        pairs.append((ClipByBlockRms(clipping_threshold), EMPTY))
    if learning_rate is not None:
        pairs.append((_learning_rate(learning_rate), schedule_state(learning_rate)))
    if multiply_by_parameter_scale:
        pairs.append((ScaleByParamBlockRms(_PARAM_SCALE_FLOOR), EMPTY))
    if momentum is not None:
        ema = stored_in(
            "adafactor",
            "dtype_momentum",
            dtype_momentum,
            _scale_by_ema(momentum, debias=False),
            "ema",
        )
        pairs.append((ema, Slots(EmaState, count=Counter(), ema=Tree("ema"))))
    if weight_decay_rate is not None:
        decay = _add_decayed_weights(weight_decay_rate, weight_decay_mask)
        pairs.append((decay, decay_state(weight_decay_rate, weight_decay_mask)))
    pairs.append((_scale(-1.0), EMPTY))
    return optimizer("adafactor", *pairs, momentum="decay", weight_decay_rate="weight_decay")
