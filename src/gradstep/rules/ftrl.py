r"""FTRL-Proximal: follow the regularised leader with per-coordinate learning rates
and L1 regularisation, which sets weights to exactly zero.

Symbols: :math:`w` parameter, :math:`u` the handled gradient, :math:`\eta`
``learning_rate``, :math:`\lambda_1` ``lamda1`` (L1 strength), :math:`\beta`
``beta``, :math:`\lambda_2` ``weight_decay`` (L2 strength); slots :math:`z` ``z``
(the accumulated, re-centred gradient) and :math:`n` ``n`` (the sum of squared
gradients), both starting at 0; :math:`s` ``rescale_grad``, :math:`c`
``clip_gradient``.

McMahan et al. (2013, Algorithm 1) keep, per coordinate, the sum of the gradients
minus the proximal centring terms, and solve for the weight in closed form:

.. math::

    u &= \mathrm{clip}(s g, -c, c)\\
    \sigma &= \left(\sqrt{n + u^2} - \sqrt{n}\right) / \eta\\
    z &\leftarrow z + u - \sigma\, w,\qquad n \leftarrow n + u^2\\
    w &\leftarrow \begin{cases} 0 & |z| \le \lambda_1\\
        -\dfrac{z - \mathrm{sign}(z)\,\lambda_1}{(\beta + \sqrt{n})/\eta + \lambda_2}
        & \text{otherwise}\end{cases}

The per-coordinate learning rate is :math:`\eta / (\beta + \sqrt{n})` (the
learning-rate power is 1/2, as in the paper and MXNet). The weight decay is the
paper's L2 term in the denominator; it is never added to the gradient. Like FTML,
the new weight is computed from the state alone, not added to :math:`w`.

References:
  McMahan et al. (2013): Ad Click Prediction: a View from the Trenches. KDD.
  McMahan (2011): Follow-the-Regularized-Leader and Mirror Descent: Equivalence
  Theorems and L1 Regularization. AISTATS.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import CLIP_GRADIENT, RESCALE_GRAD, gradient_stage
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import Interval, hyperparams, nonnegative
from .._core.xmath import absolute, sign, sqrt, where

_LR = Interval(0.0, lo_open=True, schedulable=True)


def _ftrl(g, w, z, n, lr, lamda1, beta, wd):
    n_new = n + g * g
    z = z + g - (sqrt(n_new) - sqrt(n)) * w / lr
    w_new = (sign(z) * lamda1 - z) / ((beta + sqrt(n_new)) / lr + wd)
    return where(absolute(z) > lamda1, w_new - w, -w), z, n_new


def _ftrl_prepare(h: dict, count: int, *, beta: float) -> dict:
    return {
        "lr": h["learning_rate"],
        "lamda1": h["lamda1"],
        "beta": beta,
        "wd": h["weight_decay"],
    }


@hyperparams(
    learning_rate=_LR,
    lamda1=nonnegative(schedulable=True),
    beta=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
)
def scale_by_ftrl(
    learning_rate: Any = 0.1, lamda1: Any = 0.01, beta: float = 1.0, weight_decay: Any = 0.0
) -> Elementwise:
    """FTRL-Proximal's whole step :math:`w_{new} - w`."""
    return Elementwise(
        "scale_by_ftrl",
        _ftrl,
        slots=(Slot("z"), Slot("n")),
        hyperparams={
            "learning_rate": learning_rate,
            "lamda1": lamda1,
            "weight_decay": weight_decay,
        },
        prepare=functools.partial(_ftrl_prepare, beta=beta),
        uses_params=True,
    )


@hyperparams(
    learning_rate=_LR,
    lamda1=nonnegative(schedulable=True),
    beta=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    rescale_grad=RESCALE_GRAD,
    clip_gradient=CLIP_GRADIENT,
)
def ftrl(
    learning_rate: Any = 0.1,
    lamda1: Any = 0.01,
    beta: float = 1.0,
    *,
    weight_decay: Any = 0.0,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
) -> Chain:
    r"""FTRL-Proximal (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` > 0, or a schedule. Default 0.1 (MXNet).
      lamda1: :math:`\lambda_1` >= 0, or a schedule: L1 strength; coordinates with
        :math:`|z| \le \lambda_1` are exactly 0. Default 0.01 (MXNet).
      beta: :math:`\beta` >= 0: smooths the per-coordinate rate at the start.
        Default 1 (MXNet).
      weight_decay: :math:`\lambda_2` >= 0, or a schedule: L2 strength in the
        denominator. Default 0.
      rescale_grad: :math:`s` > 0, or a schedule. Default 1.
      clip_gradient: :math:`c` >= 0 or None (no clip, the default).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(2)
      >>> gradstep.Optimizer(w, gradstep.ftrl()).step(np.array([1.0, 0.005]))
      >>> w  # -(1 - 0.01) / ((1 + 1) / 0.1); the small gradient stays under lamda1
      array([-0.0495,  0.    ])

    Differences: Keras' ``Ftrl`` starts :math:`n` at 0.1 (``initial_accumulator_value``),
    has :math:`\beta = 0`, :math:`\lambda_1 = 0` and lr 1e-3 by default, a general
    ``learning_rate_power``, and enters L2 as :math:`2\lambda_2` (MXNet ``wd = 0.2``
    equals Keras ``l2 = 0.1``). MXNet's tutorial omits the :math:`+u` in the
    :math:`z` update; its code (and this rule) has it. torch and optax have no FTRL.
    """
    return rule(
        "ftrl",
        gradient_stage("ftrl", rescale_grad, clip_gradient, 0.0, False, default_in_clip=False),
        scale_by_ftrl(learning_rate, lamda1, beta, weight_decay),
    )
