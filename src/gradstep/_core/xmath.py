"""The operations an element function may use, besides + - * / and comparisons.

Element functions (see :mod:`gradstep._core.elementwise`) import their operations
from here by name. On the eager NumPy engine these names are NumPy's ufuncs, so an
element function runs on whole arrays. Other engines run the *same* function with
these names bound to their own implementations (scalar versions inside a generated
loop, torch or jax functions): :func:`bind` makes that copy without touching the
source, so the math of a rule exists once.

Rules for element functions, so that every engine can run them:
- only the names below (operations and element helpers), arithmetic, comparisons
  and the arguments;
- no float literals: constants come in as scalars from ``prepare`` (a literal
  would change the precision of a float32 loop);
- no branching on array values: use :func:`where`.

**Element helpers** (:func:`element_helper`) are small element functions shared by
rules, such as the moment update :func:`ema` (``b1 * mu + c1 * g``). They follow the
same rules and may call operations and other helpers. The eager engines call them
(bound to their namespace with the function that uses them, :func:`bind`); the code
generators copy each helper a function references into the generated module
(:func:`referenced_helpers`).

**Complex numbers.** Where a rule's math has a meaning for complex values (optax's:
first moments complex, second moments from :math:`|g|^2 = \\mathrm{Re}(g \\bar g)`),
its squares are written as conjugate products (:func:`abs_square`,
:func:`ema_square`, with the operations ``conj`` and ``real``, which are the identity
on real numbers in every engine): a real rule runs the same operations in the same
order, and a complex value gets that meaning. Element functions so written are
marked with :func:`complex_ready`; a front that steps complex parameters natively
(:mod:`gradstep.compat.optax`) refuses the others rather than guess.

Scalar helpers for ``prepare`` (:func:`debias`) are plain arithmetic of the
hyperparameters and the step count, so the JAX engine can trace them.
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


def _rounded_from_float64(ufunc: Callable, x):
    """``ufunc(x)``, for float32 and narrower floats computed in float64 and rounded
    to ``x``'s dtype (so correctly rounded but for double-rounding ties).

    NumPy's float32 loops of cbrt, exp and log1p may be approximate SIMD versions
    (on some CPUs a third of the results are 1 ulp off, exp's up to 2), while the
    numba engine's are correctly rounded: going through float64 keeps the eager
    reference independent of the CPU, and the same bits as the numba engine's.
    """
    dtype = getattr(x, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind == "f" and dtype.itemsize < 8:
        return ufunc(x.astype(np.float64)).astype(dtype)
    return ufunc(x)


def cbrt(x):
    """The cube root of ``x``, correctly rounded in float32 and below."""
    return _rounded_from_float64(np.cbrt, x)


def exp(x):
    """:math:`e^x`, correctly rounded in float32 and below."""
    return _rounded_from_float64(np.exp, x)


def log1p(x):
    """:math:`\\log(1 + x)`, correctly rounded in float32 and below."""
    return _rounded_from_float64(np.log1p, x)


def nan_to_zero(x):
    """``x`` with NaN elements replaced by 0 (infinities kept), as Dandelion's clear_nan."""
    return np.where(np.isnan(x), np.zeros_like(x), x)


def finite_or_zero(x):
    """``x`` with NaN and infinite elements replaced by 0."""
    return np.where(np.isfinite(x), x, np.zeros_like(x))


def clip(x, lo, hi):
    """``x`` limited to ``[lo, hi]`` element by element."""
    return np.minimum(np.maximum(x, lo), hi)


def conj(x):
    """The complex conjugate of ``x``: ``x`` itself for real numbers (no copy), so a
    real rule's arithmetic is unchanged by it."""
    return np.conj(x) if np.iscomplexobj(x) else x


def real(x):
    """The real part of ``x``: ``x`` itself for real numbers (no copy)."""
    return np.real(x) if np.iscomplexobj(x) else x


OPERATIONS = (
    "sqrt",
    "cbrt",
    "absolute",
    "sign",
    "maximum",
    "minimum",
    "where",
    "isnan",
    "isfinite",
    "exp",
    "log1p",
    "nan_to_zero",
    "finite_or_zero",
    "clip",
    "conj",
    "real",
)


#: element helpers by name (see :func:`element_helper`)
HELPERS: dict[str, Callable] = {}


def element_helper(fn: Callable) -> Callable:
    """Register ``fn`` as an element helper under its name.

    A helper is an element function (same rules: operations, other helpers,
    arithmetic on its arguments, no float literals, no closures) that element
    functions may call by name. Its name must not be an operation's.
    """
    code = fn.__code__
    unknown = set(code.co_names) - set(OPERATIONS) - set(HELPERS)
    if unknown or code.co_freevars or fn.__name__ in OPERATIONS:
        raise ValueError(
            f"element helper {fn.__name__}: uses names other than element operations "
            f"and helpers: {sorted(unknown | set(code.co_freevars))}"
        )
    HELPERS[fn.__name__] = fn
    return fn


def referenced_helpers(fn: Callable) -> list[str]:
    """The helpers ``fn`` calls, directly or through other helpers, each after the
    helpers it calls itself (an order in which to define them)."""
    order: list[str] = []

    def visit(f: Callable) -> None:
        for name in f.__code__.co_names:
            if name in HELPERS and name not in order and f.__globals__.get(name) is HELPERS[name]:
                visit(HELPERS[name])
                order.append(name)

    visit(fn)
    return order


@element_helper
def ema(average, x, keep, gain):
    """The moment update ``keep * average + gain * x`` (``b1 * mu + c1 * g``)."""
    return keep * average + gain * x


@element_helper
def ema_square(average, x, keep, gain):
    """The second-moment update ``keep * average + gain * x * x``
    (``b2 * nu + c2 * g * g``), written as the conjugate product
    ``real(gain * x * conj(x))``: the same operations in the same order for real
    ``x``, :math:`|x|^2` (optax's meaning) for complex ``x``."""
    return keep * average + real(gain * x * conj(x))


@element_helper
def abs_square(x):
    """:math:`|x|^2` as the conjugate product ``real(x * conj(x))``: ``x * x`` for
    real ``x`` (the same single product)."""
    return real(x * conj(x))


#: element functions whose math is written for complex values too (:func:`complex_ready`)
COMPLEX_READY: set[Callable] = set()


def complex_ready(fn: Callable) -> Callable:
    """Mark the element function ``fn`` as written for complex values: its squares
    are conjugate products (:func:`abs_square`, :func:`ema_square`), the rest is
    arithmetic whose complex meaning is the reference's (optax's)."""
    COMPLEX_READY.add(fn)
    return fn


def is_complex_ready(fn: Callable) -> bool:
    """``fn`` (or the function of a ``functools.partial``) is :func:`complex_ready`."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn in COMPLEX_READY


def debias(beta, t):
    """``1 - beta ** t``: the bias correction of a moment with decay ``beta`` after
    ``t`` updates (a ``prepare`` helper, not an element helper)."""
    return 1.0 - beta**t


def bind(fn: Callable, namespace: dict[str, Callable]) -> Callable:
    """A copy of ``fn`` whose operation names resolve to ``namespace``.

    ``namespace`` maps names of :data:`OPERATIONS` to implementations; names it does
    not give keep their NumPy meaning. The element helpers ``fn`` calls are bound
    the same way.
    """
    unknown = set(namespace) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"not element operations: {sorted(unknown)}")
    if isinstance(fn, functools.partial):  # a module-level function with fixed options
        return functools.partial(bind(fn.func, namespace), *fn.args, **fn.keywords)
    new_globals = dict(fn.__globals__)
    new_globals.update(namespace)
    for name in referenced_helpers(fn):
        new_globals[name] = bind(HELPERS[name], namespace)
    bound = types.FunctionType(
        fn.__code__, new_globals, fn.__name__, fn.__defaults__, fn.__closure__
    )
    bound.__qualname__ = fn.__qualname__
    bound.__doc__ = fn.__doc__
    return bound
