r"""D-Adaptation SGD: dual averaging whose step size is a lower bound on the distance to the
solution, estimated from the gradients seen so far.

Symbols: :math:`g` gradient, :math:`\tilde g = g + \lambda w` the decayed gradient,
:math:`w` parameter, :math:`w_0` slot ``x0`` (the initial parameter), :math:`s` slot
``s``, :math:`d` the distance estimate (carried state ``d``, starting at :math:`d_0`
``d0``), :math:`r` the numerator (``numerator``), :math:`G` the first gradient's norm
(``g0_norm``), :math:`k` the number of steps taken (``k``), :math:`\eta`
``learning_rate``, :math:`\mu` ``momentum``, :math:`\lambda` ``weight_decay``,
:math:`\gamma` ``growth_rate``. Sums and norms run over every element of every
tensor.

.. math::

    G = \|g_1\|\ \text{(the first step's gradient, without the decay)},\quad
    \eta_d = d\,\eta / G

    r \leftarrow r + \eta_d \textstyle\sum \tilde g\, s\quad (\text{old } s),\quad
    s \leftarrow s + \eta_d\, \tilde g

    \hat d = 2 r / \|s\|,\quad d \leftarrow \max\big(d, \min(\hat d, \gamma d)\big)

    w \leftarrow (1-c)\, w + c\,(w_0 - s),\quad c = 1 - \mu,\quad k \leftarrow k + 1

The new :math:`d` takes effect from the next step. While :math:`\|s\| = 0` (every
gradient so far zero) the step changes nothing.

References:
  Defazio & Mishchenko (2023): Learning-Rate-Free Learning by D-Adaptation. ICML,
  arXiv:2301.07733.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Slot
from .._core.global_reduction import GlobalReduction
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import maximum, minimum, sqrt, where

_POSITIVE = Interval(0.0, lo_open=True)


def _sums(g, w, s, x0, known_dlr, decay, keep):
    # the first step's s is 0 and its rate unknown until the gradient norm is: the
    # gradient's sums of squares give that step's |s|^2 = rate^2 |g~|^2
    decayed = g + decay * w
    grown = s + known_dlr * decayed
    return decayed * s, grown * grown, decayed * decayed, g * g


def _dadapt_sgd(g, w, s, x0, known_dlr, decay, keep, dlr):
    s = s + dlr * (g + decay * w)
    return keep * (x0 - s - w), s, x0


def _prepare(h: dict, count: Any, *, decay: float, momentum: float) -> dict:
    first = h["k"] == 0.0
    known = h["d"] * h["learning_rate"] / where(first, 1.0, h["g0_norm"])
    return {"known_dlr": where(first, 0.0, known), "decay": decay, "keep": 1.0 - momentum}


def _combine(sums, h, scalars, *, growth):
    progress, grown, decayed_squares, squares = sums
    d, first = h["d"], h["k"] == 0.0
    g0 = where(first, sqrt(squares), h["g0_norm"])
    dlr = d * h["learning_rate"] / where(g0 == 0.0, 1.0, g0)
    s_squares = where(first, dlr * dlr * decayed_squares, grown)
    numerator = h["numerator"] + dlr * progress
    # no gradient yet (|s| = 0): nothing changes (the reference divides by zero)
    skip = (s_squares == 0.0) | (g0 == 0.0)
    d_hat = 2.0 * numerator / sqrt(where(skip, 1.0, s_squares))
    carried = {
        "d": where(skip, d, maximum(d, minimum(d_hat, d * growth))),
        "numerator": where(skip, h["numerator"], numerator),
        "g0_norm": where(skip, h["g0_norm"], g0),
        "k": where(skip, h["k"], h["k"] + 1.0),
    }
    return carried, {"dlr": where(skip, 0.0, dlr)}


@hyperparams(
    learning_rate=Interval(0.0, lo_open=True, schedulable=True),
    momentum=decay_rate(),
    weight_decay=nonnegative(),
    d0=_POSITIVE,
    growth_rate=Interval(1.0),
)
def dadapt_sgd(
    learning_rate: Any = 1.0,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    *,
    d0: float = 1e-6,
    growth_rate: float = math.inf,
) -> Chain:
    r"""D-Adaptation SGD (see the module docstring for the math and the symbol map).

    The stage's update is the whole step (no learning-rate stage follows): the rate
    scales the dual average :math:`s`, and the parameter moves towards
    :math:`w_0 - s`.

    Args:
      learning_rate: :math:`\eta` > 0, or a schedule: a multiplier of the estimated
        step, 1 to use the estimate as it is. Default 1.
      momentum: :math:`\mu` in [0, 1): the parameter moves :math:`1-\mu` of the way
        to the dual-averaging point each step. Default 0.
      weight_decay: :math:`\lambda` >= 0, added to the gradient (coupled). Default 0.
      d0: :math:`d_0` > 0, the initial estimate. Default 1e-6.
      growth_rate: :math:`\gamma` >= 1, the most :math:`d` may grow per step.
        Default ``inf``.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0])
      >>> opt = gradstep.Optimizer(w, gradstep.dadapt_sgd())
      >>> for _ in range(3):
      ...     opt.step(w.copy())
      >>> float(opt.state["dadapt_sgd"]["d"]) > 1e-6
      True

    Differences: ``dadaptation.DAdaptSGD`` (3.2) is this rule for one parameter
    group (``log_every`` and ``fsdp_in_use`` are not offered; its groups share one
    :math:`d`, each gradstep group keeps its own). As there, :math:`G` is the norm of
    the first gradient without the decay. The reference divides by zero when the
    first gradient is all zero; gradstep leaves the parameters and the estimate
    unchanged until a nonzero gradient arrives. The reference sums :math:`\tilde g s`
    and :math:`s^2` per tensor in the parameters' dtype; gradstep accumulates every
    sum in float64. ``learning_rate`` must stay > 0.
    """
    return rule(
        "dadapt_sgd",
        GlobalReduction(
            "dadapt_sgd",
            _dadapt_sgd,
            terms=_sums,
            combine=functools.partial(_combine, growth=growth_rate),
            reduced_scalars=("dlr",),
            carried={"d": d0, "numerator": 0.0, "g0_norm": 1.0, "k": 0.0},
            slots=(Slot("s"), Slot("x0", "params")),
            hyperparams={"learning_rate": learning_rate},
            prepare=functools.partial(_prepare, decay=weight_decay, momentum=momentum),
            uses_params=True,
        ),
    )
