r"""AdaMax: Adam with the infinity norm.

Symbols: :math:`m` slot ``mu``, :math:`u` slot ``inf_norm``, :math:`t` 1-based step,
:math:`\eta` ``learning_rate``, :math:`\beta_1, \beta_2` ``beta1, beta2``,
:math:`\epsilon` ``epsilon``.

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\qquad
    w \leftarrow w - \frac{\eta}{1-\beta_1^t}\, \frac{m}{u'}

with, by ``epsilon_placement``:

- ``"outside"`` (Lasagne, Dandelion, MXNet 2.x): :math:`u \leftarrow \max(\beta_2 u,
  |g|)`, :math:`u' = u + \epsilon`;
- ``"in_max"`` (torch, optax): :math:`u \leftarrow \max(\beta_2 u, |g| + \epsilon)`,
  :math:`u' = u`.

References:
  Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR,
  arXiv:1412.6980, section 7.1.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import GRADIENT_RANGES, gradient_stage
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import absolute, complex_ready, debias, ema, maximum

PLACEMENTS = ("outside", "in_max")


@complex_ready
def _adamax(g, mu, inf_norm, b1, c1, b2, step_scale, eps_in, eps_out):
    mu = ema(mu, g, b1, c1)
    inf_norm = maximum(b2 * inf_norm, absolute(g) + eps_in)
    return mu * step_scale / (inf_norm + eps_out), mu, inf_norm


def _adamax_prepare(h: dict, count: int, *, epsilon, epsilon_placement) -> dict:
    b1 = h["beta1"]
    eps_in, eps_out = (0.0, epsilon) if epsilon_placement == "outside" else (epsilon, 0.0)
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "b2": h["beta2"],
        "step_scale": 1.0 / debias(b1, count + 1),
        "eps_in": eps_in,
        "eps_out": eps_out,
    }


@hyperparams(
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    epsilon_placement=OneOf(PLACEMENTS),
)
def scale_by_adamax(
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    epsilon_placement: str = "outside",
) -> Elementwise:
    """AdaMax's direction (no learning rate); see the module docstring."""

    prepare = functools.partial(
        _adamax_prepare, epsilon=epsilon, epsilon_placement=epsilon_placement
    )

    return Elementwise(
        "scale_by_adamax",
        _adamax,
        slots=(Slot("mu"), Slot("inf_norm")),
        hyperparams={"beta1": beta1, "beta2": beta2},
        prepare=prepare,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    epsilon_placement=OneOf(PLACEMENTS),
    weight_decay=nonnegative(schedulable=True),
    clear_nan=BOOL,
    **GRADIENT_RANGES,
)
def adamax(
    learning_rate: Any = 0.002,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    epsilon_placement: str = "outside",
    weight_decay: Any = 0.0,
    clear_nan: bool = False,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = True,
) -> Chain:
    r"""AdaMax (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.002 (Lasagne).
      beta1, beta2: in [0, 1). Defaults 0.9, 0.999.
      epsilon: :math:`\epsilon` >= 0. Default 1e-8.
      epsilon_placement: ``"outside"`` (default, Lasagne) or ``"in_max"`` (torch).
      weight_decay: coupled L2 decay >= 0, or a schedule (torch's ``weight_decay``,
        MXNet's ``wd``). Default 0.
      clear_nan: Dandelion's NaN handling.
      rescale_grad, clip_gradient: MXNet's gradient handling: the gradient is
        multiplied by ``rescale_grad`` (> 0, default 1) and clipped element-wise to
        ``[-clip_gradient, clip_gradient]`` (>= 0, default None: no clip).
      decay_in_clip: with both a clip and a decay, clip :math:`s g + \lambda w`
        (True, default: MXNet 1.x) or add :math:`\lambda w` after the clip (False:
        MXNet 2.x).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> gradstep.Optimizer(w, gradstep.adamax(0.1)).step(np.array([3.0])); w.round(6)
      array([0.9])

    Differences: torch and optax put epsilon inside the maximum, so a coordinate whose
    gradient has always been 0 gets :math:`u = \epsilon`; MXNet 1.x has no epsilon at
    all (``epsilon=0``, which gives 0/0 = NaN there); Keras uses epsilon 1e-7 and
    lr 0.001. MXNet 1.x ``Adamax`` is ``epsilon=0`` with its ``rescale_grad``,
    ``clip_gradient`` and ``wd``.
    """
    return rule(
        "adamax",
        gradient_stage(
            "adamax", rescale_grad, clip_gradient, weight_decay, decay_in_clip, default_in_clip=True
        ),
        scale_by_adamax(beta1, beta2, epsilon, epsilon_placement=epsilon_placement),
        scale_by_learning_rate(learning_rate),
        clear_nan=clear_nan,
    )
