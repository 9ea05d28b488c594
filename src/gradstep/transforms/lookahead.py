r"""Lookahead: k steps forward with a fast optimizer, then one step back.

Symbols: :math:`\theta` the parameter (the fast weights), :math:`\phi` slot ``slow``
(the slow weights), :math:`u` the update of the wrapped optimizer, :math:`k`
``sync_period``, :math:`\alpha` ``slow_step_size``, :math:`t` the 0-based step.

Every step the wrapped (fast) optimizer moves :math:`\theta`. On every
:math:`k`-th step (:math:`t \bmod k = k-1`) the slow weights move towards the
result and the fast weights restart from them:

.. math::

    \delta = \theta + u - \phi,\quad
    \phi \leftarrow \phi + \alpha\,\delta,\quad
    \theta \leftarrow \phi \quad(\text{the update becomes } u - (1-\alpha)\,\delta)

On other steps :math:`\theta \leftarrow \theta + u` and :math:`\phi` is unchanged.
:math:`\phi` is taken from the parameter on the first step. The lookahead stage is
elementwise, so the fused engine runs it in the same pass as the optimizer.

References:
  Zhang, Lucas, Hinton & Ba (2019): Lookahead Optimizer: k steps forward, 1 step
  back. NeurIPS, arXiv:1907.08610.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Elementwise, Slot
from .._core.transform import Chain, Transform
from .._core.validate import Interval, hyperparams


def _lookahead(g, w, slow, first, pull, push):
    slow = slow + first * w  # the slow weights start at the parameter
    diff = w + g - slow
    return g - pull * diff, slow + push * diff


class Lookahead(Chain):
    """``inner`` (the fast optimizer) followed by the lookahead stage."""

    tensorwise = True  # a chain: what couples tensors, if anything, is in its stages

    def __init__(self, inner: Transform, stage: Elementwise, sync_period: int, slow_step_size):
        super().__init__((inner, stage), name="lookahead")
        self.sync_period = sync_period
        self.slow_step_size = slow_step_size

    @property
    def inner(self) -> Transform:
        return self.stages[0]

    def slow_params(self, state: dict, params: Any) -> Any:
        """The slow weights :math:`\\phi` (before the first step: the parameters)."""
        node = state[self.stage_names[1]]
        if int(node["count"]) == 0:
            return _tree.tree_map(np.copy, params)
        return _tree.tree_map(np.copy, node["slow"])


def _lookahead_prepare(h: dict, count: int, *, slow_step_size, sync_period) -> dict:
    sync = 1.0 if count % sync_period == sync_period - 1 else 0.0
    return {
        "first": 1.0 if count == 0 else 0.0,
        "pull": sync * (1 - slow_step_size),
        "push": slow_step_size * sync,
    }


@hyperparams(sync_period=Interval(1, integer=True), slow_step_size=Interval(0.0, 1.0))
def lookahead(inner: Transform, sync_period: int = 6, slow_step_size: float = 0.5) -> Lookahead:
    r"""Wrap ``inner`` in Lookahead (see the module docstring for the math).

    Args:
      inner: the fast optimizer.
      sync_period: :math:`k`, an integer >= 1: fast steps per synchronisation.
        Default 6 (the paper's experiments use 5 or 10; optax has no default).
      slow_step_size: :math:`\alpha` in [0, 1]. Default 0.5 (the paper).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([0.0])
      >>> opt = gradstep.Optimizer(w, gradstep.transforms.lookahead(gradstep.sgd(1.0), 2, 0.5))
      >>> opt.step(np.array([-1.0])); w
      array([1.])
      >>> opt.step(np.array([-1.0])); w  # synchronised: halfway from 0 to 2
      array([1.])

    Differences: optax ``lookahead`` keeps the slow weights in the parameter tree
    (``LookaheadParams``) and offers ``reset_state`` (re-initialise the fast
    optimizer at each synchronisation), which gradstep does not; the arithmetic is
    optax's. The paper's PyTorch code interpolates the slow weights the same way.
    """
    if not isinstance(inner, Transform):
        raise TypeError(f"lookahead: expected a transform, got {type(inner).__name__}")

    prepare = functools.partial(
        _lookahead_prepare, slow_step_size=slow_step_size, sync_period=sync_period
    )

    stage = Elementwise(
        "lookahead",
        _lookahead,
        slots=(Slot("slow"),),
        prepare=prepare,
        uses_params=True,
        uses_count=True,
    )
    return Lookahead(inner, stage, sync_period, slow_step_size)
