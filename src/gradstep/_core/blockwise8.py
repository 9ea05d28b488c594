"""8-bit blockwise state: a slot stored as uint8 codes plus one float32 scale per block.

A slot stored in ``"blockwise8"`` (:mod:`gradstep._core.precision`) keeps, for a
parameter of ``n`` elements,

- ``codes``: ``uint8``, shaped like the parameter: each element's index into a
  256-entry *dynamic quantisation map* ``Q`` (values in ``[-1, 1]``);
- ``absmax``: ``float32``, ``ceil(n / B)`` entries: the scale of each block of
  ``B = 256`` consecutive elements (in C order; the last block may be shorter).

.. math::

    \\text{load:}\\quad s_i = Q[c_i]\\, a_{\\lfloor i/B \\rfloor}
    \\qquad
    \\text{store:}\\quad a_b = \\max(\\max_{i \\in b} |s_i|,\\ 10^{-12}),\\quad
    c_i = \\operatorname{nearest}_Q(s_i \\cdot \\operatorname{fl}(1 / a_b))

Symbols: ``s`` the slot's float32 values, ``c`` its codes, ``a`` its block scales
(the entry ``<slot>_absmax`` of the state), ``fl(1 / a)`` the scale's reciprocal
rounded to float32 (one division per block, as bitsandbytes' CUDA kernels do; every
element then takes a multiplication, not a division), ``Q`` the map: the *signed*
dynamic map for a slot that may be negative (first moments, momenta), the *unsigned*
one for a slot declared ``nonnegative`` (second moments, accumulated squares), which
spends its sign bit on twice the resolution.

The dynamic map (Dettmers 2016; Dettmers et al. 2022, section 2) gives each code
a sign bit, a run of zero bits counting a decimal exponent ``10^-k``
(``k = 0..6``), an indicator bit and a linear fraction in the remaining bits: for
each ``k``, ``2^(6-k)`` values (``2^(7-k)`` unsigned) at the midpoints of equal
segments of ``[0.1, 1]`` times ``10^-k``, plus 0 and 1. The values are rounded as
bitsandbytes' ``create_dynamic_map`` and torchao's builds them (the segment
boundaries as float32 ``linspace`` from both ends, midpoints and scaling in
float32), so the map is theirs bit for bit and codes mean the same values.
``nearest`` rounds to the nearest map value, a tie (or better) upwards, tested in
float32 as ``v - Q[lo] >= (Q[lo+1] - Q[lo]) / 2`` after a binary search for the
largest ``Q[lo] <= v`` (torchao's ``quantize_8bit_with_qmap`` rule), except that
a nonzero value never becomes 0: where 0 is the nearest, it takes the nearest
nonzero code of its sign. Without that, a second moment below ``1.6e-7`` of its
block's largest (a gradient 2500 times smaller than the block's largest) is stored
as 0 while its first moment is not, and the next Adam step is ``m / epsilon``: a
step of hundreds of learning rates (measured with torchao 0.18, whose quantiser
is the plain nearest one). A NaN gets code 0 (its block's scale is NaN, so every
value of the block reads NaN).

The element function runs on the dequantised values in float32 and the parameter
update uses the new slot values *before* they are requantised, as bitsandbytes'
and torchao's 8-bit optimizers do; only what is kept between steps is quantised.
Bytes per element: 1 + 4/256 = 1.016 per 8-bit slot (Adam: 2.03 against 8.00).

Everything here is written against the array namespace, so the same code runs on
NumPy, torch and JAX (under ``jax.jit``); the fused engine's kernel does the same
arithmetic per block (:mod:`gradstep.engines.fused_codegen`).

Differences: torchao's quantiser is the nearest code of ``s / a`` without the
nonzero rule (the codes are equal wherever its code is not the zero code and ``s *
fl(1 / a)`` is not on the other side of a threshold from ``s / a``, which differ by
at most an ulp); bitsandbytes' CPU quantiser (0.50.2) is not always the nearest code
for small normalised values (below about 0.1 it may pick a larger neighbour; it too
keeps tiny values off zero), so its trajectories match within a tolerance, not bit
for bit; bitsandbytes stores a zero block's absmax as 0 where this stores 1e-12
(torchao's clip: the values read 0 either way). Small tensors: a tensor of fewer
than ``min_8bit_size`` elements (default 4096, bitsandbytes' option and default;
torchao's fixed rule, which also requires whole blocks) keeps the slot in float32
(float64 for float64 parameters) with an empty ``<slot>_absmax``;
``min_8bit_size=0`` quantises every tensor.

References:
  Dettmers, Lewis, Shleifer, Zettlemoyer, "8-bit Optimizers via Block-wise
  Quantization", ICLR 2022, arXiv:2110.02861.
  Dettmers, "8-Bit Approximations for Parallelism in Deep Learning", ICLR 2016,
  arXiv:1511.04561.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .namespaces import namespace_of

#: the storage name of 8-bit blockwise state
BLOCKWISE8 = "blockwise8"
#: elements per block (bitsandbytes' CPU and torchao's default)
BLOCK = 256
#: tensors of fewer elements keep an 8-bit slot in float32 (bitsandbytes'
#: ``min_8bit_size`` and its default; torchao's fixed rule)
MIN_8BIT_SIZE = 4096
#: the smallest block scale (an all-zero block would otherwise divide by zero)
MIN_SCALE = np.float32(1e-12)
#: the state entry beside a slot's codes that holds its block scales
ABSMAX_SUFFIX = "_absmax"
#: the fused engine's storage name of a slot row whose tensors are 8-bit or, below
#: ``min_8bit_size``, float (``"blockwise8|float32"``)
MIXED_PREFIX = BLOCKWISE8 + "|"


def absmax_name(slot_name: str) -> str:
    """The state entry holding the block scales of the slot ``slot_name``."""
    return slot_name + ABSMAX_SUFFIX


def stores_8bit(size: int, min_8bit_size: int) -> bool:
    """Whether a tensor of ``size`` elements keeps a ``blockwise8`` slot as codes and
    block scales: at least ``min_8bit_size`` elements (else in float32, float64 for
    float64 parameters). The one place the choice is made; engines then follow the
    state (:func:`is_codes`)."""
    return size >= min_8bit_size


def is_codes(stored: Any) -> bool:
    """Whether a ``blockwise8`` slot's array of one tensor holds codes (uint8), not
    the float values of a tensor below ``min_8bit_size``."""
    return "uint8" in str(getattr(stored, "dtype", ""))


def float_dtype_for(param: Any) -> str:
    """The dtype of a small tensor's ``blockwise8`` slot: the math dtype, float64 for
    float64 parameters, else float32 (as bitsandbytes keeps it)."""
    return "float64" if "float64" in str(getattr(param, "dtype", "")) else "float32"


def n_blocks(size: int) -> int:
    """How many block scales a tensor of ``size`` elements has (the last block may be
    short)."""
    return math.ceil(size / BLOCK)


def _linspace32(start: float, stop: float, num: int) -> np.ndarray:
    """``num`` float32 values from ``start`` to ``stop``: the first half as
    ``start + i * step``, the second as ``stop - (num - 1 - i) * step``, each rounded
    once (a fused multiply-add, exact here in float64), ``step`` rounded to float32
    (the float32 ``linspace`` the reference maps were built with)."""
    lo, hi = np.float32(start), np.float32(stop)
    step = np.float64((hi - lo) / np.float32(num - 1))
    i = np.arange(num, dtype=np.float64)
    first = np.float64(lo) + step * i
    second = np.float64(hi) - step * (num - 1 - i)
    return np.where(i < num // 2, first, second).astype(np.float32)


@functools.cache
def dynamic_map(signed: bool) -> np.ndarray:
    """The 256 sorted float32 values of the dynamic quantisation map (see the module
    docstring); read-only."""
    values = [np.float32(0.0), np.float32(1.0)]
    for k in range(7):  # the decimal exponent 10^-(6-k): more fraction bits as it grows
        items = 2 ** (k + (0 if signed else 1))
        bounds = _linspace32(0.1, 1.0, items + 1)
        midpoints = (bounds[:-1] + bounds[1:]) / np.float32(2)
        scaled = np.float32(10.0 ** (k - 6)) * midpoints
        values += list(scaled) + (list(-scaled) if signed else [])
    table = np.sort(np.array(values, np.float32))
    assert table.size == 256
    table.flags.writeable = False
    return table


#: the kernels' buckets (:func:`bucket_codes`): the top 16 bits of a normalised
#: value's magnitude, from this one, the floor bucket: every magnitude below 2**-24
#: (whose top bits are 0x3380), with rank 0 for a zero magnitude and 1 otherwise
BUCKET_FLOOR = 0x337F
#: to this one, past 1.0 (that of 1.0 is 0x3F80): larger magnitudes, NaN
BUCKET_TOP = 0x3F81
#: buckets per sign
BUCKET_WIDTH = BUCKET_TOP - BUCKET_FLOOR + 1


def _normalised_codes(v: Any, signed: bool, ns: Any) -> Any:
    """The codes (integers, not yet uint8) of normalised values ``v`` (the values
    times the reciprocal of their block's scale): the largest map value ``<= v`` by binary search
    (NaN: 0), one code up when ``v`` is at least half way to the next, and a nonzero
    value kept off the zero code (the module docstring)."""
    table = ns.constant(dynamic_map(signed), v)
    lo = ns.where(v >= table[128], 128, 0)
    for half in (64, 32, 16, 8, 4, 2, 1):
        lo = lo + ns.where(v >= ns.take(table, lo + half, 0), half, 0)
    hi = ns.minimum(lo + 1, 255)
    below, above = ns.take(table, lo, 0), ns.take(table, hi, 0)
    codes = ns.where(v - below >= (above - below) * np.float32(0.5), hi, lo)
    zero = zero_code(signed)
    codes = ns.where((v > 0) & (codes == zero), zero + 1, codes)
    if signed:
        codes = ns.where((v < 0) & (codes == zero), zero - 1, codes)
    return codes


def _numpy_codes(v: np.ndarray, signed: bool) -> np.ndarray:
    from .namespaces import NUMPY

    with np.errstate(invalid="ignore"):
        return np.asarray(_normalised_codes(v.astype(np.float32), signed, NUMPY))


#: :func:`bucket_codes`' mark of a bucket whose code does not change within it
NEVER = 0x10000


def _bucket_value(side: int, index: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The float32 values whose bucket is ``index`` (of sign ``side``) and whose 16-bit
    rank within it is ``low`` (see :func:`bucket_codes`)."""
    flip = 0xFFFF if side else 0
    mag = (BUCKET_FLOOR + index).astype(np.uint32)
    bits = (mag << 16) | (low ^ flip).astype(np.uint32)
    tiny = ((low ^ flip) != 0).astype(np.uint32)  # the floor bucket: 0, or the smallest
    bits = np.where(index == 0, tiny, bits) | np.uint32(side << 31)
    return bits.astype(np.uint32).view(np.float32)


def _changes(values_at, n: int, ends: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Where the code changes in ``n`` buckets of 16-bit ranks: ``values_at(r)`` gives
    each bucket's float32 value of rank ``r`` (an array, one rank per bucket), ranks
    ordered as the values. Returns each bucket's lowest code and the rank from which
    it is one more (:data:`NEVER` where it stays), found by bisection with the eager
    quantiser (codes rise with values); the buckets ``ends`` (values past 1.0, NaN)
    are code 0 throughout, as NaN is."""
    low = np.zeros(n, np.int64)
    high = np.full(n, 0xFFFF, np.int64)
    start = _numpy_codes(values_at(low), signed)
    steps = np.where(ends, 0, _numpy_codes(values_at(high), signed) - start)
    if steps.min() < 0 or steps.max() > 1:
        raise AssertionError("a bucket of the 8-bit quantiser holds two code changes")
    while np.any(high - low > 1):  # code(low) == start < code(high)
        mid = (low + high) // 2
        up = _numpy_codes(values_at(mid), signed) > start
        high, low = np.where(up, mid, high), np.where(up, low, mid)
    return np.where(ends, 0, start), np.where(steps == 1, high, NEVER)


@functools.cache
def bucket_codes(signed: bool) -> np.ndarray:
    """The Triton kernels' quantiser table (int32, ``2 * BUCKET_WIDTH`` entries).

    A normalised value ``v`` (in ``[-1, 1]``, or NaN) falls in the bucket of its sign
    and the top 16 bits of its magnitude, clamped to ``[BUCKET_FLOOR, BUCKET_TOP]``
    (index: clamped top - ``BUCKET_FLOOR``, plus ``BUCKET_WIDTH`` for a negative
    sign), and has a 16-bit rank within it that grows with ``v``: its low 16 bits,
    inverted for a negative sign; in the floor bucket (magnitudes below 2**-24; 2**-24
    itself starts the next bucket) 0 for a zero magnitude and 1 otherwise, inverted
    likewise. No bucket holds more than one change of code (tested while the table is
    built), so each entry is its bucket's lowest code ``s`` plus ``t << 8``, the rank
    from which the code is ``s + 1`` (:data:`NEVER` where it stays ``s``; see
    :func:`_changes`). A code is then one lookup and one comparison
    (:func:`gradstep.engines._triton_ops.q8_codes`). The bucket past 1.0 holds NaN:
    code 0, as the binary search gives it. The numba kernels read the same codes
    from :func:`key_codes`."""
    out = []
    index = np.arange(BUCKET_WIDTH)
    for side in (0, 1):
        start, rank = _changes(
            lambda r, side=side: _bucket_value(side, index, r),
            index.size,
            index == BUCKET_WIDTH - 1,
            signed,
        )
        out.append(start + (rank << 8))
    table = np.concatenate(out).astype(np.int32)
    table.flags.writeable = False
    return table


#: the numba kernels' buckets (:func:`key_codes`): the top 16 bits, as a signed
#: number, of a normalised value's *key* (its float32 bits as a signed 32-bit integer,
#: every bit but the sign inverted for a negative sign, so that keys order as values
#: do), from this one, that below -1.0's (larger negative magnitudes, NaN with its
#: sign bit set) ...
KEY_LOW = -0x3F82
#: ... to this one, that past 1.0's (larger magnitudes, NaN)
KEY_HIGH = 0x3F81
#: buckets in :func:`key_codes`
KEY_WIDTH = KEY_HIGH - KEY_LOW + 1


def _key_value(bucket: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The float32 values whose key (see :data:`KEY_LOW`) is ``bucket << 16 | rank``."""
    key = (bucket.astype(np.int64) << 16) | rank
    bits = np.where(key >= 0, key, key ^ 0x7FFFFFFF) & 0xFFFFFFFF
    return bits.astype(np.uint32).view(np.float32)


@functools.cache
def key_codes(signed: bool) -> np.ndarray:
    """The numba kernels' quantiser table (int32, :data:`KEY_WIDTH` entries, the
    first for the bucket :data:`KEY_LOW`): the codes of :func:`bucket_codes`, in a
    form that takes fewer instructions to read.

    A normalised value's bucket is the top half of its key (see :data:`KEY_LOW`),
    clamped to ``[KEY_LOW, KEY_HIGH]``, its rank within the bucket the key's low 16
    bits: keys order as values for both signs, so no sign is handled apart. These
    are :func:`bucket_codes`' buckets mirrored for a negative sign, except that
    magnitudes below 2**-24 keep their own buckets (each holds at most one change of
    code too: at zero's rank, where the nonzero rule starts). An entry is
    ``(s << 16) + 0x10000 - t`` for the bucket's lowest code ``s`` and the rank ``t``
    from which it is ``s + 1`` (``t = 0x10000`` where it stays), so the code of a
    value of rank ``r`` is ``(r + entry) >> 16``: one lookup, one addition, one shift
    (:func:`gradstep.engines._scalar_ops.q8_code`)."""
    bucket = np.arange(KEY_LOW, KEY_HIGH + 1)
    ends = (bucket == KEY_LOW) | (bucket == KEY_HIGH)
    start, rank = _changes(lambda r: _key_value(bucket, r), bucket.size, ends, signed)
    table = ((start << 16) + 0x10000 - rank).astype(np.int32)
    table.flags.writeable = False
    return table


def zero_code(signed: bool) -> int:
    """The code of 0 in the dynamic map (127 signed, 0 unsigned)."""
    return 127 if signed else 0


def _blocks(x: Any, ns: Any) -> Any:
    """``x`` flattened and zero-padded to whole blocks, shaped ``(blocks, BLOCK)``."""
    flat = ns.ravel(x)
    size = int(np.prod(np.shape(x), dtype=np.int64))
    pad = n_blocks(size) * BLOCK - size
    if pad:
        flat = ns.concatenate([flat, ns.zeros((pad,), flat)])
    return ns.reshape(flat, (n_blocks(size), BLOCK))


def quantised(values: Any, signed: bool) -> tuple[Any, Any]:
    """``(codes, absmax)`` of the float32 array ``values`` (see the module
    docstring), in its library and on its device."""
    ns = namespace_of(values)
    shape = tuple(np.shape(values))
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return ns.as_uint8(ns.reshape(values, shape)), ns.zeros((0,), values)
    blocks = _blocks(values, ns)
    absmax = ns.maximum(ns.amax(abs(blocks), axis=1), MIN_SCALE)
    v = ns.ravel(blocks * ns.reshape(1.0 / absmax, (-1, 1)))  # a Python 1.0: float32
    codes = _normalised_codes(v, signed, ns)
    codes = ns.reshape(ns.as_uint8(codes)[:size], shape)
    return codes, absmax


def dequantised(codes: Any, absmax: Any, signed: bool) -> Any:
    """The float32 values that ``codes`` and the block scales ``absmax`` stand for."""
    ns = namespace_of(codes)
    shape = tuple(np.shape(codes))
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return ns.zeros(shape, absmax)
    table = ns.constant(dynamic_map(signed), absmax)
    values = ns.take(table, ns.as_index(ns.ravel(codes)), 0)
    pad = n_blocks(size) * BLOCK - size
    if pad:
        values = ns.concatenate([values, ns.zeros((pad,), values)])
    values = ns.reshape(values, (-1, BLOCK)) * ns.reshape(absmax, (-1, 1))
    return ns.reshape(ns.ravel(values)[:size], shape)


def converted(
    value: Any, scale: Any, signed: bool, eight: bool, min_8bit_size: int
) -> tuple[Any, Any]:
    """One tensor's slot as a checkpoint holds it, in the form an optimizer keeps it.

    ``value``: the saved array (codes, or float values of any precision); ``scale``:
    the block scales saved beside it (None where there are none); ``eight``: the
    optimizer's slot is ``blockwise8`` with the threshold ``min_8bit_size`` (else it
    is a floating-point slot). Returns ``(value, scale)``: codes and block scales
    where the optimizer keeps codes (float values quantised); float values where it
    keeps floats (codes dequantised, in float32), with an empty scale array for an
    8-bit slot below the threshold and None for a floating-point slot, which keeps
    no scales. What is neither codes with block scales of their shape nor float
    values comes back as it is, for the loader's checks to refuse."""
    ns = namespace_of(value)
    size = int(np.prod(np.shape(value), dtype=np.int64))
    keeps_codes = eight and stores_8bit(size, min_8bit_size)
    if is_codes(value):
        if keeps_codes or scale is None or tuple(np.shape(scale)) != (n_blocks(size),):
            return value, scale
        value, scale = dequantised(value, ns.stored(scale, "float32"), signed), None
    elif not ns.is_float(value):
        return value, scale
    elif keeps_codes:
        return quantised(ns.stored(value, "float32"), signed)
    if not eight:
        return value, None
    return value, ns.zeros((0,), ns.stored(value, "float32")) if scale is None else scale


def initial(param: Any, fill: float, signed: bool, min_8bit_size: int = 0) -> tuple[Any, Any]:
    """``(codes, absmax)`` of a slot filled with ``fill``, shaped like ``param``; for a
    tensor below ``min_8bit_size`` elements (:func:`stores_8bit`), ``(values, empty)``:
    the float values (:func:`float_dtype_for`) and no block scales (a float32 array
    of shape ``(0,)``, so the state keeps one structure)."""
    ns = namespace_of(param)
    value = ns.full_like(param, fill)
    size = int(np.prod(np.shape(param), dtype=np.int64))
    if not stores_8bit(size, min_8bit_size):
        return ns.stored(value, float_dtype_for(param)), ns.zeros((0,), ns.stored(value, "float32"))
    return quantised(ns.stored(value, "float32"), signed)
