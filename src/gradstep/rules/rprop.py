r"""Rprop: per-element step sizes adapted from the signs of successive gradients.

Symbols: :math:`g` gradient, :math:`p` slot ``prev`` (the gradient the previous step
used, 0 at the start), :math:`\Delta` slot ``step_size`` (starts at
:math:`\Delta_0` = ``initial_step_size``), :math:`\eta^-` ``eta_minus``,
:math:`\eta^+` ``eta_plus``, :math:`\Delta_{\min}` ``min_step_size``,
:math:`\Delta_{\max}` ``max_step_size``.

Each element grows its step while its gradient keeps its sign and shrinks it when
the sign flips (a minimum was overstepped); only the sign of the gradient moves the
parameter. After a flip the element waits one step (its gradient counts as 0, so
the next step neither grows nor shrinks its step size): the iRprop- variant of Igel
& Hüsken, which torch.optim.Rprop implements.

.. math::

    s = \mathrm{sign}(g\,p),\qquad
    \Delta \leftarrow \mathrm{clip}\big(\Delta \cdot
        \{\eta^+ \text{ if } s > 0;\ \eta^- \text{ if } s < 0;\ 1 \text{ else}\},
        \Delta_{\min}, \Delta_{\max}\big),

    p \leftarrow \{0 \text{ if } s < 0;\ g \text{ else}\},\qquad
    w \leftarrow w - \mathrm{sign}(p)\,\Delta

The step sizes are the rule's state, not a multiple of a learning rate:
``initial_step_size`` (torch's ``lr``) only starts them, and changing it later has no
effect on parameters that already have state (as in torch). Rprop is meant for
full-batch gradients; with noisy minibatch gradients the signs flip at random.

``lagged_step=True`` outputs at each step the previous step's
:math:`\mathrm{sign}(p)\,\Delta` (0 where the sign flips now), optax 0.2.8's
``scale_by_rprop``: the same step sizes, each step applied one call late.

References:
  Riedmiller & Braun (1993): A Direct Adaptive Method for Faster Backpropagation
  Learning: The RPROP Algorithm. IEEE International Conference on Neural Networks.
  Igel & Hüsken (2000): Improving the Rprop Learning Algorithm. Proceedings of the
  Second International ICSC Symposium on Neural Computation (NC 2000).
"""

from __future__ import annotations

import functools

from .._core.elementwise import Elementwise, Slot
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, hyperparams, nonnegative
from .._core.xmath import clip, sign, where


def _rprop(g, prev, step_size, eta_minus, eta_plus, min_step, max_step, zero, lagged):
    agreement = g * prev
    previous = where(agreement < zero, zero, sign(prev) * step_size)  # the last step
    # every branch an array: a choice between two scalars would take the library's
    # default dtype on some backends
    step_size = where(
        agreement > zero,
        step_size * eta_plus,
        where(agreement < zero, step_size * eta_minus, step_size),
    )
    step_size = clip(step_size, min_step, max_step)
    used = where(agreement < zero, zero, g)
    return where(lagged, previous, sign(used) * step_size), used, step_size


def _rprop_scalars(h: dict, count: int, *, lagged: bool = False) -> dict:
    return {
        "eta_minus": h["eta_minus"],
        "eta_plus": h["eta_plus"],
        "min_step": h["min_step_size"],
        "max_step": h["max_step_size"],
        "zero": 0.0,
        "lagged": lagged,
    }


def _descend(g, factor):
    return g * factor


def _descent(h: dict, count: int) -> dict:
    return {"factor": -1.0}


@hyperparams(
    initial_step_size=nonnegative(),
    eta_minus=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    eta_plus=Interval(1.0, lo_open=True),
    min_step_size=nonnegative(),
    max_step_size=nonnegative(),
    lagged_step=BOOL,
)
def scale_by_rprop(
    initial_step_size: float = 0.01,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    lagged_step: bool = False,
) -> Elementwise:
    r"""Rprop's step :math:`\mathrm{sign}(p)\,\Delta` (positive: the descent stage of
    :func:`rprop` negates it).

    ``lagged_step=True`` outputs the *previous* step's value instead, the old
    :math:`\mathrm{sign}(p)\,\Delta` (0 on the first step and where the sign flips),
    as optax 0.2.8's ``scale_by_rprop`` does: the step sizes and the state are the
    same, the parameters move one step later."""
    return Elementwise(
        "scale_by_rprop",
        _rprop,
        slots=(Slot("prev"), Slot("step_size", initial_step_size, nonnegative=True)),
        hyperparams={
            "eta_minus": eta_minus,
            "eta_plus": eta_plus,
            "min_step_size": min_step_size,
            "max_step_size": max_step_size,
        },
        prepare=functools.partial(_rprop_scalars, lagged=lagged_step),
    )


@hyperparams(
    initial_step_size=nonnegative(),
    eta_minus=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    eta_plus=Interval(1.0, lo_open=True),
    min_step_size=nonnegative(),
    max_step_size=nonnegative(),
    lagged_step=BOOL,
)
def rprop(
    initial_step_size: float = 0.01,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    lagged_step: bool = False,
) -> Chain:
    r"""Rprop, the iRprop- variant (see the module docstring for the math and the
    symbol map).

    Args:
      initial_step_size: :math:`\Delta_0` >= 0, every element's first step size.
        Default 0.01 (torch's ``lr``).
      eta_minus: :math:`\eta^-` in (0, 1), the shrink factor after a sign flip.
        Default 0.5.
      eta_plus: :math:`\eta^+` > 1, the growth factor while the sign holds. Default 1.2.
      min_step_size: :math:`\Delta_{\min}` >= 0. Default 1e-6.
      max_step_size: :math:`\Delta_{\max}` >= 0. Default 50.
      lagged_step: apply each step one step late (the previous step's
        :math:`\mathrm{sign}(p)\,\Delta`, 0 on the first step and after a sign
        flip), as optax 0.2.8's ``rprop``. Default False.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.rprop(0.1))
      >>> opt.step(np.array([2.0, -3.0])); w
      array([ 0.9, -0.9])
      >>> opt.step(np.array([1.0, 4.0])); w.round(6)
      array([ 0.78, -0.9 ])

    Differences: torch.optim.Rprop takes ``etas=(eta_minus, eta_plus)`` and
    ``step_sizes=(min, max)`` and the initial step size as ``lr``; the math is the
    same (gradstep.torch.Rprop maps them). torch checks only
    :math:`0 < \eta^- < 1 < \eta^+`; gradstep also refuses negative step-size
    bounds. optax 0.2.8's ``rprop(learning_rate, eta_minus, eta_plus, min_step_size,
    max_step_size)`` is this rule with ``initial_step_size=learning_rate`` and
    ``lagged_step=True`` (its update is the step computed at the previous call), and
    it clips a step size only when it changes. MXNet and Keras have no Rprop.
    """
    return rule(
        "rprop",
        scale_by_rprop(
            initial_step_size,
            eta_minus,
            eta_plus,
            min_step_size,
            max_step_size,
            lagged_step=lagged_step,
        ),
        Elementwise("descent", _descend, prepare=_descent),
    )
