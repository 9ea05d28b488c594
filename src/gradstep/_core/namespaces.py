"""Array namespaces: what the eager engine needs to run on NumPy, torch or JAX arrays.

The element functions of the rules name their operations through
:mod:`gradstep._core.xmath` (NumPy by default). For torch tensors and JAX arrays the
eager engine runs the same functions with those names bound to the library's own
operations (:func:`gradstep._core.xmath.bind`), and creates state with the library's
constructors, so tensors stay on their device and in their dtype. Torch and JAX are
imported only when an array of theirs shows up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import xmath


class Namespace:
    """Operations of one array library, as the eager engine uses them."""

    name: str = "numpy"
    ops: dict[str, Callable] = {}

    def is_float(self, x: Any) -> bool:
        return np.issubdtype(np.result_type(x), np.floating)

    def scalar_caster(self, x: Any) -> Callable[[Any], Any]:
        """How a per-step scalar is handed to element math on ``x``."""
        dtype = np.result_type(x)
        kind = dtype.type if np.issubdtype(dtype, np.floating) else np.float64
        return lambda v: v if isinstance(v, (bool, np.bool_)) else kind(v)

    def full_like(self, x: Any, fill: float) -> Any:
        p = np.asarray(x)
        dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64
        return np.full(p.shape, fill, dtype=dtype)

    def copy(self, x: Any) -> Any:
        p = np.asarray(x)
        dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64
        return np.array(p, dtype=dtype, copy=True)

    def sum_of_squares(self, x: Any) -> float:
        a = np.asarray(x, dtype=np.float64).ravel()
        return float(np.dot(a, a))

    def wrap(self, x: Any) -> Any:
        """A result as an array (NumPy turns 0-d results into scalars)."""
        return np.asarray(x) if isinstance(x, np.generic) else x

    def zeros_like(self, x: Any) -> Any:
        return np.zeros_like(x)


NUMPY = Namespace()


class _Torch(Namespace):
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch

        def maximum(a, b):
            if not isinstance(a, torch.Tensor):
                a, b = b, a
            return torch.maximum(a, b) if isinstance(b, torch.Tensor) else a.clamp(min=b)

        def minimum(a, b):
            if not isinstance(a, torch.Tensor):
                a, b = b, a
            return torch.minimum(a, b) if isinstance(b, torch.Tensor) else a.clamp(max=b)

        def where(condition, a, b):
            # a per-step boolean scalar (e.g. RAdam's rectification switch) chooses
            # between whole arrays
            if not isinstance(condition, torch.Tensor):
                return a if condition else b
            return torch.where(condition, a, b)

        self.ops = {
            "sqrt": torch.sqrt,
            "absolute": torch.abs,
            "sign": torch.sign,
            "maximum": maximum,
            "minimum": minimum,
            "where": where,
            "isnan": torch.isnan,
            "isfinite": torch.isfinite,
            "nan_to_zero": lambda x: torch.where(torch.isnan(x), torch.zeros_like(x), x),
            "finite_or_zero": lambda x: torch.where(torch.isfinite(x), x, torch.zeros_like(x)),
            "clip": lambda x, lo, hi: x.clamp(min=lo, max=hi),
        }

    def is_float(self, x: Any) -> bool:
        return x.is_floating_point()

    def scalar_caster(self, x: Any) -> Callable[[Any], Any]:
        # Python numbers are weakly typed in torch: the tensor keeps its dtype
        return lambda v: v if isinstance(v, (bool, np.bool_)) else float(v)

    def full_like(self, x: Any, fill: float) -> Any:
        dtype = x.dtype if x.is_floating_point() else self.torch.float32
        return self.torch.full_like(x, fill, dtype=dtype).detach()

    def copy(self, x: Any) -> Any:
        return x.detach().clone()

    def sum_of_squares(self, x: Any) -> float:
        return float(self.torch.sum(x.detach().double() ** 2))

    def wrap(self, x: Any) -> Any:
        return x

    def zeros_like(self, x: Any) -> Any:
        return self.torch.zeros_like(x)


class _Jax(Namespace):
    name = "jax"

    def __init__(self) -> None:
        import jax.numpy as jnp

        self.jnp = jnp
        self.ops = {
            "sqrt": jnp.sqrt,
            "absolute": jnp.abs,
            "sign": jnp.sign,
            "maximum": jnp.maximum,
            "minimum": jnp.minimum,
            "where": jnp.where,
            "isnan": jnp.isnan,
            "isfinite": jnp.isfinite,
            "nan_to_zero": lambda x: jnp.where(jnp.isnan(x), jnp.zeros_like(x), x),
            "finite_or_zero": lambda x: jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x)),
            "clip": jnp.clip,
        }

    def is_float(self, x: Any) -> bool:
        return self.jnp.issubdtype(x.dtype, self.jnp.floating)

    def scalar_caster(self, x: Any) -> Callable[[Any], Any]:
        # Python numbers are weakly typed in JAX: the array keeps its dtype
        return lambda v: v if isinstance(v, (bool, np.bool_)) else float(v)

    def full_like(self, x: Any, fill: float) -> Any:
        return self.jnp.full_like(x, fill)

    def copy(self, x: Any) -> Any:
        return self.jnp.array(x, copy=True)

    def sum_of_squares(self, x: Any) -> float:
        a = np.asarray(x, dtype=np.float64).ravel()
        return float(np.dot(a, a))

    def wrap(self, x: Any) -> Any:
        return x

    def zeros_like(self, x: Any) -> Any:
        return self.jnp.zeros_like(x)


@functools.cache
def _library(name: str) -> Namespace:
    return _Torch() if name == "torch" else _Jax()


def namespace_of(x: Any) -> Namespace:
    """The namespace of an array: NumPy's unless ``x`` is a torch tensor or a JAX array."""
    module = type(x).__module__
    if module.startswith("torch"):
        return _library("torch")
    if module.startswith(("jax", "jaxlib")):
        return _library("jax")
    return NUMPY


@functools.cache
def _bound(fn: Callable, name: str) -> Callable:
    return fn if name == "numpy" else xmath.bind(fn, _library(name).ops)


def element_for(fn: Callable, ns: Namespace) -> Callable:
    """``fn`` with its element operations resolved in ``ns``."""
    return _bound(fn, ns.name)


def nan_to_zero(x: Any, ns: Namespace) -> Any:
    return xmath.nan_to_zero(x) if ns is NUMPY else ns.ops["nan_to_zero"](x)
