"""Conversions between float32 and the 16-bit floats (bfloat16, float16) for the
fused kernels, which hold 16-bit arrays as their uint16 bit patterns.

bfloat16 is float32's upper half: integer arithmetic converts it, rounding to the
nearest, ties to even. float16 uses the processor's conversion instructions where
the compiler's target has them (x86's F16C, every 64-bit Arm): one instruction per
vector, exact and rounding to the nearest, ties to even, as NumPy and torch do.
Elsewhere it is integer arithmetic with the same results (:func:`f16_load_bits`,
:func:`f16_store_bits`); the two differ only in a NaN's payload bits (a NaN stays a
NaN of its sign). The helpers are compiled once per process and left for LLVM to
inline into the kernels (tests/core/test_kernel_helpers_inlined.py): numba's own
inlining (``inline="always"``) typed and lowered them again at every use, which made
a float16 kernel three times slower to compile for the same machine code.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ._scalar_ops import bits_float, float_bits


@njit
def _pick(condition, a, b):
    """``a`` where ``condition`` else ``b`` (uint32 bits), with masks: no branch, so
    a loop over elements converting 16-bit floats still vectorises.

    numba computes integer arithmetic in 64 bits; the conversions back to uint32 in
    the helpers below let the compiler keep their vector lanes 32 bits wide (float16
    Adam's step twice as fast as with the branches and 64-bit lanes)."""
    mask = np.uint32(np.uint32(0) - np.uint32(condition))
    return np.uint32((a & mask) | (b & np.uint32(~mask)))


@njit
def bf16_load(bits):
    """bfloat16 bits -> float32 (exact: bfloat16 is float32's upper half)."""
    return bits_float(np.uint32(bits) << np.uint32(16))


@njit
def bf16_store(x):
    """float32 -> bfloat16 bits, to the nearest, ties to even; NaN stays a quiet NaN."""
    u = np.uint32(float_bits(x))
    quiet = np.uint32((u >> np.uint32(16)) | np.uint32(0x0040))
    bias = np.uint32(np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    rounded = np.uint32(np.uint32(u + bias) >> np.uint32(16))
    return np.uint16(
        _pick(np.uint32(u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000), quiet, rounded)
    )


_HALF_SUBNORMAL = np.float32(2.0**-24)


@njit
def f16_load_bits(bits):
    """float16 bits -> float32 (exact), in integer arithmetic. Every case is
    computed and the right one picked (:func:`_pick`)."""
    h = np.uint32(bits)
    sign = np.uint32((h & np.uint32(0x8000)) << np.uint32(16))
    magnitude = np.uint32(h & np.uint32(0x7FFF))
    exponent = np.uint32(magnitude >> np.uint32(10))
    # rebias the exponent (15 -> 127), the mantissa's 10 bits on top of float32's 23
    normal = np.uint32((magnitude << np.uint32(13)) + np.uint32(112 << 23))
    special = np.uint32(normal + np.uint32(112 << 23))  # infinity or NaN: exponent field 0xFF
    # zero or subnormal: mantissa * 2**-24, exact in float32
    tiny = float_bits(np.float32(np.int32(magnitude)) * _HALF_SUBNORMAL)
    out = _pick(exponent == np.uint32(0x1F), special, normal)
    return bits_float(np.uint32(sign | _pick(exponent == np.uint32(0), tiny, out)))


@njit
def f16_store_bits(x):
    """float32 -> float16 bits, to the nearest, ties to even (overflow to infinity;
    a NaN becomes the quiet NaN of its sign), in integer arithmetic. Every case is
    computed and the right one picked (:func:`_pick`)."""
    u = np.uint32(float_bits(x))
    sign = np.uint32((u >> np.uint32(16)) & np.uint32(0x8000))
    a = np.uint32(u & np.uint32(0x7FFFFFFF))
    # below float16's smallest normal: adding 0.5 makes float32's own rounding (to a
    # multiple of 2**-24) the float16 subnormal's, ties to even
    tiny = np.uint32(float_bits(bits_float(a) + np.float32(0.5)) - np.uint32(0x3F000000))
    # rebias the exponent (127 -> 15) and round the 13 dropped bits, ties to even
    odd = np.uint32((a >> np.uint32(13)) & np.uint32(1))
    normal = np.uint32(
        np.uint32(a - np.uint32(0x38000000) + np.uint32(0xFFF) + odd) >> np.uint32(13)
    )
    quiet = _pick(a > np.uint32(0x7F800000), np.uint32(0x0200), np.uint32(0))
    out = _pick(a < np.uint32(0x38800000), tiny, normal)
    # from 65520 up (rounding to 65536 or more) infinity; infinity or NaN from theirs
    out = _pick(a >= np.uint32(0x477FF000), np.uint32(0x7C00), out)
    out = _pick(a >= np.uint32(0x7F800000), np.uint32(np.uint32(0x7C00) | quiet), out)
    return np.uint16(sign | out)


@njit
def to_odd32(x):
    """float64 -> float32 rounded to odd (truncated, the last bit set when inexact):
    rounding that to a 16-bit float to the nearest is the single rounding of ``x``
    (float32 keeps more than two bits beyond either 16-bit format)."""
    t = np.float32(x)
    wide = np.float64(t)
    if wide != x and x == x:
        u = float_bits(t)
        if (u & np.uint32(1)) == np.uint32(0):
            # round-to-nearest went to an even neighbour: take the odd one next to
            # it on x's side
            if abs(wide) > abs(x):
                u = u - np.uint32(1)
            else:
                u = u + np.uint32(1)
            t = bits_float(u)
    return t


def _target_converts_half() -> bool:
    """Whether numba's target processor converts float16 in hardware: x86 with F16C
    among the features numba compiles for (``NUMBA_CPU_FEATURES``, else the host's),
    or 64-bit Arm. Without them LLVM would call compiler-rt's conversion functions,
    which numba may not link."""
    from numba.core import codegen as numba_codegen
    from numba.core import config

    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return True
    if machine not in ("x86_64", "amd64"):
        return False
    features = config.CPU_FEATURES
    if features is None:
        features = numba_codegen.get_host_cpu_features()
    return "+f16c" in features.split(",")


#: float16 converted by the processor's instructions (else :func:`f16_load_bits`)
HARDWARE_HALF = _target_converts_half()


@intrinsic
def _f16_widen(typingctx, bits):
    """float16 bits (an unsigned integer) -> float32, by the processor."""
    if not isinstance(bits, types.Integer) or bits.bitwidth < 16:
        return None

    def codegen(context, builder, sig, args):
        value = args[0]
        if sig.args[0].bitwidth > 16:
            value = builder.trunc(value, ir.IntType(16))
        return builder.fpext(builder.bitcast(value, ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _f16_narrow(typingctx, x):
    """float32 -> float16 bits (uint16), to the nearest, ties to even, by the processor."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(x), codegen


#: the float16 conversions the kernels call (``f16_load(bits)``, ``f16_store(x)``)
f16_load, f16_store = (
    (_f16_widen, _f16_narrow) if HARDWARE_HALF else (f16_load_bits, f16_store_bits)
)
