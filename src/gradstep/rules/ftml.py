r"""FTML: Follow the Moving Leader.

Symbols: :math:`w` parameter, :math:`u` the handled gradient, :math:`t` the 1-based
step, :math:`\eta` ``learning_rate`` (:math:`\eta_t` at step :math:`t`),
:math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``, :math:`\epsilon` ``epsilon``,
:math:`\lambda` ``weight_decay``, :math:`s` ``rescale_grad``, :math:`c`
``clip_gradient``; slots :math:`d` ``d``, :math:`v` ``v``, :math:`z` ``z``, all
starting at 0.

FTML (Zheng & Kwok 2017) is a follow-the-regularised-leader method whose leader
"moves": recent gradients weigh more (by :math:`\beta_1`), like Adam's momentum, and
the proximal regulariser is Adam-like (RMSProp's :math:`v`). The new weight is the
closed-form minimiser of the linearised, exponentially weighted loss plus the
regulariser, so it is computed from :math:`z` alone, not added to :math:`w`:

.. math::

    u &= \mathrm{clip}(s g + \lambda w, -c, c)\\
    v &\leftarrow \beta_2 v + (1-\beta_2)\, u^2\\
    d_t &= \frac{1-\beta_1^t}{\eta_t}\left(\sqrt{\frac{v}{1-\beta_2^t}} + \epsilon\right)\\
    z &\leftarrow \beta_1 z + (1-\beta_1)\, u - (d_t - \beta_1 d_{t-1})\, w\\
    w &\leftarrow -z / d_t,\qquad d \leftarrow d_t

:math:`d_t` is the per-coordinate strength of the regulariser (the inverse of an
Adam-like step size); :math:`\sigma_t = d_t - \beta_1 d_{t-1}` is the increment that
keeps the regulariser centred on the current weight. The first step is
:math:`w_1 = w_0 - \eta\, u / (|u| + \epsilon)`: a sign step of size :math:`\eta`.

References:
  Zheng & Kwok (2017): Follow the Moving Leader in Deep Learning. ICML, PMLR 70
  (Algorithm 2).
  McMahan (2011): Follow-the-Regularized-Leader and Mirror Descent. AISTATS.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import GRADIENT_RANGES, gradient_stage
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import debias, ema_square, sqrt

_LR = Interval(0.0, lo_open=True, schedulable=True)


def _ftml(g, w, d, v, z, b1, c1, b2, c2, d_scale, inv_bc2, eps):
    v = ema_square(v, g, b2, c2)
    d_t = d_scale * (sqrt(v * inv_bc2) + eps)
    z = b1 * z + c1 * g - (d_t - b1 * d) * w
    return -z / d_t - w, d_t, v, z


def _ftml_prepare(h: dict, count: int, *, beta1, beta2, epsilon) -> dict:
    t = count + 1
    b1, b2 = beta1, beta2
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "b2": b2,
        "c2": 1.0 - b2,
        "d_scale": (1.0 - b1**t) / h["learning_rate"],
        "inv_bc2": 1.0 / debias(b2, t),
        "eps": epsilon,
    }


@hyperparams(learning_rate=_LR, beta1=decay_rate(), beta2=decay_rate(), epsilon=nonnegative())
def scale_by_ftml(
    learning_rate: Any = 0.01, beta1: float = 0.6, beta2: float = 0.999, epsilon: float = 1e-8
) -> Elementwise:
    """FTML's whole step :math:`-z/d_t - w` (the learning rate is inside :math:`d_t`)."""

    prepare = functools.partial(_ftml_prepare, beta1=beta1, beta2=beta2, epsilon=epsilon)

    return Elementwise(
        "scale_by_ftml",
        _ftml,
        slots=(Slot("d"), Slot("v"), Slot("z")),
        hyperparams={"learning_rate": learning_rate},
        prepare=prepare,
        uses_params=True,
        uses_count=True,
    )


@hyperparams(
    learning_rate=_LR,
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    **GRADIENT_RANGES,
)
def ftml(
    learning_rate: Any = 0.01,
    beta1: float = 0.6,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    weight_decay: Any = 0.0,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = True,
) -> Chain:
    r"""FTML (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` > 0, or a schedule. Default 0.01 (MXNet 1.x).
      beta1: :math:`\beta_1` in [0, 1). Default 0.6 (the paper, MXNet).
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, or a schedule: coupled L2 decay. Default 0.
      rescale_grad: :math:`s` > 0, or a schedule. Default 1.
      clip_gradient: :math:`c` >= 0 or None (no clip, the default).
      decay_in_clip: clip :math:`s g + \lambda w` (True, default: MXNet 1.x) or add
        :math:`\lambda w` after the clip (False: MXNet 2.x).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.ftml(0.1)).step(np.array([2.0, -0.5]))
      >>> w.round(6)  # a sign step of size lr
      array([0.9, 1.1])

    Differences: only MXNet has FTML. Its 2.x version defaults to lr 0.0025 and adds
    the decay after the clip; MXNet's tutorial shows the four equations above without
    decay or clipping.
    """
    return rule(
        "ftml",
        gradient_stage(
            "ftml", rescale_grad, clip_gradient, weight_decay, decay_in_clip, default_in_clip=True
        ),
        scale_by_ftml(learning_rate, beta1, beta2, epsilon),
    )
