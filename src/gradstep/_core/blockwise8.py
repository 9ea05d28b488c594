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
    c_i = \\operatorname{nearest}_Q(s_i / a_b)

Symbols: ``s`` the slot's float32 values, ``c`` its codes, ``a`` its block scales
(the entry ``<slot>_absmax`` of the state), ``Q`` the map: the *signed* dynamic map
for a slot that may be negative (first moments, momenta), the *unsigned* one for a
slot declared ``nonnegative`` (second moments, accumulated squares), which spends
its sign bit on twice the resolution.

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

Differences: torchao's quantiser is the nearest code without the nonzero rule
(the codes are equal wherever its code is not the zero code); bitsandbytes' CPU
quantiser (0.50.2) is not always the nearest code for small normalised values
(below about 0.1 it may pick a larger neighbour; it too keeps tiny values off
zero), so its trajectories match within a tolerance, not bit for bit; bitsandbytes stores a
zero block's absmax as 0 where this stores 1e-12 (torchao's clip: the values read
0 either way). Neither library quantises small tensors (below 4096 elements) by
default; here every tensor of a ``blockwise8`` slot is quantised.

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
#: the smallest block scale (an all-zero block would otherwise divide by zero)
MIN_SCALE = np.float32(1e-12)
#: the state entry beside a slot's codes that holds its block scales
ABSMAX_SUFFIX = "_absmax"


def absmax_name(slot_name: str) -> str:
    """The state entry holding the block scales of the slot ``slot_name``."""
    return slot_name + ABSMAX_SUFFIX


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


@functools.cache
def bucket_codes(signed: bool) -> np.ndarray:
    """For each value of the top 16 bits of a float32 ``v`` (sign, exponent, 7
    mantissa bits), a code ``lo`` with ``Q[lo] <= v`` for every ``v`` of those bits
    (0 where none is, and for infinities and NaN): at most one code below the largest
    such code (no two map values fall between float32 values of the same top 16
    bits), which the fused kernels use in place of the binary search (one lookup and
    one comparison instead of eight)."""
    table = dynamic_map(signed)
    top = np.arange(1 << 16, dtype=np.uint32)
    # the lowest float32 with those top bits: the largest magnitude for a negative
    low = np.where(top >= 0x8000, (top << 16) | 0xFFFF, top << 16).astype(np.uint32)
    codes = np.searchsorted(table, low.view(np.float32), side="right") - 1
    codes[(top & 0x7F80) == 0x7F80] = 0  # infinities and NaN
    codes = np.clip(codes, 0, 255).astype(np.uint8)
    codes.flags.writeable = False
    return codes


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
    v = ns.ravel(blocks / ns.reshape(absmax, (-1, 1)))
    table = ns.constant(dynamic_map(signed), values)
    # binary search for the largest table[lo] <= v (NaN: 0), then round up when v is
    # at least half way to the next value
    lo = ns.where(v >= table[128], 128, 0)
    for half in (64, 32, 16, 8, 4, 2, 1):
        lo = lo + ns.where(v >= ns.take(table, lo + half, 0), half, 0)
    hi = ns.minimum(lo + 1, 255)
    below, above = ns.take(table, lo, 0), ns.take(table, hi, 0)
    codes = ns.where(v - below >= (above - below) * np.float32(0.5), hi, lo)
    # a nonzero value keeps its sign: the nearest nonzero code where 0 is nearer
    zero = zero_code(signed)
    codes = ns.where((v > 0) & (codes == zero), zero + 1, codes)
    if signed:
        codes = ns.where((v < 0) & (codes == zero), zero - 1, codes)
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


def initial(param: Any, fill: float, signed: bool) -> tuple[Any, Any]:
    """``(codes, absmax)`` of a slot filled with ``fill``, shaped like ``param``."""
    ns = namespace_of(param)
    value = ns.full_like(param, fill)
    return quantised(ns.stored(value, "float32"), signed)
