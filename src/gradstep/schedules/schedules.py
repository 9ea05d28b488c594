"""The schedule functions. Each returns a :class:`Schedule`, a callable of the count."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._core.validate import (
    BOOL,
    Interval,
    IsCallable,
    NoneOr,
    SequenceOf,
    as_number,
    check,
    hyperparams,
    reduce_by_recipe,
    remember_recipe,
)
from ._math import PYTHON, is_jax_array, jax_math

_REAL = Interval()
_NONNEG = Interval(0.0)
_POSITIVE = Interval(0.0, lo_open=True)
_STEPS = Interval(1, integer=True)
_BEGIN = Interval(0, integer=True)
_A_SCHEDULE = "a schedule (a function of the count)"


class Schedule:
    """A named function of the step count.

    Called with an integer, it returns a float; called with an array of counts (any
    shape), a float64 NumPy array of the values at each count. A schedule written
    against the operations of :mod:`gradstep.schedules._math` (:meth:`written`)
    also takes a JAX array (traced or not) and returns one, computed with
    ``jax.numpy``: it runs inside ``jax.jit`` with no host callback.
    """

    def __init__(self, fn: Callable[[int], float], description: str):
        self._fn = fn
        self._written: Callable[[Any, Any], Any] | None = None
        self.description = description

    @classmethod
    def written(cls, fn: Callable[[Any, Any], Any], description: str) -> Schedule:
        """The schedule of ``fn(t, m)``, written with the operations of ``m``
        (:data:`~gradstep.schedules._math.PYTHON` or JAX's)."""
        out = cls(lambda t: fn(t, PYTHON), description)
        out._written = fn
        return out

    @property
    def traceable(self) -> bool:
        """Whether the schedule takes a JAX array (it is written with the
        operations of :mod:`gradstep.schedules._math`)."""
        return self._written is not None

    def __call__(self, count: Any) -> Any:
        if self._written is not None and is_jax_array(count):
            m = jax_math()
            return m.values(self._written(m.counts(count), m), count)
        if np.ndim(count) == 0:
            return float(self._fn(int(count)))
        one = lambda n: float(self._fn(int(n)))
        return np.vectorize(one, otypes=[np.float64])(np.asarray(count))

    def __repr__(self) -> str:
        return f"<Schedule {self.description}>"

    def __reduce_ex__(self, protocol: int):
        # pickled as the factory call that made it (its function is a closure)
        reduced = reduce_by_recipe(self)
        if reduced is None:
            raise TypeError(f"cannot pickle {self!r}: it was not made by a schedule factory")
        return reduced


def _recorded(factory: Callable) -> Callable:
    """Remember each call of a schedule factory without declared ranges, for pickle."""

    @functools.wraps(factory)
    def recorded(*args, **kwargs):
        result = factory(*args, **kwargs)
        remember_recipe(result, recorded, args, kwargs)
        return result

    return recorded


def checked_numbers(owner: str, name: str, values: Any, constraint: Interval) -> list:
    """``values`` checked to be a sequence of numbers in ``constraint``, as a list
    (of integers where ``constraint`` is an integer range)."""
    check(owner, name, values, SequenceOf(constraint))
    convert = int if constraint.integer else float
    return [convert(as_number(value)) for value in values]


def _check_boundaries(owner: str, boundaries: list[int]) -> None:
    if any(b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:])) or any(
        b < 0 for b in boundaries
    ):
        raise ValueError(
            f"{owner}: invalid boundaries={boundaries}; valid values: non-negative and "
            "strictly increasing"
        )


@hyperparams(value=_REAL)
def constant(value: float) -> Schedule:
    """``value`` at every step."""
    return Schedule.written(lambda t, m: value, f"constant({value})")


@_recorded
def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """``values[i]`` for ``boundaries[i-1] <= count < boundaries[i]``.

    ``values`` has one more entry than ``boundaries``, which must increase.
    """
    boundaries = checked_numbers("piecewise_constant", "boundaries", boundaries, _BEGIN)
    values = checked_numbers("piecewise_constant", "values", values, _REAL)
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"piecewise_constant: values has {len(values)} entries; it needs "
            f"len(boundaries) + 1 = {len(boundaries) + 1}"
        )
    _check_boundaries("piecewise_constant", boundaries)
    return Schedule.written(
        lambda t, m: m.pick(values, m.bucket(t, boundaries)),
        f"piecewise_constant({boundaries}, {values})",
    )


