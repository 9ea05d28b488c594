"""JAX's array namespace: the rules' element and array operations on JAX arrays, all
traceable by :func:`jax.jit` (registered by ``import gradstep.jax``).

Importing this module registers it for ``jax.Array`` (concrete arrays and tracers;
see :mod:`gradstep._core.namespaces`). Step counts stay traced arrays under jit
(:meth:`JaxNamespace.count`), and random noise comes from ``jax.random`` keys folded
from the state's seed and the step count, so a jitted step is traced once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.namespaces import Namespace, register_namespace


def _default_float():
    return jnp.dtype(jnp.float64) if jax.config.jax_enable_x64 else jnp.dtype(jnp.float32)


def _scalar_dtype(x, real):
    """The dtype of scalars for element math on ``x``: ``real`` (its float dtype),
    or float32 for complex64 and float64 for complex128 (no scalar widens it)."""
    dtype = jnp.result_type(x)
    return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else real


class JaxNamespace(Namespace):
    """See the module docstring."""

    name = "jax"

    def __init__(self) -> None:
        self.ops = {
            "sqrt": jnp.sqrt,
            "cbrt": jnp.cbrt,
            "absolute": jnp.abs,
            "sign": jnp.sign,
            "maximum": jnp.maximum,
            "minimum": jnp.minimum,
            "where": jnp.where,
            "isnan": jnp.isnan,
            "isfinite": jnp.isfinite,
            "exp": jnp.exp,
            "log1p": jnp.log1p,
            "nan_to_zero": lambda x: jnp.where(jnp.isnan(x), jnp.zeros_like(x), x),
            "finite_or_zero": lambda x: jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x)),
            "clip": jnp.clip,
            # the identity on real arrays (jax.numpy's own)
            "conj": jnp.conj,
            "real": jnp.real,
        }

    def is_float(self, x: Any) -> bool:
        return jnp.issubdtype(x.dtype, jnp.floating)

    def scalar_caster(self, x: Any) -> Callable[[Any], Any]:
        # Python numbers are weakly typed in JAX: the array keeps its dtype
        def cast(v):
            if isinstance(v, (bool, np.bool_)):
                return v
            if isinstance(v, (jax.Array, np.ndarray, np.generic)):
                return jnp.asarray(v).astype(_scalar_dtype(x, self.float_dtype(x)))
            return float(v)

        return cast

    def wrap(self, x: Any) -> Any:
        return x

    def float_dtype(self, x: Any) -> Any:
        dtype = jnp.result_type(x)
        return dtype if jnp.issubdtype(dtype, jnp.floating) else _default_float()

    def widened(self, x: Any) -> Any:
        dtype = getattr(x, "dtype", None)
        if dtype is not None and jnp.dtype(dtype) in (jnp.float16, jnp.bfloat16):
            return jnp.asarray(x, jnp.float32)
        return x

    def stored(self, x: Any, name: str) -> Any:
        return jnp.asarray(x).astype(jnp.dtype(name))

    def stored_like(self, x: Any, like: Any) -> Any:
        dtype = getattr(like, "dtype", None)
        return x if dtype is None else jnp.asarray(x).astype(dtype)

    def constant(self, values, like):
        return jnp.asarray(values)

    def as_uint8(self, x):
        return jnp.asarray(x).astype(jnp.uint8)

    def as_index(self, x):
        return jnp.asarray(x).astype(jnp.int32)

    def full_like(self, x: Any, fill: float) -> Any:
        # a complex parameter's slots are complex, as optax's state (zeros_like)
        dtype = x.dtype if jnp.iscomplexobj(x) else self.float_dtype(x)
        return jnp.full_like(x, fill, dtype=dtype)

    def zeros_like(self, x: Any) -> Any:
        return jnp.zeros_like(x)

    def zeros(self, shape, like):
        return jnp.zeros(tuple(shape), self.float_dtype(like))

    def copy(self, x: Any) -> Any:
        return jnp.array(x, copy=True)

    def astype(self, x: Any, like: Any) -> Any:
        return jnp.asarray(x).astype(self.float_dtype(like))

    def reshape(self, x, shape):
        return jnp.reshape(x, tuple(shape))

    def ravel(self, x):
        return jnp.ravel(x)

    def concatenate(self, xs):
        return jnp.concatenate(list(xs))

    def matrix_transpose(self, x):
        return jnp.swapaxes(x, -1, -2)

    def matmul(self, a, b):
        return jnp.matmul(a, b)

    def set_row(self, x, row, value):
        return x.at[row].set(value)

    def moveaxis(self, x, source, destination):
        return jnp.moveaxis(x, source, destination)

    def take(self, x, indices, axis):
        return jnp.take(x, indices, axis=axis)

    def flip(self, x, axis):
        return jnp.flip(x, axis=axis)

    def eigh(self, a):
        return jnp.linalg.eigh(a)

    def qr(self, a):
        return jnp.linalg.qr(a, mode="reduced")[0]

    def solve_triangular_right(self, x, a):
        import jax.scipy.linalg

        # X A^-1 = (A^-T X^T)^T: solve A^T Y = X^T
        return jax.scipy.linalg.solve_triangular(a, x.T, trans="T", lower=False).T

    def argsort(self, x):
        return jnp.argsort(x, stable=True)

    def cond(self, predicate, if_true, if_false, *operands):
        if isinstance(predicate, jax.core.Tracer):
            return jax.lax.cond(predicate, if_true, if_false, *operands)
        return if_true(*operands) if predicate else if_false(*operands)

    def sum(self, x, axis=None, keepdims=False):
        return jnp.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return jnp.mean(x, axis=axis, keepdims=keepdims)

    def amax(self, x, axis=None):
        return jnp.max(x, axis=axis)

    def square_sum(self, x):
        x = jnp.asarray(x)
        if jnp.iscomplexobj(x):  # |x|^2: the squares of the real and imaginary parts
            return self.square_sum(jnp.real(x)) + self.square_sum(jnp.imag(x))
        a = jnp.ravel(x).astype(_default_float())
        return jnp.dot(a, a)

    def wide_sum(self, x):
        return jnp.sum(jnp.asarray(x).astype(_default_float()))

    def max_abs(self, x):
        x = jnp.asarray(x)
        return jnp.max(jnp.abs(x)) if x.size else jnp.zeros((), x.dtype)

    def vdot(self, a, b):
        return jnp.dot(a, b)

    def abs_sum(self, x):
        return jnp.sum(jnp.abs(x))

    def is_traced(self, x):
        return isinstance(x, jax.core.Tracer)

    def sqrt(self, x):
        return jnp.sqrt(x)

    def exp(self, x):
        return jnp.exp(x)

    def log1p(self, x):
        return jnp.log1p(x)

    def maximum(self, a, b):
        return jnp.maximum(a, b)

    def minimum(self, a, b):
        return jnp.minimum(a, b)

    def where(self, condition, a, b):
        return jnp.where(condition, a, b)

    def eps(self, x):
        return float(jnp.finfo(self.float_dtype(x)).eps)

    def count(self, x):
        return x if isinstance(x, jax.core.Tracer) else int(x)

    def count_array(self, value, like):
        dtype = jnp.result_type(like)
        top = jnp.iinfo(dtype).max
        if isinstance(value, int):
            return jnp.asarray(min(value, top), dtype)
        # stays at the maximum instead of wrapping
        return jnp.where(value < top, value, top).astype(dtype)

    def normals(self, seed, count, likes, std):
        seed = jnp.asarray(seed)
        key = jax.random.fold_in(jax.random.key(0), seed.astype(jnp.uint32))
        if seed.dtype == jnp.int64:  # the high word of a 64-bit seed
            key = jax.random.fold_in(key, (seed >> 32).astype(jnp.uint32))
        key = jax.random.fold_in(key, jnp.asarray(count).astype(jnp.uint32))
        keys = jax.random.split(key, max(len(likes), 1))
        return [
            (std * jax.random.normal(k, jnp.shape(x), self.float_dtype(x))).astype(
                self.float_dtype(x)
            )
            for k, x in zip(keys, likes)
        ]


register_namespace(jax.Array, JaxNamespace)
register_namespace(jax.core.Tracer, JaxNamespace)  # traced values are not jax.Array subclasses
