r"""Adan: adaptive Nesterov momentum from moments of the gradient and of its change.

Symbols: :math:`g` gradient, :math:`g'` slot ``prev_grad`` (the previous
gradient), :math:`w` parameter, :math:`m` slot ``mu``, :math:`d` slot ``delta``
(the average gradient change), :math:`n` slot ``nu``, :math:`t` the 1-based step,
:math:`\eta` ``learning_rate``, :math:`\beta_1, \beta_2, \beta_3` ``beta1``,
``beta2``, ``beta3``, :math:`\epsilon` ``epsilon``, :math:`\epsilon_r`
``eps_root``, :math:`\lambda` ``weight_decay``, :math:`c` the correction weight
(see ``correction_weight``).

With :math:`\Delta = g - g'` (0 on the first step):

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
    d \leftarrow \beta_2 d + (1-\beta_2) \Delta,\quad
    n \leftarrow \beta_3 n + (1-\beta_3) (g + c\,\Delta)^2

    u = \frac{m/(1-\beta_1^t) + c\, d/(1-\beta_2^t)}
             {\sqrt{n/(1-\beta_3^t) + \epsilon_r} + \epsilon}

and the step, by ``weight_decay_mode``:

- ``"proximal"`` (the paper, pytorch-optimizer's default, the authors' package):
  :math:`w \leftarrow (w - \eta u) / (1 + \eta\lambda)`;
- ``"decoupled"`` (optax, pytorch-optimizer's ``weight_decouple=True``):
  :math:`w \leftarrow w - \eta (u + \lambda w)`.

``correction_weight``: ``"beta2"`` (:math:`c = \beta_2`: the paper's
:math:`1-\beta_2` in its notation, where :math:`\beta` weighs the new value; the
authors' package and pytorch-optimizer) or ``"one_minus_beta2"`` (:math:`c =
1-\beta_2`, optax 0.2.8).

``skip_first_step=True`` (adan-pytorch 0.1.0): the first step leaves
:math:`m, d, n` at zero and only stores :math:`g'` (so :math:`u = 0`), while
:math:`t` counts it; from the second step on the updates above apply.

References:
  Xie, Zhou, Li, Lin & Yan (2024): Adan: Adaptive Nesterov Momentum Algorithm for
  Faster Optimizing Deep Models. IEEE TPAMI, arXiv:2208.06677.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import ema, ema_square, sqrt

CORRECTION_WEIGHTS = ("beta2", "one_minus_beta2")
WEIGHT_DECAY_MODES = ("proximal", "decoupled")


def _adan(
    g, mu, delta, nu, prev_grad, seen, b1, c1, b2, c2, b3, c3, c, m_scale, d_scale, n_scale,
    eps_root, eps,
):  # fmt: skip
    change = (g - prev_grad) * seen  # no change on the first step
    mu = ema(mu, g, b1, c1)
    delta = ema(delta, change, b2, c2)
    nu = ema_square(nu, g + c * change, b3, c3)
    u = (mu * m_scale + delta * d_scale) / (sqrt(nu * n_scale + eps_root) + eps)
    return u, mu, delta, nu, g


def _adan_prepare(
    h: dict, count: int, *, correction_weight, eps_root, epsilon, skip_first_step
) -> dict:
    t = count + 1
    b1, b2, b3 = h["beta1"], h["beta2"], h["beta3"]
    c = b2 if correction_weight == "beta2" else 1.0 - b2
    # a skipped first step keeps the moments at zero (the gradient is only stored)
    keep = 0.0 if skip_first_step and count == 0 else 1.0
    return {
        "seen": 0.0 if count == 0 else 1.0,
        "b1": b1 if keep else 1.0,
        "c1": (1.0 - b1) * keep,
        "b2": b2 if keep else 1.0,
        "c2": (1.0 - b2) * keep,
        "b3": b3 if keep else 1.0,
        "c3": (1.0 - b3) * keep,
        "c": c,
        "m_scale": 1.0 / (1.0 - b1**t),
        "d_scale": c / (1.0 - b2**t),
        "n_scale": 1.0 / (1.0 - b3**t),
        "eps_root": eps_root,
        "eps": epsilon,
    }


_RANGES = dict(
    beta1=decay_rate(),
    beta2=decay_rate(),
    beta3=decay_rate(),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    correction_weight=OneOf(CORRECTION_WEIGHTS),
    skip_first_step=BOOL,
)


@hyperparams(**_RANGES)
def scale_by_adan(
    beta1: float = 0.98,
    beta2: float = 0.92,
    beta3: float = 0.99,
    epsilon: float = 1e-8,
    *,
    eps_root: float = 0.0,
    correction_weight: str = "beta2",
    skip_first_step: bool = False,
) -> Elementwise:
    """Adan's direction :math:`u` (no learning rate); see the module docstring."""
    if skip_first_step and epsilon == 0 and eps_root == 0:
        raise ValueError(
            "scale_by_adan: invalid skip_first_step=True with epsilon=0 and eps_root=0; "
            "valid values: skip_first_step=True with epsilon > 0 or eps_root > 0 (the "
            "skipped step divides zero moments by them)"
        )
    prepare = functools.partial(
        _adan_prepare,
        correction_weight=correction_weight,
        eps_root=eps_root,
        epsilon=epsilon,
        skip_first_step=skip_first_step,
    )
    return Elementwise(
        "scale_by_adan",
        _adan,
        slots=(Slot("mu"), Slot("delta"), Slot("nu", nonnegative=True), Slot("prev_grad")),
        hyperparams={"beta1": beta1, "beta2": beta2, "beta3": beta3},
        prepare=prepare,
        uses_count=True,
    )


