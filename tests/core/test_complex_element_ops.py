"""The element operations ``conj`` and ``real`` and the conjugate products built on
them: the identity (same operations, same bits) on real numbers in every engine,
:math:`|x|^2` on complex ones."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from gradstep._core import xmath
from gradstep.rules.adam import scale_by_adam
from gradstep.rules.lion import scale_by_lion


def test_conj_and_real_return_real_arrays_themselves():
    x = np.array([1.5, -2.0], np.float32)
    assert xmath.conj(x) is x
    assert xmath.real(x) is x
    z = np.array([1 + 2j, -3 - 1j], np.complex64)
    np.testing.assert_array_equal(xmath.conj(z), np.conj(z))
    assert xmath.real(z).dtype == np.float32


def test_squares_are_conjugate_products():
    rng = np.random.default_rng(0)
    avg, x = rng.normal(size=(2, 50)).astype(np.float32)
    keep, gain = np.float32(0.9), np.float32(0.1)
    # real: bit for bit the product it replaced
    assert np.array_equal(xmath.ema_square(avg, x, keep, gain), keep * avg + gain * x * x)
    assert np.array_equal(xmath.abs_square(x), x * x)
    z = x + 1j * rng.normal(size=50)
    np.testing.assert_allclose(xmath.abs_square(z), np.abs(z) ** 2, rtol=1e-13)
    assert not np.iscomplexobj(xmath.abs_square(z))
    np.testing.assert_allclose(
        xmath.ema_square(avg, z, 0.9, 0.1), 0.9 * avg + 0.1 * np.abs(z) ** 2, rtol=1e-6
    )


def test_numba_operations_are_the_identity_on_floats():
    numba = pytest.importorskip("numba", reason="needs numba (a dependency of the fused engine)")
    from gradstep.engines import _scalar_ops as ops

    @numba.njit
    def both(x):
        return ops.real(x * ops.conj(x))

    assert both(np.float32(1.5)) == np.float32(2.25)
    assert both(np.float64(-3.0)) == 9.0
    assert both(np.complex128(3 + 4j)) == 25.0


def test_torch_and_jax_operations():
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    jnp = pytest.importorskip("jax.numpy", reason="needs JAX (a test dependency)")
    from gradstep.engines.jax_namespace import JaxNamespace
    from gradstep.engines.torch_namespace import TorchNamespace

    t = torch.tensor([1.0, -2.0])
    ops = TorchNamespace().ops
    assert ops["conj"](t) is t and ops["real"](t) is t
    z = torch.tensor([3 + 4j])
    assert float(ops["real"](z * ops["conj"](z))) == 25.0
    jops = JaxNamespace().ops
    assert float(jops["real"](jnp.asarray(3 + 4j) * jops["conj"](jnp.asarray(3 + 4j)))) == 25.0


def test_complex_ready_marks():
    assert xmath.is_complex_ready(scale_by_adam().element)
    assert xmath.is_complex_ready(functools.partial(scale_by_adam(amsgrad=True).element))
    assert not xmath.is_complex_ready(scale_by_lion().element)
