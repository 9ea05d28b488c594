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


def test_numba_float32_cbrt_equals_the_eager_reference_bit_for_bit():
    # the fused engine's float32 cube root is vectorisable arithmetic (Halley steps in
    # float64), not the C library's cbrtf: it must round exactly as the eager
    # reference does, over every kind of float32 (random bit patterns: subnormals,
    # huge values, both signs, NaN payloads) and the special values
    from numba import njit

    from gradstep.engines._scalar_ops import cbrt as scalar_cbrt

    @njit(error_model="numpy")
    def each(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = scalar_cbrt(x[i])
        return out

    bits = np.random.default_rng(0).integers(0, 2**32, size=2_000_000, dtype=np.uint64)
    x = np.concatenate([bits.astype(np.uint32).view(np.float32), np.array(VALUES, np.float32)])
    x = np.concatenate([x, np.array([1e-45, -1e-45, 3.4e38, -3.4e38, 27.0], np.float32)])
    with np.errstate(invalid="ignore"):  # NaN payloads through float64 and back
        got, want = each(x), cbrt(x)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), (x[~same][:5], got[~same][:5], want[~same][:5])


def test_generated_kernels_name_the_compiled_helpers_they_call():
    # numba's disk cache checks only the generated file: the kernels' source carries a
    # hash of the helper modules, so a changed helper (this cube root) recompiles
    import hashlib
    from pathlib import Path

    import gradstep.engines.fused_codegen as codegen
    from gradstep._core import blockwise8
    from gradstep.engines import _half_ops, _scalar_exp, _scalar_ops

    digest = hashlib.sha256()
    for module in (_scalar_ops, _scalar_exp, _half_ops, blockwise8):
        digest.update(Path(module.__file__).read_bytes())
    assert codegen.HELPERS_FINGERPRINT == digest.hexdigest()[:16]
    import gradstep
    from gradstep.engines.plan import flatten_stages

    source = codegen.generate_source(flatten_stages(gradstep.madgrad(1e-2)))
    assert f"# compiled helpers: {codegen.HELPERS_FINGERPRINT}" in source.splitlines()[:3]
