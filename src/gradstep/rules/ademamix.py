r"""AdEMAMix: Adam whose step mixes a fast and a slow momentum; and its simplified form.

Symbols: :math:`g` gradient (after any coupled decay), :math:`w` parameter,
:math:`m_1` slot ``m1`` (fast momentum), :math:`m_2` slot ``m2`` (slow momentum),
:math:`v` slot ``nu``, :math:`t` the 1-based step, :math:`\eta` ``learning_rate``,
:math:`\beta_1, \beta_2, \beta_3` ``beta1``, ``beta2``, ``beta3``, :math:`\alpha`
``alpha``, :math:`\epsilon` ``epsilon``, :math:`\epsilon_r` ``eps_root``,
:math:`\lambda` ``weight_decay``, :math:`T` ``warmup_steps``.

AdEMAMix (:func:`ademamix`):

.. math::

    m_1 \leftarrow \beta_1 m_1 + (1-\beta_1) g,\quad
    m_2 \leftarrow \beta_{3,t} m_2 + (1-\beta_{3,t}) g,\quad
    v \leftarrow \beta_2 v + (1-\beta_2) g^2

    w \leftarrow w - \eta\left(\frac{m_1/(1-\beta_1^t) + \alpha_t m_2}
    {\sqrt{v/(1-\beta_2^t) + \epsilon_r} + \epsilon} + \lambda w\right)

The slow momentum is not bias-corrected. Without warm-up :math:`\alpha_t = \alpha`
and :math:`\beta_{3,t} = \beta_3` (each may also be a schedule); with ``warmup_steps``
:math:`T`, the paper's schedulers:

.. math::

    \alpha_t = \min(t\alpha/T, \alpha),\quad
    \beta_{3,t} = \min\left(\exp\frac{\ln\beta_1 \ln\beta_3}
    {(1-t/T)\ln\beta_3 + (t/T)\ln\beta_1},\ \beta_3\right)

Simplified AdEMAMix (:func:`simplified_ademamix`) keeps one momentum, an undamped sum
of past gradients, and adds the current gradient with weight :math:`\alpha`:

.. math::

    m \leftarrow \beta_1 m + g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    w \leftarrow w - \eta\left(\frac{m + \alpha g}{\sqrt{v/(1-\beta_2^t) + \epsilon_r}
    + \epsilon} + \lambda w\right)

Its momentum grows to :math:`g/(1-\beta_1)`: the learning rate must be about
:math:`1-\beta_1` times Adam's.

References:
  Pagliardini, Ablin & Grangier (2025): The AdEMAMix Optimizer: Better, Faster,
  Older. ICLR, arXiv:2409.03137.
  Morwani, Vyas, Kakade, Shapira & Brandfonbrener (2025): Connections between
  Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD Variants.
  arXiv:2502.02431 (the simplified form).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import debias, ema, ema_square, sqrt
from .layerwise import NoneOr

_WARMUP = NoneOr(Interval(0.0, lo_open=True))


def _ademamix(g, m1, m2, nu, b1, c1, b2, c2, b3, c3, m1_scale, alpha, v_scale, eps_in, eps):
    m1 = ema(m1, g, b1, c1)
    m2 = ema(m2, g, b3, c3)
    nu = ema_square(nu, g, b2, c2)
    return (m1 * m1_scale + alpha * m2) / (sqrt(nu * v_scale + eps_in) + eps), m1, m2, nu


def warmup_alpha(alpha: float, t: Any, warmup_steps: float) -> Any:
    """The paper's linear warm-up of :math:`\\alpha` at the 1-based step ``t``."""
    return min(t * alpha / warmup_steps, alpha)


def warmup_beta3(beta1: float, beta3: float, t: Any, warmup_steps: float) -> Any:
    """The paper's warm-up of :math:`\\beta_3` at the 1-based step ``t``: the half-life
    of the slow momentum grows linearly from :math:`\\beta_1`'s to :math:`\\beta_3`'s."""
    log1, log3 = math.log(beta1), math.log(beta3)
    frac = t / warmup_steps
    return min(math.exp(log1 * log3 / ((1.0 - frac) * log3 + frac * log1)), beta3)


