"""The operations a schedule is written with, on Python numbers or on JAX arrays.

A schedule's function is written once, ``fn(t, m)``, against the operations of ``m``:
:data:`PYTHON` when the count is a Python integer (plain Python arithmetic, so the
values are exactly those of the formulas in the docstrings, in float64), or
:func:`jax_math` when it is a JAX array, traced or not (``jax.numpy``, so the
schedule runs inside ``jax.jit`` with no host callback, exports, and runs on the
device, in JAX's float precision as optax's schedules do). Branches on the count are
written with ``cond``, ``bucket``/``pick`` and ``switch``, never with ``if``.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

#: the largest count JAX keeps (its counts are int32): boundaries past it never apply
_INT32_MAX = 2**31 - 1


class _PythonMath:
    """Python numbers: ``math`` functions, built-in ``min``/``max``, lazy branches."""

    pi = math.pi
    #: the largest count this math sees (tables of boundaries stop there)
    max_count = 2**63 - 1
    cos = staticmethod(math.cos)
    sqrt = staticmethod(math.sqrt)
    floor = staticmethod(math.floor)
    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def power(base: float, exponent: Any) -> float:
        """``base ** exponent``, infinite where it overflows (Python raises)."""
        try:
            return base**exponent
        except OverflowError:
            return math.inf

    @staticmethod
    def cond(condition: bool, if_true: Callable[[], Any], if_false: Callable[[], Any]) -> Any:
        """``if_true()`` where ``condition`` holds, else ``if_false()``."""
        return if_true() if condition else if_false()

    @staticmethod
    def bucket(t: Any, boundaries: Sequence, side: str = "right") -> int:
        """How many of the increasing ``boundaries`` are at most ``t`` (below ``t``
        with ``side="left"``)."""
        return (bisect.bisect_right if side == "right" else bisect.bisect_left)(boundaries, t)

    @staticmethod
    def pick(values: Sequence[float], index: int) -> float:
        """``values[index]``."""
        return values[index]

    @staticmethod
    def switch(index: int, branches: Sequence[Callable[[], Any]]) -> Any:
        """``branches[index]()``: only that branch runs."""
        return branches[index]()


#: the operations on Python numbers
PYTHON = _PythonMath()


class _JaxMath:
    """JAX arrays: ``jax.numpy`` functions; branches as selections, in the widest
    float JAX has now."""

    pi = math.pi

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self._jax, self._jnp = jax, jnp
        self.cos, self.sqrt, self.floor = jnp.cos, jnp.sqrt, jnp.floor
        self.minimum, self.maximum, self.power = jnp.minimum, jnp.maximum, jnp.power

    # read at each use: ``jax.enable_x64`` switches 64-bit types on within a block
    @property
    def max_count(self) -> int:
        wide = self._jax.dtypes.canonicalize_dtype(self._jnp.int64) == self._jnp.int64
        return 2**63 - 1 if wide else _INT32_MAX

    def _float(self) -> Any:
        return self._jax.dtypes.canonicalize_dtype(self._jnp.float64)

    def counts(self, count: Any) -> Any:
        """``count`` as the schedule's argument: float64 where JAX has 64-bit types
        (exact for every count, where an int32 count would compute in float32), else
        the integer count itself (float32 would round counts above 2**24)."""
        count = self._jnp.asarray(count)
        wide = self._float()
        return count.astype(wide) if wide == self._jnp.float64 else count

    def values(self, value: Any, count: Any) -> Any:
        """``value`` as an array of the widest float, shaped like ``count`` (a
        schedule constant in the count returns a Python number)."""
        value = self._jnp.asarray(value, self._float())
        return self._jnp.broadcast_to(value, self._jnp.shape(count))

    def cond(self, condition: Any, if_true: Callable[[], Any], if_false: Callable[[], Any]):
        return self._jnp.where(condition, if_true(), if_false())

    def bucket(self, t: Any, boundaries: Sequence, side: str = "right") -> Any:
        kept = [b for b in boundaries if b <= self.max_count]
        if not kept:
            return self._jnp.zeros(self._jnp.shape(t), self._jnp.int32)
        table = self._jnp.asarray(kept)
        return self._jnp.searchsorted(table, t, side=side).astype(self._jnp.int32)

    def pick(self, values: Sequence[float], index: Any) -> Any:
        return self._jnp.asarray(values, self._float())[index]

    def switch(self, index: Any, branches: Sequence[Callable[[], Any]]) -> Any:
        dtype = self._float()
        if self._jnp.ndim(index) > 0:  # an array of counts: every branch, then select
            values = [self._jnp.asarray(branch(), dtype) for branch in branches]
            return self._jnp.choose(index, values, mode="clip")
        cases = [lambda b=b: self._jnp.asarray(b(), dtype) for b in branches]
        return self._jax.lax.switch(index, cases)


@functools.cache
def jax_math() -> _JaxMath:
    """The operations on JAX arrays (JAX is imported on first use)."""
    return _JaxMath()


def is_jax_array(x: Any) -> bool:
    """Whether ``x`` is a JAX array or tracer (without importing JAX)."""
    module = type(x).__module__
    return module.startswith("jax.") or module.startswith("jaxlib")
