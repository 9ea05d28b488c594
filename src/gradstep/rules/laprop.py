r"""LaProp: momentum over RMSProp-normalised gradients (Adam with the two moments
decoupled).

Symbols: :math:`g` gradient, :math:`w` parameter, :math:`m` slot ``mu``,
:math:`v` slot ``nu``, :math:`t` the 1-based step, :math:`\eta` ``learning_rate``,
:math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``, :math:`\epsilon` ``epsilon``,
:math:`\epsilon_r` ``eps_root``, :math:`\lambda` ``weight_decay``.

.. math::

    v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    m \leftarrow \beta_1 m + (1-\beta_1)\,
        \frac{g\,\sqrt{1-\beta_2^t}}{\sqrt{v + \epsilon_r} + \epsilon},\quad
    w \leftarrow w - \eta\left(\frac{m}{1-\beta_1^t} + \lambda w\right)

Adam divides the momentum of the gradients by the root of the second moment; LaProp
takes the momentum of the already normalised gradients, so :math:`\beta_1` and
:math:`\beta_2` act independently (any :math:`\beta_1 \le 1`, :math:`\beta_2` may be
below :math:`\beta_1`). The epsilons sit on the uncorrected scale, as in the
reference implementations.

References:
  Ziyin, Wang & Ueda (2020): LaProp: Separating Momentum and Adaptivity in Adam.
  arXiv:2002.04839.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import decay_rate, hyperparams, nonnegative
from .._core.xmath import debias, ema, ema_square, sqrt


def _laprop(g, mu, nu, b1, c1, b2, c2, root_bc2, eps_in, eps, step_scale):
    nu = ema_square(nu, g, b2, c2)
    mu = ema(mu, g * root_bc2 / (sqrt(nu + eps_in) + eps), b1, c1)
    return mu * step_scale, mu, nu


def _laprop_prepare(h: dict, count: Any, *, epsilon, eps_root) -> dict:
    t = count + 1
    b1, b2 = h["beta1"], h["beta2"]
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "b2": b2,
        "c2": 1.0 - b2,
        "root_bc2": debias(b2, t) ** 0.5,
        "eps_in": eps_root,
        "eps": epsilon,
        "step_scale": 1.0 / debias(b1, t),
    }


@hyperparams(
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
)
def scale_by_laprop(
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-15,
    *,
    eps_root: float = 0.0,
) -> Elementwise:
    """LaProp's direction :math:`m/(1-\\beta_1^t)` (no learning rate); see the module
    docstring."""
    prepare = functools.partial(_laprop_prepare, epsilon=epsilon, eps_root=eps_root)
    return Elementwise(
        "scale_by_laprop",
        _laprop,
        slots=(Slot("mu"), Slot("nu", nonnegative=True)),
        hyperparams={"beta1": beta1, "beta2": beta2},
        prepare=prepare,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    eps_root=nonnegative(),
)
def laprop(
    learning_rate: Any = 4e-4,
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-15,
    weight_decay: Any = 0.0,
    *,
    eps_root: float = 0.0,
) -> Chain:
    r"""LaProp (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 4e-4 (the paper,
        pytorch-optimizer).
      beta1: :math:`\beta_1` in [0, 1), or a schedule. Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-15.
      weight_decay: :math:`\lambda` >= 0, or a schedule: decoupled, scaled by the
        learning rate, on the weights before the step. Default 0.
      eps_root: :math:`\epsilon_r` >= 0, inside the root. Default 0
        (pytorch-optimizer adds 1e-15 there).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.laprop(0.1)).step(np.array([0.5, -2.0])); w
      array([0.9, 1.1])

    Differences: pytorch-optimizer's ``LaProp`` (as the authors' code) keeps the
    learning rate inside the momentum and divides by an average of past learning
    rates: the same steps while the learning rate is constant, different ones
    after it changes (here the momentum holds no learning rate, as the paper's
    algorithm). It adds :math:`\epsilon_r = 10^{-15}` inside the root (pass
    ``eps_root=1e-15``), decays the weights *after* the step (:math:`(w - \eta
    m/(1-\beta_1^t))(1-\eta\lambda)`, a difference of order
    :math:`\eta^2\lambda`), and offers ``centered`` and ``ams_bound`` variants, not
    offered here.
    """
    return rule(
        "laprop",
        scale_by_laprop(beta1, beta2, epsilon, eps_root=eps_root),
        add_decayed_weights(weight_decay) if weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
