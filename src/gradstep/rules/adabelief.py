r"""AdaBelief: Adam whose second moment tracks the gradient's deviation from its mean.

Symbols: :math:`g` gradient (after any coupled decay), :math:`w` parameter,
:math:`m` slot ``mu``, :math:`s` slot ``nu``, :math:`t` the 1-based step,
:math:`\eta` ``learning_rate``, :math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``,
:math:`\epsilon` ``epsilon``, :math:`\epsilon_s` ``eps_root``, :math:`\lambda`
``weight_decay``.

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
    s \leftarrow \beta_2 s + (1-\beta_2) (g - m)^2 + \epsilon_s,\quad
    \hat m = m / (1-\beta_1^t),\quad \hat s = s / (1-\beta_2^t)

    w \leftarrow w - \eta\,\hat m / (\sqrt{\hat s} + \epsilon)

The "belief" :math:`(g - m)^2` uses the first moment *after* its update.
:math:`\epsilon_s` is added to the stored :math:`s` every step (the paper's
Algorithm 2, optax's ``eps_root``, pytorch-optimizer's ``eps``), so it accumulates
to about :math:`\epsilon_s/(1-\beta_2)`.

``nesterov=True`` (optax's option) uses
:math:`\hat m = \beta_1 m / (1-\beta_1^{t+1}) + (1-\beta_1) g / (1-\beta_1^t)`.

``rectify=True`` (the paper's and pytorch-optimizer's RAdam-style option) replaces
the step by RAdam's: with :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
:math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1-\beta_2^t)`, while
:math:`\rho_t < 5` the step is :math:`w \leftarrow w - \eta \hat m` (momentum SGD);
from then on it is :math:`w \leftarrow w - \eta\, r_t \hat m \sqrt{1-\beta_2^t} /
(\sqrt{s} + \epsilon)` with RAdam's :math:`r_t` (see :mod:`gradstep.rules.radam`).

References:
  Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan (2020): AdaBelief
  Optimizer: Adapting Stepsizes by the Belief in Observed Gradients. NeurIPS,
  arXiv:2010.07468.
  Liu, Jiang, He, Chen, Liu, Gao & Han (2020): On the Variance of the Adaptive
  Learning Rate and Beyond. ICLR, arXiv:1908.03265.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import ema, ema_square, sqrt, where
from .radam import rectification

#: RAdam's switch point, as pytorch-optimizer's ``n_sma_threshold`` (inclusive)
RECTIFY_THRESHOLD = 5.0


def _adabelief(
    g, mu, nu, b1, c1, b2, c2, eps_root, mu_scale, g_scale, adaptive, step_scale, v_scale, eps
):
    mu = ema(mu, g, b1, c1)
    nu = ema_square(nu, g - mu, b2, c2) + eps_root
    m_hat = mu * mu_scale + g * g_scale
    return where(adaptive, m_hat * step_scale / (sqrt(nu * v_scale) + eps), m_hat), mu, nu


def _adabelief_prepare(h: dict, count: int, *, eps_root, epsilon, nesterov, rectify) -> dict:
    t = count + 1
    b1, b2 = h["beta1"], h["beta2"]
    bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
    if nesterov:
        mu_scale, g_scale = b1 / (1.0 - b1 ** (t + 1)), (1.0 - b1) / bc1
    else:
        mu_scale, g_scale = 1.0 / bc1, 0.0
    if rectify:
        rho_t, r_t = rectification(b2, t)
        adaptive = rho_t >= RECTIFY_THRESHOLD
        # the rectified step divides by the uncorrected root (pytorch-optimizer)
        step_scale, v_scale = (r_t * math.sqrt(bc2) if adaptive else 0.0), 1.0
    else:
        adaptive, step_scale, v_scale = True, 1.0, 1.0 / bc2
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "b2": b2,
        "c2": 1.0 - b2,
        "eps_root": eps_root,
        "mu_scale": mu_scale,
        "g_scale": g_scale,
        "adaptive": bool(adaptive),
        "step_scale": step_scale,
        "v_scale": v_scale,
        "eps": epsilon,
    }


_BETA2 = Interval(0.0, 1.0, lo_open=True, hi_open=True)


@hyperparams(
    beta1=decay_rate(schedulable=True),
    beta2=_BETA2,
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    nesterov=BOOL,
    rectify=BOOL,
)
def scale_by_belief(
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
    rectify: bool = False,
) -> Elementwise:
    """AdaBelief's direction (no learning rate); see the module docstring."""
    prepare = functools.partial(
        _adabelief_prepare, eps_root=eps_root, epsilon=epsilon, nesterov=nesterov, rectify=rectify
    )
    return Elementwise(
        "scale_by_belief",
        _adabelief,
        slots=(Slot("mu"), Slot("nu", nonnegative=True)),
        hyperparams={"beta1": beta1, "beta2": beta2},
        prepare=prepare,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(schedulable=True),
    beta2=_BETA2,
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    nesterov=BOOL,
    rectify=BOOL,
)
def adabelief(
    learning_rate: Any = 0.001,
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = True,
    nesterov: bool = False,
    rectify: bool = False,
) -> Chain:
    r"""AdaBelief (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1), or a schedule. Default 0.9.
      beta2: :math:`\beta_2` in (0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-16 (the paper,
        optax, pytorch-optimizer).
      eps_root: :math:`\epsilon_s` >= 0, added to the stored :math:`s` every step.
        Default 1e-16 (optax). pytorch-optimizer adds its ``eps`` there: set
        ``eps_root`` equal to ``epsilon``.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      decoupled_weight_decay: True (default; pytorch-optimizer's
        ``weight_decouple``): :math:`w \leftarrow w - \eta(\text{step} + \lambda w)`;
        False: coupled, :math:`g + \lambda w` enters the moments.
      nesterov: optax's Nesterov form of :math:`\hat m`. Default False.
      rectify: RAdam's rectified step (pytorch-optimizer's ``rectify`` with
        ``degenerated_to_sgd=True``). Default False.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.adabelief(0.1)).step(np.array([0.5, -2.0])); w.round(6)
      array([0.888889, 1.111111])

    Differences: optax's ``adabelief(learning_rate, b1, b2, eps, eps_root,
    nesterov)`` is this rule without decay. pytorch-optimizer's ``AdaBelief`` adds
    its single ``eps`` both to :math:`s` and outside the root
    (``eps_root=epsilon``) and divides :math:`\sqrt{s}` by :math:`\sqrt{1-\beta_2^t}`
    instead of taking the root of :math:`\hat s` (the same up to rounding); its
    ``fixed_decay``, ``ams_bound``, ``adanorm`` and ``degenerated_to_sgd=False``
    are not offered. The authors' ``adabelief-pytorch`` 0.2.1 adds its ``eps`` as
    pytorch-optimizer does and defaults to ``rectify=True`` and ``eps=1e-16``
    (``adabelief(rectify=True)``); its ``fixed_decay`` (a shrink by
    :math:`1-\lambda` whatever the learning rate: at a constant :math:`\eta`,
    decoupled decay with :math:`\lambda/\eta`), ``amsgrad`` (read by its
    unrectified step only) and ``degenerated_to_sgd=False`` are not offered.
    """
    decay = add_decayed_weights(weight_decay) if weight_decay else None
    return rule(
        "adabelief",
        None if decoupled_weight_decay else decay,
        scale_by_belief(beta1, beta2, epsilon, eps_root, nesterov=nesterov, rectify=rectify),
        decay if decoupled_weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
