r"""ADOPT: Adam whose step normalises the gradient by the second moment of the past.

Symbols: :math:`g_t` gradient (after any coupled decay) at the :math:`t`-th call
(1-based), :math:`w` parameter, :math:`m` slot ``mu``, :math:`v` slot ``nu``,
:math:`\eta` ``learning_rate``, :math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``,
:math:`\epsilon` ``epsilon``, :math:`p` ``clip_exponent``, :math:`\lambda`
``weight_decay``.

The first call only initialises the second moment, :math:`v \leftarrow g_1^2`, and
moves nothing. Every later call normalises the gradient by the second moment *before*
it sees that gradient, clips it, and only then takes it into :math:`v`:

.. math::

    n = \mathrm{clip}\big(g_t / \max(\sqrt{v}, \epsilon),\ -c_t,\ c_t\big),\quad
    m \leftarrow \beta_1 m + (1-\beta_1)\, n,\quad
    w \leftarrow w - \eta\, m,\quad
    v \leftarrow \beta_2 v + (1-\beta_2)\, g_t^2

with :math:`c_t = t^{p}` (``clip_step="call"``: the authors' code,
pytorch-optimizer and timm count the initialising call) or :math:`c_t = (t-1)^{p}`
(``"update"``: the paper's Algorithm 2 and optax count the updates of :math:`m`);
``clip_exponent=None`` does not clip. ``nesterov=True`` (optax) steps along
:math:`\beta_1 m + (1-\beta_1) n` with the new :math:`m`. No bias correction: the
first moment starts from the normalised, bounded :math:`n`.

References:
  Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki, Iwasawa &
  Matsuo (2024): ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal
  Rate. NeurIPS, arXiv:2411.02853.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import clip, ema, ema_square, maximum, sqrt, where
from .layerwise import NoneOr

CLIP_STEPS = ("call", "update")
_POSITIVE = Interval(0.0, lo_open=True)


def _adopt(g, mu, nu, b1, c1, b2, c2, eps, bound):
    normalized = clip(g / maximum(sqrt(nu), eps), -bound, bound)
    mu = ema(mu, normalized, b1, c1)
    return mu, mu, ema_square(nu, g, b2, c2)


def _adopt_nesterov(g, mu, nu, b1, c1, b2, c2, eps, bound):
    normalized = clip(g / maximum(sqrt(nu), eps), -bound, bound)
    mu = ema(mu, normalized, b1, c1)
    return ema(mu, normalized, b1, c1), mu, ema_square(nu, g, b2, c2)


def _adopt_prepare(h: dict, count: Any, *, epsilon, clip_exponent, clip_step) -> dict:
    # the first call (count 0) sets v = g^2 and keeps m: beta1 -> 1, beta2 -> 0, and a
    # bound of 0 so that g / eps (which may overflow) never reaches the moment
    first = count == 0
    b1, b2 = h["beta1"], h["beta2"]
    if clip_exponent is None:
        bound = where(first, 0.0, math.inf)
    else:
        steps = count + 1 if clip_step == "call" else count
        bound = where(first, 0.0, (steps + 0.0) ** clip_exponent)
    return {
        "b1": where(first, 1.0, b1),
        "c1": where(first, 0.0, 1.0 - b1),
        "b2": where(first, 0.0, b2),
        "c2": where(first, 1.0, 1.0 - b2),
        "eps": epsilon,
        "bound": bound,
    }


@hyperparams(
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(schedulable=True),
    epsilon=_POSITIVE,
    clip_exponent=NoneOr(_POSITIVE),
    clip_step=OneOf(CLIP_STEPS),
    nesterov=BOOL,
)
def scale_by_adopt(
    beta1: Any = 0.9,
    beta2: Any = 0.9999,
    epsilon: float = 1e-6,
    *,
    clip_exponent: float | None = 0.25,
    clip_step: str = "call",
    nesterov: bool = False,
) -> Elementwise:
    """ADOPT's direction :math:`m` (no learning rate); see the module docstring."""
    prepare = functools.partial(
        _adopt_prepare, epsilon=epsilon, clip_exponent=clip_exponent, clip_step=clip_step
    )
    return Elementwise(
        "scale_by_adopt",
        _adopt_nesterov if nesterov else _adopt,
        slots=(Slot("mu"), Slot("nu", nonnegative=True)),
        hyperparams={"beta1": beta1, "beta2": beta2},
        prepare=prepare,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(schedulable=True),
    epsilon=_POSITIVE,
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    clip_exponent=NoneOr(_POSITIVE),
    clip_step=OneOf(CLIP_STEPS),
    nesterov=BOOL,
)
def adopt(
    learning_rate: Any = 0.001,
    beta1: Any = 0.9,
    beta2: Any = 0.9999,
    epsilon: float = 1e-6,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    clip_exponent: float | None = 0.25,
    clip_step: str = "call",
    nesterov: bool = False,
) -> Chain:
    r"""ADOPT (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1), or a schedule. Default 0.9.
      beta2: :math:`\beta_2` in [0, 1), or a schedule. Default 0.9999.
      epsilon: :math:`\epsilon` > 0, a floor on :math:`\sqrt{v}`. Default 1e-6.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0. Coupled
        (:math:`g + \lambda w` enters both moments, also on the first call) unless
        ``decoupled_weight_decay``.
      decoupled_weight_decay: decay the weights directly,
        :math:`w \leftarrow w - \eta\lambda w`, on every call including the first
        (pytorch-optimizer's ``weight_decouple=True``). Default False.
      clip_exponent: :math:`p` > 0 of the bound :math:`c_t`, or ``None``: no
        clipping. Default 0.25.
      clip_step: ``"call"`` (default: :math:`c_t = t^p`) or ``"update"``
        (:math:`c_t = (t-1)^p`, optax).
      nesterov: optax's Nesterov form of the step. Default False.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.adopt(0.1))
      >>> opt.step(np.array([2.0, -4.0])); w  # the first call only sets v
      array([1., 1.])
      >>> opt.step(np.array([2.0, -4.0])); w
      array([0.99, 1.01])

    Differences: pytorch-optimizer's and timm's ``ADOPT`` are ``clip_step="call"``
    (pytorch-optimizer's default decay is coupled, as here; its ``fixed_decay``,
    a decay not scaled by the learning rate, is not offered). optax's
    ``contrib.adopt`` is ``clip_step="update"`` with ``nesterov`` as its option of
    that name. The references accept ``epsilon=0``, which makes every
    always-zero gradient coordinate NaN (0/0); gradstep requires
    :math:`\epsilon > 0`.
    """
    decay = add_decayed_weights(weight_decay) if weight_decay else None
    return rule(
        "adopt",
        None if decoupled_weight_decay else decay,
        scale_by_adopt(
            beta1,
            beta2,
            epsilon,
            clip_exponent=clip_exponent,
            clip_step=clip_step,
            nesterov=nesterov,
        ),  # fmt: skip
        decay if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
