"""The ``exp`` and ``log1p`` element operations: the numba engine's float32 versions
(float64 series, rounded once) are the correctly rounded results over the whole
float32 range, float64 keeps the C library's, and every element operation has an
implementation in the numba module and the torch and JAX namespaces (the Triton
module: tests/gpu_engine/test_exp_log1p_triton.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradstep._core import xmath

numba = pytest.importorskip("numba", reason="needs numba (a dependency of the fused engine)")

from gradstep.engines import _scalar_ops  # noqa: E402  (numba first)

#: zeros, infinities, NaN, log1p's pole and domain edge, exp's float32 overflow
#: (88.7228...) and underflow (below about -103.97 the result rounds to 0) edges,
#: the largest float32, subnormals and values whose results round to 1 or to x
SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -1.5, -2.0, -3.4e38, 88.72, 88.7228, 88.7229,
     88.73, 90.0, -87.3, -103.9, -103.97, -103.98, -104.0, -110.0, -200.0, 3.4e38,
     1e-45, -1e-45, 1e-38, 1e-30, -1e-30, 1e-8, -1e-8, 6e-8, 1.0, -0.5, 0.5, 2.0],
    np.float32,
)  # fmt: skip

REFERENCES = {"exp": np.exp, "log1p": np.log1p}


def _compiled(name: str):
    """A numba loop applying the engine's operation ``name`` to each element."""
    op = getattr(_scalar_ops, name)

    @numba.njit(error_model="numpy")  # the generated kernels' error model
    def each(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = op(x[i])
        return out

    return each


def _float32_samples() -> np.ndarray:
    """Every kind of float32 (random bit patterns: subnormals, huge values, both signs,
    NaN payloads), uniform values where exp's and log1p's results are finite and not
    trivial, and the special values."""
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    return np.concatenate(
        [
            bits.view(np.float32),
            rng.uniform(-104.0, 88.8, 100_000).astype(np.float32),
            rng.uniform(-1.0, 2.0, 50_000).astype(np.float32),
            SPECIALS,
        ]
    )


def _same_bits(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))


@pytest.mark.parametrize("name", ["exp", "log1p"])
def test_numba_float32_is_the_correctly_rounded_result(name):
    x = _float32_samples()
    with np.errstate(all="ignore"):  # overflow, log of negatives, NaN payloads
        got = _compiled(name)(x)
        want = REFERENCES[name](x.astype(np.float64)).astype(np.float32)
    assert got.dtype == np.float32
    same = _same_bits(got, want)
    assert same.all(), (x[~same][:5], got[~same][:5], want[~same][:5])


def test_numba_float32_special_values():
    exp, log1p = _compiled("exp"), _compiled("log1p")
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.73, 90.0, -110.0, 1e-30], np.float32)
    np.testing.assert_array_equal(exp(x), [1, 1, np.inf, 0, np.nan, np.inf, np.inf, 0, 1])
    assert exp(np.array([88.72], np.float32))[0] == np.float32(3.3931806e38)  # finite
    assert exp(np.array([-103.9], np.float32))[0] == np.float32(1e-45)  # a subnormal
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -1.5, 1e-30, -1e-45], np.float32)
    with np.errstate(all="ignore"):
        got = log1p(x)
    np.testing.assert_array_equal(
        got, np.array([0, 0, np.inf, np.nan, np.nan, -np.inf, np.nan, 1e-30, -1e-45], np.float32)
    )
    assert np.signbit(got[1]) and not np.signbit(got[0])  # log1p(-0) is -0


@pytest.mark.parametrize("name", ["exp", "log1p"])
def test_numba_float64_keeps_the_library_result(name):
    rng = np.random.default_rng(8)
    x = np.concatenate(
        [rng.uniform(-700.0, 700.0, 20_000), rng.uniform(-1.0, 3.0, 20_000), SPECIALS]
    )
    with np.errstate(all="ignore"):
        got, want = _compiled(name)(x), REFERENCES[name](x)
    assert got.dtype == np.float64
    # the C library's and NumPy's float64 loops may differ in the last place
    np.testing.assert_allclose(got, want, rtol=2 * np.finfo(np.float64).eps, atol=0)
    special = ~np.isfinite(want) | (want == 0)
    np.testing.assert_array_equal(got[special], want[special])


