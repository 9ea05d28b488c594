r"""The learning rate of stochastic weight averaging: an anneal to a constant.

Symbols: :math:`\eta_0` ``init_value``, :math:`\eta_s` ``swa_value``, :math:`A`
``anneal_steps``, :math:`p = \min(t / \max(A, 1), 1)` (:math:`p = 1` when
:math:`A = 0`).

.. math::

    s(t) = \eta_s\,\alpha(p) + \eta_0\,(1 - \alpha(p)),\qquad
    \alpha(p) = \tfrac12(1 - \cos \pi p)\ (\texttt{"cos"})\ \text{or}\ p\ (\texttt{"linear"})

SWA (Izmailov et al.) averages the iterates of SGD run at a constant (or cyclical)
learning rate; this schedule moves the learning rate from where the run is to that
constant. Join it after the pre-SWA schedule with :func:`~gradstep.schedules.join`
at the step where averaging starts (see :func:`gradstep.transforms.parameter_swa`).

References:
  Izmailov, Podoprikhin, Garipov, Vetrov & Wilson (2018): Averaging Weights Leads to
  Wider Optima and Better Generalization. UAI, arXiv:1803.05407.
"""

from __future__ import annotations

from .._core.validate import Interval, OneOf, hyperparams
from .schedules import Schedule

ANNEALS = ("cos", "linear")


@hyperparams(
    init_value=Interval(),
    swa_value=Interval(),
    anneal_steps=Interval(0, integer=True),
    anneal=OneOf(ANNEALS),
)
def swa_learning_rate(
    init_value: float, swa_value: float, anneal_steps: int = 10, anneal: str = "cos"
) -> Schedule:
    r"""From ``init_value`` to ``swa_value`` over ``anneal_steps``, then constant (see
    the module docstring).

    Args:
      init_value: :math:`\eta_0`, the learning rate when averaging starts.
      swa_value: :math:`\eta_s`, the constant learning rate of the averaging phase.
      anneal_steps: :math:`A`, an integer >= 0 (0: :math:`\eta_s` at once). Default 10
        (torch).
      anneal: ``"cos"`` (default, torch) or ``"linear"``.

    Example:
      >>> s = swa_learning_rate(1.0, 0.1, anneal_steps=2, anneal="linear")
      >>> [round(s(t), 6) for t in range(4)]
      [1.0, 0.55, 0.1, 0.1]

    Differences: torch ``SWALR(optimizer, swa_lr, anneal_epochs, anneal_strategy)``
    gives these values when nothing else changes the group's learning rate (it
    rebuilds its start from the current ``lr`` each step); it counts scheduler steps,
    usually epochs, where this schedule counts whatever its count is (updates, or
    epochs through :func:`~gradstep.schedules.join`).
    """

    def fn(t, m):
        p = m.minimum(t / max(anneal_steps, 1), 1.0) if anneal_steps > 0 else 1.0
        alpha = p if anneal == "linear" else 0.5 * (1.0 - m.cos(m.pi * p))
        return swa_value * alpha + init_value * (1.0 - alpha)

    description = f"swa_learning_rate({init_value} -> {swa_value}, {anneal_steps}, {anneal})"
    return Schedule.written(fn, description)
