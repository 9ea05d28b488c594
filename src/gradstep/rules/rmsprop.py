r"""RMSProp, plain and centered, with optional momentum.

Symbols: :math:`n` slot ``nu`` (mean square, initial value ``initial_scale``),
:math:`\bar g` slot ``mu`` (mean gradient, centered only), :math:`\rho` ``rho``,
:math:`\epsilon` ``epsilon``, :math:`\eta` ``learning_rate``, :math:`\mu`
``momentum``.

.. math::

    n \leftarrow \rho n + (1-\rho) g^2,\qquad
    \bar g \leftarrow \rho \bar g + (1-\rho) g \ \text{(centered)},\qquad
    s = n - \bar g^2 \ \text{(centered) or } n

    d = g / \sqrt{s + \epsilon}\ \ (\text{"inside"})\quad\text{or}\quad
    d = g / (\sqrt{s} + \epsilon)\ \ (\text{"outside"})

With ``bias_correction`` (optax's option) :math:`n` and :math:`\bar g` enter
:math:`s` divided by :math:`1 - \rho^t` (:math:`t` the 1-based step), as Adam's
moments: :math:`s = n/(1-\rho^t) - (\bar g/(1-\rho^t))^2`.

then :math:`w \leftarrow w - \eta d`, or with momentum the velocity of
:func:`gradstep.momentum` (``lr_in_buffer`` chooses the convention).

References:
  Tieleman & Hinton (2012): Lecture 6.5 - rmsprop. COURSERA: Neural Networks for
  Machine Learning.
  Graves (2013): Generating Sequences With Recurrent Neural Networks.
  arXiv:1308.0850 (the centered form).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import CLIP_WEIGHTS, GRADIENT_RANGES, gradient_stage
from .._core.gradients import clip_weights as clip_weights_stage
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, OneOf, hyperparams, nonnegative
from .._core.xmath import abs_square, complex_ready, debias, ema, ema_square, sqrt, where
from .sgd import apply_momentum

PLACEMENTS = ("inside", "outside")


@complex_ready
def _rms(g, nu, rho, c, eps_in, eps_out):
    nu = ema_square(nu, g, rho, c)
    return g / (sqrt(nu + eps_in) + eps_out), nu


@complex_ready
def _centered_rms(g, nu, mu, rho, c, eps_in, inf, eps_out):
    nu = ema_square(nu, g, rho, c)
    mu = ema(mu, g, rho, c)
    # mu * mu <= nu, so mu * mu overflows only where nu already has: keep nu's inf
    # there (torch's fused multiply-add gives inf) instead of inf - inf = NaN
    variance = where(nu < inf, nu - abs_square(mu), nu)
    return g / (sqrt(variance + eps_in) + eps_out), nu, mu


@complex_ready
def _debiased_rms(g, nu, rho, c, correction, eps_in, eps_out):
    nu = ema_square(nu, g, rho, c)
    return g / (sqrt(nu / correction + eps_in) + eps_out), nu


@complex_ready
def _debiased_centered_rms(g, nu, mu, rho, c, correction, eps_in, inf, eps_out):
    nu = ema_square(nu, g, rho, c)
    mu = ema(mu, g, rho, c)
    # divided, not multiplied by the reciprocal: n-hat - m-hat^2 cancels, and the
    # division rounds as optax's does
    nu_hat = nu / correction
    mu_hat = mu / correction
    variance = where(nu_hat < inf, nu_hat - abs_square(mu_hat), nu_hat)
    return g / (sqrt(variance + eps_in) + eps_out), nu, mu


def _rms_prepare(
    h: dict,
    count: int,
    *,
    eps_in,
    eps_out,
    centered: bool = False,
    bias_correction: bool = False,
) -> dict:
    # in the element function's order (engines pass the scalars in this order)
    out = {"rho": h["rho"], "c": 1.0 - h["rho"]}
    if bias_correction:
        out["correction"] = debias(h["rho"], count + 1)
    out["eps_in"] = eps_in
    if centered:
        out["inf"] = math.inf  # the centered element function's "finite" test
    out["eps_out"] = eps_out
    return out


@hyperparams(
    rho=Interval(0.0, 1.0, schedulable=True),
    epsilon=nonnegative(),
    centered=BOOL,
    epsilon_placement=OneOf(PLACEMENTS),
    initial_scale=nonnegative(),
    bias_correction=BOOL,
)
def scale_by_rms(
    rho: Any = 0.9,
    epsilon: float = 1e-6,
    *,
    centered: bool = False,
    epsilon_placement: str = "inside",
    initial_scale: float = 0.0,
    bias_correction: bool = False,
) -> Elementwise:
    """RMSProp's direction :math:`d` (no learning rate); see the module docstring.

    ``bias_correction`` divides the averages by :math:`1 - \rho^t` (optax's
    ``bias_correction=True``; a positive ``initial_scale`` is then corrected too, as
    optax does). Default False.
    """
    eps_in, eps_out = (epsilon, 0.0) if epsilon_placement == "inside" else (0.0, epsilon)

    prepare = functools.partial(
        _rms_prepare,
        eps_in=eps_in,
        eps_out=eps_out,
        centered=centered,
        bias_correction=bias_correction,
    )
    if bias_correction:
        element = _debiased_centered_rms if centered else _debiased_rms
    else:
        element = _centered_rms if centered else _rms

    slots = (Slot("nu", initial_scale, nonnegative=True),) + ((Slot("mu"),) if centered else ())
    return Elementwise(
        "scale_by_rms",
        element,
        slots=slots,
        hyperparams={"rho": rho},
        prepare=prepare,
        uses_count=bias_correction,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    rho=Interval(0.0, 1.0, schedulable=True),
    epsilon=nonnegative(),
    centered=BOOL,
    momentum=Interval(0.0, 1.0, schedulable=True),
    lr_in_buffer=BOOL,
    epsilon_placement=OneOf(PLACEMENTS),
    initial_scale=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    clear_nan=BOOL,
    clip_weights=CLIP_WEIGHTS,
    **GRADIENT_RANGES,
)
def rmsprop(
    learning_rate: Any = 1.0,
    rho: Any = 0.9,
    epsilon: float = 1e-6,
    *,
    centered: bool = False,
    momentum: Any = 0.0,
    lr_in_buffer: bool = True,
    epsilon_placement: str = "inside",
    initial_scale: float = 0.0,
    weight_decay: Any = 0.0,
    clear_nan: bool = False,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = True,
    clip_weights: float | None = None,
) -> Chain:
    r"""RMSProp (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 1.0 (Lasagne).
      rho: :math:`\rho` in [0, 1], or a schedule. Default 0.9.
      epsilon: :math:`\epsilon` >= 0. Default 1e-6 (Lasagne).
      centered: subtract the squared mean gradient (Graves). Default False.
      momentum: :math:`\mu` in [0, 1]; 0 means no velocity. Default 0.
      lr_in_buffer: with momentum, whether the velocity holds learning-rate-scaled
        steps (True: MXNet, Keras, optax) or directions (False: torch). Only
        meaningful with ``momentum > 0``.
      epsilon_placement: ``"inside"`` (default) or ``"outside"`` the root.
      initial_scale: initial value of :math:`n` (optax). Default 0.
      weight_decay: coupled L2 >= 0, or a schedule (torch, MXNet). Default 0.
      clear_nan: Dandelion's NaN handling.
      rescale_grad, clip_gradient: MXNet's gradient handling: the gradient is
        multiplied by ``rescale_grad`` (> 0, default 1) and clipped element-wise to
        ``[-clip_gradient, clip_gradient]`` (>= 0, default None: no clip).
      decay_in_clip: with both a clip and a decay, clip :math:`s g + \lambda w`
        (True, default: MXNet 1.x) or add :math:`\lambda w` after the clip (False:
        MXNet 2.x).
      clip_weights: > 0 or None: after the step each parameter element is clipped to
        ``[-clip_weights, clip_weights]`` (MXNet). Default None.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> gradstep.Optimizer(w, gradstep.rmsprop(0.01, rho=0.99)).step(np.array([3.0]))
      >>> w.round(6)  # first step: lr / sqrt(1 - rho)
      array([0.9])

    Differences: torch (``alpha`` = :math:`\rho`, default 0.99, lr 0.01, epsilon 1e-8)
    puts epsilon outside the root and the learning rate outside the velocity; MXNet
    1.x, Lasagne, Keras and optax put epsilon inside. MXNet 1.x ``RMSProp`` is
    ``rho=gamma1, epsilon_placement="inside"`` (its default lr 0.001, ``gamma1`` 0.9,
    epsilon 1e-8); centered it always has momentum ``gamma2`` with the learning rate
    in the buffer (``centered=True, momentum=gamma2``). MXNet 2.x puts epsilon
    outside the root when not centered.
    """
    if lr_in_buffer is False and not (callable(momentum) or momentum):
        raise ValueError(
            "rmsprop: invalid lr_in_buffer=False with momentum=0; valid values: "
            "lr_in_buffer only applies with momentum > 0"
        )
    direction = scale_by_rms(
        rho,
        epsilon,
        centered=centered,
        epsilon_placement=epsilon_placement,
        initial_scale=initial_scale,
    )
    lr = scale_by_learning_rate(learning_rate)
    uses_momentum = callable(momentum) or momentum > 0
    trace = apply_momentum(momentum) if uses_momentum else None
    stages = (direction, lr, trace) if lr_in_buffer else (direction, trace, lr)
    gradient = gradient_stage(
        "rmsprop", rescale_grad, clip_gradient, weight_decay, decay_in_clip, default_in_clip=True
    )
    weights = clip_weights_stage(clip_weights) if clip_weights is not None else None
    return rule("rmsprop", gradient, *stages, weights, clear_nan=clear_nan)
