r"""DC-ASGD: asynchronous SGD with delay compensation.

Symbols: :math:`w` parameter, :math:`u` the handled gradient, :math:`\eta`
``learning_rate``, :math:`\kappa` ``lamda`` (the compensation strength),
:math:`\lambda` ``weight_decay``, :math:`\mu` ``momentum``; slots :math:`w'`
``prev_weight`` (a copy of the parameter at ``init``) and :math:`v` ``velocity``
(with momentum); :math:`s` ``rescale_grad``, :math:`c` ``clip_gradient``.

In asynchronous data-parallel training a worker's gradient :math:`g(w_\tau)` arrives
after the server has moved on to :math:`w`. Zheng et al. (2017) correct it with a
first-order Taylor step, approximating the Hessian by the cheap, unbiased-in-
expectation diagonal :math:`\kappa\, g \odot g`:

.. math::

    g(w) \approx g(w_\tau) + \kappa\, g(w_\tau) \odot g(w_\tau) \odot (w - w_\tau)

MXNet applies it locally, with :math:`w'` the weight before this optimizer's previous
update (not the weight at which a stale gradient was computed; on the first update
:math:`w' = w` and the correction is 0):

.. math::

    u &= \mathrm{clip}(s g, -c, c)\\
    d &= u + \lambda w + \kappa\, u^2 (w - w'),\qquad w' \leftarrow w\\
    w &\leftarrow w - \eta d
       \quad\text{or, with momentum,}\quad
       v \leftarrow \mu v - \eta d,\ w \leftarrow w + v

The compensation uses the gradient before the decay (MXNet 1.x);
``decay_in_compensation=True`` uses :math:`u + \lambda w` there too (MXNet 2.x).

**Momentum.** MXNet 1.9.1's own momentum path cannot run: it tests the truth value of
the momentum array (an error for arrays of more than one element; for one element it
is False while the buffer is 0 and then fails an assertion), so only ``momentum=0``
works there. gradstep follows the math that code intends, the last line above (the
learning rate inside the velocity, as MXNet's SGD), which is also what MXNet 2.x
computes.

References:
  Zheng, Meng, Wang, Chen, Yu, Ma & Liu (2017): Asynchronous Stochastic Gradient
  Descent with Delay Compensation. ICML, arXiv:1609.08326.
"""

from __future__ import annotations

from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import CLIP_GRADIENT, RESCALE_GRAD, gradient_stage
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, hyperparams, nonnegative
from .sgd import apply_momentum

_LR = nonnegative(schedulable=True)


def _compensated(g, w, prev_weight, wd, lamda, one):
    # the new slot is ``w * one``, a copy: on the eager engine returning ``w`` itself
    # would store the parameter array, which the step then changes in place
    return g + wd * w + lamda * g * g * (w - prev_weight), w * one


def _compensation_prepare(h: dict, count: int) -> dict:
    return {"wd": h["weight_decay"], "lamda": h["lamda"], "one": 1.0}


@hyperparams(lamda=nonnegative(schedulable=True), weight_decay=nonnegative(schedulable=True))
def scale_by_delay_compensation(lamda: Any = 0.04, weight_decay: Any = 0.0) -> Elementwise:
    """:math:`u \\leftarrow u + \\lambda w + \\kappa u^2 (w - w')`, then
    :math:`w' \\leftarrow w`."""
    return Elementwise(
        "delay_compensation",
        _compensated,
        slots=(Slot("prev_weight", "params"),),
        hyperparams={"weight_decay": weight_decay, "lamda": lamda},
        prepare=_compensation_prepare,
        uses_params=True,
    )


@hyperparams(
    learning_rate=_LR,
    momentum=Interval(0.0, 1.0, schedulable=True),
    lamda=nonnegative(schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    decay_in_compensation=BOOL,
    rescale_grad=RESCALE_GRAD,
    clip_gradient=CLIP_GRADIENT,
)
def dcasgd(
    learning_rate: Any = 0.01,
    momentum: Any = 0.0,
    lamda: Any = 0.04,
    *,
    weight_decay: Any = 0.0,
    decay_in_compensation: bool = False,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
) -> Chain:
    r"""DC-ASGD (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.01 (MXNet 1.x).
      momentum: :math:`\mu` in [0, 1], or a schedule; 0 (the default) keeps no
        velocity.
      lamda: :math:`\kappa` >= 0, or a schedule. Default 0.04 (MXNet).
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      decay_in_compensation: square :math:`u + \lambda w` in the compensation (MXNet
        2.x) instead of :math:`u` (False, the default: MXNet 1.x).
      rescale_grad: :math:`s` > 0, or a schedule. Default 1.
      clip_gradient: :math:`c` >= 0 or None (no clip, the default); 0 zeroes the
        gradient, as MXNet's DCASGD does with 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.dcasgd(0.1, lamda=1.0))
      >>> opt.step(np.array([2.0])); opt.step(np.array([2.0])); w.round(6)
      array([0.68])

    Differences: only MXNet has DC-ASGD; its 1.x momentum path fails (see the module
    docstring), its 2.x defaults to lr 0.1 and compensates the decayed gradient.
    The tutorial's formula compensates with the weight a stale gradient was computed
    at; MXNet (and this rule) use the weight before the previous local update.
    """
    has_decay = callable(weight_decay) or weight_decay != 0
    if decay_in_compensation and not has_decay:
        raise ValueError(
            "dcasgd: invalid decay_in_compensation=True with weight_decay=0; valid "
            "values: decay_in_compensation only applies with weight_decay > 0"
        )
    coupled = weight_decay if decay_in_compensation else 0.0
    uses_momentum = callable(momentum) or momentum > 0
    return rule(
        "dcasgd",
        gradient_stage(
            "dcasgd", rescale_grad, clip_gradient, coupled, False, default_in_clip=False
        ),
        scale_by_delay_compensation(lamda, 0.0 if decay_in_compensation else weight_decay),
        scale_by_learning_rate(learning_rate),
        apply_momentum(momentum) if uses_momentum else None,
    )
