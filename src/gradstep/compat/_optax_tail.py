"""optax 0.2.8's further transforms (the directions of AdaBelief, Yogi, NovoGrad, Adan,
SM3, Rprop, the optimistic methods, LDoG; per-block scaling, centralization) mapped
onto gradstep's rules and stages, with optax's state; their optimizers are in
:mod:`gradstep.compat._optax_tail_optimizers`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._core.stages import rule as _rule
from .._core.validate import BOOL, Interval, check, hyperparams, nonnegative
from ..jax import GradstepTransformation
from ..rules.adabelief import scale_by_belief as _scale_by_belief
from ..rules.adan import scale_by_adan as _scale_by_adan
from ..rules.ldog import REFERENCE_DTYPE
from ..rules.ldog import scale_by_ldog as _scale_by_ldog
from ..rules.novograd import scale_by_novograd as _scale_by_novograd
from ..rules.optimistic import scale_by_optimistic_gradient as _scale_by_optimistic
from ..rules.rprop import scale_by_rprop as _scale_by_rprop
from ..rules.sm3 import ScaleBySm3, sm3_momentum
from ..rules.yogi import scale_by_yogi as _scale_by_yogi
from ..transforms import block_scaling as _block
from ..transforms.centralization import centralize as _centralize
from ._optax_base import ADAM_EPS, ADAM_NAMES, DECAY, EPS, injectable, stored_in, wrap
from ._optax_layouts import ADAM_STATE
from ._optax_state import (
    EMPTY,
    EmptyState,
    Layout,
    Scalar,
    Slots,
    Tree,
    state_class,
)

__all__ = [
    "ScaleByAdanState",
    "ScaleByBeliefState",
    "ScaleByNovogradState",
    "ScaleByRpropState",
    "ScaleBySM3State",
    "ScaleByTrustRatioState",
    "centralize",
    "normalize_by_update_norm",
    "scale_by_adan",
    "scale_by_belief",
    "scale_by_distance_over_gradients",
    "scale_by_novograd",
    "scale_by_optimistic_gradient",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_rprop",
    "scale_by_sm3",
    "scale_by_yogi",
    "scale_gradient",
]

# -- optax's state classes ----------------------------------------------------------

_TRANSFORM = "optax._src.transform"  # where optax keeps those it does not export
ScaleByBeliefState = state_class("ScaleByBeliefState", ("count", "mu", "nu"))
ScaleByNovogradState = state_class("ScaleByNovogradState", ("count", "mu", "nu"))
ScaleByAdanState = state_class("ScaleByAdanState", ("m", "v", "n", "g", "t"))
ScaleByRpropState = state_class("ScaleByRpropState", ("step_sizes", "prev_updates"))
ScaleBySM3State = state_class("ScaleBySM3State", ("mu", "nu"))
ScaleByTrustRatioState = EmptyState  # optax's alias too
ScaleByOptimisticGradientState = state_class(
    "ScaleByOptimisticGradientState", ("is_initial_step", "previous_gradient"), _TRANSFORM
)
ScaleByDistanceOverGradientsState = state_class(
    "ScaleByDistanceOverGradientsState",
    ("max_dist", "grad_sum_of_squares", "init_params"),
    _TRANSFORM,
)


class _Fields(Layout):
    """One optax NamedTuple whose fields are computed from the core stage's state
    (``show(core, ctx) -> fields``) and read back (``read(state, ctx) -> core``), for
    fields that are not a core slot as it is (a per-tensor scalar kept per element, a
    flag standing for the count, the sign of the previous step)."""

    def __init__(self, cls: type, show: Any, read: Any):
        self.cls, self.show, self.read = cls, show, read

    def to_optax(self, core, node, ctx, prev):
        return self.cls(**self.show(core, ctx))

    def from_optax(self, state, node, ctx):
        return self.read(state, ctx)


def _map(fn: Any, *trees: Any) -> Any:
    return jax.tree_util.tree_map(fn, *trees)


BELIEF_STATE = Slots(ScaleByBeliefState, count=Scalar("count"), mu=Tree("mu"), nu=Tree("nu"))
ADAN_STATE = Slots(
    ScaleByAdanState,
    m=Tree("mu"),
    v=Tree("delta"),
    n=Tree("nu"),
    g=Tree("prev_grad"),
    t=Scalar("count"),
)


def _first(v: Any) -> Any:
    """A tensor's value of a per-tensor scalar the core keeps in every element."""
    return jnp.ravel(v)[0] if jnp.size(v) else jnp.zeros((), jnp.asarray(v).dtype)


