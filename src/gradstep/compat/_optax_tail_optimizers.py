"""optax 0.2.8's further optimizers (AdaBelief, Yogi, NovoGrad, Adan, Fromage, SM3,
Rprop, the optimistic methods) as gradstep rules with optax's state: the directions
of :mod:`gradstep.compat._optax_tail` followed by the learning rate."""

from __future__ import annotations

import warnings
from typing import Any

from .._core.validate import BOOL, check, hyperparams, nonnegative
from ..jax import GradstepTransformation
from ..rules.fromage import fromage as _fromage
from ..rules.optimistic import scale_by_optimistic_gradient as _scale_by_optimistic
from ..rules.rprop import rprop as _rprop
from ._optax_base import ADAM_NAMES, DECAY, EPS, LR, WD, stored_in, wrap
from ._optax_layouts import ADAM_STATE, decay_stage, lr_stage, optimizer
from ._optax_optimizers import adam_direction
from ._optax_state import EMPTY, Counter, Seq, Slots, WeightDecaySchedule, schedule_state
from ._optax_tail import (
    _RPROP_RANGES,
    ADAN_NAMES,
    ADAN_STATE,
    BELIEF_NAMES,
    BELIEF_STATE,
    NOVOGRAD_STATE,
    OPTIMISTIC_STATE,
    RPROP_STATE,
    SM3_STATE,
    _adan,
    _belief,
    _novograd,
    _rprop_checks,
    _sm3_direction,
    _yogi,
)

__all__ = [
    "adabelief",
    "adan",
    "fromage",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "rprop",
    "sm3",
    "yogi",
]


