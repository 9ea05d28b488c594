r"""D-Adaptation AdaGrad: AdaGrad-weighted dual averaging whose step size is a lower bound on
the distance to the solution, estimated from the gradients seen so far.

Symbols: :math:`g` gradient (with :math:`\lambda w` added), :math:`w` parameter,
:math:`w_0` slot ``x0`` (the initial parameter), :math:`a` slot ``alpha`` (starts at
:math:`10^{-6}`), :math:`s` slot ``s``, :math:`d` the distance estimate (carried
state ``d``, starting at :math:`d_0` ``d0``), :math:`Q` (``sksq_weighted``),
:math:`L` (``skl1``), :math:`P` (``gsq_weighted``), :math:`\eta`
``learning_rate``, :math:`\mu` ``momentum``, :math:`\epsilon` ``epsilon``,
:math:`\lambda` ``weight_decay``, :math:`\gamma` ``growth_rate``. Sums run over every
element of every tensor; primes are the values after this step.

.. math::

    \eta_d = d\,\eta,\quad a' = a + g^2,\quad s' = s + \eta_d\, g

    Q \leftarrow Q + \textstyle\sum \big(s'^2/(\sqrt{a'}+\epsilon)
    - s^2/(\sqrt a+\epsilon)\big),\quad
    L \leftarrow L + \textstyle\sum (|s'| - |s|),\quad
    P \leftarrow P + \eta_d^2 \textstyle\sum g^2/(\sqrt{a'}+\epsilon)

    \hat d = (Q - P) / L,\quad d \leftarrow \max\big(d, \min(\hat d, \gamma d)\big)

    w \leftarrow (1-c)\, w + c\,\big(w_0 - s'/(\sqrt{a'}+\epsilon)\big),\quad c = 1 - \mu

The new :math:`d` takes effect from the next step. While :math:`L = 0` (every
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
from .._core.stages import add_decayed_weights, rule
from .._core.transform import Chain
from .._core.validate import Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import absolute, maximum, minimum, sqrt, where

_POSITIVE = Interval(0.0, lo_open=True)


def _changes(g, w, alpha, s, x0, dlr, eps, keep):
    alpha_new = alpha + g * g
    s_new = s + dlr * g
    root = sqrt(alpha_new) + eps
    weighted = s_new * s_new / root - s * s / (sqrt(alpha) + eps)
    return weighted, absolute(s_new) - absolute(s), g * g / root


def _dadapt_adagrad(g, w, alpha, s, x0, dlr, eps, keep):
    alpha = alpha + g * g
    s = s + dlr * g
    return keep * (x0 - s / (sqrt(alpha) + eps) - w), alpha, s, x0


def _prepare(h: dict, count: Any, *, eps: float, momentum: float) -> dict:
    return {"dlr": h["d"] * h["learning_rate"], "eps": eps, "keep": 1.0 - momentum}


def _combine(sums, h, scalars, *, growth):
    weighted, l1, squares = sums
    d = h["d"]
    dlr = d * h["learning_rate"]
    sksq = h["sksq_weighted"] + weighted
    skl1 = h["skl1"] + l1
    gsq = h["gsq_weighted"] + dlr * dlr * squares
    # no gradient yet (L = 0): the reference returns early, changing nothing
    skip = skl1 == 0.0
    d_hat = (sksq - gsq) / where(skip, 1.0, skl1)
    carried = {
        "d": where(skip, d, maximum(d, minimum(d_hat, d * growth))),
        "sksq_weighted": where(skip, h["sksq_weighted"], sksq),
        "skl1": where(skip, h["skl1"], skl1),
        "gsq_weighted": where(skip, h["gsq_weighted"], gsq),
    }
    return carried, {}


@hyperparams(
    learning_rate=Interval(0.0, lo_open=True, schedulable=True),
    momentum=decay_rate(),
    weight_decay=nonnegative(),
    epsilon=nonnegative(),
    d0=_POSITIVE,
    growth_rate=Interval(1.0),
)
def dadapt_adagrad(
    learning_rate: Any = 1.0,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    epsilon: float = 1e-6,
    *,
    d0: float = 1e-6,
    growth_rate: float = math.inf,
) -> Chain:
    r"""D-Adaptation AdaGrad (see the module docstring for the math and the symbol map).

    The stage's update is the whole step (no learning-rate stage follows): the rate
    scales the dual average :math:`s`, and the parameter moves towards
    :math:`w_0 - s/(\sqrt{a}+\epsilon)`.

    Args:
      learning_rate: :math:`\eta` > 0, or a schedule: a multiplier of the estimated
        step, 1 to use the estimate as it is. Default 1.
      momentum: :math:`\mu` in [0, 1): the parameter moves :math:`1-\mu` of the way
        to the dual-averaging point each step. Default 0.
      weight_decay: :math:`\lambda` >= 0, added to the gradient (coupled). Default 0.
      epsilon: :math:`\epsilon` >= 0, added to :math:`\sqrt a`. Default 1e-6.
      d0: :math:`d_0` > 0, the initial estimate. Default 1e-6.
      growth_rate: :math:`\gamma` >= 1, the most :math:`d` may grow per step.
        Default ``inf``.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0])
      >>> opt = gradstep.Optimizer(w, gradstep.dadapt_adagrad())
      >>> for _ in range(10):
      ...     opt.step(w.copy())
      >>> float(opt.state["dadapt_adagrad"]["d"]) > 1e-6
      True

    Differences: ``dadaptation.DAdaptAdaGrad`` (3.2) is this rule for one parameter
    group and dense gradients (its sparse-gradient path and ``log_every`` are not
    offered; its groups share one :math:`d`, each gradstep group keeps its own). The
    reference sums each tensor's terms in the parameters' dtype and takes the
    differences of the sums; gradstep sums the per-element differences in float64.
    ``learning_rate`` must stay > 0.
    """
    return rule(
        "dadapt_adagrad",
        add_decayed_weights(weight_decay) if weight_decay else None,
        GlobalReduction(
            "dadapt_adagrad",
            _dadapt_adagrad,
            terms=_changes,
            combine=functools.partial(_combine, growth=growth_rate),
            reduced_scalars=(),
            carried={"d": d0, "sksq_weighted": 0.0, "skl1": 0.0, "gsq_weighted": 0.0},
            slots=(
                Slot("alpha", 1e-6, nonnegative=True),
                Slot("s"),
                Slot("x0", "params"),
            ),
            hyperparams={"learning_rate": learning_rate},
            prepare=functools.partial(_prepare, eps=epsilon, momentum=momentum),
            uses_params=True,
        ),
    )
