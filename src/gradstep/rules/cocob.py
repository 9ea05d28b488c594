r"""COCOB-Backprop: each coordinate bets a fraction of its accumulated reward on the sign of
its negative gradient ("continuous coin betting"); no step size.

Symbols: :math:`g` gradient (times ``learning_rate``, with :math:`\lambda w` added
first when ``weight_decay`` > 0), :math:`w` parameter, :math:`w_0` slot ``p0`` (the
initial parameter), :math:`C` slot ``cumulative`` (the negative gradients' sum),
:math:`L` slot ``scale`` (the largest :math:`|g|` so far, starting at
:math:`\epsilon`), :math:`G` slot ``total`` (the sum of :math:`|g|`), :math:`R` slot
``reward``, :math:`\alpha` ``alpha``, :math:`\epsilon` ``epsilon``. Every operation is
per element.

.. math::

    L \leftarrow \max(L, |g|),\quad G \leftarrow G + |g|,\quad
    R \leftarrow \max\big(R - g\,(w - w_0), 0\big),\quad C \leftarrow C - g

    w \leftarrow w_0 + \frac{C}{L \max(G + L, \alpha L)}\,(L + R)

References:
  Orabona & Tommasi (2017): Training Deep Networks without Learning Rates Through
  Coin Betting. NeurIPS, arXiv:1705.07795.
"""

from __future__ import annotations

from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule
from .._core.transform import Chain
from .._core.validate import Interval, hyperparams, nonnegative
from .._core.xmath import absolute, maximum

_POSITIVE = Interval(0.0, lo_open=True)


def _cocob(g, w, p0, cumulative, scale, total, reward, alpha, zero):
    scale = maximum(scale, absolute(g))
    total = total + absolute(g)
    reward = maximum(reward - g * (w - p0), zero)
    cumulative = cumulative - g
    bet = cumulative / (scale * maximum(total + scale, alpha * scale)) * (scale + reward)
    return -w + (p0 + bet), p0, cumulative, scale, total, reward


def _cocob_scalars(h: dict, count: int) -> dict:
    return {"alpha": h["alpha"], "zero": 0.0}


def _times_rate(g, factor):
    return g * factor


def _rate(h: dict, count: int) -> dict:
    return {"factor": h["learning_rate"]}


@hyperparams(alpha=_POSITIVE, epsilon=_POSITIVE)
def scale_by_cocob(alpha: float = 100.0, epsilon: float = 1e-8) -> Elementwise:
    r"""COCOB-Backprop's move to :math:`w_0 + C (L + R) / (L \max(G + L, \alpha L))`
    (see :func:`cocob`); its update is the whole step."""
    return Elementwise(
        "cocob",
        _cocob,
        slots=(
            Slot("p0", "params"),
            Slot("cumulative"),
            Slot("scale", epsilon, nonnegative=True),
            Slot("total", nonnegative=True),
            Slot("reward", nonnegative=True),
        ),
        hyperparams={"alpha": alpha},
        prepare=_cocob_scalars,
        uses_params=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    alpha=_POSITIVE,
    epsilon=_POSITIVE,
    weight_decay=nonnegative(),
)
def cocob(
    learning_rate: Any = 1.0,
    alpha: float = 100.0,
    epsilon: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    mask: Any = None,
) -> Chain:
    r"""COCOB-Backprop (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule: multiplies the gradient before
        the bet (1: the algorithm as published). Default 1.
      alpha: :math:`\alpha` > 0, bounds the fraction bet early on. Default 100.
      epsilon: :math:`\epsilon` > 0, the initial :math:`L`. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, added to the gradient. Default 0.
      mask: a tree of booleans (or a function of the parameters returning one)
        selecting the tensors to decay; ``None``: all.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0])
      >>> gradstep.Optimizer(w, gradstep.cocob()).step(np.array([0.5, -0.5])); w
      array([ 0.99, -1.99])

    Differences: optax's ``contrib.cocob(learning_rate, alpha, eps, weight_decay,
    mask)`` is this rule (its decay stage always runs, a no-op at 0). The paper's
    Algorithm 2 initialises :math:`L` at 0 and skips the step while it is; the
    :math:`\epsilon` start is optax's. The authors' TensorFlow code is not a
    reference here.
    """
    if mask is not None and not weight_decay:
        raise ValueError(
            "cocob: invalid mask with weight_decay=0; valid values: a mask only together "
            "with a weight_decay > 0"
        )
    return rule(
        "cocob",
        add_decayed_weights(weight_decay, mask) if weight_decay else None,
        Elementwise(
            "learning_rate",
            _times_rate,
            hyperparams={"learning_rate": learning_rate},
            prepare=_rate,
        ),
        scale_by_cocob(alpha, epsilon),
    )
