"""optax 0.2.8's schedules on gradstep's closed-form schedules (computed with
``jax.numpy`` when called with a JAX array, traced or not, as optax's are)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import schedules as _sched
from .._core.validate import Interval, check
from ..schedules._math import PYTHON

# -- schedules ----------------------------------------------------------------------


class Schedule(_sched.Schedule):
    """A gradstep schedule that also accepts what optax's schedules accept: a JAX
    step count, traced or not (computed with ``jax.numpy``, in the graph; one written
    from a Python function that needs Python numbers is evaluated on the host through
    a callback), so it can be handed to real optax too, and an array of step counts
    (``schedule(np.arange(100))``: the values of every count, in an array of that
    shape)."""

    @property
    def evaluate_on_host(self) -> bool:
        """Whether a traced count is answered on the host (not :attr:`traceable`)."""
        return not self.traceable

    def __call__(self, count: Any) -> Any:
        if self.traceable and isinstance(count, (jax.Array, jax.core.Tracer)):
            return super().__call__(count)
        if isinstance(count, jax.core.Tracer):
            return _host_schedule(self, count)
        if self.traceable and np.ndim(count) == 0 and not float(count).is_integer():
            return float(self._written(float(count), PYTHON))  # optax takes any count
        if np.ndim(count) > 0:
            return jnp.asarray(_values(self, np.asarray(count)), _float_dtype())
        return super().__call__(count)


def _float_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _values(schedule: Schedule, counts: np.ndarray) -> np.ndarray:
    """The schedule at each of ``counts`` (the core's function of one count)."""
    return np.vectorize(lambda n: schedule._fn(int(n)), otypes=[np.float64])(counts)


def _host_schedule(schedule: Schedule, count):
    dtype = _float_dtype()

    def host(c):
        return _values(schedule, np.asarray(c)).astype(dtype)

    return jax.pure_callback(
        host, jax.ShapeDtypeStruct(jnp.shape(count), dtype), count, vmap_method="expand_dims"
    )


def _as_compat(s: _sched.Schedule) -> Schedule:
    if s.traceable:
        return Schedule.written(s._written, s.description)
    return Schedule(s._fn, s.description)


def _constant(value: float) -> Schedule:
    return Schedule.written(lambda t, m: value, f"constant({value})")


def constant_schedule(value: float) -> Schedule:
    """optax's ``constant_schedule``."""
    return _as_compat(_sched.constant(value))


def polynomial_schedule(
    init_value: float,
    end_value: float,
    power: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """optax's ``polynomial_schedule``: ``transition_steps <= 0`` gives the constant
    ``init_value`` and a negative ``transition_begin`` counts as 0, as in optax."""
    if transition_steps <= 0:
        return _constant(init_value)
    return _as_compat(
        _sched.polynomial_decay(
            init_value, end_value, power, int(transition_steps), max(int(transition_begin), 0)
        )
    )


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """optax's ``linear_schedule``: ``polynomial_schedule`` with power 1."""
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    """optax's ``cosine_decay_schedule``; ``decay_steps`` must be positive, ``alpha``
    any number (optax's range; outside [0, 1] the schedule rises or crosses zero)."""
    if not decay_steps > 0:
        raise ValueError(
            f"cosine_decay_schedule: invalid decay_steps={decay_steps!r}; valid values: "
            "a positive integer"
        )
    if 0.0 <= alpha <= 1.0:
        return _as_compat(_sched.cosine_decay(init_value, int(decay_steps), alpha, exponent))
    # optax takes any alpha (above 1 the schedule rises to alpha * init_value, below
    # 0 it crosses zero): value = init * ((1 - alpha) * c + alpha), c the pure cosine
    # part, which is gradstep's cosine_decay with init 1 and alpha 0
    cosine = _sched.cosine_decay(1.0, int(decay_steps), 0.0, exponent)
    return Schedule.written(
        lambda t, m: init_value * ((1.0 - alpha) * cosine._written(t, m) + alpha),
        f"cosine_decay_schedule({init_value}, {decay_steps}, alpha={alpha}, exponent={exponent})",
    )


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule:
    """optax's ``warmup_cosine_decay_schedule``: linear ``init -> peak`` over
    ``warmup_steps``, then cosine to ``end_value``; ``decay_steps`` includes the warm-up."""
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )


def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int) -> Schedule:
    """optax's ``warmup_constant_schedule``: linear ``init -> peak``, then constant."""
    return join_schedules(
        [linear_schedule(init_value, peak_value, warmup_steps), constant_schedule(peak_value)],
        [warmup_steps],
    )


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """optax's ``exponential_decay``: ``transition_steps <= 0`` or ``decay_rate == 0``
    give the constant ``init_value``; a negative ``transition_begin`` counts as 0. A
    negative ``decay_rate`` is refused (optax's powers of it are NaN between steps)."""
    check("exponential_decay", "decay_rate", decay_rate, Interval(0.0, always_checked=True))
    if transition_steps <= 0 or decay_rate == 0:
        return _constant(init_value)
    return _as_compat(
        _sched.exponential_decay(
            init_value,
            int(transition_steps),
            decay_rate,
            max(int(transition_begin), 0),
            staircase,
            end_value,
        )
    )


def piecewise_constant_schedule(
    init_value: float, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """optax's ``piecewise_constant_schedule``: from each boundary on, the value is
    multiplied by its scale."""
    items = sorted((boundaries_and_scales or {}).items())
    if any(scale_ < 0 for _, scale_ in items):
        raise ValueError(
            "piecewise_constant_schedule: invalid boundaries_and_scales; valid values: "
            "non-negative scale factors"
        )
    if not items:
        return _constant(init_value)
    values = [init_value]
    for _, scale_ in items:
        values.append(values[-1] * scale_)
    return _as_compat(_sched.piecewise_constant([int(b) for b, _ in items], values))


def join_schedules(schedules: list[Callable], boundaries: list[int]) -> Schedule:
    """optax's ``join_schedules``: schedule ``i`` from ``boundaries[i-1]`` on, with the
    count since that boundary."""
    return _as_compat(_sched.join(list(schedules), [int(b) for b in boundaries]))
