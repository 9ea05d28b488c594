"""optax.contrib 0.2.8's schedule-free optimizers on gradstep's schedule-free stage."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.stages import rule as _rule
from .._core.stages import scale as _scale
from .._core.validate import Interval, check, nonnegative
from ..jax import GradstepTransformation
from ..rules.schedule_free import schedule_free_sgd as _schedule_free_sgd
from ..rules.schedule_free import to_evaluation
from ._optax_base import DECAY, EPS, LR, as_stage, no_dtype, wrap
from ._optax_optimizers import sgd
from ._optax_schedules import warmup_constant_schedule
from ._optax_state import Layout, layout_of, state_class
from ._optax_transforms import add_decayed_weights, chain, scale_by_learning_rate, scale_by_rms

ScheduleFreeState = state_class(
    "ScheduleFreeState",
    ("b1", "weight_sum", "step_count", "max_lr", "base_optimizer_state", "z"),
    "optax.contrib",
)
_INTERPOLATION = Interval(0.0, 1.0, lo_open=True, hi_open=True)


def _dtype_of(tree: Any) -> Any:
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return min((x.dtype for x in leaves), key=lambda d: jnp.finfo(d).bits, default=jnp.float32)


class _ScheduleFree(Layout):
    """optax's ``ScheduleFreeState`` over the core chain (base optimizer, rescale,
    schedule-free stage): ``z`` is the stage's slot (optax's ``z`` starts as the
    parameters, gradstep's takes them on the first step), ``step_count`` its count
    plus 1, ``max_lr`` and ``weight_sum`` the stage's running maximum and sum of the
    averaging weights (read-only), ``b1`` the interpolation."""

    def __init__(self, base: Layout, b1: float, weights: Any):
        self.base = base
        self.b1 = b1
        self.weights = weights

    def _totals(self, count: Any, dtype: Any) -> tuple[Any, Any]:
        def host(n):
            lr_max, weight_sum = self.weights.totals(int(n))
            return np.asarray(max(lr_max, 0.0), dtype), np.asarray(weight_sum, dtype)

        shape = jax.ShapeDtypeStruct((), dtype)
        return jax.pure_callback(host, (shape, shape), count)

    def to_optax(self, core, node, ctx, prev):
        keys, stages = node.child_state_keys(), node.children()
        sf = core[keys[2]]
        count = sf["count"]
        dtype = _dtype_of(sf["z"])
        first = count == 0
        params = None
        if ctx.params is not None:
            params = ctx.tree()
        z = ctx.expand(sf["z"])
        if params is not None:  # optax's z is the parameters before the first step
            z = jax.tree_util.tree_map(lambda zi, pi: jnp.where(first, pi, zi), z, params)
        max_lr, weight_sum = self._totals(count, dtype)
        base_prev = None if prev is None else prev.base_optimizer_state
        return ScheduleFreeState(
            b1=jnp.asarray(self.b1, dtype),
            weight_sum=weight_sum,
            step_count=jnp.asarray(count, jnp.int32) + 1,
            max_lr=max_lr,
            base_optimizer_state=self.base.to_optax(core[keys[0]], stages[0], ctx, base_prev),
            z=z,
        )

    def from_optax(self, state, node, ctx):
        keys, stages = node.child_state_keys(), node.children()
        count = jnp.asarray(state.step_count, jnp.int32) - 1
        first = count == 0
        z = ctx.compress(state.z)
        z = jax.tree_util.tree_map(lambda zi: jnp.where(first, jnp.zeros_like(zi), zi), z)
        return {
            keys[0]: self.base.from_optax(state.base_optimizer_state, stages[0], ctx),
            keys[1]: {"count": count} if self._scheduled(stages[1]) else {},
            keys[2]: {"count": count, "z": z},
        }

    @staticmethod
    def _scheduled(stage: Any) -> bool:
        return any(callable(v) for v in stage.hyperparams.values())


def _shifted(learning_rate: Any) -> Any:
    """optax's schedule-free learning rate of step ``k`` (0-based): its schedule at
    ``step_count = k + 1``."""
    if not callable(learning_rate):
        return learning_rate

    def at(k: Any) -> Any:
        return learning_rate(k + 1)

    at.evaluate_on_host = True
    return at


def _inverse(rate: Any) -> Any:
    if not callable(rate):
        return -1.0 / rate

    def at(k: Any) -> Any:
        return -1.0 / rate(k)

    at.evaluate_on_host = True
    return at


def schedule_free(
    base_optimizer: Any,
    learning_rate: Any,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``schedule_free``: the parameters hold :math:`y`, ``z`` takes
    each update of ``base_optimizer``, and the averaging weights follow
    ``learning_rate`` (at optax's ``step_count``, from 1), as gradstep's schedule-free
    stage (:func:`gradstep.schedule_free_sgd` with ``r=0``) fed the base update
    divided by :math:`-\\gamma_k` (``z - \\gamma d = z + u``). ``learning_rate`` must
    stay > 0; ``state_dtype`` must be None."""
    check("schedule_free", "learning_rate", learning_rate, LR)
    check("schedule_free", "b1", b1, _INTERPOLATION)
    check("schedule_free", "weight_lr_power", weight_lr_power, nonnegative())
    no_dtype("schedule_free", "state_dtype", state_dtype)
    if not callable(learning_rate) and learning_rate == 0:
        raise ValueError(
            "schedule_free: invalid learning_rate=0; valid values: > 0 or a schedule that "
            "stays > 0 (gradstep's stage takes the base update over the rate)"
        )
    rate = _shifted(learning_rate)
    stage = _schedule_free_sgd(rate, b1, weight_lr_power=weight_lr_power).children()[0]
    base = as_stage(base_optimizer)
    core = _rule("schedule_free", base, _scale(_inverse(rate)), stage)
    weights = stage.prepare.keywords["weights"]
    return wrap(core, _ScheduleFree(layout_of(base_optimizer), b1, weights))


