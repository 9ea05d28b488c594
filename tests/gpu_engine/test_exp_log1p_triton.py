"""The Triton engine's ``exp`` and ``log1p`` (under Triton's CPU interpreter): within
a few ulp of the correctly rounded float32 result over the whole float32 range, the
special values exact, and every element operation has a Triton implementation."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from gradstep._core.xmath import OPERATIONS
from gradstep.engines import _triton_ops

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

BLOCK = 4096
REFERENCES = {"exp": np.exp, "log1p": np.log1p}
#: float32 error bounds in ulp. The interpreter runs ``tl.exp``/``tl.log`` as
#: NumPy's float32 loops, SIMD approximations on some CPUs (exp up to 2 ulp off,
#: log up to 3); log1p's correction for the rounding of ``1 + x`` (``x / (u - 1)``
#: and a product) adds up to one more
ULPS = {"exp": 2, "log1p": 4}


@triton.jit
def _exp_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    keep = i < n
    tl.store(y_ptr + i, _triton_ops.exp(tl.load(x_ptr + i, mask=keep)), mask=keep)


@triton.jit
def _log1p_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    keep = i < n
    tl.store(y_ptr + i, _triton_ops.log1p(tl.load(x_ptr + i, mask=keep)), mask=keep)


KERNELS = {"exp": _exp_kernel, "log1p": _log1p_kernel}


def _run(name: str, x: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(x)
    y = torch.empty_like(t)
    with np.errstate(all="ignore"):  # the interpreter's NumPy: overflow, log of negatives
        KERNELS[name][(triton.cdiv(t.numel(), BLOCK),)](t, y, t.numel(), BLOCK=BLOCK)
    return y.numpy()


def _reference(name: str, x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return REFERENCES[name](x.astype(np.float64)).astype(x.dtype)


def _ordered(x: np.ndarray) -> np.ndarray:
    """float32 values as integers in the order of the values (adjacent floats differ
    by 1, -0 and 0 are the same)."""
    bits = x.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _samples(name: str) -> np.ndarray:
    """Random float32 bit patterns (every magnitude) where the result is finite, and
    uniform values over the range where it is not trivial."""
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    dense = (-104.0, 88.7) if name == "exp" else (-0.999, 3.0)
    x = np.concatenate([x, rng.uniform(*dense, 100_000).astype(np.float32)])
    return x[np.isfinite(_reference(name, x))]


@pytest.mark.parametrize("name", ["exp", "log1p"])
def test_float32_within_a_few_ulp_of_the_correctly_rounded_result(name):
    x = _samples(name)
    got, want = _run(name, x), _reference(name, x)
    assert got.dtype == np.float32
    ulps = np.abs(_ordered(got) - _ordered(want))
    worst = int(np.argmax(ulps))
    assert ulps[worst] <= ULPS[name], (x[worst], got[worst], want[worst])
    assert np.mean(ulps == 0) > 0.6  # mostly correctly rounded: not a cruder method


#: float32 special values and their results (None: whatever the reference says)
SPECIALS = {
    "exp": (
        [0.0, -0.0, np.inf, -np.inf, np.nan, 88.73, 90.0, -110.0, -200.0, 1e-30, -1e-30],
        [1.0, 1.0, np.inf, 0.0, np.nan, np.inf, np.inf, 0.0, 0.0, 1.0, 1.0],
    ),
    "log1p": (
        [0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -1.5, -3e38, 1e-30, -1e-30, 1e-45, 3e38],
        [0.0, -0.0, np.inf, np.nan, np.nan, -np.inf, np.nan, np.nan, 1e-30, -1e-30, 1e-45, None],
    ),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["exp", "log1p"])
def test_special_values_are_exact(name, dtype):
    values, wanted = SPECIALS[name]
    x = np.array(values, dtype)
    want = _reference(name, x)
    if dtype == np.float32:  # exp(88.73) is finite, exp(-110) not 0 in float64
        known = np.array([w is not None for w in wanted])
        hand = np.array([w for w in wanted if w is not None], np.float32)
        np.testing.assert_array_equal(want[known], hand)
    got = _run(name, x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    # log1p(-0) is -0; a NaN's sign is no part of the result (libraries and processors
    # differ: x86 makes the invalid operation's NaN negative)
    number = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))


@pytest.mark.parametrize("name", ["exp", "log1p"])
def test_float64_is_the_library_result(name):
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.uniform(-700.0, 700.0, 5000), rng.uniform(-1.0, 3.0, 5000)])
    got, want = _run(name, x), _reference(name, x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float64).eps, atol=0)


def test_every_operation_has_a_triton_implementation():
    for name in OPERATIONS:
        op = getattr(_triton_ops, name, None)
        # a Triton function defined there (the interpreter wraps each in its own type)
        assert op is not None and op.fn.__module__ == _triton_ops.__name__, name
        assert op.fn.__name__ == name
