r"""Exponential moving average of the parameters, as objax defines it.

Symbols: :math:`w_t` the parameter after step :math:`t` (1-based), :math:`m` slot
``average``, :math:`\mu` ``momentum``, :math:`\epsilon` ``epsilon``.

.. math::

    m_t = m_{t-1} + (1-\mu)(w_t - m_{t-1}) \quad(= \mu m_{t-1} + (1-\mu) w_t),
    \qquad m_0 = 0

and the averaged weights are :math:`\hat w_t = m_t`, or with ``debias=True``

.. math::

    \hat w_t = \frac{m_t}{1 - (1-\epsilon)\mu^t}

(objax ``ExponentialMovingAverage``; :math:`\epsilon` keeps :math:`t = 0` finite:
:math:`\hat w_0 = 0`). With ``start="first"`` the average is set to the parameter after
the first step, :math:`m_1 = w_1`, and follows the same recursion afterwards
(``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``, Keras
``use_ema``).

:func:`parameter_ema` wraps an optimizer: after every step of ``inner`` the average
takes in the new parameters :math:`w + u`. It is an elementwise stage appended to
the chain, so the fused engine runs it in the same pass as the optimizer. To
evaluate with the averaged weights and switch back, use
:func:`gradstep.modes.evaluating` on the NumPy front, or
:func:`gradstep.modes.evaluation_params` on the functional API.

References:
  Polyak & Juditsky (1992): Acceleration of Stochastic Approximation by Averaging.
  SIAM J. Control Optim. 30(4).
  google/objax: ``objax.optimizer.ExponentialMovingAverage`` (objax documentation,
  "Optimizers").
"""

from __future__ import annotations

import functools
from typing import Any

from .._core import tree as _tree
from .._core.elementwise import Elementwise, Slot
from .._core.namespaces import namespace_of
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Interval, OneOf, hyperparams, nonnegative

STARTS = ("zeros", "first")


def _ema(g, w, average, rate):
    # w + g is the new parameter, rounded as the engines round it
    return g, average + rate * (w + g - average)


class ParameterAverage(Chain):
    """``inner`` followed by a stage that averages the parameters it produces (the
    kind :mod:`gradstep.modes` evaluates with); ``inner`` is the wrapped optimizer."""

    @property
    def inner(self) -> Transform:
        return self.stages[0]

    def stage_state(self, state: dict) -> dict:
        """The averaging stage's part of this transform's state."""
        return state[self.stage_names[1]]

    def averages(self, state: dict) -> Any:  # pragma: no cover - interface
        """The averaged weights (a tree shaped like the parameters)."""
        raise NotImplementedError


class ParameterEMA(ParameterAverage):
    """``inner`` followed by the exponential averaging stage."""

    def __init__(
        self, inner: Transform, stage: Elementwise, momentum: float, debias: bool, epsilon: float
    ):
        super().__init__((inner, stage), name="parameter_ema")
        self.momentum = momentum
        self.debias = debias
        self.epsilon = epsilon

    def averages(self, state: dict) -> Any:
        """The averaged weights :math:`\\hat w_t` (a tree shaped like the parameters)."""
        node = self.stage_state(state)
        t = int(node["count"])
        return _tree.tree_map(
            lambda m: (
                debiased(m, t, self.momentum, self.epsilon)
                if self.debias
                else namespace_of(m).copy(m)
            ),
            node["average"],
        )


def debiased(average: Any, t: int, momentum: float, epsilon: float) -> Any:
    """:math:`m_t / (1 - (1-\\epsilon)\\mu^t)`, in ``average``'s dtype, array library
    and device (the divisor rounded to that dtype first)."""
    ns = namespace_of(average)
    return average / ns.astype(1.0 - (1.0 - epsilon) * momentum**t, average)


def _parameter_ema_prepare(h: dict, count: int, *, one_minus, start) -> dict:
    if h["train_mode"] is not True:
        raise ValueError(
            "parameter_ema: step taken while evaluating with the averaged weights "
            f"(train_mode={h['train_mode']!r}); leave gradstep.modes.evaluating() first"
        )
    return {"rate": 1.0 if start == "first" and count == 0 else one_minus}


@hyperparams(momentum=Interval(0.0, 1.0), debias=BOOL, epsilon=nonnegative(), start=OneOf(STARTS))
def parameter_ema(
    inner: Transform,
    momentum: float = 0.999,
    debias: bool = False,
    epsilon: float = 1e-6,
    *,
    start: str = "zeros",
) -> ParameterEMA:
    r"""Keep an exponential moving average of the parameters ``inner`` produces.

    The update of ``inner`` passes through unchanged; the state gains ``count`` and
    ``average`` (see the module docstring for the math and symbols).

    Args:
      inner: the optimizer whose parameters are averaged.
      momentum: :math:`\mu` in [0, 1]. Default 0.999 (objax).
      debias: report :math:`m_t / (1 - (1-\epsilon)\mu^t)` instead of :math:`m_t`.
        Default False (objax). Only with ``start="zeros"``.
      epsilon: :math:`\epsilon` >= 0 of the debiasing. Default 1e-6 (objax).
      start: ``"zeros"`` (objax: :math:`m_0 = 0`, so without debiasing the average
        is :math:`(1-\mu) w_1` after one step) or ``"first"`` (:math:`m_1 = w_1`,
        torch ``AveragedModel`` / Keras).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> t = gradstep.transforms.parameter_ema(gradstep.sgd(0.5), momentum=0.5)
      >>> opt = gradstep.Optimizer(w, t)
      >>> opt.step(np.array([1.0])); w
      array([0.5])
      >>> with gradstep.modes.evaluating(opt):  # w holds the average here
      ...     w
      array([0.25])
      >>> w
      array([0.5])

    Differences: objax averages every variable of a ``VarCollection`` (batch-norm
    statistics too) and is stepped by an explicit call; here the average follows the
    optimizer's parameters after every step. optax ``ema`` averages the update
    stream, not the parameters, and debiases with :math:`1-\mu^t` exactly. Keras
    ``use_ema`` (momentum 0.99) can overwrite the weights periodically; torch
    ``AveragedModel`` keeps a model copy.
    """
    if not isinstance(inner, Transform):
        raise TypeError(f"parameter_ema: expected a transform, got {type(inner).__name__}")
    if debias and start != "zeros":
        raise ValueError(
            f"parameter_ema: invalid debias={debias!r} with start={start!r}; valid values: "
            "debias=True needs start='zeros' (a copied start has no bias towards 0)"
        )
    one_minus = 1.0 - momentum

    prepare = functools.partial(_parameter_ema_prepare, one_minus=one_minus, start=start)

    stage = Elementwise(
        "ema",
        _ema,
        slots=(Slot("average"),),
        hyperparams={"train_mode": True},
        prepare=prepare,
        uses_params=True,
        uses_count=True,
    )
    stage.declared_ranges = {"train_mode": BOOL}
    return ParameterEMA(inner, stage, momentum, debias, epsilon)
