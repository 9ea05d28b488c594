r"""D-Adaptation Adam: Adam whose step size is a lower bound on the distance to the solution,
estimated from the gradients seen so far.

Symbols: :math:`g` gradient (with :math:`\lambda w` added when the decay is coupled),
:math:`w` parameter, :math:`m` slot ``mu``, :math:`v` slot ``nu``, :math:`s` slot
``s``, :math:`d` the distance estimate (carried state ``d``, starting at :math:`d_0`
``d0``), :math:`r` the weighted numerator (``numerator``), :math:`k` the number of
steps taken (``k``), :math:`\eta` ``learning_rate``, :math:`\beta_1, \beta_2`
``beta1``, ``beta2``, :math:`\epsilon` ``epsilon``, :math:`\lambda`
``weight_decay``, :math:`\gamma` ``growth_rate``. Sums run over every element of
every tensor.

.. math::

    b = \sqrt{1-\beta_2^{k+1}}/(1-\beta_1^{k+1})\ \text{(1 without bias correction)},
    \quad \eta_d = d\,\eta\,b

    r \leftarrow \sqrt{\beta_2}\, r + (1-\sqrt{\beta_2})\, \eta_d
    \textstyle\sum g\, s / (\sqrt v + \epsilon)\quad (\text{old } s, v)

    m \leftarrow \beta_1 m + \eta_d (1-\beta_1) g,\quad
    v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    s \leftarrow \sqrt{\beta_2}\, s + \eta_d (1-\sqrt{\beta_2})\, g

    \hat d = r / \big((1-\sqrt{\beta_2}) \textstyle\sum |s|\big),\quad
    d \leftarrow \max\big(d, \min(\hat d, \gamma d)\big)

    w \leftarrow w - m / (\sqrt v + \epsilon) - \lambda\,\eta_d\, w,\quad k \leftarrow k + 1

The decay term is there with ``decouple=True``; with ``decouple=False`` (the
default, as the reference) :math:`\lambda w` is added to :math:`g` first. The
learning rate and :math:`d` enter the moment :math:`m` (not the step): the new
:math:`d` takes effect from the next step. While :math:`\sum|s| = 0` (every gradient
so far zero) the step changes nothing but the moments, as the reference's early
return: :math:`d`, :math:`r` and :math:`k` keep their values.

References:
  Defazio & Mishchenko (2023): Learning-Rate-Free Learning by D-Adaptation. ICML,
  arXiv:2301.07733.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Slot
from .._core.global_reduction import GlobalReduction
from .._core.stages import add_decayed_weights, rule, scale
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import absolute, maximum, minimum, sqrt, where

_POSITIVE = Interval(0.0, lo_open=True)


def _progress_and_weights(g, w, mu, nu, s, beta1, m_gain, beta2, v_gain, beta3, s_gain, eps):
    return g * (s / (sqrt(nu) + eps)), absolute(beta3 * s + s_gain * g)


def _dadapt_adam(g, w, mu, nu, s, beta1, m_gain, beta2, v_gain, beta3, s_gain, eps):
    mu = beta1 * mu + m_gain * g
    nu = beta2 * nu + v_gain * (g * g)
    s = beta3 * s + s_gain * g
    return mu / (sqrt(nu) + eps), mu, nu, s


def _dadapt_adam_decayed(g, w, mu, nu, s, beta1, m_gain, beta2, v_gain, beta3, s_gain, eps, decay):
    mu = beta1 * mu + m_gain * g
    nu = beta2 * nu + v_gain * (g * g)
    s = beta3 * s + s_gain * g
    return mu / (sqrt(nu) + eps) + decay * w, mu, nu, s


def _dlr(h: dict, beta1: float, beta2: float, bias: bool) -> Any:
    """:math:`\\eta_d = d \\eta b`."""
    if not bias:
        return h["d"] * h["learning_rate"]
    k = h["k"]
    return (
        h["d"]
        * h["learning_rate"]
        * ((1.0 - beta2 ** (k + 1.0)) ** 0.5 / (1.0 - beta1 ** (k + 1.0)))
    )


def _prepare(h: dict, count: Any, *, beta1, beta2, eps, bias) -> dict:
    dlr = _dlr(h, beta1, beta2, bias)
    beta3 = beta2**0.5
    return {
        "beta1": beta1,
        "m_gain": dlr * (1.0 - beta1),
        "beta2": beta2,
        "v_gain": 1.0 - beta2,
        "beta3": beta3,
        "s_gain": dlr * (1.0 - beta3),
        "eps": eps,
    }


def _combine(sums, h, scalars, *, beta1, beta2, growth, bias, decay):
    progress, weights = sums
    d, numerator = h["d"], h["numerator"]
    dlr = _dlr(h, beta1, beta2, bias)
    beta3 = beta2**0.5
    numerator_new = beta3 * numerator + (1.0 - beta3) * (dlr * progress)
    # no gradient yet (sum |s| = 0): the reference returns early, changing nothing
    skip = weights == 0.0
    d_hat = numerator_new / ((1.0 - beta3) * where(skip, 1.0, weights))
    carried = {
        "d": where(skip, d, maximum(d, minimum(d_hat, d * growth))),
        "numerator": where(skip, numerator, numerator_new),
        "k": where(skip, h["k"], h["k"] + 1.0),
    }
    return carried, ({"decay": where(skip, 0.0, decay * dlr)} if decay else {})


#: the arguments' ranges, shared by the direction and the optimizer
_RANGES = dict(
    learning_rate=Interval(0.0, lo_open=True, schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=_POSITIVE,
    weight_decay=nonnegative(),
    decouple=BOOL,
    use_bias_correction=BOOL,
    d0=_POSITIVE,
    growth_rate=Interval(1.0),
)


@hyperparams(**_RANGES)
def scale_by_dadapt_adam(
    learning_rate: Any = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    decouple: bool = False,
    use_bias_correction: bool = False,
    d0: float = 1e-6,
    growth_rate: float = math.inf,
) -> GlobalReduction:
    r"""D-Adaptation Adam's step, :math:`m / (\sqrt v + \epsilon)` (plus the decoupled
    decay), not yet negated. The arguments are :func:`dadapt_adam`'s; ``weight_decay``
    here is only the decoupled part (``decouple=True``)."""
    decoupled = weight_decay if decouple else 0.0
    return GlobalReduction(
        "dadapt_adam",
        _dadapt_adam_decayed if decoupled else _dadapt_adam,
        terms=_progress_and_weights,
        combine=functools.partial(
            _combine,
            beta1=beta1,
            beta2=beta2,
            growth=growth_rate,
            bias=use_bias_correction,
            decay=decoupled,
        ),  # fmt: skip
        reduced_scalars=("decay",) if decoupled else (),
        carried={"d": d0, "numerator": 0.0, "k": 0.0},
        slots=(Slot("mu"), Slot("nu", nonnegative=True), Slot("s")),
        hyperparams={"learning_rate": learning_rate},
        prepare=functools.partial(
            _prepare, beta1=beta1, beta2=beta2, eps=epsilon, bias=use_bias_correction
        ),
        uses_params=True,
    )


@hyperparams(**_RANGES)
def dadapt_adam(
    learning_rate: Any = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    decouple: bool = False,
    use_bias_correction: bool = False,
    d0: float = 1e-6,
    growth_rate: float = math.inf,
) -> Chain:
    r"""D-Adaptation Adam (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` > 0, or a schedule: a multiplier of the estimated
        step, 1 to use the estimate as it is. Default 1.
      beta1: :math:`\beta_1` in [0, 1). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` > 0. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0. Default 0.
      decouple: the decay is decoupled (AdamW-style, scaled by :math:`\eta_d`);
        ``False``: added to the gradient. Default False (the reference's).
      use_bias_correction: Adam's bias correction in :math:`\eta_d`. Default False.
      d0: :math:`d_0` > 0, the initial estimate. Default 1e-6.
      growth_rate: :math:`\gamma` >= 1, the most :math:`d` may grow per step.
        Default ``inf``.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0])
      >>> opt = gradstep.Optimizer(w, gradstep.dadapt_adam())
      >>> for _ in range(3):
      ...     opt.step(w.copy())
      >>> float(opt.state["dadapt_adam"]["d"]) > 1e-6
      True

    Differences: ``dadaptation.DAdaptAdam`` (3.2) is this rule for one parameter
    group; its ``layer_scale`` group value (1), ``log_every`` and ``fsdp_in_use`` are
    not offered, and its parameter groups share one :math:`d` where each gradstep
    group keeps its own. The reference sums :math:`g\,s/(\sqrt v+\epsilon)` per
    tensor in the parameters' dtype (``torch.dot``); gradstep accumulates every sum
    in float64. ``learning_rate`` must stay > 0 (the reference skips the estimate
    at 0; gradstep refuses the rate). optax's ``contrib.dadapt_adamw(learning_rate,
    betas, eps, estim_lr0, weight_decay)`` is this rule with
    ``use_bias_correction=True, decouple=True`` and ``d0=estim_lr0`` (it has no growth
    limit and no early return: a first step with all gradients zero gives NaN there).
    """
    coupled = weight_decay != 0 and not decouple
    return rule(
        "dadapt_adam",
        add_decayed_weights(weight_decay) if coupled else None,
        scale_by_dadapt_adam(
            learning_rate,
            beta1,
            beta2,
            epsilon,
            weight_decay,
            decouple=decouple,
            use_bias_correction=use_bias_correction,
            d0=d0,
            growth_rate=growth_rate,
        ),  # fmt: skip
        # the learning rate is inside the first moment (the step is m / denominator):
        # what is left is the sign of a descent step
        scale(-1.0),
    )
