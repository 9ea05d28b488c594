r"""Decays with a warm-up and a plateau: warmup-stable-decay (WSD), warm-up then
exponential decay, and inverse-time decay.

**Warmup-stable-decay.** Symbols: :math:`\eta_0` ``init_value``, :math:`\eta`
``peak_value``, :math:`\eta_e` ``end_value``, :math:`W, S, D` ``warmup_steps``,
``stable_steps``, ``decay_steps``.

.. math::

    s(t) = \begin{cases}
      \eta_0 + (\eta - \eta_0)\, t / W & t < W \\
      \eta & W \le t < W + S \\
      \eta_e + (\eta - \eta_e)\, f\big(\min((t - W - S)/D, 1)\big) & t \ge W + S
    \end{cases}

with the cool-down shape :math:`f(p) = 1 - p` (``"linear"``),
:math:`\tfrac12(1 + \cos \pi p)` (``"cosine"``) or :math:`1 - \sqrt p` (``"1-sqrt"``).
A run can be continued from any checkpoint of the stable phase and cooled down
whenever the budget is known, which is why WSD replaces cosine decay in many
pre-training recipes.

**Inverse-time decay.** :math:`s(t) = \eta / (1 + \rho\, p)` with :math:`\rho`
``decay_rate`` and :math:`p = t / T` (``decay_steps``), floored with ``staircase``.

References:
  Hu et al. (2024): MiniCPM: Unveiling the Potential of Small Language Models with
  Scalable Training Strategies. arXiv:2404.06395 (the WSD schedule).
  Hägele et al. (2024): Scaling Laws and Compute-Optimal Training Beyond Fixed
  Training Durations. NeurIPS, arXiv:2405.18392 (the 1-sqrt cool-down).
  Keras ``InverseTimeDecay`` (the inverse-time form).
"""

from __future__ import annotations

from typing import Any

from .._core.validate import BOOL, Interval, NoneOr, OneOf, hyperparams
from .schedules import Schedule, exponential_decay, join, linear_warmup

COOLDOWNS = ("linear", "cosine", "1-sqrt")
_REAL = Interval()
_STEPS = Interval(1, integer=True)
_BEGIN = Interval(0, integer=True)


def _cooldown(shape: str, p: Any, m: Any) -> Any:
    if shape == "linear":
        return 1.0 - p
    if shape == "cosine":
        return 0.5 * (1.0 + m.cos(m.pi * p))
    return 1.0 - m.sqrt(m.maximum(p, 0.0))  # p < 0 only where the cool-down is not taken


@hyperparams(
    peak_value=_REAL,
    warmup_steps=_BEGIN,
    stable_steps=_BEGIN,
    decay_steps=_STEPS,
    init_value=_REAL,
    end_value=_REAL,
    decay=OneOf(COOLDOWNS),
)
def warmup_stable_decay(
    peak_value: float,
    warmup_steps: int,
    stable_steps: int,
    decay_steps: int,
    init_value: float = 0.0,
    end_value: float = 0.0,
    decay: str = "1-sqrt",
) -> Schedule:
    r"""Linear warm-up, a constant plateau, then a cool-down (see the module docstring).

    Args:
      peak_value: :math:`\eta`, the plateau's value.
      warmup_steps: :math:`W`, an integer >= 0 (0: no warm-up).
      stable_steps: :math:`S`, an integer >= 0.
      decay_steps: :math:`D`, an integer >= 1: the length of the cool-down.
      init_value: :math:`\eta_0`, the value at count 0 (when :math:`W > 0`). Default 0.
      end_value: :math:`\eta_e`, the value after the cool-down. Default 0.
      decay: the cool-down shape, ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        Default ``"1-sqrt"`` (Hägele et al.'s best).

    Example:
      >>> s = warmup_stable_decay(1.0, 2, 2, 4, decay="linear")
      >>> [s(t) for t in range(9)]
      [0.0, 0.5, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]

    Differences: Hugging Face ``get_wsd_schedule`` (linear warm-up) is this schedule
    with ``init_value = end_value = min_lr_ratio * peak``; its cosine and 1-sqrt
    warm-ups and ``num_cycles`` (a cosine cool-down that is not half a period) are
    not offered. torch and optax have no WSD schedule.
    """

    def fn(t, m):
        def warm():
            return init_value + (peak_value - init_value) * t / max(warmup_steps, 1)

        def cool():
            p = m.minimum((t - warmup_steps - stable_steps) / decay_steps, 1.0)
            return end_value + (peak_value - end_value) * _cooldown(decay, p, m)

        after = lambda: m.cond(t < warmup_steps + stable_steps, lambda: peak_value, cool)
        return m.cond(t < warmup_steps, warm, after)

    return Schedule.written(
        fn,
        f"warmup_stable_decay({init_value} -> {peak_value} -> {end_value}, "
        f"{warmup_steps}+{stable_steps}+{decay_steps}, {decay})",
    )


@hyperparams(
    init_value=_REAL,
    peak_value=_REAL,
    warmup_steps=_STEPS,
    transition_steps=_STEPS,
    decay_rate=Interval(0.0),
    transition_begin=_BEGIN,
    staircase=BOOL,
    end_value=NoneOr(_REAL),
)
def warmup_exponential_decay(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``,
    then :func:`~gradstep.schedules.exponential_decay` of ``peak_value`` with the
    count since the warm-up ended (optax ``warmup_exponential_decay_schedule``).

    Example:
      >>> s = warmup_exponential_decay(0.0, 1.0, 2, 1, 0.5)
      >>> [s(t) for t in range(5)]
      [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    return join(
        [
            linear_warmup(peak_value, warmup_steps, init_value),
            exponential_decay(
                peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
            ),
        ],
        [warmup_steps],
    )


@hyperparams(init_value=_REAL, decay_steps=_STEPS, decay_rate=Interval(0.0), staircase=BOOL)
def inverse_time_decay(
    init_value: float, decay_steps: int, decay_rate: float, staircase: bool = False
) -> Schedule:
    r"""``init_value / (1 + decay_rate * t / decay_steps)`` (the exponent floored with
    ``staircase``; Keras ``InverseTimeDecay``).

    Example:
      >>> s = inverse_time_decay(1.0, 2, 1.0, staircase=True)
      >>> [s(t) for t in range(5)]
      [1.0, 1.0, 0.5, 0.5, 0.3333333333333333]

    Differences: torch and optax have no inverse-time schedule (torch ``LambdaLR``
    with this function gives the same values); MXNet's ``FactorScheduler`` is
    :func:`~gradstep.schedules.step_decay`.
    """

    def fn(t, m):
        p = t / decay_steps
        if staircase:
            p = m.floor(p)
        return init_value / (1.0 + decay_rate * p)

    return Schedule.written(fn, f"inverse_time_decay({init_value}, {decay_steps}, {decay_rate})")
