r"""Reduce the step size when a metric stops improving (reduce-on-plateau).

Symbols: :math:`v_t` the metric given to the update (``value=``), :math:`a` its mean
over ``accumulation_size`` values (state ``avg_value``, counted in ``value_count``;
optax's ``count``), :math:`b` the best mean so
far (``best_value``), :math:`\rho` ``rtol``, :math:`\alpha` ``atol``, :math:`n` the
number of evaluations in a row without improvement (``plateau_count``), :math:`p`
``patience``, :math:`c` the cool-down left (``cooldown_count``), :math:`\phi`
``factor``, :math:`s` the scale (``scale``), :math:`s_{\min}` ``min_scale``.

Every ``accumulation_size`` values, one evaluation of :math:`a`:

.. math::

    \text{improved} = \begin{cases}
        a < (1-\rho)\,b - \alpha & \text{mode "min"} \\
        a > (1+\rho)\,b + \alpha & \text{mode "max"} \end{cases}

then :math:`b \leftarrow a` and :math:`n \leftarrow 0` if improved, else
:math:`n \leftarrow n + 1`; during a cool-down (:math:`c > 0`) :math:`c` decreases and
:math:`n \leftarrow 0`; otherwise when :math:`n > p`: :math:`s \leftarrow \max(\phi s,
s_{\min})`, :math:`n \leftarrow 0`, :math:`c \leftarrow` ``cooldown``. The updates are
multiplied by :math:`s`: the new one (``takes_effect="now"``, optax) or the one
before this evaluation (``"next"``: the value judges the step just taken, as torch's
scheduler called after ``optimizer.step()``). A step given no ``value`` changes
nothing of the state, so the metric can be given once per epoch.

The state is a handful of scalars updated with array operations of the state's
library (no Python branch on a value), so the transform runs on NumPy, on torch
tensors and under :func:`jax.jit` with a traced ``value``. On
:class:`gradstep.torch.TransformOptimizer` the metric is the group value
``group["value"]`` (None: no evaluation), set before ``step()``.

References:
  torch ``torch.optim.lr_scheduler.ReduceLROnPlateau``; optax
  ``optax.contrib.reduce_on_plateau`` (the accumulation of values). The idea is
  older than both (e.g. Keras' ``ReduceLROnPlateau`` callback).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import namespace_of
from .._core.transform import Transform
from .._core.validate import Interval, OneOf, hyperparams, nonnegative

MODES = ("min", "max")
TIMINGS = ("now", "next")
_COUNT = Interval(0, integer=True)


class ReduceOnPlateau(Transform):
    """Scale the updates by a factor that drops when ``value`` plateaus."""

    name = "reduce_on_plateau"

    def __init__(
        self,
        factor: float,
        patience: int,
        rtol: float,
        atol: float,
        cooldown: int,
        accumulation_size: int,
        min_scale: float,
        mode: str,
        takes_effect: str,
    ):
        self.factor = factor
        self.patience = patience
        self.rtol = rtol
        self.atol = atol
        self.cooldown = cooldown
        self.accumulation_size = accumulation_size
        self.min_scale = min_scale
        self.mode = mode
        self.takes_effect = takes_effect

    def hyperparameters(self) -> dict[str, Any]:
        # the metric is given per step by name; any number (NaN counts as no
        # improvement), so no declared range
        return {"value": None}

    def init(self, params: Any) -> dict:
        worst = np.inf if self.mode == "min" else -np.inf
        return {
            "scale": np.ones((), np.float64),
            "best_value": np.asarray(worst, np.float64),
            "plateau_count": np.zeros((), np.int64),
            "cooldown_count": np.zeros((), np.int64),
            "value_count": np.zeros((), np.int64),
            "avg_value": np.zeros((), np.float64),
        }

    def evaluate(self, state: dict, value: Any) -> dict:
        """The state after taking in ``value`` (see the module docstring)."""
        ns = namespace_of(state["scale"])
        count = state["value_count"] + 1
        avg = (state["value_count"] * state["avg_value"] + value) / count
        ready = count == self.accumulation_size
        best = state["best_value"]
        if self.mode == "min":
            improved = avg < (1 - self.rtol) * best - self.atol
        else:
            improved = avg > (1 + self.rtol) * best + self.atol
        plateau = ns.where(improved, 0, state["plateau_count"] + 1)
        cooling = state["cooldown_count"] > 0
        reduce = (~cooling) & (plateau > self.patience)
        scale = state["scale"]
        evaluated = {
            "scale": ns.where(reduce, ns.maximum(scale * self.factor, self.min_scale), scale),
            "best_value": ns.where(improved, avg, best),
            "plateau_count": ns.where(cooling | reduce, 0, plateau),
            "cooldown_count": ns.where(
                cooling, state["cooldown_count"] - 1, ns.where(reduce, self.cooldown, 0)
            ),
            "value_count": ns.where(ready, 0, count),
            "avg_value": ns.where(ready, 0.0, avg),
        }
        kept = {**state, "value_count": count, "avg_value": avg}
        return {k: ns.wrap(ns.where(ready, evaluated[k], kept[k])) for k in state}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        value = ctx.get("value")
        new_state = state if value is None else self.evaluate(state, value)
        scale = (new_state if self.takes_effect == "now" else state)["scale"]
        leaves, td = _tree.flatten(grads)
        out = []
        for g in leaves:
            ns = namespace_of(g)
            out.append(ns.wrap(g * ns.scalar_caster(g)(scale)))
        return _tree.unflatten(td, out), new_state


@hyperparams(
    factor=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    patience=_COUNT,
    rtol=Interval(0.0, 1.0),
    atol=nonnegative(),
    cooldown=_COUNT,
    accumulation_size=Interval(1, integer=True),
    min_scale=Interval(0.0, 1.0),
    mode=OneOf(MODES),
    takes_effect=OneOf(TIMINGS),
)
def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
    *,
    mode: str = "min",
    takes_effect: str = "now",
) -> ReduceOnPlateau:
    r"""Multiply the updates by a scale that drops by ``factor`` when the metric
    given as ``value=`` stops improving (see the module docstring for the math).

    Place it after the learning rate (or anywhere after the rule's statistics): the
    step is :math:`s` times the rule's. Give the metric to each update that should
    be judged, ``opt.step(grads, value=loss)`` or ``update(g, s, p, value=loss)``.

    Args:
      factor: :math:`\phi` in (0, 1). Default 0.1 (torch, optax).
      patience: :math:`p`, an integer >= 0: evaluations without improvement that are
        tolerated; the scale drops on the next one. Default 10 (torch's meaning;
        optax's ``patience`` is this plus one).
      rtol: :math:`\rho` in [0, 1]: relative improvement required. Default 1e-4
        (torch ``threshold`` in ``"rel"`` mode, optax ``rtol``).
      atol: :math:`\alpha` >= 0: absolute improvement required. Default 0 (torch's
        ``"abs"`` mode is ``rtol=0, atol=threshold``).
      cooldown: evaluations after a reduction during which none is counted.
        Default 0.
      accumulation_size: values averaged into one evaluation. Default 1.
      min_scale: :math:`s_{\min}` in [0, 1]: the scale never drops below it (torch's
        ``min_lr`` divided by the base learning rate). Default 0.
      mode: ``"min"`` (default: a loss) or ``"max"`` (an accuracy).
      takes_effect: ``"now"`` (default, optax: the scale after this evaluation
        scales this update) or ``"next"`` (torch: from the next update on).

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import chain, reduce_on_plateau
      >>> w = np.array([0.0])
      >>> opt = gradstep.Optimizer(w, chain(gradstep.sgd(1.0), reduce_on_plateau(0.5, 1)))
      >>> for loss in (3.0, 3.0, 3.0):
      ...     opt.step(np.array([1.0]), value=loss)
      >>> w, float(opt.state["reduce_on_plateau"]["scale"])
      (array([-2.5]), 0.5)

    Differences: torch's ``ReduceLROnPlateau`` changes each group's ``lr`` (works
    unchanged on ``gradstep.torch`` optimizers) and skips reductions smaller than its
    ``eps`` (1e-8, in learning-rate units), which is not offered; optax's transform
    requires a value on every update and keeps ``best_value`` in the parameters'
    dtype (here float64 on NumPy, JAX's default float under jit).
    """
    return ReduceOnPlateau(
        factor, patience, rtol, atol, cooldown, accumulation_size, min_scale, mode, takes_effect
    )
