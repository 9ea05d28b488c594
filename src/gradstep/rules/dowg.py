r"""DoWG: SGD whose step size is the largest squared distance travelled from the start over
the root of the distance-weighted sum of squared gradient norms ("distance over
weighted gradients").

Symbols: :math:`g` gradient (with :math:`\lambda w` added when ``weight_decay`` is
given), :math:`w` parameter, :math:`w_0` slot ``p0`` (the initial parameter),
:math:`\bar r^2` the largest squared distance so far (carried state
``estim_sq_dist``, starting at ``init_estim_sq_dist`` or :math:`\epsilon`), :math:`v`
the weighted sum (``weighted_sq_norm_grads``), :math:`\eta` ``learning_rate``,
:math:`\epsilon` ``epsilon``. Norms run over every element of every tensor.

.. math::

    \bar r^2 \leftarrow \max\big(\bar r^2, \|w - w_0\|^2\big),\quad
    v \leftarrow v + \bar r^2 \|g\|^2,\quad
    w \leftarrow w - \eta\, \frac{\bar r^2}{\sqrt v + \epsilon}\, g

References:
  Khaled, Mishchenko & Jin (2023): DoWG Unleashed: An Efficient Universal
  Parameter-Free Gradient Descent Method. NeurIPS, arXiv:2305.16284.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Slot
from .._core.global_reduction import GlobalReduction
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import Interval, hyperparams, nonnegative
from .._core.xmath import maximum, sqrt
from .layerwise import NoneOr

_POSITIVE = Interval(0.0, lo_open=True)


def _distance_and_norm(g, w, p0):
    return (w - p0) * (w - p0), g * g


def _scaled(g, w, p0, factor):
    return factor * g, p0


def _combine(sums, h, scalars, *, eps):
    moved, squares = sums
    sq_dist = maximum(h["estim_sq_dist"], moved)
    weighted = sq_dist * squares + h["weighted_sq_norm_grads"]
    carried = {"estim_sq_dist": sq_dist, "weighted_sq_norm_grads": weighted}
    return carried, {"factor": sq_dist / (sqrt(weighted) + eps)}


@hyperparams(init_estim_sq_dist=NoneOr(_POSITIVE), epsilon=_POSITIVE)
def scale_by_dowg(
    init_estim_sq_dist: float | None = None, epsilon: float = 1e-4
) -> GlobalReduction:
    r""":math:`g \leftarrow \bar r^2 g / (\sqrt v + \epsilon)` (see :func:`dowg`)."""
    start = epsilon if init_estim_sq_dist is None else init_estim_sq_dist
    return GlobalReduction(
        "dowg",
        _scaled,
        terms=_distance_and_norm,
        combine=functools.partial(_combine, eps=epsilon),
        reduced_scalars=("factor",),
        carried={"estim_sq_dist": start, "weighted_sq_norm_grads": 0.0},
        slots=(Slot("p0", "params"),),
        uses_params=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    init_estim_sq_dist=NoneOr(_POSITIVE),
    epsilon=_POSITIVE,
    weight_decay=NoneOr(nonnegative()),
)
def dowg(
    learning_rate: Any = 1.0,
    init_estim_sq_dist: float | None = None,
    epsilon: float = 1e-4,
    weight_decay: float | None = None,
    *,
    mask: Any = None,
) -> Chain:
    r"""DoWG (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule: a multiplier of the DoWG
        step. Default 1.
      init_estim_sq_dist: ``None`` or > 0: the initial guess of :math:`\bar r^2`;
        ``None`` uses ``epsilon``. Default ``None``.
      epsilon: :math:`\epsilon` > 0, added to :math:`\sqrt v`. Default 1e-4.
      weight_decay: ``None`` or :math:`\lambda` >= 0, added to the gradient.
        Default ``None``.
      mask: a tree of booleans (or a function of the parameters returning one)
        selecting the tensors to decay; ``None``: all.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0])
      >>> opt = gradstep.Optimizer(w, gradstep.dowg())
      >>> for _ in range(3):
      ...     opt.step(w.copy())
      >>> float(opt.state["dowg"]["estim_sq_dist"]) > 1e-4
      True

    Differences: optax's ``contrib.dowg(learning_rate, init_estim_sq_dist, eps,
    weight_decay, mask)`` is this rule; optax sums the norms in the parameters'
    dtype, gradstep in float64.
    """
    if mask is not None and not weight_decay:
        raise ValueError(
            "dowg: invalid mask with weight_decay=None or 0; valid values: a mask only "
            "together with a weight_decay > 0"
        )
    return rule(
        "dowg",
        add_decayed_weights(weight_decay, mask) if weight_decay is not None else None,
        scale_by_dowg(init_estim_sq_dist, epsilon),
        scale_by_learning_rate(learning_rate),
    )
