r"""Fromage: a per-tensor step of relative size :math:`\eta` in the gradient's
direction, followed by a shrink that keeps the parameter norm from growing.

Symbols: :math:`w` a parameter tensor, :math:`g` its gradient, :math:`\eta`
``learning_rate``, :math:`\nu` ``min_norm``; :math:`\|x\|_\nu = \max(\|x\|_2, \nu)`
the Frobenius norm of a whole tensor floored at :math:`\nu`.

.. math::

    \rho = \frac{\|w\|_\nu}{\|g\|_\nu},\qquad
    w \leftarrow \frac{w - \eta\,\rho\, g}{\sqrt{1+\eta^2}}

with :math:`\rho = 1` where either norm is 0 (only possible with :math:`\nu = 0`).
The step moves each tensor by :math:`\eta` times its own norm (a step measured in
the "deep relative trust" distance of the paper); dividing by
:math:`\sqrt{1+\eta^2}` undoes the norm growth a step orthogonal to :math:`w`
would cause.

It is a chain of the per-tensor trust ratio (a reduction over each tensor's
gradient and parameter norms, :class:`gradstep.rules.PerTensorReduction`) and one
elementwise stage :math:`u \leftarrow -\eta\,m\, u + (m - 1)\,w`,
:math:`m = 1/\sqrt{1+\eta^2}`; it runs on the eager engines of every front
(NumPy, torch on the tensors' device, JAX under ``jax.jit``).

References:
  Bernstein, Vahdat, Yue & Liu (2020): On the distance between two neural networks
  and the stability of learning. NeurIPS, arXiv:2002.03432.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise
from .._core.per_tensor import PerTensorReduction
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import hyperparams, nonnegative
from .._core.xmath import maximum, sqrt, where


def _update_and_param(g, w):
    return g, w


def _scaled(g, w, factor):
    return g * factor


def _ratio(sums: tuple[float, float], flags: dict, h: dict, *, min_norm) -> dict:
    # element operations, not branches: the JAX engine traces the norms
    g_norm = maximum(sqrt(sums[0]), min_norm)
    w_norm = maximum(sqrt(sums[1]), min_norm)
    zero = (w_norm == 0.0) | (g_norm == 0.0)
    return {"factor": where(zero, 1.0, w_norm / where(zero, 1.0, g_norm))}


def relative_step(min_norm: float) -> PerTensorReduction:
    r""":math:`u \leftarrow \rho\, u`, :math:`\rho = \|w\|_\nu / \|u\|_\nu` per tensor."""
    return PerTensorReduction(
        "fromage_ratio",
        _scaled,
        norms=_update_and_param,
        combine=functools.partial(_ratio, min_norm=min_norm),
        tensor_scalars=("factor",),
        uses_params=True,
    )


def _shrunk(g, w, factor, decay):
    return g * factor + decay * w


def _shrink_prepare(h: dict, count: int) -> dict:
    lr = h["learning_rate"]
    mult = 1.0 / (1.0 + lr * lr) ** 0.5  # ** 0.5: the JAX engine traces prepare
    return {"factor": -(lr * mult), "decay": mult - 1.0}


@hyperparams(learning_rate=nonnegative(schedulable=True), min_norm=nonnegative())
def fromage(learning_rate: Any = 0.01, min_norm: float = 1e-6) -> Chain:
    r"""Fromage (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule: the step relative to each
        tensor's norm. Default 0.01 (the paper's recommended value).
      min_norm: :math:`\nu` >= 0, the floor of both norms. Default 1e-6 (optax).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([3.0, 4.0])
      >>> gradstep.Optimizer(w, gradstep.fromage(0.1)).step(np.array([0.0, 2.0]))
      >>> w.round(6)  # (w - 0.1 * |w| g / |g|) / sqrt(1.01): a step of 0.5, shrunk
      array([2.985112, 3.48263 ])

    Differences: optax's ``fromage`` is the same chain (``scale_by_trust_ratio``
    with ``min_norm``, then the learning rate times :math:`m`, then decay by
    :math:`m - 1`) and requires the learning rate. The paper's reference code
    divides by the gradient norm without a floor; ``min_norm=0`` does that, with
    :math:`\rho = 1` for a zero gradient or parameter (the paper's code would divide
    by zero).
    """
    return rule(
        "fromage",
        relative_step(min_norm),
        Elementwise(
            "learning_rate",
            _shrunk,
            hyperparams={"learning_rate": learning_rate},
            prepare=_shrink_prepare,
            uses_params=True,
        ),
    )