def _warmed(learning_rate: Any, warmup_steps: int | None) -> Any:
    if warmup_steps is None:
        return learning_rate
    check("schedule_free", "warmup_steps", warmup_steps, Interval(0, integer=True))
    return warmup_constant_schedule(0.0, learning_rate, warmup_steps)


def schedule_free_sgd(
    learning_rate: float = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: float | None = None,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``schedule_free_sgd``: :func:`schedule_free` around optax's
    ``sgd`` (after coupled decay when ``weight_decay`` is given); with
    ``warmup_steps`` the rate is optax's ``warmup_constant_schedule`` from 0 (the
    base SGD's first step is then 0, as optax's)."""
    learning_rate = _warmed(learning_rate, warmup_steps)
    base = sgd(learning_rate)
    if weight_decay is not None:
        base = chain(add_decayed_weights(weight_decay), base)
    return schedule_free(base, learning_rate, b1, weight_lr_power, state_dtype)


def schedule_free_adamw(
    learning_rate: float = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``schedule_free_adamw``: :func:`schedule_free` around
    bias-corrected RMS scaling (:math:`\\epsilon` outside the root), decoupled decay
    and the learning rate."""
    check("schedule_free_adamw", "b2", b2, DECAY)
    check("schedule_free_adamw", "eps", eps, EPS)
    learning_rate = _warmed(learning_rate, warmup_steps)
    base = chain(
        scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
    return schedule_free(base, learning_rate, b1, weight_lr_power, state_dtype)


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """optax.contrib's ``schedule_free_eval_params``: the averaged iterate :math:`x`
    from the training parameters :math:`y` and the state's ``z`` and ``b1``
    (:func:`gradstep.rules.schedule_free.to_evaluation`, on the host)."""
    b1, z = getattr(state, "b1", None), getattr(state, "z", None)
    if b1 is None or z is None:
        raise ValueError("schedule_free_eval_params: requires a ScheduleFreeState as input")

    def leaf(y: Any, zi: Any) -> Any:
        def host(yv, zv, bv):
            return np.asarray(to_evaluation(np.asarray(yv), np.asarray(zv), float(bv)), yv.dtype)

        return jax.pure_callback(host, jax.ShapeDtypeStruct(jnp.shape(y), y.dtype), y, zi, b1)

    return jax.tree_util.tree_map(leaf, params, z)


__all__ = [
    "ScheduleFreeState",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
]
