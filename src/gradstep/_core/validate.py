"""Declarative validation of hyperparameters.

A factory declares the valid values of its arguments once, next to its signature::

    @hyperparams(learning_rate=Interval(0), beta1=Interval(0, 1, hi_open=True))
    def adam(learning_rate=0.001, beta1=0.9, ...): ...

Every call is then checked before the factory body runs; a bad value raises a
``ValueError`` that names the factory, the argument, the value and the valid range.
The declarations stay attached to the factory (``declared_ranges``) so the registry,
the documentation and the tests read them instead of repeating them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import numbers
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# set while a front that mimics another library builds a transform from values that
# library accepts (torch.optim.SGD takes momentum=2.0): numeric ranges are not checked
_RANGES_WAIVED = contextvars.ContextVar("gradstep_ranges_waived", default=False)


@contextlib.contextmanager
def ranges_waived() -> Iterator[None]:
    """Within the block, factories do not check their numeric ranges (option names
    and types still are), nor refuse an option that the other arguments leave without
    effect (:func:`refuse_ignored`). For fronts that have applied another library's
    own checks and must take every value that library takes."""
    token = _RANGES_WAIVED.set(True)
    try:
        yield
    finally:
        _RANGES_WAIVED.reset(token)


def ranges_are_waived() -> bool:
    """Whether the caller runs within :func:`ranges_waived`."""
    return _RANGES_WAIVED.get()


class Constraint:
    """A set of valid values for one argument."""

    def contains(self, value: Any) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def invalid_example(self) -> Any:  # pragma: no cover - interface
        """A value outside the set, for tests that check the error."""
        raise NotImplementedError


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _zero_dim_array(value: Any) -> bool:
    """Whether ``value`` is a 0-d array (NumPy's, JAX's, torch's), not a NumPy scalar."""
    if isinstance(value, (numbers.Number, np.generic)) or callable(value):
        return False
    return hasattr(value, "dtype") and hasattr(value, "item") and value.shape == ()


#: what :func:`_held` gives for a 0-d array whose value cannot be taken
_TRACED = object()


def _is_jax_tracer(value: Any) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.core.Tracer)


def _held(value: Any) -> Any:
    """The Python number a 0-d array holds, :data:`_TRACED` where it is a JAX tracer
    (under ``jax.jit``, ``jax.grad``, ``jax.vmap``), None for anything else. A tracer
    under ``jax.grad`` alone has a value, but taking it would cut the derivative: the
    optimizer would be built from a constant and its gradient be 0."""
    if not _zero_dim_array(value):
        return None
    if _is_jax_tracer(value):
        return _TRACED
    try:
        return value.item()
    except Exception:  # a traced value: no number to take while tracing
        return _TRACED


def as_number(value: Any) -> Any:
    """``value`` as the Python number it holds where it is a concrete 0-d real array
    (optax and torch.optim take ``jnp.asarray(1e-3)`` or ``torch.tensor(1e-3)`` for any
    number); anything else as it is, a traced array (under ``jax.jit``) included. A
    number, not the array: the array's own dtype would change the dtype of the
    arithmetic it enters (a float64 0-d array promotes float32 arrays under NumPy 2)."""
    number = _held(value)
    return number if _is_real(number) else value


@dataclass(frozen=True)
class Interval(Constraint):
    """Real numbers between ``lo`` and ``hi`` (``None``: unbounded).

    ``schedulable`` also admits a schedule: a callable of the step count, whose
    values are the caller's responsibility.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    schedulable: bool = False
    integer: bool = False
    #: checked within :func:`ranges_waived` too: a range the mimicked library
    #: enforces itself (optax's ``lookahead(sync_period=0)`` raises there as well), or
    #: one outside which gradstep's rule does not compute what that library does
    always_checked: bool = False

    def holds_kind(self, value: Any) -> bool:
        """Whether ``value`` is of the kind this range takes (a real number, an
        integer where ``integer``, a schedule where ``schedulable``), whatever its
        value: what is still checked where ranges are waived."""
        if self.schedulable and callable(value):
            return True
        if not _is_real(value):
            return False
        return not self.integer or math.isinf(value) or math.isnan(value) or value == int(value)

    def contains(self, value: Any) -> bool:
        if self.schedulable and callable(value):
            return True
        if not _is_real(value) or math.isnan(value):
            return False
        if self.integer and (math.isinf(value) or value != int(value)):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return False
        return True

    def describe(self) -> str:
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        kind = "an integer" if self.integer else "a number"
        text = f"{kind} in {left}{lo}, {hi}{right}"
        return text + (" or a schedule" if self.schedulable else "")

    def invalid_example(self) -> Any:
        if self.lo is not None:
            return self.lo if self.lo_open else self.lo - 1
        if self.hi is not None:
            return self.hi if self.hi_open else self.hi + 1
        return float("nan")


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of a fixed set of values (option names, booleans)."""

    choices: tuple

    def contains(self, value: Any) -> bool:
        return any(value is c or (type(value) is type(c) and value == c) for c in self.choices)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def invalid_example(self) -> Any:
        return "<not-an-option>"


