r"""RAdam: Adam whose adaptive step is switched on, and rectified, once the variance
of the adaptive learning rate is tractable.

Symbols: :math:`g` gradient (after any coupled decay), :math:`w` parameter,
:math:`m` slot ``mu``, :math:`v` slot ``nu``, :math:`t` the 1-based step,
:math:`\eta` ``learning_rate``, :math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``,
:math:`\epsilon` ``epsilon``, :math:`\epsilon_r` ``eps_root``, :math:`\rho_{min}`
``threshold``, :math:`\lambda` ``weight_decay``.

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
    v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    \hat m = m / (1-\beta_1^t)

    \rho_\infty = \frac{2}{1-\beta_2} - 1,\quad
    \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t},\quad
    r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

While :math:`\rho_t` is below the threshold the step is plain momentum SGD,
:math:`w \leftarrow w - \eta \hat m`; afterwards it is the rectified adaptive step, by
``epsilon_placement``:

- ``"outside_uncorrected"`` (torch): :math:`w \leftarrow w - \eta\, r_t \hat m
  \sqrt{1-\beta_2^t} / (\sqrt{v} + \epsilon)` (epsilon on the uncorrected root)
- ``"outside"`` (optax): :math:`w \leftarrow w - \eta\, r_t \hat m / (\sqrt{\hat v +
  \epsilon_r} + \epsilon)` with :math:`\hat v = v/(1-\beta_2^t)`
- ``"inside"`` and ``"inside_uncorrected"``: epsilon inside the root, as for Adam.

``threshold_rule`` decides the switch: ``"greater"`` (torch, :math:`\rho_t > 5`) or
``"greater_equal"`` (optax, :math:`\rho_t \ge 5`). With :math:`\beta_2 = 0.999` the
first five steps are plain momentum steps under both rules.

``nesterov=True`` (optax's option) uses
:math:`\hat m = \beta_1 m / (1-\beta_1^{t+1}) + (1-\beta_1) g / (1-\beta_1^t)`.

References:
  Liu, Jiang, He, Chen, Liu, Gao & Han (2020): On the Variance of the Adaptive
  Learning Rate and Beyond. ICLR, arXiv:1908.03265.
  Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR, arXiv:1412.6980.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import complex_ready, ema, ema_square, where
from .adam import PLACEMENTS, adam_root

THRESHOLD_RULES = ("greater", "greater_equal")


class _Threshold(Interval):
    """``[4, inf)``, saying why: the rectification is the root of
    :math:`(\\rho_t - 4)(\\rho_t - 2)`, negative for :math:`2 < \\rho_t < 4`."""

    def describe(self) -> str:
        return (
            super().describe() + " (below 4 a step with 2 < rho_t < 4 would be rectified by "
            "the square root of a negative number: optax returns NaN updates there)"
        )


#: the valid thresholds: from 4 on (at exactly :math:`\rho_t = 4` the factor is 0)
THRESHOLD = _Threshold(4.0)


@complex_ready
def _radam(
    g,
    mu,
    nu,
    b1,
    c1,
    b2,
    c2,
    mu_scale,
    g_scale,
    rectify,
    step_scale,
    v_scale,
    eps_in,
    root_div,
    eps_root_in,
    inf,
    eps_out,
):
    mu = ema(mu, g, b1, c1)
    nu = ema_square(nu, g, b2, c2)
    m_hat = mu * mu_scale + g * g_scale
    # as Adam's (see rules/adam.py): where v * v_scale overflows, the same root taken
    # before the bias correction
    root = adam_root(nu, v_scale, eps_in, root_div, eps_root_in, inf)
    adaptive = m_hat * step_scale / (root + eps_out)
    return where(rectify, adaptive, m_hat), mu, nu


def rectification(beta2: float, t: int) -> tuple[float, float]:
    """``(rho_t, r_t)`` of step ``t`` (1-based); ``r_t`` is NaN where ``rho_t < 4``."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    b2t = beta2**t
    rho_t = rho_inf - 2.0 * t * b2t / (1.0 - b2t)
    if rho_t < 4.0:  # then rho_inf < 4 or t is small: no real rectification
        return rho_t, math.nan
    ratio = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
    return rho_t, math.sqrt(ratio)


