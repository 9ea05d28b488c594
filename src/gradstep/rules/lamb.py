r"""LAMB: Adam's direction with decoupled decay, scaled per tensor by a trust ratio.

Symbols: :math:`g` gradient, :math:`w` parameter tensor, :math:`m` slot ``mu``,
:math:`v` slot ``nu``, :math:`t` the 1-based step, :math:`\eta` ``learning_rate``,
:math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``, :math:`\epsilon` ``epsilon``,
:math:`\epsilon_r` ``eps_root``, :math:`\lambda` ``weight_decay``, :math:`b_{lo},
b_{hi}` ``lower_bound``, ``upper_bound``.

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
    v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    \hat m = m/(1-\beta_1^t),\quad \hat v = v/(1-\beta_2^t)

    r = \hat m / (\sqrt{\hat v + \epsilon_r} + \epsilon) + \lambda w,\quad
    \rho = \mathrm{clip}(\|w\|, b_{lo}, b_{hi}) / \|r\|,\quad
    w \leftarrow w - \eta\,\rho\, r

with :math:`\rho = 1` when either norm is 0, and :math:`\hat m = m`,
:math:`\hat v = v` when ``bias_correction=False``. The decay is inside the trust
ratio (decoupled from the moments).

References:
  You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh (2020):
  Large Batch Optimization for Deep Learning: Training BERT in 76 minutes. ICLR,
  arXiv:1904.00962.
"""

from __future__ import annotations

from typing import Any

from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from .adam import scale_by_adam
from .layerwise import NoneOr, scale_by_trust_ratio

_BOUND = NoneOr(Interval(0.0, lo_open=True))


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    bias_correction=BOOL,
    eps_root=nonnegative(),
    lower_bound=_BOUND,
    upper_bound=_BOUND,
)
def lamb(
    learning_rate: Any = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-6,
    weight_decay: Any = 0.0,
    *,
    bias_correction: bool = True,
    eps_root: float = 0.0,
    lower_bound: float | None = None,
    upper_bound: float | None = None,
    weight_decay_mask: Any = None,
    trust_ratio_mask: Any = None,
) -> Chain:
    r"""LAMB (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001 (MXNet).
      beta1: :math:`\beta_1` in [0, 1). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, outside the root on the bias-corrected
        scale. Default 1e-6.
      weight_decay: :math:`\lambda` >= 0, or a schedule: decoupled decay inside the
        trust ratio. Default 0.
      bias_correction: divide the moments by :math:`1-\beta^t`. Default True.
      eps_root: :math:`\epsilon_r` >= 0, inside the root (optax). Default 0.
      lower_bound: ``None`` or > 0: floor on :math:`\|w\|` in the ratio (MXNet).
      upper_bound: ``None`` or > 0: ceiling on :math:`\|w\|` in the ratio (MXNet).
      weight_decay_mask: a tree of booleans (or a function of the parameters
        returning one) selecting the tensors to decay (e.g. not biases and norms);
        ``None``: all. Needs ``weight_decay`` > 0.
      trust_ratio_mask: likewise, selecting the tensors scaled by the trust ratio;
        the others take the plain step :math:`-\eta r`. ``None``: all.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([3.0, 4.0])
      >>> gradstep.Optimizer(w, gradstep.lamb(0.1)).step(np.array([1.0, -1.0])); w.round(6)
      array([2.646447, 4.353553])

    Differences: MXNet's ``LAMB`` is this rule (MXNet forwards a bound only when it
    is truthy; gradstep requires a bound > 0 or None); 2.x's non-aggregated fused
    path advances the step count twice per step. optax's ``lamb(learning_rate,
    b1, b2, eps, eps_root, weight_decay, mask)`` is this rule with ``mask`` as
    ``weight_decay_mask``. Keras' ``Lamb`` applies the decay outside the trust
    ratio and uses epsilon 1e-7.
    """
    if lower_bound is not None and upper_bound is not None and lower_bound > upper_bound:
        raise ValueError(
            f"lamb: invalid lower_bound={lower_bound!r} above upper_bound={upper_bound!r}; "
            "valid values: lower_bound <= upper_bound"
        )
    has_decay = callable(weight_decay) or weight_decay != 0
    if weight_decay_mask is not None and not has_decay:
        raise ValueError(
            "lamb: invalid weight_decay_mask with weight_decay=0; valid values: a mask "
            "only together with a weight_decay > 0"
        )
    return rule(
        "lamb",
        scale_by_adam(beta1, beta2, epsilon, eps_root=eps_root, bias_correction=bias_correction),
        add_decayed_weights(weight_decay, weight_decay_mask) if has_decay else None,
        scale_by_trust_ratio(
            lower_bound=lower_bound, upper_bound=upper_bound, mask=trust_ratio_mask
        ),
        scale_by_learning_rate(learning_rate),
    )
