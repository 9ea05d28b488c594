r"""Ranger21: AdamW with positive-negative momentum, stable weight decay, norm loss,
adaptive clipping, gradient centralisation and normalisation, Lookahead and a
warm-up/warm-down schedule.

Symbols: :math:`g` the gradient of one tensor, :math:`w` its parameter, :math:`t`
the 1-based step, :math:`T` ``num_iterations``, :math:`\eta` ``learning_rate``,
:math:`\eta_{\min}` ``warmdown_min_lr``, :math:`W` ``num_warmup_steps``,
:math:`D` ``num_warmdown_steps``, :math:`\beta_0` ``beta0``, :math:`\beta_1`
``beta1``, :math:`\beta_2` ``beta2``, :math:`\epsilon` ``epsilon``, :math:`\lambda`
``weight_decay``, :math:`\nu` ``norm_loss_factor``, :math:`\kappa` ``agc_clipping``,
:math:`\epsilon_a` ``agc_epsilon``, :math:`b` ``softplus_beta``, :math:`k`
``sync_period``, :math:`\alpha` ``slow_step_size``, :math:`N` the number of elements
of all tensors, :math:`\|x\|_u` the L2 norm of each unit of a tensor (the whole of a
vector; each slice along the first axis of a matrix or kernel).

Each step, on every tensor, the gradient is clipped by AGC
(:func:`gradstep.transforms.adaptive_clip`, ``layout="torch"``), centralised
(:func:`gradstep.transforms.centralize`, :math:`C`) and divided by its standard
deviation (:math:`S(g) = g / (\operatorname{std}(g) + 10^{-8})`, tensors of more
than two elements); then, with :math:`\hat\eta_t` the scheduled learning rate:

.. math::

    v &\leftarrow \beta_2 v + (1-\beta_2) g^2,\qquad
    \hat v \leftarrow \max(\hat v, v),\qquad
    \sigma = \sqrt{\big(1 + \textstyle\sum_{\text{all}} v / (1-\beta_2^t)\big) / N} \\
    w &\leftarrow w \,(1 - \hat\eta_t \lambda / \sigma) \qquad\text{(stable weight decay)} \\
    w &\leftarrow w \,\big(1 - 2\hat\eta_t \nu\,(1 - 1/(\|w\|_u + \epsilon))\big)
       \qquad\text{(norm loss)} \\
    m_{t \bmod 2} &\leftarrow \beta_1^2\, m_{t \bmod 2} + (1-\beta_1^2)\, S(C(g)) \\
    d &= \operatorname{softplus}_b\!\big(\sqrt{\hat v / (1-\beta_2^t)} + \epsilon\big),\qquad
    p = \frac{(1+\beta_0)\, m_{t \bmod 2} - \beta_0\, m_{1 - t \bmod 2}}
             {\sqrt{(1+\beta_0)^2 + \beta_0^2}} \\
    w &\leftarrow w - \frac{\hat\eta_t}{1-\beta_1^t}\, p / d

and every :math:`k`-th step Lookahead pulls the slow weights a fraction
:math:`\alpha` towards the result and restarts from them
(:func:`gradstep.transforms.lookahead`). :math:`\operatorname{softplus}_b(x) =
\log(1 + e^{bx})/b` (:math:`x` itself where :math:`bx > 20`). Positive-negative
momentum keeps two moments, each updated every other step. The gradient entering the
momentum is centralised and normalised a second time, as in the authors'
implementation (the second time changes it only by rounding and by
:math:`10^{-8}` in the divisor). The schedule, with :math:`\eta` the learning rate
of the step:

.. math::

    \hat\eta_t = \begin{cases}
      \eta_{\min} \vee \big(\eta - (\eta - \eta_{\min})
        \min(1, \max(1, t + 1 - T + D) / (D + 1))\big) & t \ge T - D \\
      \eta \min(1, t / W) & t \le W \\
      \eta & \text{otherwise} \end{cases}

with defaults :math:`W = \lceil 2/(1-\beta_2) \rceil` (:math:`\lfloor 0.22\, T
\rfloor` where that exceeds :math:`0.45\, T`) and :math:`D = T - \lfloor 0.72\, T
\rfloor`; ``use_schedule=False`` keeps :math:`\hat\eta_t = \eta`.

Engines: AGC, centralisation and the norm loss reduce over slices of a tensor (each
row of a matrix), the standard deviation over each tensor, and the stable weight
decay over all of them. Where every tensor is a vector (or a scalar), each of those
is a sum over a whole tensor: the fused engines (numba's, Triton's) run Ranger21 as
per-tensor reduction passes and one step pass, from the same element helpers
(:mod:`gradstep.rules.ranger21_step`). A parameter list holding a matrix runs on the
eager engine (NumPy arrays, torch tensors on their device, traced under ``jax.jit``
by the JAX front), as do 16-bit parameters.

References:
  Wright & Demeure (2021): Ranger21: a synergistic deep learning optimizer.
  arXiv:2106.13731.
  Xie, Yuan, Zhou, Huang, Wei, Sugiyama & Li (2021): Positive-Negative Momentum:
  Manipulating Stochastic Gradient Noise to Improve Generalization. ICML,
  arXiv:2103.17182.
  Xie, Sato & Sugiyama (2020): Understanding and Scheduling Weight Decay.
  arXiv:2011.11152 (stable weight decay).
  Georgiou, Bolhuis & Wright (2021): Norm Loss: An efficient yet effective
  regularization method for deep neural networks. ICPR, arXiv:2011.06607.
  Brock, De, Smith & Simonyan (2021): High-Performance Large-Scale Image Recognition
  Without Normalization. ICML, arXiv:2102.06171 (AGC).
  Yong, Huang, Hua & Zhang (2020): Gradient Centralization. ECCV, arXiv:2004.01461.
  Zhang, Lucas, Hinton & Ba (2019): Lookahead Optimizer. NeurIPS, arXiv:1907.08610.
"""

