r"""SGD with the stochastic Polyak step size (SPS): the step that would reach the
optimal loss value if the loss were linear.

Symbols: :math:`g` the gradient, :math:`f(x)` the loss at the current parameters
(given to every update as ``value=``), :math:`f^*` ``f_min`` (a lower bound of the
loss: 0 for models that interpolate the data), :math:`c` ``scaling``,
:math:`\gamma_\max` ``max_learning_rate``, :math:`\epsilon` ``epsilon``; the norm runs
over every element of every tensor.

.. math::

    u = -c\,g,\qquad
    \gamma = \min\!\left(\frac{f(x) - f^*}{\lVert u\rVert^2 + \epsilon},\ \gamma_\max\right),
    \qquad w \leftarrow w + \gamma\, u

With ``variant="sps+"`` the gap :math:`f(x) - f^*` is clipped at 0 from below (no
step away from a loss already below :math:`f^*`). Where :math:`\lVert u\rVert^2 +
\epsilon` is below the float64 machine epsilon the step is 0. For :math:`c = 1` and
:math:`\epsilon = 0` this is Polyak's step :math:`(f - f^*) / \lVert g\rVert^2` capped
at :math:`\gamma_\max` (Loizou et al.'s SPS\ :sub:`max` with :math:`c = 1`); the scaling
:math:`c` cancels out of the uncapped step and scales the cap.

The loss value is an extra input of every update: ``Optimizer.step(grads,
value=loss)``, ``update(g, state, params, value=loss)`` (also under ``jax.jit``), or
on :class:`gradstep.torch.TransformOptimizer` the group entry ``value``. An update
without it raises.

Every engine runs it as a global reduction stage
(:mod:`gradstep._core.global_reduction`): the squares of the updates, in the
parameters' float, summed over every tensor in float64; the step size from that sum
and the loss (:func:`polyak_step`, the same function everywhere); the updates times
it. The fused engines (numba, Triton) make the sum a reduction pass before the main
pass, the loss reaching the kernel as the step size, a scalar.

References:
  Polyak (1987): Introduction to Optimization. Optimization Software.
  Loizou, Vaswani, Laradji & Lacoste-Julien (2021): Stochastic Polyak Step-size for
  SGD: An Adaptive Learning Rate for Fast Convergence. AISTATS, arXiv:2002.10542.
  Berrada, Zisserman & Kumar (2020): Training Neural Networks for and by
  Interpolation. ICML, arXiv:1906.05661.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._core.global_reduction import GlobalReduction
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import Interval, OneOf, finite, hyperparams, nonnegative
from .._core.xmath import maximum, minimum, where

VARIANTS = ("sps", "sps+")
_TINY = float(np.finfo(np.float64).eps)


# -- element math: the updates times the step size, which the sums give --------------


def _squares(g):
    # a tuple of one sum: the generated kernels unpack the terms
    return (g * g,)


def _scaled(g, step):
    return step * g


def _no_scalars(h: dict, count: Any) -> dict:
    return {}


def polyak_step(sums, h, scalars, *, f_min, max_learning_rate, epsilon, plus):
    r"""The step size :math:`\gamma` from the sum of squares of the updates and the
    step's loss ``h["value"]`` (see the module docstring): the ``combine`` of
    :func:`scale_by_polyak`'s stage, which every engine calls (no carried state)."""
    value = h["value"]
    if value is None:
        raise ValueError(
            "scale_by_polyak: update() needs value= (the loss at the current parameters); "
            "e.g. opt.step(grads, value=loss)"
        )
    (square,) = sums
    denominator = square + epsilon
    tiny = denominator <= _TINY
    # a safe denominator where the step is 0 anyway (no division by zero); the loss
    # taken in the sum's float (a float32 loss widened before f* is subtracted; its
    # stand-in where the denominator is tiny is never used)
    safe = where(tiny, 1.0, denominator)
    gap = where(tiny, square, value) - f_min
    if plus:
        gap = maximum(gap, 0.0)
    step = minimum(gap / safe, max_learning_rate)
    return {}, {"step": where(tiny, 0.0, step)}


