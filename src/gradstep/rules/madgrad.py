r"""MADGRAD: momentumised, adaptive, dual-averaged gradient descent.

Symbols: :math:`g` gradient (after any coupled decay), :math:`w` parameter,
:math:`G` slot ``grad_sum_sq``, :math:`s` slot ``grad_sum``, :math:`w_0` slot
``initial`` (the parameter at the first step), :math:`k` the 0-based step,
:math:`\eta` ``learning_rate``, :math:`\mu` ``momentum``, :math:`\epsilon`
``epsilon``, :math:`\lambda` ``weight_decay``.

.. math::

    \eta' = \eta + \epsilon,\quad \lambda_k = \eta' \sqrt{k+1}

    G \leftarrow G + \lambda_k g^2,\quad s \leftarrow s + \lambda_k g,\quad
    z = w_0 - s / (G^{1/3} + \epsilon)

    w \leftarrow \mu w + (1-\mu) z

The step is a dual average: :math:`z` is recomputed from the first parameter and
the weighted sums of all gradients, and the parameter moves a fraction
:math:`1-\mu` towards it (momentum by averaging the iterates). :math:`\eta' = 0`
when :math:`\eta = 0`. With :math:`\epsilon = 0`, a coordinate whose :math:`G` is
0 keeps :math:`z = w_0`. The learning rate is part of the weights :math:`\lambda_k`,
so the stage holds it (no separate learning-rate stage); a per-step value given
to ``update`` weighs that step's gradient.

The weight decay is coupled (:math:`g + \lambda w` enters the sums: the paper,
optax, pytorch-optimizer's default) or, with ``decoupled_weight_decay``,
:math:`w \leftarrow \mu w + (1-\mu) z - \eta'\lambda w` (pytorch-optimizer's
``weight_decouple``). Without momentum (:math:`\mu = 0`) pytorch-optimizer and
the authors' package do not keep :math:`w_0` but rebuild it from :math:`w` each
step, so a decoupled decay shifts it too: :math:`w_0 \leftarrow w_0 - \eta'\lambda
w` after each step; gradstep does the same there.

References:
  Defazio & Jelassi (2022): Adaptivity without Compromise: A Momentumized,
  Adaptive, Dual Averaged Gradient Method for Stochastic Optimization. JMLR 23,
  arXiv:2101.11075.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import add_decayed_weights, rule
from .._core.transform import Chain
from .._core.validate import BOOL, decay_rate, hyperparams, nonnegative
from .._core.xmath import cbrt, where


def _madgrad(
    g, w, grad_sum_sq, grad_sum, initial, weight, eps, zero, one, toward, decay, anchor_decay
):
    grad_sum_sq = grad_sum_sq + weight * g * g
    grad_sum = grad_sum + weight * g
    root = cbrt(grad_sum_sq) + eps
    # a zero root (epsilon 0) means nothing summed yet: grad_sum is 0 there too, and
    # the coordinate stays at its start (divided by 1, not 0)
    z = initial - grad_sum / where(root > zero, root, one)
    return toward * (z - w) - decay * w, grad_sum_sq, grad_sum, initial - anchor_decay * w


def _madgrad_prepare(h: dict, count: int, *, epsilon, momentum, decoupled) -> dict:
    lr = h["learning_rate"]
    lr_eps = lr + epsilon if lr != 0 else 0.0
    decay = lr_eps * h["weight_decay"] if decoupled else 0.0
    return {
        "weight": lr_eps * (count + 1) ** 0.5,  # not math.sqrt: the JAX engine traces it
        "eps": epsilon,
        "zero": 0.0,
        "one": 1.0,
        "toward": 1.0 - momentum,
        "decay": decay,
        # without momentum the references rebuild w_0 from w, decay included
        "anchor_decay": decay if momentum == 0 else 0.0,
    }


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    momentum=decay_rate(),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
)
def madgrad(
    learning_rate: Any = 0.01,
    momentum: float = 0.9,
    epsilon: float = 1e-6,
    weight_decay: Any = 0.0,
    *,
    decoupled_weight_decay: bool = False,
) -> Chain:
    r"""MADGRAD (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.01 (the authors'
        package).
      momentum: :math:`\mu` in [0, 1). Default 0.9.
      epsilon: :math:`\epsilon` >= 0, added to the learning rate and to the cube
        root. Default 1e-6.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      decoupled_weight_decay: decay the weights beside the step (pytorch-optimizer's
        ``weight_decouple``) instead of adding :math:`\lambda w` to the gradient.
        Default False.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.madgrad(0.1, epsilon=0.0)).step(np.array([0.5, -2.0]))
      >>> w.round(6)
      array([0.9829  , 1.027144])

    Differences: ``optax.contrib.madgrad(learning_rate, momentum, weight_decay,
    eps)`` is this rule with coupled decay, except that it adds :math:`\epsilon` to a
    zero learning rate too. pytorch-optimizer's ``MADGRAD`` defaults to
    ``lr=1e-3``. pytorch-optimizer and the authors' package take
    :math:`G^{1/3}` with ``pow(1/3)``, optax with ``cbrt`` (they differ in the last
    bit). Keeping :math:`w_0` costs one parameter-sized slot, as in optax and in
    pytorch-optimizer with momentum; without momentum pytorch-optimizer
    reconstructs it from :math:`w` instead.
    """
    prepare = functools.partial(
        _madgrad_prepare,
        epsilon=epsilon,
        momentum=momentum,
        decoupled=decoupled_weight_decay,
    )
    has_decay = callable(weight_decay) or weight_decay != 0
    stage = Elementwise(
        "scale_by_madgrad",
        _madgrad,
        slots=(
            Slot("grad_sum_sq", nonnegative=True),
            Slot("grad_sum"),
            Slot("initial", "params"),
        ),
        # the stage decays only when decoupled; coupled, the decay is a stage of its
        # own (where weight_decay is set at a step): naming it here too would take a
        # step's weight_decay= and ignore it
        hyperparams={
            "learning_rate": learning_rate,
            **({"weight_decay": weight_decay} if decoupled_weight_decay else {}),
        },
        prepare=prepare,
        uses_params=True,
        uses_count=True,
    )
    coupled = has_decay and not decoupled_weight_decay
    return rule("madgrad", add_decayed_weights(weight_decay) if coupled else None, stage)