from __future__ import annotations

import math
from typing import Any

from .._core.gradients import Optional
from .._core.stages import rule
from .._core.transform import Transform
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from ..transforms.block_clipping import adaptive_clip
from ..transforms.centralization import centralize
from ..transforms.lookahead import lookahead
from .ranger21_step import (  # noqa: F401 - the rule's parts, importable from here
    NORMALIZE_EPSILON,
    SOFTPLUS_THRESHOLD,
    NormalizeByStd,
    Ranger21Step,
    scheduled_learning_rate,
    std_normalized,
)

_STEPS = Interval(0, integer=True)


def default_warmup_steps(num_iterations: int, beta2: float) -> int:
    """:math:`\\lceil 2/(1-\\beta_2) \\rceil`, or 22% of the run where that is more
    than 45% of it."""
    steps = math.ceil(2.0 / (1.0 - beta2))
    return int(0.22 * num_iterations) if steps / num_iterations > 0.45 else steps


def default_warmdown_steps(num_iterations: int) -> int:
    """The last 28% of the run (:math:`T - \\lfloor 0.72\\, T \\rfloor`)."""
    return num_iterations - int(0.72 * num_iterations)


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    num_iterations=Interval(1, integer=True),
    num_warmup_steps=Optional(_STEPS),
    num_warmdown_steps=Optional(_STEPS),
    beta0=decay_rate(),
    beta1=decay_rate(),
    beta2=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    epsilon=nonnegative(),
    weight_decay=nonnegative(),
    warmdown_min_lr=nonnegative(),
    use_schedule=BOOL,
    agc_clipping=Interval(0.0, lo_open=True),
    agc_epsilon=nonnegative(),
    centralize_gradients=BOOL,
    normalize_gradients=BOOL,
    norm_loss_factor=nonnegative(),
    softplus=BOOL,
    softplus_beta=Interval(0.0, lo_open=True),
    sync_period=Interval(1, integer=True),
    slow_step_size=Interval(0.0, 1.0),
)
def ranger21(
    learning_rate: Any = 0.001,
    *,
    num_iterations: int,
    beta0: float = 0.9,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    weight_decay: float = 1e-4,
    num_warmup_steps: int | None = None,
    num_warmdown_steps: int | None = None,
    warmdown_min_lr: float = 3e-5,
    use_schedule: bool = True,
    agc_clipping: float = 0.01,
    agc_epsilon: float = 1e-3,
    centralize_gradients: bool = True,
    normalize_gradients: bool = True,
    norm_loss_factor: float = 1e-4,
    softplus: bool = True,
    softplus_beta: float = 50.0,
    sync_period: int = 5,
    slow_step_size: float = 0.5,
) -> Transform:
    r"""Ranger21 (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule (then the warm-up and
        warm-down apply to its value at each step). Default 0.001.
      num_iterations: :math:`T`, an integer >= 1, required: the length of the run,
        which places the warm-down.
      beta0: :math:`\beta_0` in [0, 1): the weight of the older moment in
        positive-negative momentum. Default 0.9.
      beta1: :math:`\beta_1` in [0, 1); the moments decay by :math:`\beta_1^2`.
        Default 0.9.
      beta2: :math:`\beta_2` in (0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, in the denominator and the norm loss.
        Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, stable (divided by :math:`\sigma`) and
        decoupled. Default 1e-4.
      num_warmup_steps: :math:`W`, an integer >= 0, or None for the default above.
      num_warmdown_steps: :math:`D`, an integer >= 0, or None for the default above.
      warmdown_min_lr: :math:`\eta_{\min}` >= 0. Default 3e-5.
      use_schedule: apply the warm-up and warm-down. Default True.
      agc_clipping: :math:`\kappa` > 0. Default 0.01.
      agc_epsilon: :math:`\epsilon_a` >= 0. Default 1e-3.
      centralize_gradients: centralise tensors of rank >= 2. Default True.
      normalize_gradients: divide by the standard deviation. Default True.
      norm_loss_factor: :math:`\nu` >= 0. Default 1e-4.
      softplus: smooth the denominator by softplus. Default True.
      softplus_beta: :math:`b` > 0. Default 50.
      sync_period: :math:`k`, an integer >= 1. Default 5.
      slow_step_size: :math:`\alpha` in [0, 1]. Default 0.5.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0, 0.5])
      >>> opt = gradstep.Optimizer(w, gradstep.ranger21(0.1, num_iterations=100))
      >>> opt.step(np.array([0.3, -0.1, 0.2])); np.round(w, 4)  # warm-up: 22 steps
      array([ 0.9922, -1.9922,  0.4922])

    Differences: pytorch-optimizer's ``Ranger21`` (4.1) with ``lr``,
    ``disable_lr_scheduler`` (= ``not use_schedule``), ``num_warm_up_iterations``,
    ``num_warm_down_iterations``, ``warm_down_min_lr``, ``agc_clipping_value``,
    ``agc_eps``, ``lookahead_merge_time``, ``lookahead_blending_alpha``,
    ``use_softplus``, ``beta_softplus``, ``betas`` and ``eps`` renamed is this rule,
    but: its lookahead counter and its schedule's starting learning rate belong to
    the optimizer, not to a parameter group (here they are the step count and each
    step's learning rate); its AGC and norm loss take the units of a rank-3 tensor
    along axis 1 only (here all axes but the first, as for other ranks); its
    ``weight_decouple=False`` applies no decay at all and ``fixed_decay`` is not
    offered; its ``agc_clipping_value=0`` (every unit clipped to zero) is refused.
    """
    options = {
        "num_iterations": num_iterations,
        "warmup": default_warmup_steps(num_iterations, beta2)
        if num_warmup_steps is None
        else num_warmup_steps,
        "warmdown": default_warmdown_steps(num_iterations)
        if num_warmdown_steps is None
        else num_warmdown_steps,
        "min_lr": warmdown_min_lr,
        "use_schedule": use_schedule,
        "beta0": beta0,
        "beta1": beta1,
        "beta2": beta2,
        "epsilon": epsilon,
        "norm_loss_factor": norm_loss_factor,
        "softplus": softplus,
        "softplus_beta": softplus_beta,
        "centralize": centralize_gradients,
        "normalize": normalize_gradients,
    }
    inner = rule(
        "ranger21",
        adaptive_clip(agc_clipping, agc_epsilon, layout="torch"),
        centralize(2) if centralize_gradients else None,
        NormalizeByStd() if normalize_gradients else None,
        Ranger21Step(learning_rate, weight_decay, options),
    )
    return lookahead(inner, sync_period, slow_step_size)
