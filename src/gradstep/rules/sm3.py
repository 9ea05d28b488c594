r"""SM3: an AdaGrad-like second moment stored as one accumulator per axis of each
tensor (memory :math:`\sum_i n_i` instead of :math:`\prod_i n_i`), with momentum.

Symbols: :math:`g` gradient of a tensor of shape :math:`(n_1, \dots, n_k)`,
:math:`\mu^{(i)}` the accumulator of axis :math:`i` (a vector of length :math:`n_i`,
kept in slot ``accumulators``), :math:`\nu` its cover estimate, :math:`m` slot ``mu``
(momentum), :math:`\beta_1` ``momentum``, :math:`\beta_2` ``beta2``, :math:`\epsilon`
``epsilon``, :math:`\eta` ``learning_rate``.

For a tensor of rank >= 2 each element :math:`j = (j_1, \dots, j_k)` is covered by
the rows :math:`\{j_i\}` of the axes, and its second moment is bounded by the
smallest of their accumulators (SM3-II):

.. math::

    \nu_j = c\, g_j^2 + \beta_2 \min_i \mu^{(i)}_{j_i},\qquad
    \mu^{(i)}_r \leftarrow \max_{j:\ j_i = r} \nu_j

with :math:`c = 1 - \beta_2`, or :math:`c = 1` when :math:`\beta_2 = 1` (the
paper's AdaGrad-like sum, the default). A tensor of rank 0 or 1 keeps a full
accumulator, :math:`\nu = c\, g^2 + \beta_2 \nu` (AdaGrad). Then

.. math::

    u_j = g_j / \sqrt{\nu_j + \epsilon}\ \ (0 \text{ where } \nu_j = 0),\qquad
    m \leftarrow \beta_1 m + (1-\beta_1)\, u,\qquad w \leftarrow w - \eta\, m

The accumulator transform (:class:`ScaleBySm3`, axis reductions written against the
array namespace: NumPy, torch on the tensors' device, JAX under ``jax.jit``) is
followed by the elementwise momentum and learning-rate stages.

References:
  Anil, Gupta, Koren & Singer (2019): Memory-Efficient Adaptive Optimization.
  NeurIPS, arXiv:1901.11150.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Elementwise, Slot
from .._core.namespaces import namespace_of
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import ema


def _accumulator_size(shape: tuple[int, ...]) -> int:
    """Length of a tensor's flat accumulator: the sum of its axes (rank >= 2), its
    size (rank 1, 0 for an empty vector) or 1 (a scalar)."""
    return sum(shape) if len(shape) >= 2 else math.prod(shape)


def _expanded(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return tuple(n if i == axis else 1 for i, n in enumerate(shape))


class ScaleBySm3(Transform):
    r""":math:`u = g/\sqrt{\nu + \epsilon}` with SM3's cover accumulators (see the
    module docstring); per tensor, the accumulators of all axes are one flat vector
    in state ``accumulators`` (axis 0's first)."""

    per_parameter_state = ("accumulators",)  # lists indexed by parameter

    name = "scale_by_sm3"
    reads_shape = True  # a real view's trailing axis would change it

    def __init__(self, beta2: float, epsilon: float):
        self.beta2 = beta2
        self.epsilon = epsilon

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        accumulators = [
            namespace_of(p).zeros((_accumulator_size(tuple(np.shape(p))),), p) for p in leaves
        ]
        return {"accumulators": _tree.unflatten(td, accumulators)}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        acc_leaves = _tree.leaves_like(td, state["accumulators"])
        gain = 1.0 - self.beta2 if self.beta2 != 1.0 else 1.0
        out, new_acc = [], []
        for g, acc in zip(g_leaves, acc_leaves):
            ns = namespace_of(g)
            cast = ns.scalar_caster(g)
            shape = tuple(np.shape(g))
            if len(shape) >= 2:
                nu, acc = self._covered(ns, g, acc, shape, cast(gain))
            else:
                nu = cast(gain) * g * g + cast(self.beta2) * ns.reshape(acc, shape)
                acc = ns.reshape(nu, (_accumulator_size(shape),))
            positive = nu > 0
            root = ns.sqrt(ns.where(positive, nu, 1.0) + cast(self.epsilon))
            out.append(ns.wrap(ns.where(positive, g / root, 0.0)))
            new_acc.append(ns.wrap(acc))
        return _tree.unflatten(td, out), {"accumulators": _tree.unflatten(td, new_acc)}

    def _covered(self, ns, g, acc, shape, gain):
        """:math:`\\nu` of a tensor of rank >= 2 and its new flat accumulators."""
        starts = np.cumsum((0,) + shape)
        bound = None
        for i in range(len(shape)):
            row = ns.reshape(acc[int(starts[i]) : int(starts[i + 1])], _expanded(shape, i))
            bound = row if bound is None else ns.minimum(bound, row)
        nu = gain * g * g + ns.scalar_caster(g)(self.beta2) * bound
        rows = [
            ns.reshape(ns.amax(nu, axis=tuple(k for k in range(len(shape)) if k != i)), (n,))
            for i, n in enumerate(shape)
        ]
        return nu, ns.concatenate(rows)


def _momentum(g, mu, keep, gain):
    mu = ema(mu, g, keep, gain)
    return mu, mu


def _momentum_prepare(h: dict, count: int) -> dict:
    return {"keep": h["momentum"], "gain": 1.0 - h["momentum"]}


def sm3_momentum(momentum: Any = 0.9) -> Elementwise:
    r"""SM3's momentum stage: :math:`m \leftarrow \beta_1 m + (1-\beta_1) u`, output
    :math:`m` (slot ``mu``)."""
    return Elementwise(
        "momentum",
        _momentum,
        slots=(Slot("mu"),),
        hyperparams={"momentum": momentum},
        prepare=_momentum_prepare,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    momentum=decay_rate(schedulable=True),
    beta2=Interval(0.0, 1.0),
    epsilon=nonnegative(),
)
def sm3(
    learning_rate: Any = 0.1,
    momentum: Any = 0.9,
    beta2: float = 1.0,
    epsilon: float = 1e-8,
) -> Chain:
    r"""SM3 (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.1.
      momentum: :math:`\beta_1` in [0, 1), or a schedule. Default 0.9 (optax).
      beta2: :math:`\beta_2` in [0, 1]: 1 (default) sums squared gradients as the
        paper; below 1 an exponential average.
      epsilon: :math:`\epsilon` >= 0, inside the root. Default 1e-8 (optax).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros((2, 2))
      >>> opt = gradstep.Optimizer(w, gradstep.sm3(1.0, momentum=0.0, epsilon=0.0))
      >>> opt.step(np.array([[3.0, 0.0], [0.0, 4.0]])); w  # each element g/|g| at first
      array([[-1.,  0.],
             [ 0., -1.]])

    Differences: optax's ``sm3(learning_rate, momentum)`` is this rule with
    ``beta2=1`` and ``epsilon=1e-8`` (its ``scale_by_sm3`` exposes them as ``b2``
    and ``eps``), requires the learning rate, does not take schedules and fails on
    scalar parameters (gradstep treats them as a vector of one element).
    """
    return rule(
        "sm3",
        ScaleBySm3(beta2, epsilon),
        sm3_momentum(momentum),
        scale_by_learning_rate(learning_rate),
    )
