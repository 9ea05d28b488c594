"""exp and log1p for code compiled by numba, as arithmetic the compiler vectorises.

The C library's ``expf``/``log1pf`` are a call per element (tens of nanoseconds, no
vectors): a loop calling them runs at a fraction of memory speed. Here a float32 is
widened to float64 and computed with range reduction and a short series to within
1e-13 relative, then rounded once to float32: the correctly rounded value but where
the exact one lies within 1e-13 of a rounding boundary (none among the values the
tests try). The eager engine rounds the float64 library result once too
(:mod:`gradstep._core.xmath`), so the two agree. float64 arguments keep the C
library's.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@intrinsic
def _double_bits(typingctx, x):
    """The bits of a float64 as an int64."""
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(x), codegen


@intrinsic
def _double_from_bits(typingctx, i):
    """The float64 whose bits are the int64 ``i``."""
    if i != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(i), codegen


def exp(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


def log1p(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
#: 1/k! for k = 0..11: e^r for |r| <= ln2/2 to 2e-14 relative
_EXP_TERMS = tuple(1.0 / math.factorial(k) for k in range(12))
_EXPONENT_ONE = np.int64(1023) << np.int64(52)
_MANTISSA = (np.int64(1) << np.int64(52)) - np.int64(1)
_SQRT2 = 1.4142135623730951


@njit(inline="always")
def _exp64(d):
    """e^d for float64 ``d`` in [-110, 90] (the float32 range, rounded to float32)."""
    n = np.floor(d * _LOG2E + 0.5)
    r = d - n * _LN2
    p = _EXP_TERMS[11]
    for k in range(10, -1, -1):
        p = p * r + _EXP_TERMS[k]
    return p * _double_from_bits((np.int64(n) << np.int64(52)) + _EXPONENT_ONE)


@overload(exp)
def _exp(x):
    if x == types.float32:

        def impl(x):
            d = np.float64(x)
            inside = d > -110.0 and d < 90.0  # else 0 or inf (NaN fails both)
            e = _exp64(d if inside else 0.0)
            e = e if inside else (0.0 if d <= -110.0 else d * np.inf if d > 0 else d)
            return np.float32(e)

        return impl
    if isinstance(x, types.Float):
        return lambda x: np.exp(x)


@njit(inline="always")
def _log64(u):
    """log(u) for finite float64 ``u`` > 0 (normal): k ln2 + 2 atanh((m-1)/(m+1))."""
    bits = _double_bits(u)
    k = (bits >> np.int64(52)) - np.int64(1023)
    m = _double_from_bits((bits & _MANTISSA) | _EXPONENT_ONE)
    high = m > _SQRT2
    m = m * 0.5 if high else m
    k = k + np.int64(1) if high else k
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = 1.0 / 21.0
    for j in range(9, -1, -1):
        p = p * s2 + 1.0 / (2 * j + 1)
    return np.float64(k) * _LN2 + 2.0 * s * p


@overload(log1p)
def _log1p(x):
    if x == types.float32:

        def impl(x):
            d = np.float64(x)
            u = 1.0 + d
            # u - 1 is exact; (d - (u - 1)) / u corrects for the rounding of 1 + d
            finite = u > 0.0 and u < np.inf and u != 1.0
            safe = u if finite else 2.0
            y = _log64(safe) + (d - (safe - 1.0)) / safe
            # log(0) = -inf, log(inf) = inf, NaN below 0 and for NaN
            special = -np.inf if u == 0.0 else (u if u == np.inf else np.nan)
            y = y if finite else (d if u == 1.0 else special)
            return np.float32(y)

        return impl
    if isinstance(x, types.Float):
        return lambda x: np.log1p(x)
