r"""Mechanic: a learned scale for the cumulative step of any rule (a learning-rate tuner).

Symbols: :math:`x_t` the parameters, :math:`g_t` the raw gradient, :math:`u_t` the
wrapped rule's update (the step it would add to the parameters, learning rate
included), :math:`x_\text{ref}` the reference point (the parameters at the first
update), :math:`\beta_j = 1 - 10^{-j}` for :math:`j = 1..n` (:math:`n`
``num_betas``), :math:`s_j, r_j, m_j, v_j` scalar state per :math:`\beta_j`,
:math:`S = \sum_j s_j` the scale, :math:`\lambda` ``weight_decay``, :math:`\epsilon`
``epsilon``, :math:`s_0` ``s_init``. Norms and inner products run over every element
of every tensor.

.. math::

    \Delta_t = \frac{x_t - x_\text{ref}}{S_t + \epsilon},\qquad
    \hat g_t = g_t + \lambda\, S_t\, \frac{\lVert g_t\rVert}{\lVert x_t\rVert + \epsilon}\, x_t,
    \qquad h_t = -\langle \hat g_t, \Delta_t\rangle

    m_j \leftarrow \max(\beta_j m_j,\ |h_t| + \epsilon),\quad
    v_j \leftarrow \beta_j^2 v_j + h_t^2,\quad
    r_j \leftarrow \beta_j r_j + s_j\, \mathrm{clip}(h_t, -m_j^\text{old}, m_j^\text{old})

    s_j \leftarrow \frac{\tfrac{s_0}{n} m_j + \max(r_j, 0)}{\sqrt{v_j} + \epsilon},\qquad
    x_{t+1} = x_\text{ref} + S_{t+1}\,(\Delta_t + u_t)

The wrapped rule runs unchanged on the raw gradient; Mechanic keeps
:math:`x_t = x_\text{ref} + S\,\Delta` with :math:`\Delta` the sum of the rule's
updates (recomputed from :math:`x_t`, the memory-efficient form) and bets on the
scale :math:`S`: a coin-betting "wealth" per :math:`\beta_j` grows while the
gradient keeps opposing the direction travelled (:math:`h_t > 0`), so the scale grows
geometrically from :math:`n s_0` until the steps overshoot. The first update moves
:math:`s_0 u_1`. The wrapped rule's own learning rate (a schedule, say) sets the
shape of the steps; Mechanic learns their size, so the usual choice is a base
learning rate of 1.

References:
  Cutkosky, Defazio & Mehta (2023): Mechanic: A Learning Rate Tuner. NeurIPS,
  arXiv:2306.00144.
"""

from __future__ import annotations

from typing import Any

from .._core.mechanic import Mechanize
from .._core.transform import Transform
from .._core.validate import Interval, hyperparams, nonnegative
from .adam import adam

_POSITIVE = Interval(0.0, lo_open=True)
_NUM_BETAS = Interval(1, 16, integer=True)
_BETA = Interval(0.0, 1.0, hi_open=True, schedulable=True)


@hyperparams(
    weight_decay=nonnegative(), epsilon=nonnegative(), s_init=_POSITIVE, num_betas=_NUM_BETAS
)
def mechanize(
    base: Transform,
    weight_decay: float = 0.01,
    epsilon: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
) -> Mechanize:
    r"""``base`` (a whole rule) with its cumulative step rescaled by Mechanic's learned
    scale (see the module docstring for the math).

    Args:
      base: a rule whose update is the step added to the parameters (learning rate
        included), e.g. ``gradstep.adam(1.0)``.
      weight_decay: :math:`\lambda` >= 0: Mechanic's own decay of the gradient it
        bets with (not applied to the parameters; the base's decay is separate).
        Default 0.01.
      epsilon: :math:`\epsilon` >= 0. Default 1e-8.
      s_init: :math:`s_0` > 0, the first step's scale. Default 1e-6.
      num_betas: :math:`n` in [1, 16], the number of scales (one per
        :math:`\beta_j = 1 - 10^{-j}`). Default 6.

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.rules.mechanic import mechanize
      >>> w = np.array([1.0, -1.0])
      >>> opt = gradstep.Optimizer(w, mechanize(gradstep.sgd(1.0)))
      >>> opt.step(np.array([2.0, -4.0])); w  # the first step: s_init times sgd's
      array([ 0.999998, -0.999996])

    Differences: optax's ``contrib.mechanize`` (the authors' implementation) computes
    the same; its inner product and norms are summed in the parameters' dtype, here
    in float64 where the library has it (the scalar recursion runs in the state's
    dtype on the eager and JAX engines, in float64 on the fused engines). The scalar
    state :math:`r_j, m_j, v_j, s_j` is kept in the parameters' dtype, but in float32
    for float16/bfloat16 parameters, and every step's arithmetic runs in float32 or
    wider (only the parameters and the reference point are stored in 16 bits):
    optax keeps the scalars in the parameters' lowest dtype and computes in it, so
    with float16 parameters its :math:`\epsilon` = 1e-8 is 0 and the first step is
    NaN. The paper's pseudo-code has no clipping of :math:`h_t` in the :math:`r_j`
    update; optax and this rule have it.
    """
    return Mechanize(base, weight_decay, epsilon, s_init, num_betas)


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=_BETA,
    beta2=Interval(0.0, 1.0, hi_open=True),
    epsilon=nonnegative(),
    weight_decay=nonnegative(),
    mechanic_epsilon=nonnegative(),
    s_init=_POSITIVE,
    num_betas=_NUM_BETAS,
)
def mechanic(
    learning_rate: Any = 1.0,
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    weight_decay: float = 0.01,
    mechanic_epsilon: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
) -> Mechanize:
    r"""Adam tuned by Mechanic: ``mechanize(adam(learning_rate, beta1, beta2,
    epsilon))``, the combination the paper and optax's documentation present (see
    the module docstring for the math; :math:`u_t` is Adam's step).

    Args:
      learning_rate: Adam's :math:`\eta` >= 0, or a schedule (its shape matters,
        Mechanic learns the size). Default 1.
      beta1: Adam's :math:`\beta_1` in [0, 1), or a schedule. Default 0.9.
      beta2: Adam's :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: Adam's :math:`\epsilon` >= 0 (outside the square root). Default 1e-8.
      weight_decay: Mechanic's :math:`\lambda` >= 0. Default 0.01.
      mechanic_epsilon: Mechanic's :math:`\epsilon` >= 0. Default 1e-8.
      s_init: :math:`s_0` > 0. Default 1e-6.
      num_betas: :math:`n` in [1, 16]. Default 6.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.mechanic())
      >>> opt.step(np.array([2.0, -4.0])); w  # s_init times Adam's first step
      array([ 0.999999, -0.999999])

    Differences: optax has no single name for it (``contrib.mechanize(adam(lr))``);
    the paper also tunes SGD and Lion: wrap them with :func:`mechanize`.
    """
    return mechanize(
        adam(learning_rate, beta1, beta2, epsilon),
        weight_decay=weight_decay,
        epsilon=mechanic_epsilon,
        s_init=s_init,
        num_betas=num_betas,
    )