def _ademamix_prepare(h: dict, count: Any, *, epsilon, eps_root, warmup_steps) -> dict:
    t = count + 1
    b1, b2, b3, alpha = h["beta1"], h["beta2"], h["beta3"], h["alpha"]
    if warmup_steps is not None:
        alpha = warmup_alpha(alpha, t, warmup_steps)
        b3 = warmup_beta3(b1, b3, t, warmup_steps)
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "b2": b2,
        "c2": 1.0 - b2,
        "b3": b3,
        "c3": 1.0 - b3,
        "m1_scale": 1.0 / debias(b1, t),
        "alpha": alpha,
        "v_scale": 1.0 / debias(b2, t),
        "eps_in": eps_root,
        "eps": epsilon,
    }


_BETA3 = Interval(0.0, 1.0, hi_open=True, schedulable=True)


@hyperparams(
    beta1=decay_rate(),
    beta2=decay_rate(),
    beta3=_BETA3,
    alpha=nonnegative(schedulable=True),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    warmup_steps=_WARMUP,
)
def scale_by_ademamix(
    beta1: float = 0.9,
    beta2: float = 0.999,
    beta3: Any = 0.9999,
    alpha: Any = 5.0,
    epsilon: float = 1e-8,
    *,
    eps_root: float = 0.0,
    warmup_steps: float | None = None,
) -> Elementwise:
    """AdEMAMix's direction (no learning rate); see the module docstring."""
    if warmup_steps is not None:
        if callable(alpha) or callable(beta3):
            raise ValueError(
                "scale_by_ademamix: invalid warmup_steps with a scheduled alpha or beta3; "
                "valid values: warmup_steps=None, or numbers for alpha and beta3"
            )
        if beta1 == 0.0 or beta3 == 0.0:
            raise ValueError(
                f"scale_by_ademamix: invalid beta1={beta1!r}, beta3={beta3!r} with "
                "warmup_steps; valid values: beta1 and beta3 in (0, 1) (the warm-up "
                "interpolates their logarithms)"
            )
    prepare = functools.partial(
        _ademamix_prepare, epsilon=epsilon, eps_root=eps_root, warmup_steps=warmup_steps
    )
    return Elementwise(
        "scale_by_ademamix",
        _ademamix,
        slots=(Slot("m1"), Slot("m2"), Slot("nu", nonnegative=True)),
        hyperparams={"beta1": beta1, "beta2": beta2, "beta3": beta3, "alpha": alpha},
        prepare=prepare,
        uses_count=True,
    )


def _decayed_rule(name, direction, weight_decay, decoupled, learning_rate) -> Chain:
    decay = add_decayed_weights(weight_decay) if weight_decay else None
    return rule(
        name,
        None if decoupled else decay,
        direction,
        decay if decoupled else None,
        scale_by_learning_rate(learning_rate),
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    beta3=_BETA3,
    alpha=nonnegative(schedulable=True),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    eps_root=nonnegative(),
    warmup_steps=_WARMUP,
)
def ademamix(
    learning_rate: Any = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    beta3: Any = 0.9999,
    alpha: Any = 5.0,
    epsilon: float = 1e-8,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = True,
    *,
    eps_root: float = 0.0,
    warmup_steps: float | None = None,
) -> Chain:
    r"""AdEMAMix (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1) (fast momentum). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      beta3: :math:`\beta_3` in [0, 1) (slow momentum), or a schedule. Default 0.9999.
      alpha: :math:`\alpha` >= 0, the weight of the slow momentum, or a schedule.
        Default 5.
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      decoupled_weight_decay: decay next to the step, scaled by the learning rate
        (True, default: the paper, optax) or add :math:`\lambda w` to the gradient
        before the moments (False: pytorch-optimizer's default).
      eps_root: :math:`\epsilon_r` >= 0, inside the root (optax). Default 0.
      warmup_steps: :math:`T` > 0: warm :math:`\alpha` and :math:`\beta_3` up with
        the paper's schedulers over :math:`T` steps (pytorch-optimizer's
        ``t_alpha_beta3``); ``None`` (default): no warm-up. Needs numbers for
        ``alpha`` and ``beta3`` and :math:`\beta_1, \beta_3 > 0`.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -1.0])
      >>> gradstep.Optimizer(w, gradstep.ademamix(0.1, alpha=0.0)).step(np.array([2.0, -3.0]))
      >>> w.round(6)  # with alpha = 0, Adam's first step
      array([ 0.9, -0.9])

    Differences: pytorch-optimizer's ``AdEMAMix`` (defaults ``alpha=5``,
    ``weight_decouple=False``) computes :math:`\epsilon` outside
    :math:`\sqrt{v}/\sqrt{1-\beta_2^t}`, as here with :math:`\epsilon_r = 0`, and
    warms up with ``t_alpha_beta3`` as ``warmup_steps``; its ``fixed_decay`` is not
    offered. optax's ``contrib.ademamix`` is the default form with decoupled decay
    (its ``alpha`` and ``b3`` may be schedules of the step count, as here).
    """
    direction = scale_by_ademamix(
        beta1, beta2, beta3, alpha, epsilon, eps_root=eps_root, warmup_steps=warmup_steps
    )
    return _decayed_rule("ademamix", direction, weight_decay, decoupled_weight_decay, learning_rate)


