"""Norm constraints in Lasagne's form, as array functions and as chain stages.

Lasagne scales by ``min(n, max_norm) / (n + epsilon)`` *always*: a tensor already
inside the ball is shrunk by ``n / (n + epsilon)``, unlike optax's and Keras'
clipping, which leave it unchanged (:mod:`gradstep.transforms.clipping`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._core.axis_norm import AxisNormScaled
from .._core.elementwise import NormScaled
from .._core.namespaces import NUMPY, element_for, namespace_of
from .._core.transform import Transform
from .._core.validate import Axes, Interval, OneOf, check, hyperparams, nonnegative
from .._core.xmath import minimum

_MAX_NORM = Interval(0.0, lo_open=True)
_TARGETS = OneOf(("updates", "params"))
#: Lasagne's norm_axes: a sequence of axes (empty: each element its own norm)
_NORM_AXES = Axes(empty=True)


def default_norm_axes(ndim: int) -> tuple[int, ...]:
    """Lasagne's axes: each column of a 2-D dense weight ``(in, out)``; each output
    filter (all axes but 0) of a 3-, 4- or 5-D convolution weight."""
    if ndim == 2:
        return (0,)
    if ndim in (3, 4, 5):
        return tuple(range(1, ndim))
    raise ValueError(
        f"norm_constraint: invalid tensor of {ndim} dimensions without norm_axes; "
        "valid values: a 2- to 5-dimensional tensor, or give norm_axes"
    )


def lasagne_factor(norm: Any, h: dict) -> Any:
    """Lasagne's multiplier ``min(n, max_norm) / (n + epsilon)`` of a norm ``n``
    (a NaN norm gives NaN), written without branches so that every engine runs it
    on its own arrays (the GPU engine on the device)."""
    return minimum(norm, h["max_norm"]) / (norm + h["epsilon"])


def norm_constraint(
    tensor: Any, max_norm: float, norm_axes: Sequence[int] | None = None, epsilon: float = 1e-7
) -> Any:
    """Rescale ``tensor`` so the norm over ``norm_axes`` is at most ``max_norm``.

    :math:`x \\cdot \\min(n, m) / (n + \\epsilon)` with :math:`n` the L2 norm over
    ``norm_axes`` (kept for broadcasting). Max-norm regularisation (Srebro & Shraibman,
    2005; Hinton et al., 2012) or per-unit gradient clipping. A torch tensor or JAX
    array gives one of its library, computed by its own operations (on its device).
    """
    check("norm_constraint", "max_norm", max_norm, _MAX_NORM)
    check("norm_constraint", "epsilon", epsilon, nonnegative())
    check("norm_constraint", "norm_axes", norm_axes, _NORM_AXES)
    ns = namespace_of(tensor)
    x = np.asarray(tensor) if ns is NUMPY else tensor
    axes = tuple(norm_axes) if norm_axes is not None else default_norm_axes(x.ndim)
    squares = x * x
    norms = ns.sqrt(ns.sum(squares, axis=axes, keepdims=True) if axes else squares)
    cast = ns.scalar_caster(x)  # in x's dtype (Python floats, weakly typed, on torch)
    h = {"max_norm": cast(max_norm), "epsilon": cast(epsilon)}
    return x * element_for(lasagne_factor, ns)(norms, h)


def total_norm_constraint(
    tensors: Sequence[Any], max_norm: float, epsilon: float = 1e-7, return_norm: bool = False
):
    """Rescale ``tensors`` together so their joint L2 norm is at most ``max_norm``.

    Every tensor is multiplied by :math:`\\min(N, m) / (N + \\epsilon)`. With
    ``return_norm`` also returns :math:`N`, the norm before scaling (float64 where the
    library has it; a 0-d array of the tensors' library). The tensors are of one
    library, whose operations compute it.
    """
    check("total_norm_constraint", "max_norm", max_norm, _MAX_NORM)
    check("total_norm_constraint", "epsilon", epsilon, nonnegative())
    arrays = [np.asarray(t) if namespace_of(t) is NUMPY else t for t in tensors]
    ns = namespace_of(arrays[0]) if arrays else NUMPY
    if any(namespace_of(a) is not ns for a in arrays):
        names = sorted({namespace_of(a).name for a in arrays})
        raise TypeError(f"total_norm_constraint: tensors of one library expected, got {names}")
    # the squares summed in float64 (float32 where the device has none), on the device
    norm = ns.sqrt(sum(ns.square_sum(a) for a in arrays))
    factor = element_for(lasagne_factor, ns)(norm, {"max_norm": max_norm, "epsilon": epsilon})
    scaled = [a * ns.astype(factor, a) for a in arrays]
    return (scaled, norm) if return_norm else scaled


def _constrained_each(leaves, *, epsilon, max_norm, norm_axes):
    return [norm_constraint(x, max_norm, norm_axes, epsilon) for x in leaves]


@hyperparams(max_norm=_MAX_NORM, norm_axes=_NORM_AXES, epsilon=nonnegative(), target=_TARGETS)
def constrain_norm(
    max_norm: float,
    norm_axes: Sequence[int] | None = None,
    epsilon: float = 1e-7,
    *,
    target: str = "updates",
) -> Transform:
    """:func:`norm_constraint` as a chain stage, on each leaf.

    ``target="updates"`` constrains what flows through the chain (per-unit gradient
    clipping when placed first); ``target="params"`` constrains the parameters after
    the step (max-norm regularisation; place it last): the norms are those of the new
    parameters. The Triton engine runs either as a device pass (per-slice norms of
    the update, or of the new parameter, then the scaling).
    """

    fn = functools.partial(
        _constrained_each, epsilon=epsilon, max_norm=max_norm, norm_axes=norm_axes
    )
    hyper = {"max_norm": max_norm, "epsilon": epsilon}
    return AxisNormScaled(
        "constrain_norm",
        lasagne_factor,
        hyper,
        norm_axes,
        default_norm_axes,
        fn,
        of_params=target == "params",
    )


@hyperparams(max_norm=_MAX_NORM, epsilon=nonnegative(), target=_TARGETS)
def constrain_total_norm(
    max_norm: float, epsilon: float = 1e-7, *, target: str = "updates"
) -> Transform:
    """:func:`total_norm_constraint` as a chain stage, over all leaves together.

    ``target="updates"`` is a global-norm stage (as ``clip_by_global_norm``);
    ``target="params"`` constrains the parameters after the step (place it last): the
    joint norm is that of the new parameters ``w + u``, and the update takes each to
    ``(w + u) * factor``. Both fused engines run either as a reduction pass (the sum
    of squares of the update, or of the new parameter) and the step pass.
    """
    hyper = {"max_norm": max_norm, "epsilon": epsilon}
    return NormScaled(
        "constrain_total_norm",
        lasagne_factor,
        hyper,
        per_tensor=False,
        of_params=target == "params",
    )
