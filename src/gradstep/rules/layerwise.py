r"""Layer-wise (per-tensor) scaling: the reduction stage and the trust ratios.

Layer-wise rules scale each parameter tensor's update by a number computed from
norms of that tensor: LARS and LAMB's *trust ratio* :math:`\|w\| / \|u\|`, LBSGD's
``'lars'`` warm-up. Such a stage is a **reduction phase** that hands per-tensor
scalars to an **elementwise phase**:

1. a ``norms`` function (element math, the same rules as an element function)
   gives, per element, the values whose sums of squares the stage needs, e.g.
   :math:`(g, w)`; each tensor's sums are accumulated in float64;
2. a host-side ``combine`` turns one tensor's sums (and its mask flags) into that
   tensor's scalars, e.g. the trust ratio;
3. the element function runs with the stage's ordinary scalars *and* the tensor's
   scalars as trailing arguments.

:class:`PerTensorReduction` runs the three phases on the eager engine. The fused
engine compiles only :class:`~gradstep._core.elementwise.NormScaled` reductions
(the sum of squares of the incoming update alone), so a chain with a
:class:`PerTensorReduction` runs eager (``docs/layerwise.md`` states what the fused
engine would need).

Symbols: :math:`g` incoming update (the gradient, or what earlier stages made of
it), :math:`w` parameter, :math:`\rho` trust ratio, :math:`\eta_c`
``trust_coefficient``, :math:`\epsilon` ``epsilon``, :math:`\lambda`
``weight_decay``, :math:`b_{lo}, b_{hi}` ``lower_bound``, ``upper_bound``.

Trust ratio (:func:`scale_by_trust_ratio`, optax's ``scale_by_trust_ratio``, LAMB):

.. math::

    \rho = \eta_c\, \mathrm{clip}(\|w\|, b_{lo}, b_{hi}) / (\|g\| + \epsilon),\quad
    g \leftarrow \rho\, g

with :math:`\rho = 1` when either norm (after the clip) is 0.

LARS with decay inside the ratio (:func:`scale_by_lars`, objax and MXNet):

.. math::

    \rho = \eta_c \|w\| / (\|g\| + \lambda \|w\| + \epsilon),\quad
    g \leftarrow \rho\, (g + \lambda w)

where a zero norm gives :math:`\rho = 1` (``zero_norm="one"``, MXNet) or
:math:`\rho = \max(1, \eta_c \|w\| / (\|g\| + \lambda\|w\| + \epsilon))`
(``zero_norm="max"``, objax's ``max(‖w‖ = 0 or ‖g‖ = 0, r)``).

References:
  You, Gitman & Ginsburg (2017): Large Batch Training of Convolutional Networks.
  arXiv:1708.03888.
  You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh (2020):
  Large Batch Optimization for Deep Learning: Training BERT in 76 minutes. ICLR,
  arXiv:1904.00962.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from .._core.per_tensor import PerTensorReduction  # the stage kind (re-exported here)
from .._core.validate import Interval, NoneOr, OneOf, hyperparams, nonnegative
from .._core.xmath import clip, complex_ready, maximum, minimum, sqrt, where

ZERO_NORM = ("one", "max")


# -- the trust ratio of optax and LAMB ------------------------------------------------


def _update_and_param(g, w):
    return g, w


@complex_ready
def _scaled(g, w, factor):
    return g * factor


def _trust_ratio_combined(
    sums: tuple[float, float],
    flags: dict,
    h: dict,
    *,
    epsilon,
    lower,
    trust_coefficient,
    upper,
    min_norm=0.0,
) -> dict:
    if not flags["trust_ratio"]:
        return {"factor": 1.0}
    u_norm, w_norm = sqrt(sums[0]), sqrt(sums[1])
    if min_norm:
        u_norm, w_norm = maximum(u_norm, min_norm), maximum(w_norm, min_norm)
    if lower is not None:
        w_norm = maximum(w_norm, lower)
    if upper is not None:
        w_norm = minimum(w_norm, upper)
    zero = (w_norm == 0.0) | (u_norm == 0.0)
    denominator = where(zero, 1.0, u_norm + epsilon)
    return {"factor": where(zero, 1.0, trust_coefficient * w_norm / denominator)}


def _trust_ratio_combine(
    trust_coefficient: float,
    epsilon: float,
    lower: float | None,
    upper: float | None,
    min_norm: float = 0.0,
) -> Callable:
    # element operations instead of branches on the norms: the JAX engine traces it
    combine = functools.partial(
        _trust_ratio_combined,
        epsilon=epsilon,
        lower=lower,
        trust_coefficient=trust_coefficient,
        upper=upper,
        min_norm=min_norm,
    )

    return combine


_BOUND = NoneOr(Interval(0.0, lo_open=True))


@hyperparams(
    trust_coefficient=Interval(0.0, lo_open=True),
    epsilon=nonnegative(),
    lower_bound=_BOUND,
    upper_bound=_BOUND,
    min_norm=nonnegative(),
)
def scale_by_trust_ratio(
    trust_coefficient: float = 1.0,
    epsilon: float = 0.0,
    *,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
    min_norm: float = 0.0,
    mask: Any = None,
) -> PerTensorReduction:
    r"""Scale each tensor's update by :math:`\rho = \eta_c \|w\| / (\|g\| + \epsilon)`.

    Both norms are first floored at ``min_norm`` (optax's), then :math:`\|w\|` is
    clipped to ``[lower_bound, upper_bound]`` (MXNet's LAMB); :math:`\rho = 1` when
    either norm is then 0. Tensors where ``mask`` is false pass through unchanged.

    Args:
      trust_coefficient: :math:`\eta_c` > 0. Default 1 (optax, LAMB).
      epsilon: :math:`\epsilon` >= 0, added to the update norm. Default 0.
      lower_bound: ``None`` or > 0: a floor on :math:`\|w\|`. Default ``None``.
      upper_bound: ``None`` or > 0: a ceiling on :math:`\|w\|`. Default ``None``.
      min_norm: >= 0, a floor on both norms (optax's). Default 0.
      mask: a tree of booleans (or a function of the parameters returning one)
        selecting the tensors to scale; ``None`` scales all.

    Example:
      >>> import numpy as np, gradstep
      >>> t = gradstep.rules.scale_by_trust_ratio()
      >>> u, _ = t.update([np.array([0.0, 0.5])], t.init([np.zeros(2)]), [np.array([3.0, 4.0])])
      >>> u[0]
      array([0., 5.])

    Differences: optax's ``scale_by_trust_ratio(min_norm, trust_coefficient, eps)``
    is this stage with ``min_norm``; MXNet's bounds on :math:`\|w\|` are
    ``lower_bound`` and ``upper_bound``.
    """
    if lower_bound is not None and upper_bound is not None and lower_bound > upper_bound:
        raise ValueError(
            f"scale_by_trust_ratio: invalid lower_bound={lower_bound!r} above "
            f"upper_bound={upper_bound!r}; valid values: lower_bound <= upper_bound"
        )
    return PerTensorReduction(
        "trust_ratio",
        _scaled,
        norms=_update_and_param,
        combine=_trust_ratio_combine(
            trust_coefficient, epsilon, lower_bound, upper_bound, min_norm
        ),
        tensor_scalars=("factor",),
        flags={"trust_ratio": mask},
        uses_params=True,
    )


# -- LARS with the decay inside the ratio (objax, MXNet) ----------------------------


def _lars_scaled(g, w, factor, decay):
    return factor * (g + decay * w)


def _lars_clipped(g, w, lo, hi, factor, decay):
    return factor * (clip(g, lo, hi) + decay * w)


def _lars_combined(
    sums: tuple[float, float], flags: dict, h: dict, *, epsilon, trust_coefficient, zero_norm
) -> dict:
    decay = h["weight_decay"] if flags["weight_decay"] else 0.0
    if not flags["trust_ratio"]:
        return {"factor": 1.0, "decay": decay}
    g_norm, w_norm = sqrt(sums[0]), sqrt(sums[1])
    zero = (w_norm == 0.0) | (g_norm == 0.0)
    numerator = trust_coefficient * w_norm
    denominator = g_norm + decay * w_norm + epsilon
    # objax with epsilon 0 and both norms 0 divides by 0: NaN for 0/0, else inf
    by_zero = where(numerator == 0.0, math.nan, math.inf)
    divided = numerator / where(denominator == 0.0, 1.0, denominator)
    ratio = where(denominator == 0.0, by_zero, divided)
    if zero_norm == "one":
        ratio = where(zero, 1.0, ratio)
    else:  # objax's max(1, ratio) at a zero norm, which propagates a NaN ratio
        ratio = where(zero, maximum(1.0, ratio), ratio)
    return {"factor": ratio, "decay": decay}


def _lars_combine(trust_coefficient: float, epsilon: float, zero_norm: str) -> Callable:
    # element operations instead of branches on the norms: the JAX engine traces it
    combine = functools.partial(
        _lars_combined, epsilon=epsilon, trust_coefficient=trust_coefficient, zero_norm=zero_norm
    )

    return combine


def _bounds(bounds: dict, h: dict, count: int) -> dict:
    return dict(bounds)


@hyperparams(
    trust_coefficient=Interval(0.0, lo_open=True),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    zero_norm=OneOf(ZERO_NORM),
    clip_gradient=NoneOr(nonnegative()),
)
def scale_by_lars(
    trust_coefficient: float = 1e-3,
    epsilon: float = 1e-5,
    weight_decay: Any = 1e-4,
    *,
    zero_norm: str = "max",
    trust_ratio_mask: Any = None,
    weight_decay_mask: Any = None,
    clip_gradient: float | None = None,
) -> PerTensorReduction:
    r"""LARS's layer-wise scaling with the decay inside:
    :math:`g \leftarrow \rho\,(g + \lambda w)`,
    :math:`\rho = \eta_c\|w\| / (\|g\| + \lambda\|w\| + \epsilon)`.

    The norm of the incoming :math:`g` is taken before the decay is added.

    Args:
      trust_coefficient: :math:`\eta_c` > 0. Default 1e-3 (objax, MXNet's ``eta``).
      epsilon: :math:`\epsilon` >= 0. Default 1e-5 (objax).
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 1e-4 (objax).
      zero_norm: what a zero :math:`\|w\|` or :math:`\|g\|` gives: ``"max"``
        (objax: :math:`\max(1, \rho)`) or ``"one"`` (MXNet: 1). Default ``"max"``.
      trust_ratio_mask: tensors where it is false get :math:`\rho = 1` (MXNet's
        ``gamma``/``beta``/``bias`` names). ``None``: every tensor.
      weight_decay_mask: tensors where it is false get :math:`\lambda = 0` (also in
        :math:`\rho`). ``None``: every tensor.
      clip_gradient: ``None`` (default) or :math:`c` >= 0: :math:`g` is clipped
        element-wise to :math:`[-c, c]` *after* its norm is taken and before the
        decay is added, as MXNet's LARS.

    Example:
      >>> import numpy as np, gradstep
      >>> t = gradstep.rules.scale_by_lars(1.0, 0.0, 0.0)
      >>> u, _ = t.update([np.array([0.0, 0.5])], t.init([np.zeros(2)]), [np.array([3.0, 4.0])])
      >>> u[0]
      array([0., 5.])

    Differences: optax's LARS divides by :math:`\|g + \lambda w\|` instead (use
    :func:`scale_by_trust_ratio` after the decay, as ``lars(form="optax")`` does).
    """
    if weight_decay_mask is not None and not callable(weight_decay) and weight_decay == 0:
        raise ValueError(
            "scale_by_lars: invalid weight_decay_mask with weight_decay=0; valid values: "
            "a mask only together with a weight_decay > 0"
        )
    if clip_gradient is None:
        element, prepare = _lars_scaled, _no_scalars
    else:
        bounds = {"lo": -float(clip_gradient), "hi": float(clip_gradient)}
        element, prepare = _lars_clipped, functools.partial(_bounds, bounds)
    return PerTensorReduction(
        "lars",
        element,
        norms=_update_and_param_with(clip_gradient is not None),
        combine=_lars_combine(trust_coefficient, epsilon, zero_norm),
        tensor_scalars=("factor", "decay"),
        flags={"trust_ratio": trust_ratio_mask, "weight_decay": weight_decay_mask},
        hyperparams={"weight_decay": weight_decay},
        prepare=prepare,
        uses_params=True,
    )


def _no_scalars(h: dict, count: int) -> dict:
    return {}


def _update_and_param_bounds(g, w, lo, hi):
    return g, w


def _update_and_param_with(bounds: bool):
    return _update_and_param_bounds if bounds else _update_and_param


__all__ = ["NoneOr", "PerTensorReduction", "scale_by_lars", "scale_by_trust_ratio"]
