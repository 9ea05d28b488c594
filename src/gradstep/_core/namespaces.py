"""Array namespaces: the operations every rule is written with, for NumPy and for the
array libraries the fronts register (torch, JAX).

Two levels of operations live here:

- **element operations** (:mod:`gradstep._core.xmath`): the names an element function
  uses (``sqrt``, ``where``, ...). A namespace's :attr:`Namespace.ops` maps them to the
  library's own functions, and :func:`element_for` runs an element function with
  those bound, so the math of a rule exists once.
- **array operations** (the methods of :class:`Namespace`): what non-elementwise
  rules need (axis reductions, norms, matmul, reshapes, state creation, explicit
  random keys). A rule written with them runs on NumPy arrays, on torch tensors on
  their device (no host copy) and under :func:`jax.jit` (no callback). Per-step
  scalars stay arrays of the library (0-d) so a traced or on-device value is never
  read back; on NumPy they are NumPy scalars, whose float64 arithmetic is Python's.

NumPy's namespace is built in. Other libraries are registered by the module that
brings them (:func:`register_namespace`): the torch front on ``import gradstep.torch``,
the JAX engine on ``import gradstep.jax``. An array of an unregistered library raises
a ``TypeError`` saying which import registers it, rather than being read through
NumPy.

**Random numbers** (:meth:`Namespace.normal`) come from an explicit key: an integer
seed kept in the state, the step count and the leaf's index. Each library draws
with its own generator from that key (NumPy ``default_rng([seed, count])``, torch a
``Generator`` seeded from the three, JAX ``fold_in`` of the three), so a run is
reproducible on each library and a resumed run draws what the uninterrupted run
drew, but NumPy, torch and JAX draw different numbers from the same key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import xmath


def is_floating(dtype: Any) -> bool:
    """A NumPy floating dtype, ``ml_dtypes``' bfloat16 included (NumPy files it as
    ``kind "V"``)."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype.name == "bfloat16"


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a storage dtype's name (bfloat16 from ``ml_dtypes``)."""
    if name != "bfloat16":
        return np.dtype(name)
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes comes with jax
        raise ValueError(
            "bfloat16 NumPy arrays need the ml_dtypes package (pip install ml_dtypes)"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


def value_dtype(x: Any) -> np.dtype:
    """The NumPy dtype of an array of any library or a Python number (an array is
    not handed to ``np.result_type`` itself: NumPy deprecates reading its dtype so)."""
    dtype = getattr(x, "dtype", None)
    return dtype if isinstance(dtype, np.dtype) else np.result_type(x)


class Namespace:
    """Operations of one array library (NumPy here; see the module docstring)."""

    name: str = "numpy"
    ops: dict[str, Callable] = {}

    # -- element math support ----------------------------------------------------------

    def is_float(self, x: Any) -> bool:
        return is_floating(value_dtype(x))

    def scalar_caster(self, x: Any) -> Callable[[Any], Any]:
        """How a per-step scalar is handed to element math on ``x``."""
        dtype = value_dtype(x)
        kind = dtype.type if is_floating(dtype) else np.float64
        return lambda v: v if isinstance(v, (bool, np.bool_)) else kind(v)

    def wrap(self, x: Any) -> Any:
        """A result as an array (NumPy turns 0-d results into scalars)."""
        return np.asarray(x) if isinstance(x, np.generic) else x

    # -- creating arrays ---------------------------------------------------------------

    def float_dtype(self, x: Any) -> Any:
        """The floating dtype math on ``x`` runs in (float64 for integer arrays)."""
        dtype = value_dtype(x)
        return dtype if is_floating(dtype) else np.dtype(np.float64)

    # -- storage precision (gradstep._core.precision) ----------------------------------

    def widened(self, x: Any) -> Any:
        """``x`` itself, or in float32 where it is a 16-bit float array: element math
        runs in float32 or wider whatever the storage."""
        dtype = getattr(x, "dtype", None)
        if dtype is not None and dtype.itemsize == 2 and is_floating(dtype):
            return np.asarray(x, np.float32)
        return x

    def stored(self, x: Any, name: str) -> Any:
        """``x`` in the storage dtype ``name`` (rounded to the nearest, ties to even)."""
        return np.asarray(x).astype(numpy_dtype(name), copy=False)

    def stored_like(self, x: Any, like: Any) -> Any:
        """``x`` in ``like``'s dtype (itself where it already is)."""
        dtype = getattr(like, "dtype", None)
        if dtype is None or getattr(x, "dtype", None) == dtype:
            return x
        return np.asarray(x).astype(dtype)

    def stored_bf16_stochastic(self, x: Any, key: int) -> Any:
        """``x`` rounded stochastically to bfloat16 with the stream of ``key``
        (:mod:`gradstep._core.rounding`; float64 through float32, as ml_dtypes)."""
        from .rounding import random_bits, round_bf16_stochastic

        x = np.asarray(x, np.float32)
        return round_bf16_stochastic(x, random_bits(key, x.size).reshape(x.shape))

    def constant(self, values: np.ndarray, like: Any) -> Any:
        """The NumPy array ``values`` (a table of constants) as an array of this
        library, on ``like``'s device."""
        return values

    def as_uint8(self, x: Any) -> Any:
        """The integer array ``x`` (values 0..255) as uint8 (8-bit state's codes)."""
        return np.asarray(x).astype(np.uint8)

    def as_index(self, x: Any) -> Any:
        """The integer array ``x`` as indices :meth:`take` accepts."""
        return np.asarray(x).astype(np.intp)

    def full_like(self, x: Any, fill: float) -> Any:
        # in x's memory order (Fortran, a transposed view), as torch's preserve_format:
        # the fused engine then walks a parameter and its state as one flat block
        p = np.asarray(x)
        return np.full_like(p, fill, dtype=self.float_dtype(p), subok=False)

    def zeros_like(self, x: Any) -> Any:
        return np.zeros_like(x)

    def zeros(self, shape: tuple[int, ...], like: Any) -> Any:
        """Zeros of ``shape`` in ``like``'s floating dtype (and device)."""
        return np.zeros(tuple(shape), self.float_dtype(like))

    def copy(self, x: Any) -> Any:
        p = np.asarray(x)
        return np.array(p, dtype=self.float_dtype(p), copy=True)

    def astype(self, x: Any, like: Any) -> Any:
        """``x`` (an array or a number) in ``like``'s floating dtype."""
        dtype = self.float_dtype(like)
        if isinstance(x, (int, float, np.generic)):
            return dtype.type(x)
        return np.asarray(x, dtype=dtype)

    # -- shapes ------------------------------------------------------------------------

    def reshape(self, x: Any, shape: tuple[int, ...]) -> Any:
        return np.reshape(x, tuple(shape))

    def ravel(self, x: Any) -> Any:
        return np.ravel(x)

    def concatenate(self, xs: list) -> Any:
        return np.concatenate(xs)

    def matrix_transpose(self, x: Any) -> Any:
        return np.swapaxes(x, -1, -2)

    def matmul(self, a: Any, b: Any) -> Any:
        return np.matmul(a, b)

    def set_row(self, x: Any, row: Any, value: Any) -> Any:
        """``x`` with ``x[row] = value`` (a new array on libraries without in-place
        updates; NumPy writes ``x`` itself)."""
        x[row] = value
        return x

    def moveaxis(self, x: Any, source: int, destination: int) -> Any:
        return np.moveaxis(x, source, destination)

    def take(self, x: Any, indices: Any, axis: int) -> Any:
        """The slices ``indices`` (an integer vector) of ``x`` along ``axis``."""
        return np.take(x, indices, axis=axis)

    def flip(self, x: Any, axis: int) -> Any:
        return np.flip(x, axis=axis)

    # -- linear algebra (matrix rules: Shampoo, SOAP) -----------------------------------

    def eigh(self, a: Any) -> tuple[Any, Any]:
        """Eigenvalues (ascending) and eigenvectors (columns) of the symmetric matrix
        ``a``, in its dtype."""
        return np.linalg.eigh(a)

    def qr(self, a: Any) -> Any:
        """The orthonormal factor of the reduced QR decomposition of ``a``
        (Householder: the sign convention of LAPACK's ``geqrf``)."""
        return np.linalg.qr(a, mode="reduced")[0]

    def solve_triangular_right(self, x: Any, a: Any) -> Any:
        """:math:`X A^{-1}` for the upper-triangular matrix ``a`` and the rows of the
        matrix ``x`` (NumPy: a general LU solve of :math:`A^\\top Y^\\top = X^\\top`,
        which is exact on a triangular system up to rounding)."""
        return np.linalg.solve(np.swapaxes(a, -1, -2), np.swapaxes(x, -1, -2)).swapaxes(-1, -2)

    def argsort(self, x: Any) -> Any:
        """Indices that sort the vector ``x`` ascending (stable)."""
        return np.argsort(x, kind="stable")

    def cond(self, predicate: Any, if_true: Callable, if_false: Callable, *operands: Any) -> Any:
        """``if_true(*operands)`` where ``predicate`` holds, else ``if_false(*operands)``:
        a Python branch on a host value; a traced branch under ``jax.jit`` (both
        branches must then return arrays of the same shapes and dtypes)."""
        return if_true(*operands) if predicate else if_false(*operands)

    # -- reductions --------------------------------------------------------------------

    def sum(self, x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
        return np.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
        return np.mean(x, axis=axis, keepdims=keepdims)

    def amax(self, x: Any, axis: int | tuple[int, ...] | None = None) -> Any:
        """The largest element of ``x`` along ``axis`` (all axes: ``None``)."""
        return np.max(x, axis=axis)

    def square_sum(self, x: Any) -> Any:
        """The sum of squares of ``x`` as a 0-d array of the library, accumulated in
        float64 (float32 where the library or device has no float64)."""
        x = np.asarray(x)
        if np.iscomplexobj(x):  # |x|^2: the squares of the real and imaginary parts
            a = x.astype(np.complex128).ravel().view(np.float64)
        else:
            a = np.asarray(x, dtype=np.float64).ravel()
        return np.dot(a, a)

    def wide_sum(self, x: Any) -> Any:
        """The sum of ``x`` as a 0-d array of the library, accumulated in float64
        (float32 where the library or device has no float64)."""
        return np.sum(np.asarray(x, dtype=np.float64))

    def sum_of_squares(self, x: Any) -> float:
        """:meth:`square_sum` as a Python float (a host read on other libraries)."""
        return float(self.square_sum(x))

    def max_abs(self, x: Any) -> Any:
        """``max |x|`` (0 for an empty array), in ``x``'s dtype."""
        return np.max(np.abs(x)) if np.size(x) else self.astype(0.0, x)

    def vdot(self, a: Any, b: Any) -> Any:
        """The dot product of two vectors, in their dtype."""
        return a @ b

    def abs_sum(self, x: Any) -> Any:
        """``sum |x|`` in ``x``'s dtype."""
        return np.sum(np.abs(x))

    # -- elementwise on arrays and 0-d scalars -----------------------------------------

    def sqrt(self, x: Any) -> Any:
        return np.sqrt(x)

    def exp(self, x: Any) -> Any:
        return np.exp(x)

    def log1p(self, x: Any) -> Any:
        return np.log1p(x)

    def maximum(self, a: Any, b: Any) -> Any:
        return np.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        return np.minimum(a, b)

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        return np.where(condition, a, b)

    def eps(self, x: Any) -> float:
        """The machine epsilon of ``x``'s floating dtype."""
        return float(np.finfo(self.float_dtype(x)).eps)

    # -- step counts and random keys ---------------------------------------------------

    def is_traced(self, x: Any) -> bool:
        """``x`` is a value being traced (JAX), which Python cannot branch on."""
        return False

    def count(self, x: Any) -> Any:
        """A step count from the state, as a Python int (a traced array under jit)."""
        return int(x)

    def count_array(self, value: Any, like: Any) -> Any:
        """``value`` as the state's count, in the type of the old count ``like``."""
        return np.asarray(value, np.int64)

    def fresh_seed(self) -> int:
        """A seed for a noise stage made with ``seed=None``: 31 bits (the state fits
        JAX's default int32 too) from fresh entropy; kept in the state, so a resumed
        run repeats it. Libraries with a global generator users seed draw it there."""
        return int(np.random.SeedSequence().generate_state(1, np.uint32)[0] >> np.uint32(1))

    def normals(self, seed: Any, count: Any, likes: list, std: Any) -> list:
        """``std`` times standard normal noise shaped like each of ``likes``, in its
        floating dtype, drawn from the key ``(seed, count)`` (see the module
        docstring). NumPy: ``default_rng([seed, count]).standard_normal(shape)`` in
        float64, leaf after leaf, then scaled and cast."""
        rng = np.random.default_rng([int(seed), int(count)])
        return [(std * rng.standard_normal(np.shape(x))).astype(self.float_dtype(x)) for x in likes]


NUMPY = Namespace()

_REGISTERED: list[tuple[type, Callable[[], Namespace]]] = []
_BY_NAME: dict[str, Namespace] = {"numpy": NUMPY}
_MADE: dict[Callable, Namespace] = {}


def register_namespace(array_type: type, factory: Callable[[], Namespace]) -> None:
    """Make arrays of ``array_type`` (and its subclasses) run on the namespace
    ``factory()`` (called once, on the first such array)."""
    _REGISTERED.append((array_type, factory))
    _lookup.cache_clear()


@functools.cache
def _lookup(cls: type) -> Namespace | None:
    for array_type, factory in _REGISTERED:
        if issubclass(cls, array_type):
            if factory not in _MADE:
                _MADE[factory] = factory()
                _BY_NAME[_MADE[factory].name] = _MADE[factory]
            return _MADE[factory]
    return None


def namespace_of(x: Any) -> Namespace:
    """The namespace of an array: a registered library's, else NumPy's.

    Raises ``TypeError`` for an array of a library nobody registered (one that
    speaks DLPack but is not NumPy's): the import that registers it is missing.
    """
    cls = type(x)
    if cls is np.ndarray or isinstance(x, (np.generic, int, float, bool)):
        return NUMPY
    ns = _lookup(cls)
    if ns is not None:
        return ns
    if hasattr(x, "__dlpack__") and not isinstance(x, np.ndarray):
        raise TypeError(
            f"no array namespace is registered for {cls.__module__}.{cls.__qualname__}: "
            "import the gradstep front of its library first (gradstep.torch for torch "
            "tensors, gradstep.jax for JAX arrays)"
        )
    return NUMPY


def as_array(x: Any) -> tuple[Namespace, Any]:
    """``x``'s namespace and ``x`` as its array: NumPy's turns lists and numbers into
    arrays; other libraries' arrays pass as they are (no copy to the host)."""
    ns = namespace_of(x)
    return ns, (np.asarray(x) if ns is NUMPY else x)


@functools.cache
def _bound(fn: Callable, name: str) -> Callable:
    return fn if name == "numpy" else xmath.bind(fn, _BY_NAME[name].ops)


def element_for(fn: Callable, ns: Namespace) -> Callable:
    """``fn`` with its element operations resolved in ``ns``."""
    _BY_NAME.setdefault(ns.name, ns)
    return _bound(fn, ns.name)


def nan_to_zero(x: Any, ns: Namespace) -> Any:
    return xmath.nan_to_zero(x) if ns is NUMPY else ns.ops["nan_to_zero"](x)
