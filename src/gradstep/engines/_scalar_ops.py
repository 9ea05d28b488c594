"""Scalar versions of the element operations, for code compiled by numba.

The fused engine compiles element functions with the names of
:data:`gradstep._core.xmath.OPERATIONS` resolved here. Every function keeps its
argument's precision: a float32 loop stays float32 (a float64 constant would
silently widen it and halve its speed).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array

from .._core.blockwise8 import BLOCK, KEY_HIGH, KEY_LOW, KEY_WIDTH
from ._scalar_exp import _double_bits, _double_from_bits, exp, log1p  # noqa: F401

sqrt = np.sqrt
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


def cbrt(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


#: added to a third of the bits of ``a = m * 2**e`` (exponent field ``e + 1023``) it
#: gives the exponent field ``e / 3 + 1023``: a first guess of ``a ** (1/3)`` within
#: about 10%
_CBRT_GUESS = np.int64(682) << np.int64(52)
_THREE = np.int64(3)


@overload(cbrt)
def _cbrt(x):
    if x == types.float32:
        # The C library's cbrtf is a call per element (about 13 ns, no vectors); this
        # is arithmetic the compiler vectorises: a guess from the exponent bits, three
        # Halley steps in float64 (cubic convergence: 1e-1, 1e-3, 1e-9, below float64's
        # rounding), one rounding to float32, as the eager reference (float64's cbrt
        # rounded to float32). 0, infinities and NaN are their own cube roots.
        def impl(x):
            d = np.float64(x)
            special = d == 0.0 or np.abs(d) == np.inf
            a = 1.0 if special else np.abs(d)  # no division by 0 in any error model
            y = _double_from_bits(_double_bits(a) // _THREE + _CBRT_GUESS)
            for _ in range(3):
                y3 = y * y * y
                y = y * (y3 + a + a) / (y3 + y3 + a)
            return x if special else np.float32(np.copysign(y, d))

        return impl
    if isinstance(x, types.Float):
        return lambda x: np.cbrt(x)


def conj(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


def real(x):  # pragma: no cover - replaced by the overload in compiled code
    raise NotImplementedError


@overload(conj)
def _conj(x):
    # the identity on real numbers: a real kernel compiles to the same arithmetic
    if isinstance(x, types.Float):
        return lambda x: x
    if isinstance(x, types.Complex):
        return lambda x: x.conjugate()


@overload(real)
def _real(x):
    if isinstance(x, types.Float):
        return lambda x: x
    if isinstance(x, types.Complex):
        return lambda x: x.real


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


# -- 16-bit storage: float16 and bfloat16 kept as uint16 bit patterns ------------------
# numba has no CPU float16 or bfloat16 type: the generated kernel reads and writes
# their bits as uint16 and converts to and from float32 here, with integer arithmetic
# only (no library calls), rounding to the nearest, ties to even.


@intrinsic
def float_bits(typingctx, x):
    """The bits of a float32 as a uint32."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(x), codegen


@intrinsic
def bits_float(typingctx, x):
    """The float32 whose bits are the low 32 bits of the integer ``x``."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        value = args[0]
        if x.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif x.bitwidth < 32:
            value = builder.zext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(x), codegen


# 16-bit float conversions: gradstep.engines._half_ops. The helpers below are, as
# those, compiled once and inlined by LLVM, not by numba (see _half_ops).


# -- stochastic rounding (gradstep._core.rounding): the same bits as its NumPy stream ---


@njit
def mix32(x):
    """lowbias32 (Wellons) on a uint32, multiplication wrapping at 32 bits."""
    x = np.uint32(x)
    x = x ^ (x >> np.uint32(16))
    x = np.uint32(x * np.uint32(0x7FEB352D))
    x = x ^ (x >> np.uint32(15))
    x = np.uint32(x * np.uint32(0x846CA68B))
    return np.uint32(x ^ (x >> np.uint32(16)))


@njit
def bf16_store_sr(x, key, hashed_index):
    """float32 -> bfloat16 bits, rounded stochastically with the random bits of the
    element whose ``mix32(index)`` is ``hashed_index`` (computed once per element for
    every row) under ``key``; NaN as :func:`bf16_store`."""
    u = np.uint32(float_bits(x))
    if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return np.uint16((u >> np.uint32(16)) | np.uint32(0x0040))
    r = mix32(np.uint32(key) ^ np.uint32(hashed_index)) >> np.uint32(16)
    return np.uint16((u + r) >> np.uint32(16))


# -- 8-bit blockwise state (gradstep._core.blockwise8) ---------------------------------


@intrinsic
def magnitude_bits(typingctx, x):
    """The bits of the float32 ``|x|`` as a uint32: they order as the magnitudes do,
    and a NaN's above every number (the largest of a block's is its ``max |x|``, a
    NaN where it holds one, as ``max`` propagates it)."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        return builder.and_(builder.bitcast(args[0], i32), ir.Constant(i32, 0x7FFFFFFF))

    return types.uint32(x), codegen


