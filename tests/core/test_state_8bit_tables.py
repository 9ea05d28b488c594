"""The kernels' 8-bit quantiser tables (gradstep._core.blockwise8): the numba
kernels' key table read by ``q8_code`` and the Triton kernels' bucket table, each
giving the eager quantiser's code for every kind of normalised value."""

from __future__ import annotations

import numpy as np
import pytest

from gradstep._core import blockwise8 as q8


def _values(rng, n):
    return (rng.standard_normal(n) * np.exp(rng.uniform(-12, 3, n))).astype(np.float32)


def _code_changes(signed):
    """The float32 values at which either table says the code changes, and the
    values just below them (the same thresholds: the quantiser's)."""
    table = q8.bucket_codes(signed).astype(np.int64)
    at, below = [], []
    for side in (0, 1):
        entries = table[side * q8.BUCKET_WIDTH : (side + 1) * q8.BUCKET_WIDTH]
        index = np.flatnonzero((entries >> 8) != q8.NEVER)
        rank = entries[index] >> 8
        at.append(q8._bucket_value(side, index, rank))
        below.append(q8._bucket_value(side, index, rank - 1))
    keys = q8.key_codes(signed).astype(np.int64)
    index = np.flatnonzero(keys & 0xFFFF)  # an entry's low half is 0x10000 - rank, or 0
    bucket, rank = index + q8.KEY_LOW, 0x10000 - (keys[index] & 0xFFFF)
    at.append(q8._key_value(bucket, rank))
    below.append(q8._key_value(bucket, rank - 1))
    return np.concatenate(at), np.concatenate(below)


def _bucket_ends():
    index = np.arange(q8.BUCKET_WIDTH)
    ranks = [np.full(index.size, r) for r in (0, 0xFFFF)]
    ends = [q8._bucket_value(side, index, r) for side in (0, 1) for r in ranks]
    bucket = np.arange(q8.KEY_LOW, q8.KEY_HIGH + 1)
    ends += [q8._key_value(bucket, np.full(bucket.size, r)) for r in (0, 0xFFFF)]
    return np.concatenate(ends)


def _bucket_lookup(v, signed):
    """The Triton kernels' arithmetic on the bucket table
    (:func:`gradstep.engines._triton_ops.q8_codes`), in NumPy."""
    bits = v.view(np.int32).astype(np.int64)
    magnitude, sign = bits & 0x7FFFFFFF, (bits >> 31) & 1
    top = magnitude >> 16
    floor = top <= q8.BUCKET_FLOOR
    top = np.clip(top, q8.BUCKET_FLOOR, q8.BUCKET_TOP)
    rank = np.where(floor, np.minimum(magnitude, 1), bits & 0xFFFF) ^ (sign * 0xFFFF)
    entry = q8.bucket_codes(signed).astype(np.int64)[top - q8.BUCKET_FLOOR + sign * q8.BUCKET_WIDTH]
    return ((entry & 0xFF) + (rank >= (entry >> 8))).astype(np.uint8)


def _kernel_codes(v, signed):
    numba = pytest.importorskip("numba", reason="the fused engine's quantiser")
    from gradstep.engines._scalar_ops import q8_code

    @numba.njit
    def codes_of(v, out, table):
        for i in range(v.size):
            out[i] = q8_code(v[i], table)

    out = np.zeros(v.size, np.uint8)
    codes_of(v, out, q8.key_codes(signed))
    return out


LOOKUPS = {"numba key table": _kernel_codes, "triton bucket table": _bucket_lookup}


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_kernel_quantiser_equals_the_eager_one_on_every_kind_of_value(lookup):
    """The kernels find the code from a table of buckets (one lookup, one
    comparison); the eager engine by binary search: the same code for normalised
    values of every magnitude, signed zeros, the ends of the range, random bit
    patterns, the first and last value of every bucket of both tables, and the
    float32 values at and just below every change of code within a bucket."""
    rng = np.random.default_rng(7)
    ends = np.array([0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 0.99999994, -0.99999994], np.float32)
    bits = rng.integers(0, 2**32, 50_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    for signed in (True, False):
        at, below = _code_changes(signed)
        v = np.concatenate([ends, _values(rng, 50_000) / 60, bits, at, below, _bucket_ends()])
        v = (v if signed else np.abs(v)).astype(np.float32)
        v = v[np.abs(v) <= 1]  # normalised values (NaN apart, below)
        have = LOOKUPS[lookup](v, signed)
        # the eager quantiser, on blocks led by a 1.0 (so each block's scale is 1)
        rows = np.pad(v, (0, -v.size % 255)).reshape(-1, 255)
        blocks = np.concatenate([np.ones((rows.shape[0], 1), np.float32), rows], axis=1)
        codes, _ = q8.quantised(blocks.ravel(), signed)
        np.testing.assert_array_equal(have, codes.reshape(-1, 256)[:, 1:].ravel()[: v.size])
        nan = LOOKUPS[lookup](np.array([np.nan, -np.nan], np.float32), signed)
        assert list(nan) == [0, 0]  # as the eager quantiser's binary search gives


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_kernel_quantiser_around_zero_and_the_floor_bucket_edge(lookup):
    """Normalised magnitudes at and around 2**-24, where the bucket table's floor
    bucket (every smaller magnitude: 0 or not) meets the first bucket of 16-bit ranks
    (2**-24 itself is a nonzero value, not the zero code), and the smallest
    magnitudes, where the key table's buckets meet at zero."""
    edge = np.uint32(0x33800000)
    bits = np.concatenate(
        [edge + np.arange(-3, 4), [0, 1, 2, 0xFFFF, 0x10000, 0x337F0000, 0x3380FFFF, 0x33810000]]
    )
    v = bits.astype(np.uint32).view(np.float32)
    for signed in (True, False):
        for values in (v, -v) if signed else (v,):
            have = LOOKUPS[lookup](values, signed)
            np.testing.assert_array_equal(have, q8._numpy_codes(values, signed))


def test_each_bucket_holds_at_most_one_change_of_code():
    """What the kernels' single comparison relies on (also checked while the tables
    are built): the code at a bucket's change is one more than just below it (a
    change at a bucket's first value is its start code)."""
    for signed in (True, False):
        at, below = _code_changes(signed)
        up = q8._numpy_codes(at, signed) - q8._numpy_codes(below, signed)
        assert np.all(up == 1)


def test_the_key_table_reads_the_codes_of_the_bucket_table():
    """Both tables' codes at a million float32 values spread over every bit pattern
    (beyond [-1, 1] too, where the kernels agree with each other though no
    normalised value goes)."""
    bits = np.arange(0, 2**32, 4093, dtype=np.uint64).astype(np.uint32)
    v = bits.view(np.float32)
    for signed in (True, False):
        np.testing.assert_array_equal(_kernel_codes(v, signed), _bucket_lookup(v, signed))
