r"""Ranger: gradient centralisation, RAdam and Lookahead, composed.

Symbols: :math:`g` gradient, :math:`w` parameter, :math:`\eta` ``learning_rate``,
:math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``, :math:`\epsilon` ``epsilon``,
:math:`\lambda` ``weight_decay``, :math:`k` ``sync_period``, :math:`\alpha`
``slow_step_size``, :math:`r` ``gc_min_rank``.

Ranger is a composition of existing pieces, nothing new:

.. math::

    \text{lookahead}_{k,\alpha}\Big(\text{centralize}_r \to
    \text{radam}_{\eta, \beta_1, \beta_2, \epsilon} \to
    w \leftarrow w - \eta\lambda w\Big)

1. the gradient of every tensor of rank :math:`\ge r` is centralised
   (:func:`gradstep.transforms.centralize`);
2. RAdam's rectified step (:func:`gradstep.radam`), with :math:`\epsilon` on the
   uncorrected :math:`\sqrt{v}` and the adaptive step used from
   :math:`\rho_t \ge 5` (before that, momentum SGD :math:`w \leftarrow w - \eta
   \hat m`);
3. decoupled weight decay beside the step;
4. every :math:`k` steps, Lookahead pulls the slow weights a fraction
   :math:`\alpha` towards the fast ones and restarts from them
   (:func:`gradstep.transforms.lookahead`).

References:
  Wright (2019): New Deep Learning Optimizer, Ranger: Synergistic combination of
  RAdam + LookAhead for the best of both. Blog post and lessw2020/Ranger-Deep-
  Learning-Optimizer.
  Liu, Jiang, He, Chen, Liu, Gao & Han (2020): On the Variance of the Adaptive
  Learning Rate and Beyond. ICLR, arXiv:1908.03265.
  Zhang, Lucas, Hinton & Ba (2019): Lookahead Optimizer: k steps forward, 1 step
  back. NeurIPS, arXiv:1907.08610.
  Yong, Huang, Hua & Zhang (2020): Gradient Centralization: A New Optimization
  Technique for Deep Neural Networks. ECCV, arXiv:2004.01461.
"""

from __future__ import annotations

from typing import Any

from .._core.stages import rule
from .._core.transform import Transform
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from ..transforms.centralization import centralize
from ..transforms.lookahead import lookahead
from .radam import radam


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    sync_period=Interval(1, integer=True),
    slow_step_size=Interval(0.0, 1.0),
    centralize_gradients=BOOL,
    gc_min_rank=Interval(2, integer=True),
)
def ranger(
    learning_rate: Any = 0.001,
    beta1: float = 0.95,
    beta2: float = 0.999,
    epsilon: float = 1e-5,
    weight_decay: Any = 0.0,
    *,
    sync_period: int = 6,
    slow_step_size: float = 0.5,
    centralize_gradients: bool = True,
    gc_min_rank: int = 2,
) -> Transform:
    r"""Ranger (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1). Default 0.95.
      beta2: :math:`\beta_2` in (0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0. Default 1e-5.
      weight_decay: :math:`\lambda` >= 0, or a schedule; decoupled. Default 0.
      sync_period: :math:`k`, an integer >= 1. Default 6.
      slow_step_size: :math:`\alpha` in [0, 1]. Default 0.5.
      centralize_gradients: centralise the gradients first (pytorch-optimizer's
        ``use_gc``). Default True.
      gc_min_rank: :math:`r`, an integer >= 2: the lowest rank centralised; 4 for
        convolution kernels only (pytorch-optimizer's ``gc_conv_only=True``).
        Default 2.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.ranger(0.1))
      >>> opt.step(np.array([0.5, -2.0])); w  # a momentum step: RAdam is not rectified yet
      array([0.95, 1.2 ])

    Differences: pytorch-optimizer's ``Ranger`` with ``degenerated_to_sgd=True`` is
    this rule. With its default ``degenerated_to_sgd=False``, pytorch-optimizer 4.1
    multiplies the early (unrectified) steps by -1 and so moves *up* the gradient
    for the first steps; gradstep does not reproduce that. The original Ranger
    switches to the adaptive step at :math:`\rho_t > 5` rather than
    :math:`\ge 5`; with :math:`\beta_2 = 0.999` both switch at step 6. Ranger21's
    further pieces (adaptive gradient clipping, positive-negative momentum, norm
    loss, stable weight decay, warm-up and warm-down) are not part of this rule.
    """
    inner = rule(
        "ranger",
        centralize(gc_min_rank) if centralize_gradients else None,
        radam(
            learning_rate,
            beta1,
            beta2,
            epsilon,
            weight_decay,
            decoupled_weight_decay=True,
            threshold_rule="greater_equal",
        ),
    )
    return lookahead(inner, sync_period, slow_step_size)
