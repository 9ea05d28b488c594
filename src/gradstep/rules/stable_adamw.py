r"""StableAdamW: AdamW whose step size is divided, per tensor, by the RMS of
:math:`g^2/v` (AdaFactor's update clipping applied to the learning rate).

Symbols: :math:`g` gradient, :math:`w` parameter tensor of :math:`n` elements,
:math:`m` slot ``mu``, :math:`v` slot ``nu``, :math:`t` the 1-based step,
:math:`\eta` ``learning_rate``, :math:`\beta_1` ``beta1``, :math:`\beta_2`
``beta2``, :math:`\epsilon` ``epsilon``, :math:`\lambda` ``weight_decay``.

The moments average with debiased decays :math:`\hat\beta_t = \beta(1-\beta^{t-1})
/ (1-\beta^t)` (so they need no bias correction afterwards: :math:`m = g` on the
first step):

.. math::

    m \leftarrow \hat\beta_{1,t} m + (1-\hat\beta_{1,t}) g,\quad
    v \leftarrow \hat\beta_{2,t} v + (1-\hat\beta_{2,t}) g^2

    r = \max\Big(1, \sqrt{\tfrac1n \textstyle\sum g^2 / \max(v, \epsilon^2)}\Big),
    \quad
    w \leftarrow w - \frac{\eta}{r}\left(\frac{m}{\sqrt v + \epsilon} + \lambda w\right)

The ratio :math:`r` of one tensor is a reduction over it (a per-tensor reduction
stage: the Triton engine fuses it, the NumPy front runs it eagerly).

References:
  Wortsman, Dettmers, Zettlemoyer, Morcos, Farhadi & Schmidt (2023): Stable and
  low-precision training for large-scale vision-language models. NeurIPS,
  arXiv:2304.13013.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Slot
from .._core.per_tensor import PerTensorReduction
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, decay_rate, hyperparams, nonnegative
from .._core.xmath import ema, ema_square, maximum, sqrt, where


def _stable_adamw(g, w, mu, nu, b1, c1, b2, c2, eps, eps2, one, decay, factor):
    mu = ema(mu, g, b1, c1)
    nu = ema_square(nu, g, b2, c2)
    return (mu / (sqrt(nu) + eps) + decay * w) * factor, mu, nu


def _rms_terms(g, w, mu, nu, b1, c1, b2, c2, eps, eps2, one, decay):
    # sum of squares of the first: sum g^2 / max(v, eps^2); of the second: n
    nu = ema_square(nu, g, b2, c2)
    return g / sqrt(maximum(nu, eps2)), where(g == g, one, one)


def _ratio(sums: tuple[float, float], flags: dict, h: dict) -> dict:
    ratio_sum, size = sums
    # element operations instead of branches: the JAX engine traces it
    rms = sqrt(ratio_sum / where(size == 0.0, 1.0, size))
    return {"factor": 1.0 / maximum(rms, 1.0)}


def debiased_decay(beta: Any, t: Any) -> Any:
    r"""The decay :math:`\beta(1-\beta^{t-1})/(1-\beta^t)` of an average that needs no
    bias correction (0 at ``t = 1``)."""
    return beta * (1.0 - beta ** (t - 1)) / (1.0 - beta**t)


def _prepare(h: dict, count: Any, *, epsilon, decoupled) -> dict:
    t = count + 1
    b1, b2 = debiased_decay(h["beta1"], t), debiased_decay(h["beta2"], t)
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "b2": b2,
        "c2": 1.0 - b2,
        "eps": epsilon,
        "eps2": epsilon * epsilon,
        "one": 1.0,
        "decay": h["weight_decay"] if decoupled else 0.0,
    }


_BETA = decay_rate()


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=_BETA,
    beta2=_BETA,
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
)
def stable_adamw(
    learning_rate: Any = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.99,
    epsilon: float = 1e-8,
    weight_decay: Any = 0.01,
    decoupled_weight_decay: bool = True,
) -> Chain:
    r"""StableAdamW (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.99 (the paper).
      epsilon: :math:`\epsilon` >= 0, outside the root; its square floors
        :math:`v` in the ratio. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.01.
      decoupled_weight_decay: decay next to the step, scaled by :math:`\eta/r`
        (True, default) or add :math:`\lambda w` to the gradient before the
        moments (False).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.stable_adamw(0.1, weight_decay=0.0)).step(
      ...     np.array([0.5, -2.0]))
      >>> w  # r = 1 on the first step (g^2 / v = 1)
      array([0.9, 1.1])

    Differences: pytorch-optimizer's ``StableAdamW`` is this rule (its Kahan
    summation for 16-bit parameters is the engine's business here: state
    precision). The paper's reference code is the same update.
    """
    decoupled = decoupled_weight_decay
    stage = PerTensorReduction(
        "scale_by_stable_adamw",
        _stable_adamw,
        norms=_rms_terms,
        combine=_ratio,
        tensor_scalars=("factor",),
        slots=(Slot("mu"), Slot("nu", nonnegative=True)),
        # a coupled decay is the earlier stage's hyperparameter, not this one's
        hyperparams={"beta1": beta1, "beta2": beta2}
        | ({"weight_decay": weight_decay} if decoupled else {}),
        prepare=functools.partial(_prepare, epsilon=epsilon, decoupled=decoupled),
        uses_params=True,
        uses_count=True,
    )
    coupled = add_decayed_weights(weight_decay) if weight_decay and not decoupled else None
    return rule("stable_adamw", coupled, stage, scale_by_learning_rate(learning_rate))
