r"""ASGD: SGD with a decaying step size and Polyak-Ruppert averaging of the iterates.

Symbols: :math:`w` parameter, :math:`g` gradient, :math:`\eta_0` ``learning_rate``,
:math:`\lambda` ``lambd``, :math:`\alpha` ``alpha``, :math:`t_0` ``t0``,
:math:`\omega` ``weight_decay``, :math:`\bar w` slot ``ax`` (the averaged parameter),
:math:`k` the number of earlier steps (0 on the first).

The step size decays as :math:`\eta_k = \eta_0 (1 + \lambda \eta_0 k)^{-\alpha}`
(Bottou's schedule for averaged SGD), the weight is shrunk by :math:`\lambda` in the
same step, and from step :math:`t_0` on the average of the iterates is kept:

.. math::

    \eta_k = \frac{\eta_0}{(1 + \lambda \eta_0 k)^{\alpha}},\qquad
    \mu_k = \frac{1}{\max(1,\, k - t_0)}\ (\mu_0 = 1),

    w \leftarrow w - \eta_k\,\big(g + \omega w + \lambda w\big),\qquad
    \bar w \leftarrow \bar w + \mu_k (w - \bar w)

(:math:`\bar w` is the new :math:`w` itself while :math:`\mu_k = 1`). The average is
state only: the parameters follow the plain iterates; read ``ax`` to evaluate with
the averaged point.

References:
  Polyak & Juditsky (1992): Acceleration of Stochastic Approximation by Averaging.
  SIAM Journal on Control and Optimization 30.
  Bottou (2012): Stochastic Gradient Descent Tricks. Neural Networks: Tricks of the
  Trade, Springer.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.carried import Carried
from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import Interval, hyperparams, nonnegative
from .._core.xmath import where


def _decayed_direction(g, w, lambd, factor):
    return (g + lambd * w) * factor


def _decay_scalars(h: dict, count: int, *, carried: Carried) -> dict:
    lr = h["learning_rate"]
    eta = carried.get("eta")  # the step size a front kept from the step before
    if eta is not None:
        factor = eta / lr if lr else 0.0
    else:
        factor = 1.0 / (1.0 + h["lambd"] * lr * count) ** h["alpha"]
    return {"lambd": h["lambd"], "factor": factor}


def scale_by_asgd_decay(learning_rate: Any, lambd: float, alpha: float) -> Elementwise:
    r""":math:`(g + \lambda w)\,(1 + \lambda \eta_0 k)^{-\alpha}`: ASGD's direction,
    to be scaled by the learning rate :math:`\eta_0`. A front that keeps the step
    size :math:`\eta` (torch's ``eta``) hands it over through the stage's
    ``carried`` (:mod:`gradstep._core.carried`): the factor is then
    :math:`\eta / \eta_0`."""
    carried = Carried()
    stage = Elementwise(
        "asgd_decay",
        _decayed_direction,
        hyperparams={"learning_rate": learning_rate, "lambd": lambd, "alpha": alpha},
        prepare=functools.partial(_decay_scalars, carried=carried),
        uses_params=True,
        uses_count=True,
    )
    stage.carried = carried
    return stage


def _averaged(g, w, ax, mu, restart):
    new_w = w + g
    return g, where(restart, new_w, ax + (new_w - ax) * mu)


def _average_scalars(h: dict, count: int, *, carried: Carried) -> dict:
    mu = carried.get("mu")  # the weight a front kept from the step before
    if mu is None:
        mu = 1.0 if count == 0 else 1.0 / max(1.0, count - h["t0"])
    return {"mu": mu, "restart": mu == 1.0}


def average_iterates(t0: float) -> Elementwise:
    r"""Keep :math:`\bar w`, the average of the parameters after each update from
    step :math:`t_0` on (slot ``ax``); the updates pass unchanged. A front that
    keeps the weight :math:`\mu` (torch's ``mu``) hands it over through the
    stage's ``carried``."""
    carried = Carried()
    stage = Elementwise(
        "average",
        _averaged,
        slots=(Slot("ax"),),
        hyperparams={"t0": t0},
        prepare=functools.partial(_average_scalars, carried=carried),
        uses_params=True,
        uses_count=True,
    )
    stage.carried = carried
    return stage


@hyperparams(
    learning_rate=nonnegative(),
    lambd=nonnegative(),
    alpha=nonnegative(),
    t0=Interval(),
    weight_decay=nonnegative(),
)
def asgd(
    learning_rate: float = 0.01,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
) -> Chain:
    r"""Averaged SGD (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta_0` >= 0, the initial step size. Default 0.01.
      lambd: :math:`\lambda` >= 0, the decay of the step size and of the weights.
        Default 1e-4.
      alpha: :math:`\alpha` >= 0, the power of the step-size decay. Default 0.75.
      t0: :math:`t_0`, the step from which the iterates are averaged. Default 1e6.
      weight_decay: :math:`\omega` >= 0, coupled L2 decay. Default 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.asgd(0.1, lambd=0.0, t0=0))
      >>> for g in ([1.0], [1.0]): opt.step(np.array(g))
      >>> w, opt.state["average"]["ax"]
      (array([0.8]), array([0.8]))

    Differences: torch.optim.ASGD (the same defaults) stores :math:`\eta` and
    :math:`\mu` after each step and uses them at the next one, so after a change of
    the learning rate (or of :math:`\lambda`, :math:`\alpha`, :math:`t_0`) torch takes
    one more step with the old values; gradstep computes :math:`\eta_k` from the
    current ones (``gradstep.torch.ASGD`` steps with the stored ones, as torch).
    torch computes the step as :math:`w (1 - \lambda\eta) - \eta
    (g + \omega w)`, gradstep as :math:`w - \eta(g + \omega w + \lambda w)`: equal up
    to rounding. optax, MXNet and Keras have no ASGD.
    """
    return rule(
        "asgd",
        add_decayed_weights(weight_decay) if weight_decay else None,
        scale_by_asgd_decay(learning_rate, lambd, alpha),
        scale_by_learning_rate(learning_rate),
        average_iterates(t0),
    )
