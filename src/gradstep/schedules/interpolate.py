r"""Piecewise interpolation between anchor values, and the one-cycle policy built on it.

Symbols: :math:`t` the count, :math:`b_0 = 0 < b_1 < \dots < b_n` the boundaries
(``boundaries``), :math:`v_0` ``init_value``, :math:`v_i` ``values[i-1]``.

.. math::

    s(t) = \operatorname{interp}\Big(v_i, v_{i+1},
           \frac{t - b_i}{\max(b_{i+1} - b_i, 1)}\Big)
    \quad\text{for } b_i \le t < b_{i+1}, \qquad s(t) = v_n \text{ for } t \ge b_n

with :math:`\operatorname{interp}(a, b, p) = a + (b - a)\,p` (``"linear"``) or
:math:`b + (a - b)\,\tfrac12(1 + \cos \pi p)` (``"cos"``).

The one-cycle policy (Smith & Topin) rises from :math:`\eta_{\max}/d` to
:math:`\eta_{\max}` (``peak_value``, :math:`d` ``div_factor``), then falls to
:math:`\eta_{\max}/(d f)` (:math:`f` ``final_div_factor``); with ``pct_final`` it
first falls back to :math:`\eta_{\max}/d` and only then to the final value (three
phases). Where the phases end depends on the library (``convention``):

- ``"optax"``: at :math:`\lfloor p_s T\rfloor`, (:math:`\lfloor p_f T\rfloor`,)
  :math:`T` (optax ``cosine_onecycle_schedule``, ``linear_onecycle_schedule``);
- ``"torch"``: at :math:`p_s T - 1`, (:math:`p_f T - 2`,) :math:`T - 1` (torch
  ``OneCycleLR``; its ``three_phase=True`` is ``pct_final = 2 * pct_start``).

References:
  Smith (2017): Cyclical Learning Rates for Training Neural Networks. WACV,
  arXiv:1506.01186.
  Smith & Topin (2019): Super-Convergence: Very Fast Training of Neural Networks
  Using Large Learning Rates. arXiv:1708.07120.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from .._core.validate import Interval, NoneOr, OneOf, hyperparams
from ._math import PYTHON
from .schedules import Schedule, _check_boundaries, checked_numbers

INTERPOLATIONS = ("linear", "cos")
CONVENTIONS = ("optax", "torch")
_FRACTION = Interval(0.0, 1.0, lo_open=True, hi_open=True)
_POSITIVE = Interval(0.0, lo_open=True)


def interpolated(kind: str, start: Any, end: Any, pct: Any, m: Any = PYTHON) -> Any:
    """``start`` to ``end`` at fraction ``pct``: linearly or along half a cosine."""
    if kind == "linear":
        return start + (end - start) * pct
    return end + (start - end) * 0.5 * (1.0 + m.cos(m.pi * pct))


@hyperparams(init_value=Interval(), interpolation=OneOf(INTERPOLATIONS))
def piecewise_interpolate(
    init_value: float,
    boundaries: Sequence[int],
    values: Sequence[float],
    interpolation: str = "linear",
) -> Schedule:
    """``init_value`` at count 0, ``values[i]`` at ``boundaries[i]``, interpolated in
    between (``"linear"`` or ``"cos"``), ``values[-1]`` from the last boundary on
    (see the module docstring).

    Example:
      >>> s = piecewise_interpolate(1.0, [4, 8], [0.1, 0.001])
      >>> [round(s(t), 6) for t in (0, 2, 4, 6, 8, 10)]
      [1.0, 0.55, 0.1, 0.0505, 0.001, 0.001]
    """
    boundaries = checked_numbers(
        "piecewise_interpolate", "boundaries", boundaries, Interval(0, integer=True)
    )
    values = checked_numbers("piecewise_interpolate", "values", values, Interval())
    if len(values) != len(boundaries):
        raise ValueError(
            f"piecewise_interpolate: values has {len(values)} entries; it needs one per "
            f"boundary ({len(boundaries)})"
        )
    _check_boundaries("piecewise_interpolate", boundaries)
    starts = [0] + boundaries
    anchors = [float(init_value)] + values

    n = len(boundaries)
    widths = [max(b - a, 1) for a, b in zip(starts, starts[1:])]

    def fn(t, m):
        i = m.bucket(t, starts) - 1  # the piece t is in; n: past the last boundary

        def inside():
            j = m.minimum(i, n - 1)
            pct = (t - m.pick(starts, j)) / m.pick(widths, j)
            return interpolated(interpolation, m.pick(anchors, j), m.pick(anchors, j + 1), pct, m)

        return m.cond(i >= n, lambda: anchors[-1], inside) if n else anchors[-1]

    return Schedule.written(fn, f"piecewise_interpolate({interpolation}, {anchors} at {starts})")


@hyperparams(
    transition_steps=Interval(1, integer=True),
    peak_value=Interval(),
    pct_start=_FRACTION,
    div_factor=_POSITIVE,
    final_div_factor=_POSITIVE,
    anneal=OneOf(INTERPOLATIONS),
    pct_final=NoneOr(_FRACTION),
    convention=OneOf(CONVENTIONS),
)
def one_cycle(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    *,
    anneal: str = "cos",
    pct_final: float | None = None,
    convention: str = "optax",
) -> Schedule:
    r"""The one-cycle policy (see the module docstring for the phases).

    Args:
      transition_steps: :math:`T`, an integer >= 1: the length of the cycle.
      peak_value: :math:`\eta_{\max}`.
      pct_start: :math:`p_s` in (0, 1): the fraction of the cycle spent rising.
        Default 0.3 (torch, optax).
      div_factor: :math:`d` > 0: the start value is :math:`\eta_{\max}/d`. Default 25.
      final_div_factor: :math:`f` > 0: the final value is :math:`\eta_{\max}/(d f)`.
        Default 1e4.
      anneal: ``"cos"`` (default; torch's default, optax ``cosine_onecycle``) or
        ``"linear"`` (torch ``anneal_strategy="linear"``, optax ``linear_onecycle``).
      pct_final: :math:`p_f` in (:math:`p_s`, 1): three phases, the second ending at
        :math:`p_f` back at :math:`\eta_{\max}/d`. Default None (two phases).
      convention: where the phases end, ``"optax"`` (default) or ``"torch"``.

    Example:
      >>> s = one_cycle(100, 1.0, pct_start=0.3, div_factor=10, final_div_factor=100)
      >>> round(s(0), 6), round(s(30), 6), round(s(100), 6)
      (0.1, 1.0, 0.001)

    Differences: torch ``OneCycleLR`` raises after ``total_steps`` steps and also
    cycles the momentum (give the momentum its own schedule here); after the cycle
    this schedule stays at the final value. optax's one-cycles are this schedule with
    ``convention="optax"``; its ``linear_onecycle_schedule`` always has three phases
    (``pct_final=0.85``).
    """
    if pct_final is not None and not pct_start < pct_final < 1.0:
        raise ValueError(
            f"one_cycle: invalid pct_final={pct_final!r}; valid values: None or a number "
            f"in (pct_start={pct_start}, 1)"
        )
    start = peak_value / div_factor
    final = start / final_div_factor
    T = transition_steps
    if pct_final is None:
        levels = [start, peak_value, final]
        ends = [pct_start * T - 1, T - 1.0] if convention == "torch" else [int(pct_start * T), T]
    else:
        levels = [start, peak_value, start, final]
        if convention == "torch":
            ends = [pct_start * T - 1, pct_final * T - 2, T - 1.0]
        else:
            ends = [int(pct_start * T), int(pct_final * T), T]
    description = f"one_cycle({T}, peak {peak_value}, {anneal}, {convention})"
    if convention == "optax":
        inner = piecewise_interpolate(start, ends, levels[1:], anneal)
        return Schedule.written(inner._written, description)
    begins = [0.0] + ends[:-1]

    def phase(k: int, t: Any, m: Any) -> Any:
        begin, end = begins[k], ends[k]
        pct = m.minimum((t - begin) / (end - begin), 1.0) if end > begin else 1.0
        return interpolated(anneal, levels[k], levels[k + 1], pct, m)

    def fn(t, m):
        # torch: the phase whose end is not yet passed (the last one at the end)
        k = m.minimum(m.bucket(t, ends, side="left"), len(ends) - 1)
        return m.switch(k, [functools.partial(phase, j, t, m) for j in range(len(ends))])

    return Schedule.written(fn, description)