@intrinsic
def max_u32(typingctx, a, b):
    """The larger of two uint32 (in 32 bits: numba would widen ``max`` to 64)."""
    if a != types.uint32 or b != types.uint32:
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.icmp_unsigned(">", args[0], args[1]), args[0], args[1])

    return types.uint32(a, b), codegen


assert KEY_WIDTH <= 1 << 16  # q8_code's table index fits in 16 bits


def _key_ir(builder, value):
    """The key of the float32 ``value``: its bits, every bit but the sign inverted
    for a negative sign, so that keys (as signed integers) order as values do."""
    i32 = ir.IntType(32)
    bits = builder.bitcast(value, i32)
    return builder.xor(
        bits, builder.lshr(builder.ashr(bits, ir.Constant(i32, 31)), ir.Constant(i32, 1))
    )


def _code_ir(context, builder, key, table_type, table):
    """The uint8 code of ``key`` (:func:`_key_ir`) from the kernels' table: the entry
    of the key's bucket (its top half, clamped) and ``(rank + entry) >> 16`` for the
    key's low half ``rank``."""
    i32 = ir.IntType(32)

    def c(x):
        return ir.Constant(i32, x)

    bucket = builder.ashr(key, c(16))
    bucket = builder.select(builder.icmp_signed("<", bucket, c(KEY_LOW)), c(KEY_LOW), bucket)
    bucket = builder.select(builder.icmp_signed(">", bucket, c(KEY_HIGH)), c(KEY_HIGH), bucket)
    # the index as a 16-bit number (it fits), which shows the compiler it is small: a
    # vector loop then gathers with 32-bit indices (one gather per vector, not two)
    index = builder.trunc(builder.sub(bucket, c(KEY_LOW)), ir.IntType(16))
    index = builder.zext(index, ir.IntType(64))
    data = context.make_array(table_type)(context, builder, table).data
    entry = builder.load(builder.gep(data, [index], inbounds=True))
    code = builder.lshr(builder.add(builder.and_(key, c(0xFFFF)), entry), c(16))
    return builder.trunc(code, ir.IntType(8))


def _is_code_table(table) -> bool:
    return isinstance(table, types.Array) and table.dtype == types.int32


@intrinsic
def q8_code(typingctx, v, table):
    """The code of the normalised float32 ``v`` (in ``[-1, 1]`` or NaN), as the eager
    quantiser finds it, from the kernels' table
    (:func:`gradstep._core.blockwise8.key_codes`): ``v``'s key (its bits, every bit
    but the sign inverted for a negative sign), the entry of the key's bucket (its top
    half, clamped), and the code ``(rank + entry) >> 16`` for the key's low half
    ``rank``. One lookup and nine integer operations, no branches, so a loop of it
    vectorises where the compiler gathers (one gather per vector of values)."""
    if v != types.float32 or not _is_code_table(table):
        return None

    def codegen(context, builder, sig, args):
        return _code_ir(context, builder, _key_ir(builder, args[0]), sig.args[1], args[1])

    return types.uint8(v, table), codegen


@intrinsic
def q8_key(typingctx, v):
    """The first half of :func:`q8_code`: the key of the float32 ``v`` (int32), with
    no table lookup, so that a loop of it vectorises on any processor."""
    if v != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return _key_ir(builder, args[0])

    return types.int32(v), codegen


@intrinsic
def q8_code_of_key(typingctx, key, table):
    """The second half of :func:`q8_code`: the code of a :func:`q8_key` key."""
    if key != types.int32 or not _is_code_table(table):
        return None

    def codegen(context, builder, sig, args):
        return _code_ir(context, builder, args[0], sig.args[1], args[1])

    return types.uint8(key, table), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Asks the CPU to bring the cache line of ``array[index]`` in (``llvm.prefetch``,
    for reading, kept in every cache level): a hint, with no effect on any value."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        address = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        hint = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", fnty=hint)
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(array, index), codegen


@intrinsic
def block_buffer(typingctx, witness):
    """A C array of ``BLOCK`` elements of ``witness``'s type on the calling
    function's stack (its entry block: one per call of the function, reused by
    every loop iteration). The compiler knows that no other pointer reaches it
    (unlike an ``np.empty`` array, whose data pointer it cannot tell from a
    parameter row's), so a loop that writes only such buffers vectorises with no
    checks of overlap, table lookups included."""
    if not isinstance(witness, (types.Float, types.Integer)):
        return None
    array = types.Array(witness, 1, "C")

    def codegen(context, builder, sig, args):
        element = context.get_data_type(witness)
        with builder.goto_entry_block():
            memory = builder.alloca(ir.ArrayType(element, BLOCK))
            memory.align = 64
        size = context.get_value_type(types.intp)
        itemsize = ir.Constant(size, context.get_abi_sizeof(element))
        out = context.make_array(array)(context, builder)
        populate_array(
            out,
            data=builder.bitcast(memory, element.as_pointer()),
            shape=[ir.Constant(size, BLOCK)],
            strides=[itemsize],
            itemsize=itemsize,
            meminfo=None,
        )
        return out._getvalue()

    return array(witness), codegen
