r"""Prodigy: Adam whose step size is a running estimate of the distance to the solution.

Symbols: :math:`g` gradient (with :math:`\lambda w` added when the decay is coupled),
:math:`w` parameter, :math:`w_0` slot ``p0`` (the initial parameter), :math:`m`
slot ``mu``, :math:`v` slot ``nu``, :math:`s` slot ``s``, :math:`d` the distance
estimate (carried state ``d``, starting at :math:`d_0` ``d0``), :math:`d_{max}`
(``d_max``), :math:`r` the weighted numerator (``numerator``), :math:`k` the number of
steps taken (``k``), :math:`\eta` ``learning_rate``, :math:`\beta_1, \beta_2,
\beta_3` ``beta1``, ``beta2``, ``beta3`` (default :math:`\sqrt{\beta_2}`),
:math:`\epsilon` ``epsilon``, :math:`\lambda` ``weight_decay``, :math:`c`
``d_coef``, :math:`\gamma` ``growth_rate``. Sums run over every element of every
tensor.

.. math::

    b = \sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})\ \text{(1 without bias correction)},
    \quad \eta_d = d\,\eta\,b

    m \leftarrow \beta_1 m + d(1-\beta_1) g,\quad
    v \leftarrow \beta_2 v + d^2(1-\beta_2) g^2,\quad
    s \leftarrow \beta_3 s + \tfrac{d}{d_0}\,\eta_d\, g

    r \leftarrow \beta_3 r + \tfrac{d}{d_0}\,\eta_d \textstyle\sum g\,(w_0 - w),\quad
    \hat d = c\, r / \textstyle\sum |s|

    d' = \min\big(\max(d_{max}, \hat d),\ \gamma\, (\max(d, \hat d)\ \text{if}\ d = d_0
    \ \text{else}\ d)\big),\quad d_{max} \leftarrow \max(d_{max}, \hat d)

    w \leftarrow w - \eta_d \big(m / (\sqrt v + d' \epsilon) + \lambda w\big),\quad
    d \leftarrow d',\quad k \leftarrow k + 1

With ``safeguard_warmup`` the :math:`s` update uses :math:`\tfrac{d}{d_0} d` instead
of :math:`\tfrac{d}{d_0}\eta_d`. With :math:`\beta_1 = 0` there is no :math:`m` and
the step is :math:`\eta_d\, d'\, g / (\sqrt v + d'\epsilon)`. With
``decouple=False`` the decay :math:`\lambda w` is added to :math:`g` first (coupled)
instead of to the step. While :math:`\sum|s| = 0` (every gradient so far zero) the
step changes nothing but the moments, as the reference's early return: :math:`d`,
:math:`r` and :math:`k` keep their values.

References:
  Mishchenko & Defazio (2024): Prodigy: An Expeditiously Adaptive Parameter-Free
  Learner. ICML, arXiv:2306.06101.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Slot
from .._core.global_reduction import GlobalReduction
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import absolute, maximum, minimum, sqrt, where
from .layerwise import NoneOr

_POSITIVE = Interval(0.0, lo_open=True)


# -- element math -------------------------------------------------------------------


def _progress_and_weights(g, w, mu, nu, s, p0, beta1, m_gain, beta2, v_gain, beta3, s_gain):
    return g * (p0 - w), absolute(beta3 * s + s_gain * g)


def _progress_and_weights_no_momentum(g, w, nu, s, p0, beta2, v_gain, beta3, s_gain):
    return g * (p0 - w), absolute(beta3 * s + s_gain * g)


def _prodigy(g, w, mu, nu, s, p0, beta1, m_gain, beta2, v_gain, beta3, s_gain, step, eps_d):
    mu = beta1 * mu + m_gain * g
    nu = beta2 * nu + v_gain * (g * g)
    s = beta3 * s + s_gain * g
    return step * mu / (sqrt(nu) + eps_d), mu, nu, s, p0


def _prodigy_decayed(
    g, w, mu, nu, s, p0, beta1, m_gain, beta2, v_gain, beta3, s_gain, step, eps_d, decay
):
    mu = beta1 * mu + m_gain * g
    nu = beta2 * nu + v_gain * (g * g)
    s = beta3 * s + s_gain * g
    return step * mu / (sqrt(nu) + eps_d) + decay * w, mu, nu, s, p0


def _prodigy_no_momentum(g, w, nu, s, p0, beta2, v_gain, beta3, s_gain, step, eps_d):
    nu = beta2 * nu + v_gain * (g * g)
    s = beta3 * s + s_gain * g
    return step * g / (sqrt(nu) + eps_d), nu, s, p0


def _prodigy_no_momentum_decayed(g, w, nu, s, p0, beta2, v_gain, beta3, s_gain, step, eps_d, decay):
    nu = beta2 * nu + v_gain * (g * g)
    s = beta3 * s + s_gain * g
    return step * g / (sqrt(nu) + eps_d) + decay * w, nu, s, p0


_ELEMENTS = {  # (momentum, decoupled decay): element function
    (True, False): _prodigy,
    (True, True): _prodigy_decayed,
    (False, False): _prodigy_no_momentum,
    (False, True): _prodigy_no_momentum_decayed,
}


# -- the step's scalars and the reduction ---------------------------------------------


def _bias_correction(k, beta1, beta2, enabled):
    if not enabled:
        return 1.0
    return (1.0 - beta2 ** (k + 1.0)) ** 0.5 / (1.0 - beta1 ** (k + 1.0))


def _prepare(h: dict, count: Any, *, beta1, beta2, beta3, d0, safeguard, bias) -> dict:
    d = h["d"]
    dlr = d * h["learning_rate"] * _bias_correction(h["k"], beta1, beta2, bias)
    out = {"beta1": beta1, "m_gain": d * (1.0 - beta1)} if beta1 > 0 else {}
    out.update(
        beta2=beta2,
        v_gain=d * d * (1.0 - beta2),
        beta3=beta3,
        s_gain=(d / d0) * (d if safeguard else dlr),
    )
    return out


def _combine(sums, h, scalars, *, beta1, beta2, beta3, d0, d_coef, growth, eps, bias, decay):
    progress, weights = sums
    d, d_max, numerator, k = h["d"], h["d_max"], h["numerator"], h["k"]
    lr = h["learning_rate"]
    correction = _bias_correction(k, beta1, beta2, bias)
    numerator_new = beta3 * numerator + (d / d0) * (d * lr * correction) * progress
    # no gradient yet (sum |s| = 0): the reference returns early, changing nothing
    skip = weights == 0.0
    d_hat = d_coef * numerator_new / where(skip, 1.0, weights)
    d_max_new = maximum(d_max, d_hat)
    d_new = minimum(d_max_new, where(d == d0, maximum(d, d_hat), d) * growth)
    d_next = where(skip, d, d_new)
    # the step is d * lr * correction; the learning-rate stage multiplies by lr
    step = d * correction
    reduced = {
        "step": where(skip, 0.0, step if beta1 > 0 else step * d_next),
        "eps_d": d_next * eps,
    }
    if decay:
        reduced["decay"] = where(skip, 0.0, decay * step)
    carried = {
        "d": d_next,
        "d_max": where(skip, d_max, d_max_new),
        "numerator": where(skip, numerator, numerator_new),
        "k": where(skip, k, k + 1.0),
    }
    return carried, reduced


#: the arguments' ranges, shared by the direction and the optimizer
_RANGES = dict(
    learning_rate=Interval(0.0, lo_open=True, schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    beta3=NoneOr(decay_rate()),
    epsilon=_POSITIVE,
    weight_decay=nonnegative(),
    decouple=BOOL,
    use_bias_correction=BOOL,
    safeguard_warmup=BOOL,
    d0=_POSITIVE,
    d_coef=_POSITIVE,
    growth_rate=Interval(1.0),
)


@hyperparams(**_RANGES)
def scale_by_prodigy(
    learning_rate: Any = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    beta3: float | None = None,
    epsilon: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    decouple: bool = True,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    d0: float = 1e-6,
    d_coef: float = 1.0,
    growth_rate: float = math.inf,
) -> GlobalReduction:
    r"""Prodigy's direction times its distance estimate (:math:`-\eta` not applied:
    the chain's learning-rate stage does that). The arguments are :func:`prodigy`'s;
    ``weight_decay`` here is only the decoupled part (``decouple=True``)."""
    beta3 = math.sqrt(beta2) if beta3 is None else beta3
    decoupled = weight_decay if decouple else 0.0
    momentum = beta1 > 0
    options = dict(beta1=beta1, beta2=beta2, beta3=beta3, d0=d0)
    slots = ("mu", "nu", "s") if momentum else ("nu", "s")
    return GlobalReduction(
        "prodigy",
        _ELEMENTS[momentum, decoupled != 0],
        terms=_progress_and_weights if momentum else _progress_and_weights_no_momentum,
        combine=functools.partial(
            _combine,
            d_coef=d_coef,
            growth=growth_rate,
            eps=epsilon,
            bias=use_bias_correction,
            decay=decoupled,
            **options,
        ),  # fmt: skip
        reduced_scalars=("step", "eps_d") + (("decay",) if decoupled else ()),
        carried={"d": d0, "d_max": d0, "numerator": 0.0, "k": 0.0},
        slots=tuple(Slot(n, nonnegative=n == "nu") for n in slots) + (Slot("p0", "params"),),
        hyperparams={"learning_rate": learning_rate},
        prepare=functools.partial(
            _prepare, safeguard=safeguard_warmup, bias=use_bias_correction, **options
        ),
        uses_params=True,
    )


@hyperparams(**_RANGES)
def prodigy(
    learning_rate: Any = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    beta3: float | None = None,
    epsilon: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    decouple: bool = True,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    d0: float = 1e-6,
    d_coef: float = 1.0,
    growth_rate: float = math.inf,
) -> Chain:
    r"""Prodigy (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` > 0, or a schedule: a multiplier of the estimated
        step, 1 to use the estimate as it is. Default 1.
      beta1: :math:`\beta_1` in [0, 1); 0 drops the first moment. Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      beta3: :math:`\beta_3` in [0, 1), the decay of :math:`s` and :math:`r`, or
        ``None`` for :math:`\sqrt{\beta_2}`. Default ``None``.
      epsilon: :math:`\epsilon` > 0, scaled by :math:`d`. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0. Default 0.
      decouple: the decay is decoupled (AdamW-style, scaled by :math:`\eta_d`);
        ``False``: added to the gradient. Default True.
      use_bias_correction: Adam's bias correction in :math:`\eta_d`. Default False.
      safeguard_warmup: :math:`s` accumulates :math:`\tfrac{d}{d_0} d\, g` (not
        :math:`\tfrac{d}{d_0}\eta_d g`), for schedules with a warm-up. Default False.
      d0: :math:`d_0` > 0, the initial estimate. Default 1e-6.
      d_coef: :math:`c` > 0, a multiplier of the estimate. Default 1.
      growth_rate: :math:`\gamma` >= 1, the most :math:`d` may grow per step.
        Default ``inf``.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0])
      >>> opt = gradstep.Optimizer(w, gradstep.prodigy())
      >>> for _ in range(3):
      ...     opt.step(w.copy())
      >>> float(opt.state["prodigy"]["d"]) > 1e-6
      True

    Differences: ``prodigyopt.Prodigy`` (1.1.2) is this rule for one parameter group
    with ``slice_p=1``; its ``slice_p`` > 1 (estimating :math:`d` from every
    ``slice_p``-th element to save memory) and ``fsdp_in_use`` are not offered, and
    several groups share one :math:`d` there while each gradstep group (each
    ``partition`` label) keeps its own. The reference sums the products
    :math:`g(w_0-w)` in the parameters' dtype per tensor (``torch.dot``); gradstep
    accumulates every sum in float64. ``learning_rate`` must stay > 0 (the reference
    skips a step whose rate is 0, gradstep refuses the rate). optax's
    ``contrib.prodigy(learning_rate, betas, beta3, eps, estim_lr0, estim_lr_coef,
    weight_decay, safeguard_warmup)`` is this rule with ``use_bias_correction=True``,
    ``decouple=True``, ``growth_rate=inf``, ``d0=estim_lr0`` and
    ``d_coef=estim_lr_coef`` (it has no early return: a first step with all gradients
    zero gives NaN there).
    """
    coupled = weight_decay != 0 and not decouple
    return rule(
        "prodigy",
        add_decayed_weights(weight_decay) if coupled else None,
        scale_by_prodigy(
            learning_rate,
            beta1,
            beta2,
            beta3,
            epsilon,
            weight_decay,
            decouple=decouple,
            use_bias_correction=use_bias_correction,
            safeguard_warmup=safeguard_warmup,
            d0=d0,
            d_coef=d_coef,
            growth_rate=growth_rate,
        ),  # fmt: skip
        scale_by_learning_rate(learning_rate),
    )