def _shrunk(g, factor):
    return g * factor


def _proximal_factor(h: dict, count: int) -> dict:
    return {"factor": 1.0 / (1.0 + h["learning_rate"] * h["weight_decay"])}


def proximal_weight_decay(learning_rate: Any, weight_decay: Any) -> Elementwise:
    r"""The last stage of a proximal decay step: ``u <- u / (1 + lr * weight_decay)``.

    After ``add_decayed_weights(weight_decay)`` and ``scale_by_learning_rate``, the
    update :math:`-\eta(u + \lambda w)` becomes :math:`(w - \eta u)/(1+\eta\lambda) - w`.
    Its ``learning_rate`` follows a per-step value given to ``update`` as the
    learning-rate stage's does.
    """
    return Elementwise(
        "proximal_weight_decay",
        _shrunk,
        hyperparams={"learning_rate": learning_rate, "weight_decay": weight_decay},
        prepare=_proximal_factor,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    weight_decay_mode=OneOf(WEIGHT_DECAY_MODES),
    **_RANGES,
)
def adan(
    learning_rate: Any = 0.001,
    beta1: float = 0.98,
    beta2: float = 0.92,
    beta3: float = 0.99,
    epsilon: float = 1e-8,
    weight_decay: Any = 0.0,
    *,
    eps_root: float = 0.0,
    correction_weight: str = "beta2",
    weight_decay_mode: str = "proximal",
    skip_first_step: bool = False,
    mask: Any = None,
) -> Chain:
    r"""Adan (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1). Default 0.98.
      beta2: :math:`\beta_2` in [0, 1). Default 0.92.
      beta3: :math:`\beta_3` in [0, 1). Default 0.99.
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-8.
      eps_root: :math:`\epsilon_r` >= 0, inside the root. Default 0
        (pytorch-optimizer; optax's ``adan`` defaults to 1e-8).
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      correction_weight: ``"beta2"`` (default: the paper, pytorch-optimizer) or
        ``"one_minus_beta2"`` (optax).
      weight_decay_mode: ``"proximal"`` (default: the paper, pytorch-optimizer) or
        ``"decoupled"`` (optax).
      skip_first_step: True (adan-pytorch 0.1.0): the first step only stores the
        gradient as :math:`g'`; the moments stay zero, so :math:`u = 0` and only
        the decay acts, while :math:`t` still counts that step. Needs
        ``epsilon`` or ``eps_root`` > 0. Default False (the paper, the authors'
        package, pytorch-optimizer, optax).
      mask: a tree of booleans (or a function of the parameters returning one)
        selecting the leaves to decay (optax's ``mask``); ``None``: all. Needs
        ``weight_decay`` > 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.adan(0.1)).step(np.array([0.5, -2.0])); w
      array([0.9, 1.1])

    Differences: optax 0.2.8's ``adan(learning_rate, b1, b2, b3, eps, eps_root,
    weight_decay, mask)`` weighs the gradient change by :math:`1-\beta_2` where the
    paper and the PyTorch packages use :math:`\beta_2`
    (``correction_weight="one_minus_beta2"``), and decays the weights decoupled
    (``weight_decay_mode="decoupled"``); its ``eps_root`` defaults to 1e-8.
    pytorch-optimizer's ``Adan`` divides :math:`\sqrt{n}` by
    :math:`\sqrt{1-\beta_3^t}` instead of taking the root of :math:`\hat n` (the
    same up to rounding); its ``max_grad_norm`` (a global clip with its own
    epsilon), ``use_gc`` and ``adanorm`` are not built in (chain a clipping or
    :func:`gradstep.transforms.centralize` stage before the rule instead).
    adan-pytorch 0.1.0's ``Adan`` writes its ``betas`` as the weights of the new
    value (:math:`\beta_i` is ``1 - betas[i]``; its defaults are these), decays
    proximally and leaves the moments at zero on its first step
    (``skip_first_step=True``); its ``restart_cond`` is not offered.
    """
    has_decay = callable(weight_decay) or weight_decay != 0
    if mask is not None and not has_decay:
        raise ValueError(
            "adan: invalid mask with weight_decay=0; valid values: a mask only "
            "together with a weight_decay > 0"
        )
    proximal = has_decay and weight_decay_mode == "proximal"
    if proximal and mask is not None:
        raise ValueError(
            "adan: invalid mask with weight_decay_mode='proximal'; valid values: a mask "
            "only with weight_decay_mode='decoupled'"
        )
    return rule(
        "adan",
        scale_by_adan(
            beta1,
            beta2,
            beta3,
            epsilon,
            eps_root=eps_root,
            correction_weight=correction_weight,
            skip_first_step=skip_first_step,
        ),
        add_decayed_weights(weight_decay, mask) if has_decay else None,
        scale_by_learning_rate(learning_rate),
        proximal_weight_decay(learning_rate, weight_decay) if proximal else None,
    )
