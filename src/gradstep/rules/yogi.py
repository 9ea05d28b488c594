r"""Yogi: Adam whose second moment moves additively, by at most :math:`(1-\beta_2) g^2`.

Symbols: :math:`g` gradient (after any coupled decay), :math:`w` parameter,
:math:`m` slot ``mu``, :math:`v` slot ``nu``, :math:`t` the 1-based step,
:math:`\eta` ``learning_rate``, :math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``,
:math:`\epsilon` ``epsilon``, :math:`\epsilon_r` ``eps_root``, :math:`v_0`
``initial_accumulator_value``, :math:`\lambda` ``weight_decay``.

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
    v \leftarrow v - (1-\beta_2)\,\operatorname{sign}(v - g^2)\, g^2

    \hat m = m / (1-\beta_1^t),\quad \hat v = v / (1-\beta_2^t),\quad
    w \leftarrow w - \eta\,\hat m / (\sqrt{\hat v + \epsilon_r} + \epsilon)

with both :math:`m` and :math:`v` starting at :math:`v_0` (optax and
pytorch-optimizer; the paper starts :math:`m` at 0). Where Adam's :math:`v` moves
multiplicatively towards :math:`g^2`, Yogi's moves by :math:`(1-\beta_2) g^2` in
the direction of :math:`g^2`, so a burst of large gradients raises the effective
learning rate more slowly once it has passed.

References:
  Zaheer, Reddi, Sachan, Kale & Kumar (2018): Adaptive Methods for Nonconvex
  Optimization. NeurIPS.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, decay_rate, hyperparams, nonnegative
from .._core.xmath import ema, sign, sqrt


def _yogi(g, mu, nu, b1, c1, c2, step_scale, v_scale, eps_root, eps):
    mu = ema(mu, g, b1, c1)
    g2 = g * g
    nu = nu - c2 * sign(nu - g2) * g2
    return mu * step_scale / (sqrt(nu * v_scale + eps_root) + eps), mu, nu


def _yogi_prepare(h: dict, count: int, *, eps_root, epsilon) -> dict:
    t = count + 1
    b1, b2 = h["beta1"], h["beta2"]
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "c2": 1.0 - b2,
        "step_scale": 1.0 / (1.0 - b1**t),
        "v_scale": 1.0 / (1.0 - b2**t),
        "eps_root": eps_root,
        "eps": epsilon,
    }


_RANGES = dict(
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    initial_accumulator_value=nonnegative(),
)


@hyperparams(**_RANGES)
def scale_by_yogi(
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-3,
    *,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
) -> Elementwise:
    """Yogi's direction (no learning rate); see the module docstring."""
    prepare = functools.partial(_yogi_prepare, eps_root=eps_root, epsilon=epsilon)
    start = float(initial_accumulator_value)
    return Elementwise(
        "scale_by_yogi",
        _yogi,
        # v can fall below 0 only through rounding: it is not declared nonnegative
        slots=(Slot("mu", start), Slot("nu", start)),
        hyperparams={"beta1": beta1, "beta2": beta2},
        prepare=prepare,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    **_RANGES,
)
def yogi(
    learning_rate: Any = 0.01,
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-3,
    *,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = True,
) -> Chain:
    r"""Yogi (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.01 (the paper,
        pytorch-optimizer).
      beta1: :math:`\beta_1` in [0, 1), or a schedule. Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-3 (the paper,
        optax, pytorch-optimizer).
      eps_root: :math:`\epsilon_r` >= 0, inside the root. Default 0.
      initial_accumulator_value: :math:`v_0` >= 0, the starting value of both
        moments. Default 1e-6.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      decoupled_weight_decay: True (default; pytorch-optimizer's
        ``weight_decouple``): :math:`w \leftarrow w - \eta(\text{step} + \lambda w)`;
        False: coupled, :math:`g + \lambda w` enters the moments.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.yogi(0.1)).step(np.array([0.5, -2.0])); w.round(4)
      array([0.9004, 1.0999])

    Differences: optax's ``yogi(learning_rate, b1, b2, eps)`` is this rule with
    the defaults (optax's own learning rate has no default). pytorch-optimizer's
    ``Yogi`` divides :math:`\sqrt{v}` by :math:`\sqrt{1-\beta_2^t}` instead of
    taking the root of :math:`\hat v` (the same up to rounding; ``eps_root=0``);
    its ``fixed_decay`` is not offered. The paper starts :math:`m` at 0 and has
    no bias correction.
    """
    decay = add_decayed_weights(weight_decay) if weight_decay else None
    return rule(
        "yogi",
        None if decoupled_weight_decay else decay,
        scale_by_yogi(
            beta1,
            beta2,
            epsilon,
            eps_root=eps_root,
            initial_accumulator_value=initial_accumulator_value,
        ),
        decay if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
