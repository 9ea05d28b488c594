r"""Stochastic weight averaging: the equal-weight average of the iterates.

Symbols: :math:`w_t` the parameter after update :math:`t` (1-based), :math:`\bar w`
slot ``average``, :math:`s` ``start``, :math:`k` ``every``, :math:`n` the number of
iterates averaged so far.

The iterates :math:`w_t` with :math:`t \ge s` and :math:`(t - s) \bmod k = 0` are
averaged with equal weights, as they come:

.. math::

    \bar w \leftarrow \bar w + \frac{1}{n + 1}\,(w_t - \bar w),\qquad n \leftarrow n + 1

so after :math:`N` of them :math:`\bar w = \frac1N \sum w_t` (Polyak-Ruppert
averaging restricted to the tail of the run). Before the first one, :math:`\bar w` is
the parameter at ``init``. :math:`n` is a closed-form function of the step count,
so the stage is elementwise and the fused engine runs it in the optimizer's pass.

SWA runs the optimizer at a constant or cyclical learning rate while averaging;
:func:`gradstep.schedules.swa_learning_rate`, joined after the pre-averaging schedule
at ``start``, gives torch's ``SWALR``. Evaluate with the averages through
:func:`gradstep.modes.evaluating` (NumPy front) or
:func:`gradstep.modes.evaluation_params`.

**Batch normalisation.** The averaged weights change the statistics that
batch-norm layers should hold; gradstep averages only the parameters it steps and
leaves the running statistics to the user: load the averages into the model, then
recompute the statistics with one pass over the training data in training mode
(torch: ``torch.optim.swa_utils.update_bn(loader, model)``; flax: re-run the model
with ``mutable=["batch_stats"]``).

References:
  Izmailov, Podoprikhin, Garipov, Vetrov & Wilson (2018): Averaging Weights Leads to
  Wider Optima and Better Generalization. UAI, arXiv:1803.05407.
  Polyak & Juditsky (1992): Acceleration of Stochastic Approximation by Averaging.
  SIAM J. Control Optim. 30(4).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Elementwise, Slot
from .._core.transform import Transform
from .._core.validate import BOOL, Interval, hyperparams
from .averaging import ParameterAverage

_STEP = Interval(1, integer=True)


def _swa(g, w, average, rate):
    # w + g is the new parameter, rounded as the engines round it
    return g, average + rate * (w + g - average)


def averaged_before(t: int, start: int, every: int) -> int:
    """How many iterates are averaged before update ``t`` (1-based)."""
    return 0 if t <= start else (t - 1 - start) // every + 1


class ParameterSWA(ParameterAverage):
    """``inner`` followed by the equal-weight averaging stage."""

    def __init__(self, inner: Transform, stage: Elementwise, start: int, every: int):
        super().__init__((inner, stage), name="parameter_swa")
        self.start = start
        self.every = every

    def averaged(self, state: dict) -> int:
        """The number of iterates in the average."""
        t = int(self.stage_state(state)["count"])
        return averaged_before(t + 1, self.start, self.every)

    def averages(self, state: dict) -> Any:
        """The average :math:`\\bar w` (the initial parameters before any iterate)."""
        return _tree.tree_map(np.copy, self.stage_state(state)["average"])


def _swa_prepare(h: dict, count: int, *, start: int, every: int) -> dict:
    if h["train_mode"] is not True:
        raise ValueError(
            "parameter_swa: step taken while evaluating with the averaged weights "
            f"(train_mode={h['train_mode']!r}); leave gradstep.modes.evaluating() first"
        )
    t = count + 1
    if t < start or (t - start) % every:
        return {"rate": 0.0}
    return {"rate": 1.0 / (averaged_before(t, start, every) + 1)}


@hyperparams(start=_STEP, every=_STEP)
def parameter_swa(inner: Transform, start: int = 1, every: int = 1) -> ParameterSWA:
    r"""Keep the equal-weight average of the parameters ``inner`` produces from update
    ``start`` on, every ``every`` updates (see the module docstring for the math).

    The update of ``inner`` passes through unchanged; the state gains ``count`` and
    ``average``.

    Args:
      inner: the optimizer whose iterates are averaged.
      start: :math:`s`, an integer >= 1: the first update whose result is averaged.
        Default 1.
      every: :math:`k`, an integer >= 1: average every :math:`k`-th iterate (e.g.
        the number of updates per epoch, to average once per epoch as the paper).
        Default 1.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([0.0])
      >>> opt = gradstep.Optimizer(w, gradstep.transforms.parameter_swa(gradstep.sgd(1.0), 2))
      >>> for _ in range(4):
      ...     opt.step(np.array([-1.0]))
      >>> with gradstep.modes.evaluating(opt):  # the mean of 2, 3 and 4
      ...     w
      array([3.])
      >>> w
      array([4.])

    Differences: torch ``AveragedModel`` keeps a copy of the model and averages when
    ``update_parameters`` is called (its buffers too with ``use_buffers=True``);
    here the average follows the optimizer's parameters and the iterates to average
    are given by ``start`` and ``every``. Batch-norm statistics are the user's to
    recompute (module docstring). optax and Keras have no SWA (Keras'
    ``use_ema`` is :func:`~gradstep.transforms.parameter_ema`).
    """
    if not isinstance(inner, Transform):
        raise TypeError(f"parameter_swa: expected a transform, got {type(inner).__name__}")
    stage = Elementwise(
        "swa",
        _swa,
        slots=(Slot("average", fill="params"),),
        hyperparams={"train_mode": True},
        prepare=functools.partial(_swa_prepare, start=start, every=every),
        uses_params=True,
        uses_count=True,
    )
    stage.declared_ranges = {"train_mode": BOOL}
    return ParameterSWA(inner, stage, start, every)
