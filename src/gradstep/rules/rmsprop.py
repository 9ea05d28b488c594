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

then :math:`w \leftarrow w - \eta d`, or with momentum the velocity of
:func:`gradstep.momentum` (``lr_in_buffer`` chooses the convention).

References:
  Tieleman & Hinton (2012): Lecture 6.5 - rmsprop. COURSERA: Neural Networks for
  Machine Learning.
  Graves (2013): Generating Sequences With Recurrent Neural Networks.
  arXiv:1308.0850 (the centered form).
"""

from __future__ import annotations

from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, OneOf, hyperparams, nonnegative
from .._core.xmath import sqrt
from .sgd import apply_momentum

PLACEMENTS = ("inside", "outside")


def _rms(g, nu, rho, c, eps_in, eps_out):
    nu = rho * nu + c * g * g
    return g / (sqrt(nu + eps_in) + eps_out), nu


def _centered_rms(g, nu, mu, rho, c, eps_in, eps_out):
    nu = rho * nu + c * g * g
    mu = rho * mu + c * g
    return g / (sqrt(nu - mu * mu + eps_in) + eps_out), nu, mu


@hyperparams(
    rho=Interval(0.0, 1.0, schedulable=True),
    epsilon=nonnegative(),
    centered=BOOL,
    epsilon_placement=OneOf(PLACEMENTS),
    initial_scale=nonnegative(),
)
def scale_by_rms(
    rho: Any = 0.9,
    epsilon: float = 1e-6,
    *,
    centered: bool = False,
    epsilon_placement: str = "inside",
    initial_scale: float = 0.0,
) -> Elementwise:
    """RMSProp's direction :math:`d` (no learning rate); see the module docstring."""
    eps_in, eps_out = (epsilon, 0.0) if epsilon_placement == "inside" else (0.0, epsilon)

    def prepare(h: dict, count: int) -> dict:
        return {"rho": h["rho"], "c": 1.0 - h["rho"], "eps_in": eps_in, "eps_out": eps_out}

    slots = (Slot("nu", initial_scale),) + ((Slot("mu"),) if centered else ())
    return Elementwise(
        "scale_by_rms",
        _centered_rms if centered else _rms,
        slots=slots,
        hyperparams={"rho": rho},
        prepare=prepare,
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
    weight_decay=nonnegative(),
    clear_nan=BOOL,
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
    weight_decay: float = 0.0,
    clear_nan: bool = False,
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
      weight_decay: coupled L2 >= 0 (torch). Default 0.
      clear_nan: Dandelion's NaN handling.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> gradstep.Optimizer(w, gradstep.rmsprop(0.01, rho=0.99)).step(np.array([3.0]))
      >>> w.round(6)  # first step: lr / sqrt(1 - rho)
      array([0.9])

    Differences: torch (``alpha`` = :math:`\rho`, default 0.99, lr 0.01, epsilon 1e-8)
    puts epsilon outside the root and the learning rate outside the velocity; MXNet
    1.x, Lasagne, Keras and optax put epsilon inside. MXNet's centered RMSProp always
    has momentum (``gamma2``).
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
    return rule(
        "rmsprop",
        add_decayed_weights(weight_decay) if weight_decay else None,
        *stages,
        clear_nan=clear_nan,
    )