#: optax keeps NovoGrad's second moment as one 0-d array per tensor; gradstep's
#: per-tensor stage keeps it in every element of a parameter-sized slot
NOVOGRAD_STATE = _Fields(
    ScaleByNovogradState,
    lambda core, ctx: dict(
        count=core["count"],
        mu=ctx.expand(core["mu"]),
        nu=ctx.expand(_map(_first, core["nu"])),
    ),
    lambda state, ctx: {
        "count": state.count,
        "mu": ctx.compress(state.mu),
        "nu": _map(
            lambda n, m: jnp.broadcast_to(n, jnp.shape(m)),
            ctx.compress(state.nu),
            ctx.compress(state.mu),
        ),
    },
)

#: optax keeps the previous *step* (``step_size * sign(g)``, 0 after a sign change),
#: gradstep the previous gradient (0 after a sign change): only its sign is read, so
#: optax's value is handed to the rule as it is
RPROP_STATE = _Fields(
    ScaleByRpropState,
    lambda core, ctx: dict(
        step_sizes=ctx.expand(core["step_size"]),
        prev_updates=ctx.expand(
            _map(lambda p, s: jnp.sign(p) * s, core["prev"], core["step_size"])
        ),
    ),
    lambda state, ctx: {
        "step_size": ctx.compress(state.step_sizes),
        "prev": ctx.compress(state.prev_updates),
    },
)

#: the rule reads its count only as "is this the first step"
OPTIMISTIC_STATE = _Fields(
    ScaleByOptimisticGradientState,
    lambda core, ctx: dict(
        is_initial_step=jnp.asarray(core["count"]) == 0,
        previous_gradient=ctx.expand(core["prev"]),
    ),
    lambda state, ctx: {
        "count": jnp.where(state.is_initial_step, 0, 1).astype(jnp.int32),
        "prev": ctx.compress(state.previous_gradient),
    },
)

#: optax's sum of squared gradients is an array of shape (1,)
LDOG_STATE = _Fields(
    ScaleByDistanceOverGradientsState,
    lambda core, ctx: dict(
        max_dist=ctx.expand(core["max_dist"]),
        grad_sum_of_squares=ctx.expand(_map(lambda s: jnp.reshape(s, (1,)), core["sum_sq_grads"])),
        init_params=ctx.expand(core["p0"]),
    ),
    lambda state, ctx: {
        "max_dist": ctx.compress(state.max_dist),
        "sum_sq_grads": _map(lambda s: jnp.reshape(s, ()), ctx.compress(state.grad_sum_of_squares)),
        "p0": ctx.compress(state.init_params),
    },
)


def _axes(acc: Any, like: Any) -> list:
    """SM3's flat accumulator of one tensor as optax's list: one vector per axis
    (rank >= 2), the whole accumulator (rank <= 1)."""
    shape = jnp.shape(like)
    if len(shape) < 2:
        return [jnp.reshape(acc, shape)] if shape else [acc]
    out, start = [], 0
    for n in shape:
        out.append(acc[start : start + n])
        start += n
    return out


class _SM3(Layout):
    """optax's ``ScaleBySM3State(mu, nu)`` over gradstep's two stages: ``mu`` the
    accumulators (optax's list per tensor; gradstep's one flat vector), ``nu`` the
    momentum."""

    def to_optax(self, core, node, ctx, prev):
        acc_key, mom_key = node.child_state_keys()
        acc, mom = core[acc_key]["accumulators"], core[mom_key]["mu"]
        return ScaleBySM3State(mu=ctx.expand(_map(_axes, acc, mom)), nu=ctx.expand(mom))

    def from_optax(self, state, node, ctx):
        acc_key, mom_key = node.child_state_keys()
        mom = ctx.compress(state.nu)
        td = jax.tree_util.tree_structure(mom)
        lists = td.flatten_up_to(ctx.compress(state.mu))
        flat = [jnp.concatenate([jnp.ravel(x) for x in parts]) for parts in lists]
        return {acc_key: {"accumulators": td.unflatten(flat)}, mom_key: {"mu": mom}}


SM3_STATE = _SM3()
BELIEF_NAMES = ADAM_NAMES
ADAN_NAMES = {**ADAM_NAMES, "b3": "beta3"}

# -- transforms ------------------------------------------------------------------------


def _belief(b1, b2, eps, eps_root, nesterov):
    return injectable(_scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov), **ADAM_EPS)