@pytest.mark.parametrize("name", ["exp", "log1p"])
def test_eager_float32_is_the_correctly_rounded_result(name):
    # NumPy's float32 loops are SIMD approximations on some CPUs (up to 2 ulp off
    # for exp with AVX-512): the eager reference must not depend on the CPU, and
    # equals the numba engine's bit for bit
    x = _float32_samples()
    with np.errstate(all="ignore"):
        got = getattr(xmath, name)(x)
        want = REFERENCES[name](x.astype(np.float64)).astype(np.float32)
    assert got.dtype == np.float32
    assert _same_bits(got, want).all()
    assert getattr(xmath, name)(np.float32(0.0)).dtype == np.float32
    assert getattr(xmath, name)(np.float16(0.5)).dtype == np.float16
    assert xmath.exp(np.float64(1.0)) == np.exp(1.0)


def test_every_operation_has_an_implementation_in_each_engine():
    torch_namespace = pytest.importorskip(
        "gradstep.engines.torch_namespace", reason="needs torch (a test dependency)"
    )
    jax_namespace = pytest.importorskip(
        "gradstep.engines.jax_namespace", reason="needs JAX (a test dependency)"
    )
    torch_ops = torch_namespace.TorchNamespace().ops
    jax_ops = jax_namespace.JaxNamespace().ops
    for name in xmath.OPERATIONS:
        assert callable(getattr(xmath, name)), name  # NumPy's (the eager engine)
        assert callable(getattr(_scalar_ops, name)), name
        assert callable(torch_ops[name]), name
        assert callable(jax_ops[name]), name
    assert {"exp", "log1p"} <= set(xmath.OPERATIONS)


@pytest.mark.parametrize("name", ["exp", "log1p"])
def test_torch_and_jax_namespaces_compute_them(name):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    jnp = pytest.importorskip("jax.numpy", reason="needs JAX (a test dependency)")
    from gradstep.engines.jax_namespace import JaxNamespace
    from gradstep.engines.torch_namespace import TorchNamespace

    x = np.array([-2.0, -1.0, -0.5, -0.0, 0.0, 1e-30, 0.75, 30.0, np.inf, np.nan], np.float32)
    with np.errstate(all="ignore"):
        want = REFERENCES[name](x.astype(np.float64)).astype(np.float32)
    for got in (
        TorchNamespace().ops[name](torch.from_numpy(x)).numpy(),
        np.asarray(JaxNamespace().ops[name](jnp.asarray(x))),
    ):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=4e-7, atol=0, equal_nan=True)


def _softplus_like(g, w):
    # both operations in one element function: exp of large and very negative
    # values, log1p of tiny ones
    return log1p(exp(g)) + exp(-absolute(w))


log1p, exp, absolute = xmath.log1p, xmath.exp, xmath.absolute


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_element_function_using_them_runs_fused_as_eager(dtype):
    import gradstep
    from gradstep._core.elementwise import Elementwise

    def run(engine):
        stage = Elementwise("softplus_like", _softplus_like, uses_params=True)
        params = [np.linspace(-3.0, 3.0, 1001).astype(dtype), np.full((3, 5), 0.5, dtype)]
        opt = gradstep.Optimizer(params, gradstep.chain(stage, gradstep.sgd(1e-3)), engine=engine)
        for k in range(2):
            grads = [np.linspace(-120.0, 86.0, p.size).reshape(p.shape) + k for p in params]
            opt.step([g.astype(dtype) for g in grads])
        assert opt.engine == engine
        return params

    want, got = run("eager"), run("fused")
    for a, b in zip(want, got):  # float32: the same bits; float64: the C library's
        np.testing.assert_allclose(b, a, rtol=4 * np.finfo(np.float64).eps, atol=0)
