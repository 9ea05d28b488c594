"""optax 0.2.8's names for what gradstep already has: the direction stages
(``scale_by_*``), the sign optimizers, ``named_chain``, stateless transforms and
the norm helpers, each with optax's arguments, defaults and state."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._core.stages import scale as _scale
from .._core.transform import FunctionTransform, shallow_copy
from .._core.transform import chain as _chain
from .._core.validate import BOOL, Interval, hyperparams, nonnegative
from ..jax import GradstepTransformation
from ..rules.adadelta import scale_by_adadelta as _scale_by_adadelta
from ..rules.adagrad import scale_by_adagrad as _scale_by_adagrad
from ..rules.adam import scale_by_adam as _scale_by_adam
from ..rules.adamax import scale_by_adamax as _scale_by_adamax
from ..rules.layerwise import scale_by_trust_ratio as _scale_by_trust_ratio
from ..rules.lion import scale_by_lion as _scale_by_lion
from ..rules.radam import THRESHOLD as RADAM_THRESHOLD
from ..rules.radam import scale_by_radam as _scale_by_radam
from ..rules.rmsprop import scale_by_rms as _scale_by_rms
from ..rules.sign import scale_by_sign as _scale_by_sign
from ..rules.sign import scale_by_signum as _scale_by_signum
from ..transforms.ema import scale_by_ema as _scale_by_ema
from ._optax_base import (
    ADAM_EPS,
    ADAM_NAMES,
    DECAY,
    EPS,
    LR,
    as_stage,
    injectable,
    one_rule_for_both,
    stored_in,
    wrap,
)
from ._optax_layouts import (
    ADAM_STATE,
    ADAMAX_STATE,
    AMSGRAD_STATE,
    LION_STATE,
    lr_stage,
    optimizer,
    rms_state,
)
from ._optax_state import (
    EMPTY,
    Counter,
    Named,
    Scalar,
    ScaleByAdaDeltaState,
    ScaleByRssState,
    Slots,
    Tree,
    layout_of,
    schedule_state,
    state_class,
)

EmaState = state_class("EmaState", ("count", "ema"))

# -- direction stages -----------------------------------------------------------------


def scale_by_sign() -> GradstepTransformation:
    """optax's ``scale_by_sign``: :math:`\\mathrm{sign}(u)` (0 at 0)."""
    return wrap(_scale_by_sign(), EMPTY)