BOOL = OneOf((False, True))


@dataclass(frozen=True)
class NoneOr(Constraint):
    """``None`` or a value of ``inner``."""

    inner: Constraint

    def contains(self, value: Any) -> bool:
        return value is None or self.inner.contains(value)

    def describe(self) -> str:
        return f"None or {self.inner.describe()}"

    def invalid_example(self) -> Any:
        return self.inner.invalid_example()


@dataclass(frozen=True)
class IsCallable(Constraint):
    """A callable (a schedule, a function of the parameters); ``what`` names it."""

    what: str = "a function"

    def contains(self, value: Any) -> bool:
        return callable(value)

    def describe(self) -> str:
        return self.what

    def invalid_example(self) -> Any:
        return 0.5


@dataclass(frozen=True)
class SequenceOf(Constraint):
    """A list or tuple (not a string) whose every entry is a value of ``item`` (0-d
    arrays as the numbers they hold)."""

    item: Constraint

    def contains(self, value: Any) -> bool:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False
        return all(self.item.contains(as_number(entry)) for entry in value)

    def describe(self) -> str:
        return f"a sequence, each entry {self.item.describe()}"

    def invalid_example(self) -> Any:
        return [self.item.invalid_example()]


def _is_axis(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Axes(Constraint):
    """``None`` (the transform's own axes) or axes of a tensor: a sequence of
    integers, ``empty`` allowing none, ``single`` allowing one integer alone."""

    single: bool = False
    empty: bool = False

    def contains(self, value: Any) -> bool:
        if value is None:
            return True
        if _is_axis(value):
            return self.single
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False
        return (self.empty or len(value) > 0) and all(_is_axis(a) for a in value)

    def describe(self) -> str:
        single = ", an integer" if self.single else ""
        size = "" if self.empty else "non-empty "
        return f"None{single} or a {size}tuple of integers"

    def invalid_example(self) -> Any:
        return 0.5


def nonnegative(schedulable: bool = False) -> Interval:
    """``[0, inf)``."""
    return Interval(0.0, schedulable=schedulable)


def finite(schedulable: bool = False) -> Interval:
    """``(-inf, inf)``: any real number but an infinite one."""
    return Interval(-math.inf, math.inf, lo_open=True, hi_open=True, schedulable=schedulable)


def decay_rate(schedulable: bool = False) -> Interval:
    """``[0, 1)``: an exponential-average decay."""
    return Interval(0.0, 1.0, hi_open=True, schedulable=schedulable)


def _waived(constraint: Constraint, value: Any) -> bool:
    """Whether the check of ``value`` against ``constraint`` is skipped: a value of
    the kind a numeric range takes (also "None or a range") within
    :func:`ranges_waived`, unless the range is always checked. A JAX tracer is
    never waived: it has no number to build from, whatever the range."""
    if not _RANGES_WAIVED.get() or _held(value) is _TRACED:
        return False
    inner = constraint.inner if isinstance(constraint, NoneOr) else constraint
    if value is None and isinstance(constraint, NoneOr):
        return True
    return isinstance(inner, Interval) and not inner.always_checked and inner.holds_kind(value)


def check(owner: str, name: str, value: Any, constraint: Constraint) -> None:
    """Raise the project's standard error if ``value`` is not valid for ``name``
    (numeric ranges are not checked within :func:`ranges_waived`)."""
    if _waived(constraint, value):
        return
    if not constraint.contains(value):
        hint = ""
        if _held(value) is _TRACED:
            hint = (
                " (a traced array: an optimizer made inside jax.jit, jax.grad or jax.vmap, "
                "or by optax.inject_hyperparams under jit; gradstep builds an optimizer "
                "from numbers, so give a traced value per step, update(..., name=value), "
                "or through gradstep.compat.optax.inject_hyperparams, whose state holds it "
                "and which differentiates and vectorises through it)"
            )
        raise ValueError(
            f"{owner}: invalid {name}={value!r}; valid values: {constraint.describe()}{hint}"
        )


def refuse_ignored(owner: str, name: str, value: Any, condition: str, valid: str) -> None:
    """Raise the project's standard error for ``name=value``, which ``condition`` (the
    other arguments) leaves without effect: accepted, it would be ignored. ``valid``
    says when it applies. Not raised within :func:`ranges_waived` (a front taking
    what another library takes)."""
    if _RANGES_WAIVED.get():
        return
    raise ValueError(f"{owner}: invalid {name}={value!r} {condition}; valid values: {valid}")


def hyperparams(**constraints: Constraint) -> Callable:
    """Decorate a factory so that every call validates its declared arguments."""

    def decorate(factory: Callable) -> Callable:
        sig = inspect.signature(factory)
        unknown = set(constraints) - set(sig.parameters)
        if unknown:
            raise TypeError(f"{factory.__name__}: constraints for unknown arguments {unknown}")

        @functools.wraps(factory)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            for name, value in bound.arguments.items():
                bound.arguments[name] = as_number(value)
            args, kwargs = bound.args, bound.kwargs
            bound.apply_defaults()
            for name, constraint in constraints.items():
                check(factory.__name__, name, bound.arguments[name], constraint)
            result = factory(*args, **kwargs)
            # the transform remembers the ranges, so values given at step time are
            # checked against the same declaration; one made for a front that takes
            # what another library takes (ranges waived) checks none at step time
            # either (the other library computes with any value a schedule gives)
            if not _RANGES_WAIVED.get():
                try:
                    result.declared_ranges = {
                        **getattr(result, "declared_ranges", {}),
                        **constraints,
                    }
                except AttributeError:
                    pass
                _declare_inside(result, constraints)
            remember_recipe(result, checked, args, kwargs)
            return result

        checked.declared_ranges = dict(constraints)
        return checked

    return decorate


def remember_recipe(result: Any, factory: Callable, args: tuple, kwargs: dict) -> None:
    """Record on ``result`` the call that made it, so that it pickles as that call
    (its functions are closures, which pickle cannot store). The record names the
    object it was made for: a copy that changed parts of it pickles field by field."""
    try:
        result._recipe = (id(result), factory, args, kwargs)
    except AttributeError:
        pass


def rebuild(factory: Callable, args: tuple, kwargs: dict) -> Any:
    """Call ``factory`` again (the other half of :func:`reduce_by_recipe`)."""
    return factory(*args, **kwargs)


def reduce_by_recipe(obj: Any) -> tuple | None:
    """``obj.__reduce__`` as the factory call that made it, or None when there is
    none for this very object."""
    recipe = getattr(obj, "__dict__", {}).get("_recipe")
    if recipe is None or recipe[0] != id(obj):
        return None
    return rebuild, recipe[1:]


def _declare_inside(transform: Any, constraints: dict[str, Constraint]) -> None:
    """Give the stages inside ``transform`` the ranges of the hyperparameters they
    hold (their own declarations win), so that values a stage computes at step time
    (schedules) are checked where they are computed."""
    from .transform import Transform, walk

    if not isinstance(transform, Transform):
        return
    for visit in walk(transform):
        child = visit.transform
        own = getattr(child, "hyperparams", None)
        if child is transform or not isinstance(own, dict):
            continue
        declared = getattr(child, "declared_ranges", {})
        inherited = {n: c for n, c in constraints.items() if n in own and n not in declared}
        if inherited:
            try:
                child.declared_ranges = {**declared, **inherited}
            except AttributeError:
                pass


def declared_ranges(factory: Callable) -> dict[str, Constraint]:
    """The constraints a factory declared with :func:`hyperparams`."""
    return dict(getattr(factory, "declared_ranges", {}))
