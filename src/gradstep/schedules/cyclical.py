r"""Periodic schedules: cosine annealing with warm restarts (SGDR) and cyclical
(triangular) learning rates.

**Warm restarts.** Symbols: :math:`\eta_0` ``init_value``, :math:`\eta_{\min}`
``end_value``, :math:`T_0` ``first_period``, :math:`m` ``period_mult``. The periods
are :math:`T_i = T_0 m^i`; with :math:`t_c` the count since the start of the current
period :math:`T_i`,

.. math::

    s(t) = \eta_{\min} + (\eta_0 - \eta_{\min})\,\tfrac12\big(1 + \cos(\pi t_c / T_i)\big)

so the value restarts at :math:`\eta_0` at the start of every period.

**Cyclical.** Symbols: :math:`\eta_b` ``base_value``, :math:`\eta_u` ``max_value``,
:math:`U` ``step_size_up``, :math:`D` ``step_size_down``, :math:`L = U + D`,
:math:`r = U / L`. With the cycle :math:`c = \lfloor 1 + t/L \rfloor` and the
position :math:`x = 1 + t/L - c \in [0, 1)`,

.. math::

    h = \begin{cases} x / r & x \le r \\ (x - 1)/(r - 1) & x > r \end{cases},\qquad
    s(t) = \eta_b + (\eta_u - \eta_b)\, h\, \sigma

with the amplitude :math:`\sigma = 1` (``"triangular"``), :math:`2^{-(c-1)}`
(``"triangular2"``: halved every cycle) or :math:`\gamma^t` (``"exp_range"``).

References:
  Loshchilov & Hutter (2017): SGDR: Stochastic Gradient Descent with Warm Restarts.
  ICLR, arXiv:1608.03983.
  Smith (2017): Cyclical Learning Rates for Training Neural Networks. WACV,
  arXiv:1506.01186.
"""

from __future__ import annotations

from typing import Any

from .._core.validate import Interval, NoneOr, OneOf, hyperparams
from ._math import PYTHON
from .schedules import Schedule

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
_STEPS = Interval(1, integer=True)


def period_of(t: Any, first_period: int, period_mult: int, m: Any = PYTHON) -> tuple:
    """``(count within its period, that period's length)`` for the count ``t``."""
    if period_mult == 1:
        return t % first_period, first_period
    starts, periods = [0], [first_period]
    while starts[-1] + periods[-1] <= m.max_count:  # at most 63 periods
        starts.append(starts[-1] + periods[-1])
        periods.append(periods[-1] * period_mult)
    done = m.bucket(t, starts[1:])  # periods completed
    return t - m.pick(starts, done), m.pick(periods, done)


@hyperparams(
    init_value=Interval(),
    first_period=_STEPS,
    period_mult=_STEPS,
    end_value=Interval(),
)
def cosine_warm_restarts(
    init_value: float, first_period: int, period_mult: int = 1, end_value: float = 0.0
) -> Schedule:
    r"""Cosine annealing from ``init_value`` to ``end_value``, restarted at the end of
    every period (SGDR; see the module docstring).

    Args:
      init_value: :math:`\eta_0`, the value at the start of every period.
      first_period: :math:`T_0`, an integer >= 1: the length of the first period.
      period_mult: :math:`m`, an integer >= 1: each period is :math:`m` times the
        previous one. Default 1.
      end_value: :math:`\eta_{\min}`, approached at the end of a period. Default 0.

    Example:
      >>> s = cosine_warm_restarts(1.0, 2, period_mult=2)
      >>> [round(s(t), 4) for t in range(7)]
      [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0]

    Differences: torch ``CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)`` stepped
    once per update gives the same values (its fractional ``step(epoch)`` is not
    offered: counts are integers). optax ``sgdr_schedule`` joins a list of
    warm-up-cosine cycles given one by one; ``gradstep.compat.optax.sgdr_schedule``
    reproduces it.
    """

    def fn(t, m):
        local, period = period_of(t, first_period, period_mult, m)
        return end_value + (init_value - end_value) * 0.5 * (1 + m.cos(m.pi * local / period))

    return Schedule.written(
        fn, f"cosine_warm_restarts({init_value} -> {end_value}, {first_period}, x{period_mult})"
    )


@hyperparams(
    base_value=Interval(),
    max_value=Interval(),
    step_size_up=_STEPS,
    step_size_down=NoneOr(_STEPS),
    mode=OneOf(CYCLIC_MODES),
    gamma=Interval(0.0, lo_open=True),
)
def cyclic(
    base_value: float,
    max_value: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> Schedule:
    r"""Cyclical values between ``base_value`` and ``max_value`` (see the module
    docstring for the math).

    Args:
      base_value: :math:`\eta_b`, the value at the start of every cycle.
      max_value: :math:`\eta_u`, reached after ``step_size_up`` counts (times the
        amplitude).
      step_size_up: :math:`U`, an integer >= 1. Default 2000 (torch).
      step_size_down: :math:`D`, an integer >= 1. Default None (:math:`D = U`).
      mode: ``"triangular"`` (default), ``"triangular2"`` or ``"exp_range"``.
      gamma: :math:`\gamma` > 0, the ``"exp_range"`` amplitude decay per count.
        Default 1.

    Example:
      >>> s = cyclic(0.1, 1.0, step_size_up=2, mode="triangular2")
      >>> [round(s(t), 4) for t in range(9)]
      [0.1, 0.55, 1.0, 0.55, 0.1, 0.325, 0.55, 0.325, 0.1]

    Differences: torch ``CyclicLR`` also cycles the momentum by default
    (``cycle_momentum=True``: give the momentum its own ``cyclic`` schedule from
    ``max_momentum`` to ``base_momentum``) and takes a custom ``scale_fn``, which is not
    offered (write a schedule function instead). optax has no cyclical schedule.
    """
    down = step_size_up if step_size_down is None else int(step_size_down)
    total = step_size_up + down
    ratio = step_size_up / total

    def fn(t, m):
        cycle = m.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        height = m.cond(x <= ratio, lambda: x / ratio, lambda: (x - 1) / (ratio - 1))
        if mode == "triangular":
            amplitude = 1.0
        elif mode == "triangular2":
            amplitude = 1 / m.power(2.0, cycle - 1)
        else:
            amplitude = m.power(gamma, t)
        return base_value + (max_value - base_value) * height * amplitude

    description = f"cyclic({base_value} <-> {max_value}, {step_size_up}+{down}, {mode})"
    return Schedule.written(fn, description)