@hyperparams(b1=DECAY, b2=DECAY, eps=EPS)
def scale_by_adamax(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradstepTransformation:
    """optax's ``scale_by_adamax``: AdaMax's direction, the infinity norm kept as
    :math:`\\max(\\beta_2 u, |g| + \\epsilon)` (state ``ScaleByAdamState``, ``nu`` the
    norm)."""
    stage = _scale_by_adamax(b1, b2, eps, epsilon_placement="in_max")
    stage = injectable(stage, epsilon=("epsilon", EPS))
    return wrap(stage, ADAMAX_STATE, **ADAM_NAMES)


@hyperparams(
    b1=DECAY,
    b2=DECAY,
    eps=EPS,
    eps_root=EPS,
    bias_correction_mu=BOOL,
    bias_correction_nu=BOOL,
)
def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradstepTransformation:
    """optax's ``scale_by_amsgrad``: the maximum kept of the bias-corrected
    :math:`\\hat v`. gradstep's rule corrects both moments or neither: the two flags
    must be equal."""
    one_rule_for_both("scale_by_amsgrad", bias_correction_mu, bias_correction_nu)
    stage = _scale_by_adam(
        b1, b2, eps, eps_root=eps_root, amsgrad="corrected", bias_correction=bias_correction_mu
    )
    stage = injectable(stage, **ADAM_EPS)
    stage = stored_in("scale_by_amsgrad", "mu_dtype", mu_dtype, stage, "mu")
    return wrap(stage, AMSGRAD_STATE, **ADAM_NAMES)


@hyperparams(
    b1=DECAY,
    b2=DECAY,
    eps=EPS,
    eps_root=EPS,
    threshold=RADAM_THRESHOLD,
    nesterov=BOOL,
)
def scale_by_radam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradstepTransformation:
    """optax's ``scale_by_radam``: :func:`radam`'s direction (``threshold`` from 4
    on, see :func:`radam`)."""
    stage = _scale_by_radam(
        b1,
        b2,
        eps,
        eps_root=eps_root,
        threshold=threshold,
        threshold_rule="greater_equal",
        epsilon_placement="outside",
        nesterov=nesterov,
    )
    stage = injectable(stage, **ADAM_EPS, threshold=("threshold", RADAM_THRESHOLD))
    return wrap(stage, ADAM_STATE, **ADAM_NAMES)


@hyperparams(b1=Interval(0.0, 1.0), b2=Interval(0.0, 1.0))
def scale_by_lion(
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    *,
    mode: str = "hard",
    smooth_beta: float = 1.0,
) -> GradstepTransformation:
    """optax's ``scale_by_lion``: :math:`\\mathrm{sign}((1-\\beta_1) g + \\beta_1 m)`,
    :math:`m \\leftarrow (1-\\beta_2) g + \\beta_2 m`. Only optax's default
    ``mode="hard"`` (the sign) is gradstep's rule."""
    if mode != "hard" or smooth_beta != 1.0:
        raise ValueError(
            f"scale_by_lion: invalid mode={mode!r}, smooth_beta={smooth_beta!r}; valid "
            "values: mode='hard' with smooth_beta=1.0 (gradstep's Lion takes the sign)"
        )
    stage = stored_in("scale_by_lion", "mu_dtype", mu_dtype, _scale_by_lion(b1, b2), "mu")
    return wrap(stage, LION_STATE, **ADAM_NAMES)


@hyperparams(rho=Interval(0.0, 1.0), eps=EPS)
def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> GradstepTransformation:
    """optax's ``scale_by_adadelta``: Zeiler's step (``ScaleByAdaDeltaState(e_g,
    e_x)``), the ascent direction as optax returns it."""
    state = Slots(ScaleByAdaDeltaState, e_g=Tree("nu"), e_x=Tree("nu_delta"))
    stage = injectable(_scale_by_adadelta(rho, eps), epsilon=("epsilon", EPS))
    return wrap(stage, state, eps="epsilon")


@hyperparams(initial_accumulator_value=nonnegative(), eps=EPS)
def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7):
    """optax's ``scale_by_rss``: Adagrad's direction :math:`g / \\sqrt{a + \\epsilon}`,
    :math:`a \\leftarrow a + g^2` from ``initial_accumulator_value``."""
    if initial_accumulator_value == 0 and eps == 0:
        raise ValueError(
            "scale_by_rss: invalid eps=0 with initial_accumulator_value=0; valid values: "
            "a positive eps or initial value (optax masks 0/0 to 0, gradstep does not)"
        )
    stage = _scale_by_adagrad(
        eps, initial_accumulator_value=initial_accumulator_value, epsilon_placement="inside"
    )
    stage = injectable(stage, epsilon=("eps_in", EPS))
    return wrap(stage, Slots(ScaleByRssState, sum_of_squares=Tree("sum_sq")), eps="epsilon")


@hyperparams(
    decay=Interval(0.0, 1.0),
    eps=EPS,
    initial_scale=nonnegative(),
    eps_in_sqrt=BOOL,
    bias_correction=BOOL,
)
def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradstepTransformation:
    """optax's ``scale_by_stddev``: centered RMSProp's direction
    :math:`g / \\sqrt{\\nu - \\mu^2 + \\epsilon}`."""
    stage = _scale_by_rms(
        decay,
        eps,
        centered=True,
        epsilon_placement="inside" if eps_in_sqrt else "outside",
        initial_scale=initial_scale,
        bias_correction=bias_correction,
    )
    stage = injectable(stage, epsilon=("eps_in" if eps_in_sqrt else "eps_out", EPS))
    return wrap(stage, rms_state(True, bias_correction), decay="rho", eps="epsilon")


@hyperparams(min_norm=nonnegative(), trust_coefficient=Interval(0.0, lo_open=True), eps=EPS)
def scale_by_trust_ratio(
    min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0
) -> GradstepTransformation:
    """optax's ``scale_by_trust_ratio``: each tensor times
    :math:`\\eta_c \\|w\\| / (\\|u\\| + \\epsilon)`, both norms floored at
    ``min_norm``, 1 when either norm is 0."""
    return wrap(_scale_by_trust_ratio(trust_coefficient, eps, min_norm=min_norm), EMPTY)


def scale_by_schedule(step_size_fn: Callable) -> GradstepTransformation:
    """optax's ``scale_by_schedule``: times ``step_size_fn(count)``, the count from 0
    (state ``ScaleByScheduleState(count)``)."""
    if not callable(step_size_fn):
        raise ValueError(
            f"scale_by_schedule: invalid step_size_fn={step_size_fn!r}; valid values: a "
            "function of the step count"
        )
    return wrap(_scale(step_size_fn), schedule_state(step_size_fn))