@hyperparams(b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS, nesterov=BOOL)
def scale_by_belief(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradstepTransformation:
    """optax's ``scale_by_belief``: AdaBelief's direction
    (:func:`gradstep.rules.scale_by_belief`), state ``ScaleByBeliefState``."""
    return wrap(_belief(b1, b2, eps, eps_root, nesterov), BELIEF_STATE, **BELIEF_NAMES)


def _yogi(b1, b2, eps, eps_root, initial_accumulator_value):
    stage = _scale_by_yogi(
        b1, b2, eps, eps_root=eps_root, initial_accumulator_value=initial_accumulator_value
    )
    return injectable(stage, **ADAM_EPS)


@hyperparams(b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS, initial_accumulator_value=nonnegative())
def scale_by_yogi(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
) -> GradstepTransformation:
    """optax's ``scale_by_yogi``: Yogi's direction (:func:`gradstep.rules.scale_by_yogi`),
    both moments from ``initial_accumulator_value``; state ``ScaleByAdamState``."""
    stage = _yogi(b1, b2, eps, eps_root, initial_accumulator_value)
    return wrap(stage, ADAM_STATE, **ADAM_NAMES)


def _novograd(owner, b1, b2, eps, eps_root, weight_decay, mu_dtype=None):
    # optax multiplies the parameters by weight_decay as a number
    check(owner, "weight_decay", weight_decay, nonnegative())
    stage = _scale_by_novograd(b1, b2, eps, eps_root=eps_root, weight_decay=weight_decay)
    return stored_in(owner, "mu_dtype", mu_dtype, stage, "mu")


@hyperparams(b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS)
def scale_by_novograd(
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mu_dtype: Any = None,
) -> GradstepTransformation:
    """optax's ``scale_by_novograd``: NovoGrad's direction
    (:func:`gradstep.rules.scale_by_novograd`); state ``ScaleByNovogradState`` with
    ``nu`` one 0-d array per tensor, as optax's."""
    stage = _novograd("scale_by_novograd", b1, b2, eps, eps_root, weight_decay, mu_dtype)
    return wrap(stage, NOVOGRAD_STATE, **ADAM_NAMES)


def _adan(b1, b2, b3, eps, eps_root):
    stage = _scale_by_adan(b1, b2, b3, eps, eps_root=eps_root, correction_weight="one_minus_beta2")
    return injectable(stage, **ADAM_EPS)


@hyperparams(b1=DECAY, b2=DECAY, b3=DECAY, eps=EPS, eps_root=EPS)
def scale_by_adan(
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradstepTransformation:
    """optax's ``scale_by_adan``: Adan's direction with optax's weight
    :math:`1-\\beta_2` of the gradient change (:func:`gradstep.rules.scale_by_adan`
    with ``correction_weight="one_minus_beta2"``); state ``ScaleByAdanState``."""
    return wrap(_adan(b1, b2, b3, eps, eps_root), ADAN_STATE, **ADAN_NAMES)


def _sm3_direction(b1, b2, eps):
    return _rule("scale_by_sm3", ScaleBySm3(b2, eps), sm3_momentum(b1))


@hyperparams(b1=DECAY, b2=Interval(0.0, 1.0), eps=EPS)
def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> GradstepTransformation:
    """optax's ``scale_by_sm3``: SM3's cover accumulators and momentum
    (:class:`gradstep.rules.sm3.ScaleBySm3`, :func:`gradstep.rules.sm3.sm3_momentum`);
    state ``ScaleBySM3State(mu, nu)``: ``mu`` the accumulators as optax's list per
    tensor, ``nu`` the momentum. optax fails on 0-d parameters; gradstep treats them as
    a vector of one element."""
    return wrap(_sm3_direction(b1, b2, eps), SM3_STATE, b1="momentum")


_RPROP_RANGES = dict(
    learning_rate=nonnegative(),
    eta_minus=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    eta_plus=Interval(1.0, lo_open=True),
    min_step_size=nonnegative(),
    max_step_size=nonnegative(),
)


def _rprop_checks(owner, learning_rate, min_step_size, max_step_size):
    if not min_step_size <= learning_rate <= max_step_size:
        raise ValueError(
            f"{owner}: invalid learning_rate={learning_rate!r}; valid values: a number in "
            f"[min_step_size, max_step_size] = [{min_step_size:g}, {max_step_size:g}] "
            "(gradstep's Rprop clips every step size; optax leaves one outside the bounds "
            "unclipped until its gradient's sign is known)"
        )


@hyperparams(**_RPROP_RANGES)
def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradstepTransformation:
    """optax's ``scale_by_rprop``: Rprop's step (:func:`gradstep.rules.scale_by_rprop`,
    ``learning_rate`` the initial step size; the ascent direction and each step output
    one call late, ``lagged_step=True``, as optax's); state
    ``ScaleByRpropState(step_sizes, prev_updates)``."""
    _rprop_checks("scale_by_rprop", learning_rate, min_step_size, max_step_size)
    stage = _scale_by_rprop(
        learning_rate, eta_minus, eta_plus, min_step_size, max_step_size, lagged_step=True
    )
    return wrap(stage, RPROP_STATE)


@hyperparams(alpha=nonnegative(), beta=nonnegative())
def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0) -> GradstepTransformation:
    """optax's ``scale_by_optimistic_gradient``: :math:`(\\alpha+\\beta) g_t - \\beta
    g_{t-1}` (:func:`gradstep.rules.scale_by_optimistic_gradient`); state
    ``ScaleByOptimisticGradientState(is_initial_step, previous_gradient)``."""
    return wrap(_scale_by_optimistic(alpha, beta), OPTIMISTIC_STATE)


@hyperparams(
    reps_rel=Interval(0.0, lo_open=True),
    eps=EPS,
    param_dtype=REFERENCE_DTYPE,
    global_scale=Interval(None, None),
)
def scale_by_distance_over_gradients(
    reps_rel: float = 1e-6, eps: float = 1e-8, param_dtype: Any = jnp.float32, global_scale=1.0
) -> GradstepTransformation:
    """optax's ``scale_by_distance_over_gradients``: layer-wise DoG
    (:func:`gradstep.rules.ldog.scale_by_ldog`, the initial parameters kept in
    ``param_dtype``); state ``ScaleByDistanceOverGradientsState``."""
    stage = _scale_by_ldog(reps_rel, eps, param_dtype, global_scale)
    return wrap(stage, LDOG_STATE)


@hyperparams(min_scale=nonnegative())
def scale_by_param_block_norm(min_scale: float = 1e-3) -> GradstepTransformation:
    """optax's ``scale_by_param_block_norm``: each tensor's update times its
    parameter's norm floored at ``min_scale``
    (:func:`gradstep.transforms.scale_by_param_block_norm`)."""
    return wrap(_block.scale_by_param_block_norm(min_scale), EMPTY)


@hyperparams(min_scale=nonnegative())
def scale_by_param_block_rms(min_scale: float = 1e-3) -> GradstepTransformation:
    """optax's ``scale_by_param_block_rms``: each tensor's update times its
    parameter's RMS floored at ``min_scale``
    (:func:`gradstep.transforms.scale_by_param_block_rms`)."""
    return wrap(_block.scale_by_param_block_rms(min_scale), EMPTY)


@hyperparams(scale_factor=Interval(None, None), eps=EPS)
def normalize_by_update_norm(scale_factor: float = 1.0, eps: float = 1e-6):
    """optax's ``normalize_by_update_norm``: the updates over ``(norm + eps) /
    scale_factor`` (:func:`gradstep.transforms.normalize_by_update_norm`)."""
    return wrap(_block.normalize_by_update_norm(scale_factor, eps), EMPTY)


def centralize() -> GradstepTransformation:
    """optax's ``centralize``: each tensor of rank >= 2 minus its mean over all axes
    but the first (:func:`gradstep.transforms.centralize`)."""
    return wrap(_centralize(), EMPTY)


def scale_gradient(inputs: Any, scale: Any) -> Any:
    """optax's ``scale_gradient`` (a function of arrays, not a transformation):
    ``inputs`` unchanged, their gradient multiplied by ``scale`` on the way back
    (``scale`` 1: ``inputs`` itself; 0: ``jax.lax.stop_gradient``)."""
    if scale == 1.0:
        return inputs
    if scale == 0.0:
        return jax.lax.stop_gradient(inputs)
    return _backward_scaled(inputs, scale)


@jax.custom_vjp
def _backward_scaled(inputs: Any, scale: Any) -> Any:
    return inputs


def _backward_scaled_fwd(inputs: Any, scale: Any):
    return inputs, scale


def _backward_scaled_bwd(scale: Any, cotangent: Any):
    return _map(lambda c: c * scale, cotangent), None


_backward_scaled.defvjp(_backward_scaled_fwd, _backward_scaled_bwd)
