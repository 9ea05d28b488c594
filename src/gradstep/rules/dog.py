r"""DoG: SGD whose step size is the largest distance travelled from the start over the root
of the summed squared gradient norms ("distance over gradients").

Symbols: :math:`g` gradient (with :math:`\lambda w` added when ``weight_decay`` is
given), :math:`w` parameter, :math:`w_0` slot ``p0`` (the initial parameter),
:math:`\bar r` the largest distance so far (carried state ``max_dist``), :math:`G` the
summed squared gradient norms (``sum_sq_norm_grads``), :math:`\eta` ``learning_rate``,
:math:`\epsilon` ``epsilon``, :math:`\alpha` ``init_step_value``. Norms run over every
element of every tensor.

.. math::

    \bar r \leftarrow \max\big(\bar r, \|w - w_0\|\big),\quad
    G \leftarrow G + \|g\|^2,\quad
    w \leftarrow w - \eta\, \frac{\bar r}{\sqrt{G + \epsilon}}\, g

The first step's :math:`\bar r` is :math:`r_\epsilon`: ``init_step="heuristic"``:
:math:`\alpha (1 + \|w_0\|)`; ``"distance"``: :math:`\alpha`; ``"learning_rate"``:
0, and the first step's size is :math:`\alpha` itself instead of the ratio.

References:
  Ivgi, Hinder & Carmon (2023): DoG is SGD's Best Friend: A Parameter-Free Dynamic
  Step Size Schedule. ICML, arXiv:2302.12022.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Slot
from .._core.global_reduction import GlobalReduction
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import Interval, OneOf, hyperparams, nonnegative
from .._core.xmath import element_helper, maximum, sqrt, where
from .layerwise import NoneOr

INIT_STEPS = ("heuristic", "distance", "learning_rate")


@element_helper
def distance_over_gradients(max_dist, sum_sq, moved_sq, grad_sq, eps):
    """DoG's step size from one step's squared distance from :math:`w_0` and squared
    gradient norm: ``(new max distance, new sum of squared norms, step size)``
    (:func:`gradstep.rules.ldog.scale_by_ldog` takes it per tensor)."""
    max_dist = maximum(max_dist, sqrt(moved_sq))
    total = sum_sq + grad_sq
    return max_dist, total, max_dist / sqrt(total + eps)


def _distance_and_norms(g, w, p0):
    return (w - p0) * (w - p0), g * g, w * w


def _scaled(g, w, p0, factor):
    return factor * g, p0


def _combine(sums, h, scalars, *, init_step, value, eps):
    moved, squares, weights = sums
    first = h["first"] > 0.0
    start = h["max_dist"]
    if init_step == "heuristic":  # the initial parameters' norm: w is w0 on step 1
        start = where(first, value * (1.0 + sqrt(weights)), start)
    max_dist, total, factor = distance_over_gradients(
        start, h["sum_sq_norm_grads"], moved, squares, eps
    )
    if init_step == "learning_rate":
        factor = where(first, value, factor)
    carried = {"max_dist": max_dist, "sum_sq_norm_grads": total, "first": 0.0 * h["first"]}
    return carried, {"factor": factor}


@hyperparams(
    init_step=OneOf(INIT_STEPS),
    init_step_value=Interval(0.0, lo_open=True),
    epsilon=nonnegative(),
)
def scale_by_dog(
    init_step: str = "heuristic", init_step_value: float = 1e-6, epsilon: float = 1e-8
) -> GlobalReduction:
    r""":math:`g \leftarrow \bar r\, g / \sqrt{G + \epsilon}` (see :func:`dog`)."""
    return GlobalReduction(
        "dog",
        _scaled,
        terms=_distance_and_norms,
        combine=functools.partial(
            _combine, init_step=init_step, value=init_step_value, eps=epsilon
        ),
        reduced_scalars=("factor",),
        carried={
            "max_dist": init_step_value if init_step == "distance" else 0.0,
            "sum_sq_norm_grads": 0.0,
            "first": 1.0,
        },
        slots=(Slot("p0", "params"),),
        uses_params=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    init_step=OneOf(INIT_STEPS),
    init_step_value=Interval(0.0, lo_open=True),
    epsilon=nonnegative(),
    weight_decay=NoneOr(nonnegative()),
)
def dog(
    learning_rate: Any = 1.0,
    init_step: str = "heuristic",
    init_step_value: float = 1e-6,
    epsilon: float = 1e-8,
    weight_decay: float | None = None,
    *,
    mask: Any = None,
) -> Chain:
    r"""DoG (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule: a multiplier of the DoG step.
        Default 1.
      init_step: how the first step is sized: ``"heuristic"``, ``"distance"`` or
        ``"learning_rate"`` (see the module docstring). Default ``"heuristic"``.
      init_step_value: :math:`\alpha` > 0. Default 1e-6 (the authors suggest 1e-4
        for models with batch normalization).
      epsilon: :math:`\epsilon` >= 0, added to :math:`G`. Default 1e-8.
      weight_decay: ``None`` or :math:`\lambda` >= 0, added to the gradient.
        Default ``None``.
      mask: a tree of booleans (or a function of the parameters returning one)
        selecting the tensors to decay; ``None``: all.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0])
      >>> opt = gradstep.Optimizer(w, gradstep.dog())
      >>> for _ in range(3):
      ...     opt.step(w.copy())
      >>> float(opt.state["dog"]["max_dist"]) > 0
      True

    Differences: optax's ``contrib.dog(learning_rate, init_step, eps, weight_decay,
    mask)`` is this rule; its ``init_step=(tag, value)`` pair is the two arguments
    ``init_step`` and ``init_step_value`` here, and it computes the heuristic's
    :math:`\|w_0\|` at ``init`` from the parameters given there (gradstep on the
    first step, from :math:`w_0`: the same values when ``init`` gets the real
    parameters, as optax requires). optax sums the norms in the parameters' dtype;
    gradstep in float64. The authors' ``dog`` package (not a reference here) also
    offers per-layer step sizes (LDoG) and iterate averaging.
    """
    if mask is not None and not weight_decay:
        raise ValueError(
            "dog: invalid mask with weight_decay=None or 0; valid values: a mask only "
            "together with a weight_decay > 0"
        )
    return rule(
        "dog",
        add_decayed_weights(weight_decay, mask) if weight_decay is not None else None,
        scale_by_dog(init_step, init_step_value, epsilon),
        scale_by_learning_rate(learning_rate),
    )