@hyperparams(decay=Interval(0.0, 1.0, hi_open=True), debias=BOOL)
def ema(decay: float, debias: bool = True, accumulator_dtype: Any = None):
    """optax's ``ema``: :math:`m \\leftarrow \beta m + (1-\beta) u`, output
    :math:`m / (1-\beta^t)` (or :math:`m` without ``debias``); state
    ``EmaState(count, ema)``."""
    count = Scalar("count") if debias else Counter()  # the rule counts only to debias
    stage = _scale_by_ema(decay, debias=debias)
    stage = stored_in("ema", "accumulator_dtype", accumulator_dtype, stage, "ema")
    return wrap(stage, Slots(EmaState, count=count, ema=Tree("ema")))


# -- optimizers --------------------------------------------------------------------------


@hyperparams(learning_rate=LR)
def sign_sgd(learning_rate: Any) -> GradstepTransformation:
    """optax's ``sign_sgd``: :math:`-\\eta\\,\\mathrm{sign}(g)`."""
    return optimizer("sign_sgd", (_scale_by_sign(), EMPTY), lr_stage(learning_rate))


@hyperparams(learning_rate=LR, beta=Interval(0.0, 1.0))
def signum(learning_rate: Any, beta: float = 0.9, accumulator_dtype: Any = None):
    """optax's ``signum``: :math:`m \\leftarrow \\beta m + (1-\\beta) g`,
    :math:`-\\eta\\,\\mathrm{sign}(m)` (optax's ``ema(beta, debias=False)``, then
    ``scale_by_sign``: one gradstep stage, shown as optax's two states)."""
    stage = _scale_by_signum(beta)
    stage = stored_in("signum", "accumulator_dtype", accumulator_dtype, stage, "mu")
    return optimizer(
        "signum",
        (stage, Slots(EmaState, count=Counter(), ema=Tree("mu"))),
        (None, EMPTY),
        lr_stage(learning_rate),
        beta="momentum",
    )


# -- combinators and stateless transforms ------------------------------------------------


def named_chain(*args: tuple[str, Any]) -> GradstepTransformation:
    """optax's ``named_chain``: a chain whose state is a dict keyed by the given
    names (``state["adam"]``)."""
    transforms = args
    names = [name for name, _ in transforms]
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain: invalid names {names}; valid values: distinct names")
    stages = []
    for name, t in transforms:
        stage = shallow_copy(as_stage(t))
        stage.name = name
        stages.append(stage)
    return wrap(_chain(*stages), Named([layout_of(t) for _, t in transforms]))


def _no_state(params: Any) -> dict:
    return {}


def stateless(f: Callable[[Any, Any], Any]) -> GradstepTransformation:
    """optax's ``stateless``: updates ``f(updates, params)``, state ``EmptyState()``."""

    def update(updates: Any, state: dict, params: Any = None, **ctx: Any):
        return f(updates, params), state

    return wrap(FunctionTransform(_no_state, update, "stateless"), EMPTY)


def stateless_with_tree_map(f: Callable[[Any, Any], Any]) -> GradstepTransformation:
    """optax's ``stateless_with_tree_map``: ``f(update, param)`` leaf by leaf (the
    parameter ``None`` without parameters)."""

    def update(updates: Any, params: Any) -> Any:
        if params is None:
            return jax.tree_util.tree_map(lambda u: f(u, None), updates)
        return jax.tree_util.tree_map(f, updates, params)

    return stateless(update)


def set_to_zero() -> GradstepTransformation:
    """optax's ``set_to_zero``: zero updates (NaN gradients included), no state;
    with :func:`partition` it freezes parameters."""
    return stateless(lambda updates, params: jax.tree_util.tree_map(jnp.zeros_like, updates))


# -- norms ----------------------------------------------------------------------------------


@jax.jit
def global_norm(updates: Any) -> jax.Array:
    """optax's ``global_norm``: :math:`\\sqrt{\\sum_i \\|u_i\\|^2}` over every leaf."""
    leaves = jax.tree_util.tree_leaves(updates)
    return jnp.sqrt(sum(jnp.sum(jnp.real(jnp.conj(x) * x)) for x in leaves))


@functools.partial(jax.jit, static_argnames=("ord", "axis", "keepdims"))
def safe_norm(
    x: Any, min_norm: Any, ord: Any = None, axis: Any = None, keepdims: bool = False
) -> jax.Array:
    """optax's ``safe_norm``: :math:`\\max(\\|x\\|, \\text{min\\_norm})` whose gradient
    is finite at 0 (the norm is taken of ``x`` replaced by ones where it is below
    ``min_norm``)."""
    norm = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)
    x = jnp.where(norm <= min_norm, jnp.ones_like(x), x)
    norm = jnp.squeeze(norm, axis=axis) if not keepdims else norm
    masked_norm = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)
    return jnp.where(norm <= min_norm, min_norm, masked_norm)
