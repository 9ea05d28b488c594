r"""Exponential moving average of the updates (optax's ``ema``).

Symbols: :math:`u` the incoming update, :math:`m` slot ``ema``, :math:`\beta`
``decay``, :math:`t` the 1-based step.

.. math::

    m \leftarrow \beta m + (1-\beta) u, \qquad
    u \leftarrow m / (1 - \beta^t)\ \ (\text{debias})\quad\text{or}\quad u \leftarrow m

The slot keeps the raw average; only the output is debiased (Adam's first moment,
without the second). With ``debias=False`` it is the signum direction's average
before the sign.

References:
  Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR (the bias
  correction of a moving average started at 0).
  google-deepmind/optax: ``optax.ema`` (optax documentation, "Transformations").

Differences: optax's ``ema`` also offers ``accumulator_dtype``; gradstep keeps the
slot in the parameter's dtype. gradstep's :func:`~gradstep.transforms.parameter_ema`
averages the parameters instead (objax's ``ExponentialMovingAverage``).
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.validate import BOOL, Interval, hyperparams
from .._core.xmath import complex_ready
from .._core.xmath import debias as _debias


@complex_ready
def _moving_average(g, ema, keep, gain, scale):
    ema = keep * ema + gain * g
    return ema * scale, ema


def _ema_prepare(h: dict, count: int, *, debias: bool) -> dict:
    decay = h["decay"]
    # scale 1.0 without debiasing: ema * 1.0 is ema exactly
    scale = 1.0 / _debias(decay, count + 1) if debias else 1.0
    return {"keep": decay, "gain": 1.0 - decay, "scale": scale}


@hyperparams(decay=Interval(0.0, 1.0, hi_open=True, schedulable=True), debias=BOOL)
def scale_by_ema(decay: Any = 0.9, *, debias: bool = True) -> Elementwise:
    """The moving average of the updates (see the module docstring).

    Args:
      decay: :math:`\\beta` in [0, 1), or a schedule. Default 0.9.
      debias: divide the output by :math:`1 - \\beta^t`. Default True (optax).

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import scale, scale_by_ema
      >>> w = np.zeros(2)
      >>> opt = gradstep.Optimizer(w, gradstep.chain(scale_by_ema(0.5), scale(-1.0)))
      >>> opt.step(np.array([2.0, -4.0])); w  # debiased: the first output is the update
      array([-2.,  4.])
    """
    return Elementwise(
        "scale_by_ema",
        _moving_average,
        slots=(Slot("ema"),),
        hyperparams={"decay": decay},
        prepare=functools.partial(_ema_prepare, debias=debias),
        uses_count=debias,
    )