@hyperparams(init_value=_REAL, step_size=_STEPS, gamma=_NONNEG)
def step_decay(init_value: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``init_value * gamma ** (count // step_size)`` (torch's StepLR, objax's StepDecay)."""
    return Schedule.written(
        lambda t, m: init_value * m.power(gamma, t // step_size),
        f"step_decay({init_value}, {step_size}, {gamma})",
    )


@hyperparams(
    init_value=_REAL,
    transition_steps=_STEPS,
    decay_rate=_NONNEG,
    transition_begin=_BEGIN,
    staircase=BOOL,
    end_value=NoneOr(_REAL),
)
def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """``init_value * decay_rate ** ((count - transition_begin) / transition_steps)``.

    Constant ``init_value`` before ``transition_begin``; with ``staircase`` the
    exponent is floored; ``end_value`` bounds the decay (a floor when decaying, a
    ceiling when growing).
    """

    def fn(t, m):
        p = m.maximum(t - transition_begin, 0) / transition_steps
        if staircase:
            p = m.floor(p)
        v = init_value * m.power(decay_rate, p)
        if end_value is not None:
            v = m.maximum(v, end_value) if decay_rate < 1 else m.minimum(v, end_value)
        return v

    return Schedule.written(
        fn, f"exponential_decay({init_value}, {transition_steps}, {decay_rate})"
    )


@hyperparams(
    init_value=_REAL,
    end_value=_REAL,
    power=_NONNEG,
    transition_steps=_STEPS,
    transition_begin=_BEGIN,
)
def polynomial_decay(
    init_value: float,
    end_value: float,
    power: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """``(init - end) * (1 - s / T) ** power + end`` with ``s`` the count since
    ``transition_begin``, clipped to ``[0, T]``.

    ``polynomial_decay(lr, 0.0, 2, T)`` is the ``lr * (1 - t/T) ** 2`` decay that
    objax's LARS documentation prescribes.
    """

    def fn(t, m):
        s = m.minimum(m.maximum(t - transition_begin, 0), transition_steps)
        return (init_value - end_value) * (1 - s / transition_steps) ** power + end_value

    return Schedule.written(
        fn, f"polynomial_decay({init_value} -> {end_value}, power {power}, {transition_steps})"
    )


@hyperparams(init_value=_REAL, decay_steps=_STEPS, alpha=Interval(0.0, 1.0), exponent=_POSITIVE)
def cosine_decay(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    """``init * ((1 - alpha) * (0.5 * (1 + cos(pi * min(t, D) / D))) ** exponent + alpha)``."""

    def fn(t, m):
        c = 0.5 * (1 + m.cos(m.pi * m.minimum(t, decay_steps) / decay_steps))
        return init_value * ((1 - alpha) * c**exponent + alpha)

    return Schedule.written(fn, f"cosine_decay({init_value}, {decay_steps}, alpha={alpha})")


@hyperparams(peak_value=_REAL, warmup_steps=_STEPS, init_value=_REAL)
def linear_warmup(peak_value: float, warmup_steps: int, init_value: float = 0.0) -> Schedule:
    """Linear from ``init_value`` at count 0 to ``peak_value`` at ``warmup_steps``,
    then constant."""

    def fn(t, m):
        frac = m.minimum(t, warmup_steps) / warmup_steps
        return init_value + (peak_value - init_value) * frac

    return Schedule.written(fn, f"linear_warmup({init_value} -> {peak_value}, {warmup_steps})")


@hyperparams(
    init_value=_REAL, peak_value=_REAL, warmup_steps=_STEPS, decay_steps=_STEPS, end_value=_REAL
)
def warmup_cosine_decay(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
) -> Schedule:
    """Linear warm-up to ``peak_value`` over ``warmup_steps``, then cosine decay to
    ``end_value``; ``decay_steps`` counts the warm-up too (as optax)."""
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"warmup_cosine_decay: invalid decay_steps={decay_steps!r}; valid values: "
            f"an integer greater than warmup_steps={warmup_steps}"
        )
    alpha = 0.0 if peak_value == 0 else end_value / peak_value
    return join(
        [
            linear_warmup(peak_value, warmup_steps, init_value),
            cosine_decay(peak_value, decay_steps - warmup_steps, alpha=alpha),
        ],
        [warmup_steps],
    )


@_recorded
def join(schedules: Sequence[Callable[[int], float]], boundaries: Sequence[int]) -> Schedule:
    """``schedules[i]`` from ``boundaries[i-1]`` on, each given its local count.

    ``schedules`` has one more entry than ``boundaries``.
    """
    boundaries = checked_numbers("join", "boundaries", boundaries, _BEGIN)
    check("join", "schedules", schedules, SequenceOf(IsCallable(_A_SCHEDULE)))
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(
            f"join: {len(schedules)} schedules need {len(schedules) - 1} boundaries, "
            f"got {len(boundaries)}"
        )
    _check_boundaries("join", boundaries)
    starts = [0] + boundaries

    def fn(t, m):
        branches = [lambda s=s, start=start: s(t - start) for s, start in zip(schedules, starts)]
        return m.switch(m.bucket(t, boundaries), branches)

    description = f"join({len(schedules)} schedules at {boundaries})"
    if all(isinstance(s, Schedule) and s.traceable for s in schedules):
        return Schedule.written(fn, description)
    # a function of the user's may not take a JAX array: JAX asks the host for it
    return Schedule(lambda t: fn(t, PYTHON), description)
