r"""AdaDelta: unit-correct steps from two running averages.

Symbols: :math:`n` slot ``nu`` (mean square gradient), :math:`d` slot ``nu_delta``
(mean square step), :math:`\rho` ``rho``, :math:`\epsilon` ``epsilon``,
:math:`\eta` ``learning_rate``.

.. math::

    n \leftarrow \rho n + (1-\rho) g^2,\quad
    \Delta = \frac{\sqrt{d + \epsilon}}{\sqrt{n + \epsilon}}\, g,\quad
    d \leftarrow \rho d + (1-\rho) \Delta^2,\quad
    w \leftarrow w - \eta \Delta

The step average :math:`d` accumulates :math:`\Delta` without the learning rate (as
every library does; Lasagne's docstring says otherwise).

References:
  Zeiler (2012): ADADELTA: An Adaptive Learning Rate Method. arXiv:1212.5701.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import GRADIENT_RANGES, gradient_stage
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, hyperparams, nonnegative
from .._core.xmath import ema_square, sqrt


def _adadelta(g, nu, nu_delta, rho, c, eps):
    nu = ema_square(nu, g, rho, c)
    delta = sqrt(nu_delta + eps) / sqrt(nu + eps) * g
    nu_delta = ema_square(nu_delta, delta, rho, c)
    return delta, nu, nu_delta


def _adadelta_prepare(h: dict, count: int, *, epsilon: float) -> dict:
    return {"rho": h["rho"], "c": 1.0 - h["rho"], "eps": epsilon}


@hyperparams(rho=Interval(0.0, 1.0, schedulable=True), epsilon=nonnegative())
def scale_by_adadelta(rho: Any = 0.95, epsilon: float = 1e-6) -> Elementwise:
    """AdaDelta's step :math:`\\Delta` (no learning rate)."""
    return Elementwise(
        "scale_by_adadelta",
        _adadelta,
        slots=(Slot("nu", nonnegative=True), Slot("nu_delta", nonnegative=True)),
        hyperparams={"rho": rho},
        prepare=functools.partial(_adadelta_prepare, epsilon=epsilon),
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    rho=Interval(0.0, 1.0, schedulable=True),
    epsilon=nonnegative(),
    clear_nan=BOOL,
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    **GRADIENT_RANGES,
)
def adadelta(
    learning_rate: Any = 1.0,
    rho: Any = 0.95,
    epsilon: float = 1e-6,
    clear_nan: bool = False,
    *,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = False,
) -> Chain:
    r"""AdaDelta (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 1.0: the paper has no
        learning rate; keep it at 1 unless you mean to scale the steps.
      rho: :math:`\rho` in [0, 1], or a schedule. Default 0.95 (the paper, Dandelion).
      epsilon: :math:`\epsilon` >= 0, inside both roots. Default 1e-6; it sets the
        size of the very first steps (about :math:`\sqrt{\epsilon/(1-\rho)}`).
      clear_nan: Dandelion's NaN handling (new ``nu``, ``nu_delta`` and parameter
        elements that are NaN become 0).
      weight_decay: :math:`\lambda` >= 0, or a schedule: coupled L2 (torch, MXNet
        2.x). Default 0.
      decoupled_weight_decay: subtract :math:`\eta \lambda w` outside the AdaDelta
        statistics instead, :math:`w \leftarrow w - \eta(\Delta + \lambda w)`
        (MXNet 1.x, whose learning rate is 1). Default False.
      rescale_grad, clip_gradient, decay_in_clip: MXNet's gradient handling (see
        :mod:`gradstep.transforms.mxnet`). Defaults leave the gradient as it is.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> gradstep.Optimizer(w, gradstep.adadelta()).step(np.array([1.0])); w.round(7)
      array([0.9955279])

    Differences: torch and MXNet use rho 0.9; Keras lr 1e-3 and epsilon 1e-7; optax's
    default ``learning_rate=None`` returns the ascent direction. MXNet 1.x
    (epsilon 1e-5) has no learning rate at all (its ``learning_rate`` and schedulers
    change nothing) and subtracts :math:`\lambda w` unscaled: that is
    ``learning_rate=1, decoupled_weight_decay=True``.
    """
    decoupled = decoupled_weight_decay and (callable(weight_decay) or weight_decay != 0)
    if decoupled_weight_decay and not decoupled:
        raise ValueError(
            "adadelta: invalid decoupled_weight_decay=True with weight_decay=0; valid "
            "values: decoupled_weight_decay only applies with weight_decay > 0"
        )
    gradient = gradient_stage(
        "adadelta",
        rescale_grad,
        clip_gradient,
        weight_decay,
        decay_in_clip,
        default_in_clip=False,
        coupled=not decoupled,
    )
    return rule(
        "adadelta",
        gradient,
        scale_by_adadelta(rho, epsilon),
        add_decayed_weights(weight_decay) if decoupled else None,
        scale_by_learning_rate(learning_rate),
        clear_nan=clear_nan,
    )
