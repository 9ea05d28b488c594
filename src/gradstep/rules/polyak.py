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

References:
  Polyak (1987): Introduction to Optimization. Optimization Software.
  Loizou, Vaswani, Laradji & Lacoste-Julien (2021): Stochastic Polyak Step-size for
  SGD: An Adaptive Learning Rate for Fast Convergence. AISTATS, arXiv:2002.10542.
  Berrada, Zisserman & Kumar (2020): Training Neural Networks for and by
  Interpolation. ICML, arXiv:1906.05661.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import namespace_of
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import Interval, OneOf, hyperparams, nonnegative

VARIANTS = ("sps", "sps+")
_TINY = float(np.finfo(np.float64).eps)


class ScaleByPolyak(Transform):
    """Multiply the updates by the Polyak step computed from ``value`` and their
    squared norm (see the module docstring)."""

    name = "scale_by_polyak"
    #: the torch front hands it a closure's loss as ``value`` (when the group gives none)
    takes_loss = True

    def __init__(self, f_min: float, max_learning_rate: float, epsilon: float, variant: str):
        self.f_min = f_min
        self.max_learning_rate = max_learning_rate
        self.epsilon = epsilon
        self.variant = variant

    def hyperparameters(self) -> dict[str, Any]:
        # the loss value is given per step by name; any number, so no declared range
        return {"value": None}

    def init(self, params: Any) -> dict:
        return {}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        value = ctx.get("value")
        if value is None:
            raise ValueError(
                f"{self.name}: update() needs value= (the loss at the current parameters); "
                "e.g. opt.step(grads, value=loss)"
            )
        leaves, td = _tree.flatten(grads)
        if not leaves:
            return grads, state
        ns = namespace_of(leaves[0])
        square = None
        for u in leaves:
            part = ns.square_sum(u)
            square = part if square is None else square + part
        gap = ns.astype(value, square) - self.f_min
        if self.variant == "sps+":
            gap = ns.maximum(gap, ns.astype(0.0, square))
        denominator = square + self.epsilon
        tiny = denominator <= _TINY
        # a safe denominator where the step is 0 anyway (no division by zero)
        safe = ns.where(tiny, ns.astype(1.0, square), denominator)
        step = ns.minimum(gap / safe, ns.astype(self.max_learning_rate, square))
        step = ns.where(tiny, ns.astype(0.0, square), step)
        out = [ns.wrap(u * ns.astype(step, u)) for u in leaves]
        return _tree.unflatten(td, out), state


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
) -> ScaleByPolyak:
    r"""Multiply the updates :math:`u` by :math:`\min((f - f^*) / (\lVert u\rVert^2 +
    \epsilon), \gamma_\max)` (see the module docstring; the step's ``value=`` is
    :math:`f`).

    Args:
      f_min: :math:`f^*`, any real number. Default 0.
      max_learning_rate: :math:`\gamma_\max` >= 0. Default 1.
      epsilon: :math:`\epsilon` >= 0. Default 0.
      variant: ``"sps"`` (default) or ``"sps+"`` (the gap clipped at 0).
    """
    return ScaleByPolyak(f_min, max_learning_rate, epsilon, variant)


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
    ``epsilon``); it sums the squared norm in the parameters' dtype, here in float64
    where the library has it. Loizou et al.'s SPS\ :sub:`max` also has a constant
    :math:`c` dividing the gap (here :math:`c = 1`).
    """
    return rule(
        "polyak_sgd",
        scale_by_learning_rate(scaling),
        scale_by_polyak(f_min, max_learning_rate, epsilon, variant),
    )