def _simplified(g, m, nu, b1, b2, c2, alpha, v_scale, eps_in, eps):
    m = b1 * m + g
    nu = ema_square(nu, g, b2, c2)
    return (m + alpha * g) / (sqrt(nu * v_scale + eps_in) + eps), m, nu


def _simplified_prepare(h: dict, count: Any, *, epsilon, eps_root) -> dict:
    b1, b2 = h["beta1"], h["beta2"]
    return {
        "b1": b1,
        "b2": b2,
        "c2": 1.0 - b2,
        "alpha": h["alpha"],
        "v_scale": 1.0 / debias(b2, count + 1),
        "eps_in": eps_root,
        "eps": epsilon,
    }


@hyperparams(
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(),
    alpha=nonnegative(schedulable=True),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
)
def scale_by_simplified_ademamix(
    beta1: Any = 0.99,
    beta2: float = 0.95,
    alpha: Any = 0.0,
    epsilon: float = 1e-8,
    *,
    eps_root: float = 0.0,
) -> Elementwise:
    """Simplified AdEMAMix's direction (no learning rate); see the module docstring."""
    prepare = functools.partial(_simplified_prepare, epsilon=epsilon, eps_root=eps_root)
    return Elementwise(
        "scale_by_simplified_ademamix",
        _simplified,
        slots=(Slot("m"), Slot("nu", nonnegative=True)),
        hyperparams={"beta1": beta1, "beta2": beta2, "alpha": alpha},
        prepare=prepare,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(),
    alpha=nonnegative(schedulable=True),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    eps_root=nonnegative(),
)
def simplified_ademamix(
    learning_rate: Any = 1e-4,
    beta1: Any = 0.99,
    beta2: float = 0.95,
    alpha: Any = 0.0,
    epsilon: float = 1e-8,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = True,
    *,
    eps_root: float = 0.0,
) -> Chain:
    r"""Simplified AdEMAMix (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 1e-4 (the momentum
        sums about :math:`1/(1-\beta_1)` gradients).
      beta1: :math:`\beta_1` in [0, 1), or a schedule (the paper warms it up).
        Default 0.99.
      beta2: :math:`\beta_2` in [0, 1). Default 0.95.
      alpha: :math:`\alpha` >= 0, the weight of the current gradient, or a schedule.
        Default 0.
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      decoupled_weight_decay: decay next to the step, scaled by the learning rate
        (True, default: optax) or coupled into the gradient (False).
      eps_root: :math:`\epsilon_r` >= 0, inside the root (optax). Default 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -1.0])
      >>> gradstep.Optimizer(w, gradstep.simplified_ademamix(0.1)).step(np.array([2.0, -3.0]))
      >>> w.round(6)
      array([ 0.9, -0.9])

    Differences: optax's ``contrib.simplified_ademamix`` is this rule (decay
    decoupled, default 0). pytorch-optimizer's ``SimplifiedAdEMAMix`` differs: its
    momentum is an average (:math:`\beta_1 m + (1-\beta_1) g`) and its step is
    divided by :math:`1-\beta_2^t` once more; it is not offered.
    """
    direction = scale_by_simplified_ademamix(beta1, beta2, alpha, epsilon, eps_root=eps_root)
    return _decayed_rule(
        "simplified_ademamix", direction, weight_decay, decoupled_weight_decay, learning_rate
    )
