r"""Lion: the sign of an interpolation between momentum and gradient.

Symbols: :math:`g` gradient, :math:`w` parameter, :math:`m` slot ``mu``,
:math:`\eta` ``learning_rate``, :math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``,
:math:`\lambda` ``weight_decay``.

.. math::

    c = \beta_1 m + (1-\beta_1) g,\quad
    w \leftarrow w - \eta\,(\operatorname{sign}(c) + \lambda w),\quad
    m \leftarrow \beta_2 m + (1-\beta_2) g

The direction uses the momentum *before* it is updated, and with a different
coefficient (:math:`\beta_1`) than the one that updates it (:math:`\beta_2`).
:math:`\operatorname{sign}(0) = 0`. The decay is decoupled and scaled by the
learning rate, on the weights before the step.

``mode="refined"`` (optax's ``scale_by_lion`` option) keeps :math:`c` itself where
:math:`|c| < 1` and its sign elsewhere.

References:
  Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu & Le (2023): Symbolic
  Discovery of Optimization Algorithms. NeurIPS, arXiv:2302.06675.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import Interval, OneOf, hyperparams, nonnegative
from .._core.xmath import absolute, ema, sign, where

MODES = ("hard", "refined")
_BETA = Interval(0.0, 1.0, schedulable=True)


def _lion(g, mu, b1, c1, b2, c2):
    direction = sign(ema(mu, g, b1, c1))
    return direction, ema(mu, g, b2, c2)


def _lion_refined(g, mu, b1, c1, b2, c2, one):
    c = ema(mu, g, b1, c1)
    return where(absolute(c) < one, c, sign(c)), ema(mu, g, b2, c2)


def _lion_prepare(h: dict, count: int, *, mode) -> dict:
    b1, b2 = h["beta1"], h["beta2"]
    out = {"b1": b1, "c1": 1.0 - b1, "b2": b2, "c2": 1.0 - b2}
    if mode == "refined":
        out["one"] = 1.0
    return out


@hyperparams(beta1=_BETA, beta2=_BETA, mode=OneOf(MODES))
def scale_by_lion(beta1: Any = 0.9, beta2: Any = 0.99, *, mode: str = "hard") -> Elementwise:
    """Lion's direction :math:`\\operatorname{sign}(\\beta_1 m + (1-\\beta_1) g)` (no
    learning rate); ``mode="refined"`` keeps values of magnitude below 1."""

    prepare = functools.partial(_lion_prepare, mode=mode)

    return Elementwise(
        "scale_by_lion",
        _lion_refined if mode == "refined" else _lion,
        slots=(Slot("mu"),),
        hyperparams={"beta1": beta1, "beta2": beta2},
        prepare=prepare,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=_BETA,
    beta2=_BETA,
    weight_decay=nonnegative(schedulable=True),
    mode=OneOf(MODES),
)
def lion(
    learning_rate: Any = 1e-4,
    beta1: Any = 0.9,
    beta2: Any = 0.99,
    weight_decay: Any = 0.0,
    *,
    mask: Any = None,
    mode: str = "hard",
) -> Chain:
    r"""Lion (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 1e-4 (the paper
        advises 3-10x smaller than AdamW's, since every step has unit size per
        element).
      beta1: :math:`\beta_1` in [0, 1], or a schedule. Default 0.9.
      beta2: :math:`\beta_2` in [0, 1], or a schedule. Default 0.99.
      weight_decay: :math:`\lambda` >= 0, or a schedule; decoupled and scaled by
        the learning rate. Default 0.
      mask: a tree of booleans (or a function of the parameters returning one)
        selecting the leaves to decay; ``None`` decays all.
      mode: ``"hard"`` (the paper, default) or ``"refined"``.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.lion(0.1)).step(np.array([0.5, -2.0, 0.0])); w
      array([0.9, 1.1, 1. ])

    Differences: optax's ``lion`` defaults to ``weight_decay=1e-3`` and requires a
    learning rate; Keras defaults to ``learning_rate=0.001`` without decay. Both
    decay the pre-step weights by :math:`\eta\lambda w`, as here. optax's
    ``mode="smooth"`` (tanh) is not offered.
    """
    if mask is not None and not weight_decay:
        raise ValueError(
            "lion: invalid mask with weight_decay=0; valid values: a mask only selects "
            "the leaves to decay, so give a weight_decay > 0 or no mask"
        )
    return rule(
        "lion",
        scale_by_lion(beta1, beta2, mode=mode),
        add_decayed_weights(weight_decay, mask) if weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
