"""Scalar versions of the element operations, for code compiled by numba.

The fused engine compiles element functions with the names of
:data:`gradstep._core.xmath.OPERATIONS` resolved here. Every function keeps its
argument's precision: a float32 loop stays float32 (a float64 constant would
silently widen it and halve its speed).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

sqrt = np.sqrt
cbrt = np.cbrt  # float32 stays float32 in numba
absolute = np.abs
sign = np.sign
maximum = np.maximum
minimum = np.minimum
isnan = np.isnan
isfinite = np.isfinite


@njit
def where(cond, a, b):
    return a if cond else b


@njit
def clip(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def nan_to_zero(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


def finite_or_zero(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


def _typed_zero(numba_type):
    return np.dtype(str(numba_type)).type(0)


@overload(nan_to_zero)
def _nan_to_zero(x):
    if isinstance(x, types.Float):
        zero = _typed_zero(x)

        def impl(x):
            return zero if np.isnan(x) else x

        return impl


@overload(finite_or_zero)
def _finite_or_zero(x):
    if isinstance(x, types.Float):
        zero = _typed_zero(x)

        def impl(x):
            return x if np.isfinite(x) else zero

        return impl


@intrinsic
def as_pointer(typingctx, address, witness):
    """A typed pointer from an integer address; ``witness`` is a scalar of the
    element type (only its type is used)."""
    signature = types.CPointer(witness)(address, witness)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return signature, codegen
