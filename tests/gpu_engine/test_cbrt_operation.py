"""The ``cbrt`` element operation (MADGRAD's cube root) on every engine: NumPy's
``np.cbrt`` is the reference, including 0, negative numbers, infinities and NaN."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from gradstep._core.xmath import cbrt
from gradstep.engines._triton_ops import cbrt as triton_cbrt

VALUES = [-27.0, -0.5, -0.0, 0.0, 1e-30, 1e-3, 2.0, 8.0, 3.5e12, np.inf, -np.inf, np.nan]
TOLERANCE = {"float32": 5e-7, "float64": 4e-15}  # a few units in the last place


def check(got, dtype: str) -> None:
    want = cbrt(np.array(VALUES, dtype=dtype))
    got = np.asarray(got, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=TOLERANCE[dtype], atol=0.0, equal_nan=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_scalar_operation(dtype):
    from numba import njit

    from gradstep.engines._scalar_ops import cbrt as scalar_cbrt

    @njit
    def each(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = scalar_cbrt(x[i])
        return out

    x = np.array(VALUES, dtype=dtype)
    got = each(x)
    assert got.dtype == x.dtype
    check(got, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_namespace(dtype):
    import gradstep.torch  # noqa: F401
    from gradstep._core.namespaces import namespace_of

    t = torch.tensor(VALUES, dtype=getattr(torch, dtype))
    check(namespace_of(t).ops["cbrt"](t), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_namespace(dtype):
    jnp = pytest.importorskip("jax.numpy", reason="needs JAX (a test dependency)")
    import jax

    import gradstep.jax  # noqa: F401  (registers the JAX namespace)
    from gradstep._core.namespaces import namespace_of

    with jax.enable_x64(dtype == "float64"):
        a = jnp.asarray(VALUES, dtype=dtype)
        got = namespace_of(a).ops["cbrt"](a)
    if "xla_cpu_use_fusion_emitters=false" in os.environ.get("XLA_FLAGS", ""):
        # the test session's faster-compiling XLA emitters (tests/conftest.py) have a
        # cbrt up to 8 ulp off for tiny values; tests/jax_front/
        # test_default_xla_optimisations.py reruns this test with the default ones
        want = cbrt(np.array(VALUES, dtype=dtype))
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-6, equal_nan=True)
    else:
        check(got, dtype)


@triton.jit
def _cbrt_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    keep = i < n
    tl.store(y_ptr + i, triton_cbrt(tl.load(x_ptr + i, mask=keep)), mask=keep)


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_triton_operation(dtype):
    x = torch.tensor(VALUES, dtype=getattr(torch, dtype))
    y = torch.empty_like(x)
    _cbrt_kernel[(1,)](x, y, x.numel(), BLOCK=16)
    check(y, dtype)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_eager_cbrt_is_correctly_rounded(dtype):
    # NumPy's float32 loop may be an approximate SIMD one (on some CPUs a third of
    # the results are 1 ulp off), while the numba engine calls the C library's
    # correctly rounded cbrtf: the eager reference must not depend on the CPU.
    x = np.random.default_rng(0).uniform(-10.0, 10.0, 100_000).astype(dtype)
    got = cbrt(x)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, np.cbrt(x.astype(np.float64)).astype(dtype))
    assert cbrt(np.float32(8.0)) == np.float32(2.0)
    assert cbrt(np.float32(8.0)).dtype == np.float32