#: the loss given at each step as ``value=``: a finite real number (a 0-d array too)
VALUE = finite()

_POLYAK = dict(
    f_min=Interval(),
    max_learning_rate=nonnegative(),
    epsilon=nonnegative(),
    variant=OneOf(VARIANTS),
)


@hyperparams(**_POLYAK)
def scale_by_polyak(
    f_min: float = 0.0,
    max_learning_rate: float = 1.0,
    epsilon: float = 0.0,
    variant: str = "sps",
) -> GlobalReduction:
    r"""Multiply the updates :math:`u` by :math:`\min((f - f^*) / (\lVert u\rVert^2 +
    \epsilon), \gamma_\max)` (see the module docstring; the step's ``value=`` is
    :math:`f`).

    A global reduction stage: the squares of the updates summed over every tensor
    (in float64), :func:`polyak_step` of the sum, then each update times the step. The
    fused engines run the sum as a reduction pass. The loss value is a
    hyperparameter given at each step by name, so the torch front hands it a
    closure's loss.

    Args:
      f_min: :math:`f^*`, any real number. Default 0.
      max_learning_rate: :math:`\gamma_\max` >= 0. Default 1.
      epsilon: :math:`\epsilon` >= 0. Default 0.
      variant: ``"sps"`` (default) or ``"sps+"`` (the gap clipped at 0).
    """
    combine = functools.partial(
        polyak_step,
        f_min=f_min,
        max_learning_rate=max_learning_rate,
        epsilon=epsilon,
        plus=variant == "sps+",
    )
    stage = GlobalReduction(
        "scale_by_polyak",
        _scaled,
        terms=_squares,
        combine=combine,
        reduced_scalars=("step",),
        carried={},
        # the loss value is given per step by name
        hyperparams={"value": None},
        prepare=_no_scalars,
    )
    # checked where it is given (Optimizer.step, the torch front's closure loss): a
    # NaN or infinite loss would make every parameter NaN or take the capped step
    stage.declared_ranges = {"value": VALUE}
    return stage


@hyperparams(scaling=nonnegative(schedulable=True), **_POLYAK)
def polyak_sgd(
    max_learning_rate: float = 1.0,
    scaling: Any = 1.0,
    f_min: float = 0.0,
    epsilon: float = 0.0,
    variant: str = "sps",
) -> Chain:
    r"""SGD stepped by the Polyak step size (see the module docstring for the math).

    Each update needs the loss at the current parameters: ``step(grads, value=loss)``.

    Args:
      max_learning_rate: :math:`\gamma_\max` >= 0, the cap on the step. Default 1.
      scaling: :math:`c` >= 0, or a schedule: the gradient's scale before the Polyak
        step (it scales the cap; a step overrides it by the name ``learning_rate``).
        Default 1.
      f_min: :math:`f^*`, a lower bound of the loss (any real number). Default 0.
      epsilon: :math:`\epsilon` >= 0, added to the squared norm. Default 0.
      variant: ``"sps"`` (default) or ``"sps+"`` (the gap clipped at 0).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 2.0])  # loss |w|^2 / 2 = 2.5, gradient w, f* = 0
      >>> gradstep.Optimizer(w, gradstep.polyak_sgd()).step(w.copy(), value=2.5); w
      array([0.5, 1. ])

    Differences: optax's ``polyak_sgd`` computes the same (its ``eps`` is
    ``epsilon``); it sums the squared norm in the parameters' dtype, here the squares
    in that dtype summed in float64 where the library has it. Loizou et al.'s
    SPS\ :sub:`max` also has a constant :math:`c` dividing the gap (here :math:`c = 1`).
    """
    return rule(
        "polyak_sgd",
        scale_by_learning_rate(scaling),
        scale_by_polyak(f_min, max_learning_rate, epsilon, variant),
    )