def _radam_prepare(
    h: dict,
    count: int,
    *,
    threshold: float,
    inclusive: bool,
    nesterov: bool,
    epsilon: float,
    eps_root: float,
    epsilon_placement: str,
) -> dict:
    t = count + 1
    b1, b2 = h["beta1"], h["beta2"]
    bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
    rho_t, r_t = rectification(b2, t)
    rectify = rho_t >= threshold if inclusive else rho_t > threshold
    if nesterov:
        mu_scale, g_scale = b1 / (1.0 - b1 ** (t + 1)), (1.0 - b1) / bc1
    else:
        mu_scale, g_scale = 1.0 / bc1, 0.0
    r = r_t if rectify else 0.0
    if epsilon_placement in ("outside", "inside"):
        step_scale, v_scale = r, 1.0 / bc2
    else:
        step_scale, v_scale = r * math.sqrt(bc2), 1.0
    if epsilon_placement.startswith("outside"):
        eps_in, eps_out = eps_root, epsilon
    else:
        eps_in, eps_out = epsilon + eps_root, 0.0
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "b2": b2,
        "c2": 1.0 - b2,
        "mu_scale": mu_scale,
        "g_scale": g_scale,
        "rectify": bool(rectify),
        "step_scale": step_scale,
        "v_scale": v_scale,
        "eps_in": eps_in,
        # sqrt(v * v_scale + e) = sqrt(v + e / v_scale) / sqrt(1 / v_scale)
        "root_div": (1.0 / v_scale) ** 0.5,  # not math.sqrt: the JAX engine traces it
        "eps_root_in": eps_in / v_scale,
        "inf": math.inf,
        "eps_out": eps_out,
    }


@hyperparams(
    beta1=decay_rate(schedulable=True),
    beta2=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    threshold=THRESHOLD,
    threshold_rule=OneOf(THRESHOLD_RULES),
    epsilon_placement=OneOf(PLACEMENTS),
    nesterov=BOOL,
)
def scale_by_radam(
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    threshold_rule: str = "greater",
    epsilon_placement: str = "outside_uncorrected",
    nesterov: bool = False,
) -> Elementwise:
    """RAdam's direction (no learning rate); see the module docstring.

    The threshold must be at least 4: below it the rectification term is not real.
    """
    inclusive = threshold_rule == "greater_equal"

    prepare = functools.partial(
        _radam_prepare,
        threshold=threshold,
        inclusive=inclusive,
        nesterov=nesterov,
        epsilon=epsilon,
        eps_root=eps_root,
        epsilon_placement=epsilon_placement,
    )

    return Elementwise(
        "scale_by_radam",
        _radam,
        slots=(Slot("mu"), Slot("nu", nonnegative=True)),
        hyperparams={"beta1": beta1, "beta2": beta2},
        prepare=prepare,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(schedulable=True),
    beta2=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    eps_root=nonnegative(),
    threshold=THRESHOLD,
    threshold_rule=OneOf(THRESHOLD_RULES),
    epsilon_placement=OneOf(PLACEMENTS),
    nesterov=BOOL,
)
def radam(
    learning_rate: Any = 0.001,
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    threshold_rule: str = "greater",
    epsilon_placement: str = "outside_uncorrected",
    nesterov: bool = False,
) -> Chain:
    r"""Rectified Adam (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1), or a schedule. Default 0.9.
      beta2: :math:`\beta_2` in (0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0. Coupled
        (:math:`g + \lambda w` enters the moments) unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decay the weights directly,
        :math:`w \leftarrow w - \eta\lambda w` next to the step (torch's option of
        that name, "RAdamW"). Default False.
      eps_root: :math:`\epsilon_r` >= 0, added inside the root (optax). Default 0.
      threshold: :math:`\rho_{min}` >= 4, the value of :math:`\rho_t` from which the
        adaptive step is used. Default 5.
      threshold_rule: ``"greater"`` (torch, default) or ``"greater_equal"`` (optax).
      epsilon_placement: ``"outside_uncorrected"`` (torch, default), ``"outside"``
        (optax), ``"inside"`` or ``"inside_uncorrected"``.
      nesterov: optax's Nesterov form of :math:`\hat m`. Default False.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(1)
      >>> opt = gradstep.Optimizer(w, gradstep.radam(1.0))
      >>> for _ in range(6):
      ...     opt.step(np.ones(1))
      >>> w.round(4)  # five momentum steps, then the first rectified one
      array([-5.0258])

    Differences: torch rectifies when :math:`\rho_t > 5` and adds epsilon to the
    uncorrected :math:`\sqrt{v}`; optax when :math:`\rho_t \ge 5` with epsilon on
    the bias-corrected root (``threshold_rule="greater_equal",
    epsilon_placement="outside"``). Keras has no RAdam (TensorFlow Addons'
    RectifiedAdam adds warmup and a minimum learning rate, not offered here). The
    paper's first steps fall back to SGD with momentum as here.
    """
    decay = add_decayed_weights(weight_decay) if weight_decay else None
    return rule(
        "radam",
        None if decoupled_weight_decay else decay,
        scale_by_radam(
            beta1,
            beta2,
            epsilon,
            eps_root=eps_root,
            threshold=threshold,
            threshold_rule=threshold_rule,
            epsilon_placement=epsilon_placement,
            nesterov=nesterov,
        ),
        decay if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
