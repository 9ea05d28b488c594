r"""Optimistic gradient descent and optimistic Adam: a step that extrapolates with the
difference between the current and the previous direction (optimistic mirror descent).

Symbols: :math:`g_t` the incoming direction at step :math:`t` (the gradient for
:func:`optimistic_gradient_descent`, Adam's direction :math:`\hat m/(\sqrt{\hat v}+
\epsilon)` for :func:`optimistic_adam`), :math:`p` slot ``prev`` (the previous
direction), :math:`\alpha` ``alpha``, :math:`\beta` ``beta``, :math:`\eta`
``learning_rate``.

.. math::

    u_t = (\alpha + \beta)\, g_t - \beta\, g_{t-1},\qquad w \leftarrow w - \eta\, u_t

with :math:`g_0 = g_1` (the first step has no previous direction, so it is
:math:`\alpha g_1`). :math:`\alpha = \beta = 1` is the optimistic gradient of
Daskalakis et al., :math:`w_{t+1} = w_t - 2\eta g_t + \eta g_{t-1}`, which converges
on bilinear min-max games where gradient descent-ascent cycles or diverges.

References:
  Daskalakis, Ilyas, Syrgkanis & Zeng (2018): Training GANs with Optimism. ICLR,
  arXiv:1711.00141.
  Mokhtari, Ozdaglar & Pattathil (2020): A Unified Analysis of Extra-gradient and
  Optimistic Gradient Methods for Saddle Point Problems. AISTATS, arXiv:1901.08511.
  Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR,
  arXiv:1412.6980.
"""

from __future__ import annotations

from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, decay_rate, hyperparams, nonnegative
from .._core.xmath import where
from .adam import scale_by_adam
from .nadam import scale_by_nadam


def _optimistic(g, prev, first, gain, keep):
    previous = where(first, g, prev)
    return gain * g - keep * previous, g


def _optimistic_prepare(h: dict, count: int) -> dict:
    alpha, beta = h["alpha"], h["beta"]
    # a comparison, not a branch: the JAX engine traces the count
    return {"first": count == 0, "gain": alpha + beta, "keep": beta}


@hyperparams(alpha=nonnegative(), beta=nonnegative())
def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0) -> Elementwise:
    r""":math:`u_t = (\alpha+\beta) g_t - \beta g_{t-1}` with :math:`g_0 = g_1` (slot
    ``prev``; see the module docstring).

    Args:
      alpha: :math:`\alpha` >= 0. Default 1.
      beta: :math:`\beta` >= 0, the weight of the optimistic correction. Default 1.
    """
    return Elementwise(
        "optimistic_gradient",
        _optimistic,
        slots=(Slot("prev"),),
        hyperparams={"alpha": alpha, "beta": beta},
        prepare=_optimistic_prepare,
        uses_count=True,
    )


@hyperparams(learning_rate=nonnegative(schedulable=True), alpha=nonnegative(), beta=nonnegative())
def optimistic_gradient_descent(
    learning_rate: Any = 0.01, alpha: float = 1.0, beta: float = 1.0
) -> Chain:
    r"""Optimistic gradient descent (see the module docstring for the math).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.01.
      alpha: :math:`\alpha` >= 0. Default 1 (optax).
      beta: :math:`\beta` >= 0. Default 1 (optax).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(1)
      >>> opt = gradstep.Optimizer(w, gradstep.optimistic_gradient_descent(0.1))
      >>> opt.step(np.ones(1)); opt.step(3 * np.ones(1)); w.round(6)  # -0.1, then -0.5
      array([-0.6])

    Differences: optax's ``optimistic_gradient_descent`` (the same math, the first
    step :math:`\alpha g_1` as optax since its issue 1082) requires the learning
    rate; gradstep defaults it to 0.01. ``alpha`` and ``beta`` are constants (optax
    types them as schedules but multiplies them as numbers).
    """
    return rule(
        "optimistic_gradient_descent",
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    alpha=nonnegative(),
    beta=nonnegative(),
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    nesterov=BOOL,
)
def optimistic_adam(
    learning_rate: Any = 0.001,
    alpha: float = 1.0,
    beta: float = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    eps_root: float = 0.0,
    nesterov: bool = True,
) -> Chain:
    r"""Optimistic Adam: the optimistic correction of the module docstring applied to
    Adam's direction.

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        d_t = \frac{\bar m}{\sqrt{v/(1-\beta_2^t) + \epsilon_r} + \epsilon},\quad
        w \leftarrow w - \eta\,\big((\alpha+\beta) d_t - \beta d_{t-1}\big)

    with :math:`\bar m = \beta_1 m/(1-\beta_1^{t+1}) + (1-\beta_1) g/(1-\beta_1^t)`
    (``nesterov=True``: optax's Nesterov form of Adam, slots ``mu``, ``nu`` of
    :func:`gradstep.rules.scale_by_nadam` with no warm-up) or :math:`m/(1-\beta_1^t)`
    (``nesterov=False``), :math:`\epsilon_r` ``eps_root``, and :math:`d_0 = d_1`.

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      alpha: :math:`\alpha` >= 0. Default 1.
      beta: :math:`\beta` >= 0, the weight of the optimistic correction. Default 1.
      beta1: :math:`\beta_1` in [0, 1). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-8.
      eps_root: :math:`\epsilon_r` >= 0, inside the root. Default 0.
      nesterov: the Nesterov form of the first moment. Default True (optax).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(1)
      >>> gradstep.Optimizer(w, gradstep.optimistic_adam(0.1)).step(np.ones(1)); w.round(6)
      array([-0.147368])

    Differences: optax 0.2.8 has two forms. ``optimistic_adam_v2(learning_rate,
    alpha, beta, ...)`` is this rule with the same arguments (``b1``, ``b2``,
    ``eps`` are ``beta1``, ``beta2``, ``epsilon``). The deprecated
    ``optimistic_adam(learning_rate, optimism)`` is this rule with
    ``learning_rate=1``, ``alpha`` its learning rate and ``beta`` its ``optimism``
    (which defaults to its learning rate), so it cannot follow a learning-rate
    schedule; gradstep's ``learning_rate`` can.
    """
    if nesterov:
        direction = scale_by_nadam(beta1, beta2, epsilon, eps_root=eps_root, schedule_decay=None)
    else:
        direction = scale_by_adam(beta1, beta2, epsilon, eps_root=eps_root)
    return rule(
        "optimistic_adam",
        direction,
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )
