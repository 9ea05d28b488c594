r"""AdaGrad: per-element learning rates from the sum of squared gradients.

Symbols: :math:`a` slot ``sum_sq`` (initial value ``initial_accumulator_value``),
:math:`\eta` ``learning_rate``, :math:`\epsilon` ``epsilon``, :math:`\delta`
``lr_decay``, :math:`t` 1-based step.

.. math::

    a \leftarrow a + g^2,\qquad
    w \leftarrow w - \frac{\eta}{1 + (t-1)\delta}\, \frac{g}{d}

with :math:`d = \sqrt{a + \epsilon}` (``epsilon_placement="inside"``: Lasagne, MXNet
1.x, Keras, optax) or :math:`d = \sqrt{a} + \epsilon` (``"outside"``: torch, MXNet 2.x).

References:
  Duchi, Hazan & Singer (2011): Adaptive Subgradient Methods for Online Learning and
  Stochastic Optimization. JMLR 12.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import GRADIENT_RANGES, gradient_stage
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, OneOf, hyperparams, nonnegative
from .._core.xmath import abs_square, complex_ready, sqrt

PLACEMENTS = ("inside", "outside")


@complex_ready
def _adagrad(g, sum_sq, eps_in, eps_out):
    sum_sq = sum_sq + abs_square(g)
    return g / (sqrt(sum_sq + eps_in) + eps_out), sum_sq


def _scaled(g, factor):
    return g * factor


@hyperparams(
    epsilon=nonnegative(),
    initial_accumulator_value=nonnegative(),
    epsilon_placement=OneOf(PLACEMENTS),
)
def scale_by_adagrad(
    epsilon: float = 1e-6,
    *,
    initial_accumulator_value: float = 0.0,
    epsilon_placement: str = "inside",
) -> Elementwise:
    """AdaGrad's direction :math:`g / d` (no learning rate)."""
    eps = (
        {"eps_in": epsilon, "eps_out": 0.0}
        if epsilon_placement == "inside"
        else {"eps_in": 0.0, "eps_out": epsilon}
    )
    return Elementwise(
        "scale_by_adagrad",
        _adagrad,
        slots=(Slot("sum_sq", initial_accumulator_value, nonnegative=True),),
        prepare=functools.partial(_constant, eps),
    )


def _constant(scalars: dict, h: dict, count: int) -> dict:
    return scalars


def _inverse_time_factor(h: dict, count: int) -> dict:
    return {"factor": 1.0 / (1.0 + count * h["lr_decay"])}


def inverse_time_decay(lr_decay: float) -> Elementwise:
    """Multiply by :math:`1/(1 + (t-1)\\delta)` (torch Adagrad's ``lr_decay``)."""
    return Elementwise(
        "lr_decay",
        _scaled,
        hyperparams={"lr_decay": lr_decay},
        prepare=_inverse_time_factor,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    epsilon=nonnegative(),
    initial_accumulator_value=nonnegative(),
    epsilon_placement=OneOf(PLACEMENTS),
    lr_decay=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    clear_nan=BOOL,
    decoupled_weight_decay=BOOL,
    **GRADIENT_RANGES,
)
def adagrad(
    learning_rate: Any = 1.0,
    epsilon: float = 1e-6,
    *,
    initial_accumulator_value: float = 0.0,
    epsilon_placement: str = "inside",
    lr_decay: float = 0.0,
    weight_decay: Any = 0.0,
    clear_nan: bool = False,
    decoupled_weight_decay: bool = False,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = False,
) -> Chain:
    r"""AdaGrad (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 1.0 (Lasagne).
      epsilon: :math:`\epsilon` >= 0. Default 1e-6 (Lasagne).
      initial_accumulator_value: the accumulator's start, >= 0. Default 0.
      epsilon_placement: ``"inside"`` (default) or ``"outside"`` the root.
      lr_decay: :math:`\delta` >= 0 (torch). Default 0.
      weight_decay: :math:`\lambda` >= 0, or a schedule; coupled L2: :math:`\lambda w`
        enters the accumulator (torch, MXNet 2.x). Default 0.
      clear_nan: Dandelion's NaN handling.
      decoupled_weight_decay: add :math:`\lambda w` after the normalisation instead,
        :math:`w \leftarrow w - \eta (g/d + \lambda w)` (MXNet 1.x). Default False.
      rescale_grad, clip_gradient, decay_in_clip: MXNet's gradient handling (see
        :mod:`gradstep.transforms.mxnet`): the gradient is multiplied by
        ``rescale_grad`` and clipped element-wise to ``clip_gradient``; a coupled
        decay is added after the clip unless ``decay_in_clip``.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> gradstep.Optimizer(w, gradstep.adagrad(0.1)).step(np.array([2.0])); w.round(6)
      array([0.9])

    Differences: torch: lr 0.01, epsilon 1e-10 outside, accumulator 0. optax and
    Keras start the accumulator at 0.1 (epsilon 1e-7 inside). MXNet 1.x (lr 0.01,
    ``eps`` 1e-7 inside the root, which its docstring wrongly calls the initial
    accumulator) adds its weight decay after the normalisation:
    ``decoupled_weight_decay=True``; MXNet 2.x is ``epsilon_placement="outside"``
    with coupled decay.
    """
    decoupled = decoupled_weight_decay and (callable(weight_decay) or weight_decay != 0)
    if decoupled_weight_decay and not decoupled:
        raise ValueError(
            "adagrad: invalid decoupled_weight_decay=True with weight_decay=0; valid "
            "values: decoupled_weight_decay only applies with weight_decay > 0"
        )
    gradient = gradient_stage(
        "adagrad",
        rescale_grad,
        clip_gradient,
        weight_decay,
        decay_in_clip,
        default_in_clip=False,
        coupled=not decoupled,
    )
    return rule(
        "adagrad",
        gradient,
        scale_by_adagrad(
            epsilon,
            initial_accumulator_value=initial_accumulator_value,
            epsilon_placement=epsilon_placement,
        ),
        add_decayed_weights(weight_decay) if decoupled else None,
        inverse_time_decay(lr_decay) if lr_decay else None,
        scale_by_learning_rate(learning_rate),
        clear_nan=clear_nan,
    )