@hyperparams(learning_rate=LR, b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS, nesterov=BOOL)
def adabelief(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradstepTransformation:
    """optax's ``adabelief``: :func:`scale_by_belief`, then the learning rate
    (:func:`gradstep.adabelief` without decay)."""
    direction = _belief(b1, b2, eps, eps_root, nesterov)
    return optimizer(
        "adabelief", (direction, BELIEF_STATE), lr_stage(learning_rate), **BELIEF_NAMES
    )


@hyperparams(learning_rate=LR, b1=DECAY, b2=DECAY, eps=EPS)
def yogi(
    learning_rate: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3
) -> GradstepTransformation:
    """optax's ``yogi``: :func:`scale_by_yogi` (``eps_root=0``, moments from 1e-6), then
    the learning rate (:func:`gradstep.yogi`)."""
    direction = _yogi(b1, b2, eps, 0.0, 1e-6)
    return optimizer("yogi", (direction, ADAM_STATE), lr_stage(learning_rate), **ADAM_NAMES)


@hyperparams(learning_rate=LR, b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS)
def novograd(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
) -> GradstepTransformation:
    """optax's ``novograd``: :func:`scale_by_novograd` (the decay inside the
    normalised gradient), then the learning rate (:func:`gradstep.novograd`). optax
    types ``weight_decay`` as a schedule but multiplies by it as a number: a number."""
    direction = _novograd("novograd", b1, b2, eps, eps_root, weight_decay)
    return optimizer("novograd", (direction, NOVOGRAD_STATE), lr_stage(learning_rate), **ADAM_NAMES)


@hyperparams(learning_rate=LR, b1=DECAY, b2=DECAY, b3=DECAY, eps=EPS, eps_root=EPS, weight_decay=WD)
def adan(
    learning_rate: Any,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> GradstepTransformation:
    """optax's ``adan``: :func:`scale_by_adan`, decoupled decay :math:`\\lambda w` on
    ``mask``, then the learning rate (:func:`gradstep.adan` with
    ``correction_weight="one_minus_beta2"``, ``weight_decay_mode="decoupled"``)."""
    return optimizer(
        "adan",
        (_adan(b1, b2, b3, eps, eps_root), ADAN_STATE),
        decay_stage(weight_decay, mask),
        lr_stage(learning_rate),
        **ADAN_NAMES,
    )


@hyperparams(learning_rate=LR, min_norm=nonnegative())
def fromage(learning_rate: Any, min_norm: float = 1e-6) -> GradstepTransformation:
    """optax's ``fromage``: :func:`gradstep.fromage` (the trust ratio with norms
    floored at ``min_norm``, the learning rate times :math:`m = 1/\\sqrt{1+\\eta^2}`
    and the decay by :math:`m - 1` in one stage), shown as optax's three states."""
    core = _fromage(learning_rate, min_norm)
    ratio, step = core.children()
    decay = Slots(WeightDecaySchedule, count=Counter()) if callable(learning_rate) else EMPTY
    layout = Seq.of(core, (ratio, EMPTY), (step, schedule_state(learning_rate)), (None, decay))
    return wrap(core, layout)


@hyperparams(learning_rate=nonnegative(), momentum=DECAY)
def sm3(learning_rate: float, momentum: float = 0.9) -> GradstepTransformation:
    """optax's ``sm3``: :func:`scale_by_sm3` (``b2=1``, ``eps=1e-8``), then times
    :math:`-\\eta` (:func:`gradstep.sm3`; a number, as optax's)."""
    return optimizer(
        "sm3", (_sm3_direction(momentum, 1.0, 1e-8), SM3_STATE), lr_stage(learning_rate)
    )


@hyperparams(**_RPROP_RANGES)
def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradstepTransformation:
    """optax's ``rprop``: :func:`gradstep.rprop` (iRprop-), ``learning_rate`` the
    initial step size; state ``(ScaleByRpropState, EmptyState())``."""
    _rprop_checks("rprop", learning_rate, min_step_size, max_step_size)
    core = _rprop(
        learning_rate, eta_minus, eta_plus, min_step_size, max_step_size, lagged_step=True
    )
    step, descent = core.children()
    return wrap(core, Seq.of(core, (step, RPROP_STATE), (descent, EMPTY)))


@hyperparams(learning_rate=LR, alpha=nonnegative(), beta=nonnegative())
def optimistic_gradient_descent(
    learning_rate: Any, alpha: float = 1.0, beta: float = 1.0
) -> GradstepTransformation:
    """optax's ``optimistic_gradient_descent``: :func:`scale_by_optimistic_gradient`,
    then the learning rate (:func:`gradstep.optimistic_gradient_descent`; ``alpha``
    and ``beta`` numbers: optax types them as schedules but multiplies by them)."""
    return optimizer(
        "optimistic_gradient_descent",
        (_scale_by_optimistic(alpha, beta), OPTIMISTIC_STATE),
        lr_stage(learning_rate),
    )


def _optimistic_adam(name, learning_rate, alpha, beta, b1, b2, eps, eps_root, mu_dtype, nesterov):
    direction = adam_direction(b1, b2, eps, eps_root, nesterov, name)
    direction = stored_in(name, "mu_dtype", mu_dtype, direction, "mu")
    return (
        (direction, ADAM_STATE),
        (_scale_by_optimistic(alpha, beta), OPTIMISTIC_STATE),
        lr_stage(learning_rate),
    )


@hyperparams(
    learning_rate=LR,
    alpha=nonnegative(),
    beta=nonnegative(),
    b1=DECAY,
    b2=DECAY,
    eps=EPS,
    eps_root=EPS,
    nesterov=BOOL,
)
def optimistic_adam_v2(
    learning_rate: Any,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
) -> GradstepTransformation:
    """optax's ``optimistic_adam_v2``: Adam's direction (Nesterov's form by default),
    the optimistic correction, the learning rate (:func:`gradstep.optimistic_adam`)."""
    stages = _optimistic_adam(
        "optimistic_adam_v2", learning_rate, alpha, beta, b1, b2, eps, eps_root, mu_dtype, nesterov
    )
    return optimizer("optimistic_adam_v2", *stages, **ADAM_NAMES)


@hyperparams(learning_rate=nonnegative(), b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS, nesterov=BOOL)
def optimistic_adam(
    learning_rate: float,
    optimism: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradstepTransformation:
    """optax's deprecated ``optimistic_adam``: :func:`optimistic_adam_v2` with
    ``alpha=learning_rate``, ``beta=optimism`` (default: the learning rate) and a
    learning rate of 1 (no schedules, as optax's)."""
    warnings.warn(
        "optimistic_adam is deprecated (as in optax), use optimistic_adam_v2 instead",
        DeprecationWarning,
        stacklevel=2,
    )
    beta = learning_rate if optimism is None else optimism
    check("optimistic_adam", "optimism", beta, nonnegative())
    stages = _optimistic_adam(
        "optimistic_adam", 1.0, learning_rate, beta, b1, b2, eps, eps_root, mu_dtype, nesterov
    )
    names = {**ADAM_NAMES, "learning_rate": "alpha", "optimism": "beta"}
    return optimizer("optimistic_adam", *stages, **names)
