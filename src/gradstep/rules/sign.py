r"""Sign-based steps: signSGD and Signum (sign of a momentum).

Symbols: :math:`w` parameter, :math:`g` gradient, :math:`\eta` ``learning_rate``,
:math:`\mu` ``momentum``, :math:`m` slot ``mu`` (the momentum), :math:`\lambda`
``weight_decay``, :math:`\lambda_{lh}` ``wd_lh``, :math:`s` ``rescale_grad``,
:math:`c` ``clip_gradient``. :math:`\mathrm{sign}(0) = 0`.

signSGD (Bernstein et al. 2018, Algorithm 1) moves every coordinate by the learning
rate against the sign of its gradient; weight decay is applied to the weight
directly, outside the sign:

.. math::

    w \leftarrow w - \eta\,(\mathrm{sign}(g) + \lambda w)

Signum (the same paper, Algorithm 3) takes the sign of an exponential moving average
of the gradients instead, which keeps most of momentum's benefit while a worker still
sends one bit per coordinate. MXNet's form adds coupled L2 decay inside the average
and decoupled decay ("lh": Loshchilov & Hutter) outside:

.. math::

    u = \mathrm{clip}(s g, -c, c) + \lambda w,\qquad
    m \leftarrow \mu m + (1-\mu)\,u,\qquad
    w \leftarrow w - \eta\,(\mathrm{sign}(m) + \lambda_{lh} w)

The average is not bias-corrected: the sign does not depend on its scale, and from
the first step on :math:`\mathrm{sign}(m) = \mathrm{sign}(u)` until the gradient turns.

References:
  Bernstein, Wang, Azizzadenesheli & Anandkumar (2018): signSGD: Compressed
  Optimisation for Non-Convex Problems. ICML, arXiv:1802.04434.
  Loshchilov & Hutter (2019): Decoupled Weight Decay Regularization. ICLR,
  arXiv:1711.05101.
"""

from __future__ import annotations

from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import GRADIENT_RANGES, gradient_stage
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import decay_rate, hyperparams, nonnegative
from .._core.xmath import sign

_LR = nonnegative(schedulable=True)


def _sign(g):
    return sign(g)


def _signum(g, mu, keep, gain):
    mu = keep * mu + gain * g
    return sign(mu), mu


def scale_by_sign() -> Elementwise:
    """:math:`u \\leftarrow \\mathrm{sign}(u)`."""
    return Elementwise("scale_by_sign", _sign)


def _signum_prepare(h: dict, count: int) -> dict:
    return {"keep": h["momentum"], "gain": 1.0 - h["momentum"]}


@hyperparams(momentum=decay_rate(schedulable=True))
def scale_by_signum(momentum: Any = 0.9) -> Elementwise:
    """:math:`m \\leftarrow \\mu m + (1-\\mu) u,\\ u \\leftarrow \\mathrm{sign}(m)`."""
    return Elementwise(
        "scale_by_signum",
        _signum,
        slots=(Slot("mu"),),
        hyperparams={"momentum": momentum},
        prepare=_signum_prepare,
    )


@hyperparams(learning_rate=_LR, weight_decay=nonnegative(schedulable=True))
def signsgd(learning_rate: Any = 0.01, *, weight_decay: Any = 0.0) -> Chain:
    r"""signSGD: :math:`w \leftarrow w - \eta\,(\mathrm{sign}(g) + \lambda w)`.

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.01 (MXNet).
      weight_decay: :math:`\lambda` >= 0, or a schedule: decay applied to the weight
        outside the sign. Default 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.signsgd(0.1)).step(np.array([3.0, -1e-9, 0.0]))
      >>> w
      array([0.9, 1.1, 1. ])

    Differences: MXNet's ``Signum(momentum=0)`` dispatches to this rule
    (``signsgd_update``): it ignores ``rescale_grad`` and ``clip_gradient``, which
    cannot change a sign (a positive rescale, a positive clip), so they are not
    offered here; MXNet 1.x fails when ``wd_lh`` is also given, 2.x adds ``wd_lh`` to
    ``wd`` (pass the sum as ``weight_decay``). optax has no signSGD (its ``signum``
    with ``beta=0`` is the same step without decay).
    """
    return rule(
        "signsgd",
        scale_by_sign(),
        add_decayed_weights(weight_decay) if weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )


@hyperparams(
    learning_rate=_LR,
    momentum=decay_rate(schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    wd_lh=nonnegative(schedulable=True),
    **GRADIENT_RANGES,
)
def signum(
    learning_rate: Any = 0.01,
    momentum: Any = 0.9,
    *,
    weight_decay: Any = 0.0,
    wd_lh: Any = 0.0,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = False,
) -> Chain:
    r"""Signum: the sign of a momentum (see the module docstring for the math).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.01 (MXNet).
      momentum: :math:`\mu` in [0, 1), or a schedule. Default 0.9 (MXNet). With 0
        the step is the sign of the coupled-decayed gradient :math:`u` (for MXNet's
        ``momentum=0``, which decays outside the sign, use :func:`signsgd`).
      weight_decay: :math:`\lambda` >= 0, or a schedule: coupled L2 decay inside the
        average. Default 0.
      wd_lh: :math:`\lambda_{lh}` >= 0, or a schedule: decoupled decay,
        :math:`w \leftarrow (1 - \eta\lambda_{lh}) w` alongside the sign step.
        Default 0.
      rescale_grad: :math:`s` > 0, or a schedule. Default 1.
      clip_gradient: :math:`c` >= 0 or None (no clip, the default): element-wise clip
        of the rescaled gradient.
      decay_in_clip: clip :math:`s g + \lambda w` instead of adding :math:`\lambda w`
        after the clip (MXNet's Signum adds it after: False, the default).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.signum(0.1, 0.9))
      >>> opt.step(np.array([2.0, -0.5])); opt.step(np.array([-1.0, -0.5])); w
      array([0.8, 1.2])

    Differences: MXNet stores the negated average (:math:`-m`) as its state; the
    steps are the same. optax's ``signum`` has no decay and no gradient handling.
    MXNet's docstring writes the decay as ``rescale_grad * clip(grad)``; its kernel
    clips the rescaled gradient, as here.
    """
    return rule(
        "signum",
        gradient_stage(
            "signum",
            rescale_grad,
            clip_gradient,
            weight_decay,
            decay_in_clip,
            default_in_clip=False,
        ),
        scale_by_signum(momentum),
        add_decayed_weights(wd_lh) if wd_lh else None,
        scale_by_learning_rate(learning_rate),
    )
