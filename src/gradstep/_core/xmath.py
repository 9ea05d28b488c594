"""The operations an element function may use, besides + - * / and comparisons.

Element functions (see :mod:`gradstep._core.elementwise`) import their operations
from here by name. On the eager NumPy engine these names are NumPy's ufuncs, so an
element function runs on whole arrays. Other engines run the *same* function with
these names bound to their own implementations (scalar versions inside a generated
loop, torch or jax functions): :func:`bind` makes that copy without touching the
source, so the math of a rule exists once.

Rules for element functions, so that every engine can run them:
- only the names below, arithmetic, comparisons and the arguments;
- no float literals: constants come in as scalars from ``prepare`` (a literal
  would change the precision of a float32 loop);
- no branching on array values: use :func:`where`.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import numpy as np

sqrt = np.sqrt
absolute = np.abs
sign = np.sign
maximum = np.maximum
minimum = np.minimum
where = np.where
isnan = np.isnan
isfinite = np.isfinite


def nan_to_zero(x):
    """``x`` with NaN elements replaced by 0 (infinities kept), as Dandelion's clear_nan."""
    return np.where(np.isnan(x), np.zeros_like(x), x)


def finite_or_zero(x):
    """``x`` with NaN and infinite elements replaced by 0."""
    return np.where(np.isfinite(x), x, np.zeros_like(x))


def clip(x, lo, hi):
    """``x`` limited to ``[lo, hi]`` element by element."""
    return np.minimum(np.maximum(x, lo), hi)


OPERATIONS = (
    "sqrt",
    "absolute",
    "sign",
    "maximum",
    "minimum",
    "where",
    "isnan",
    "isfinite",
    "nan_to_zero",
    "finite_or_zero",
    "clip",
)


def bind(fn: Callable, namespace: dict[str, Callable]) -> Callable:
    """A copy of ``fn`` whose operation names resolve to ``namespace``.

    ``namespace`` maps names of :data:`OPERATIONS` to implementations; names it does
    not give keep their NumPy meaning.
    """
    unknown = set(namespace) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"not element operations: {sorted(unknown)}")
    if isinstance(fn, functools.partial):  # a module-level function with fixed options
        return functools.partial(bind(fn.func, namespace), *fn.args, **fn.keywords)
    new_globals = dict(fn.__globals__)
    new_globals.update(namespace)
    bound = types.FunctionType(
        fn.__code__, new_globals, fn.__name__, fn.__defaults__, fn.__closure__
    )
    bound.__qualname__ = fn.__qualname__
    bound.__doc__ = fn.__doc__
    return bound
