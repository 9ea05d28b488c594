r"""MARS: Adam or Lion steps on a variance-reduced gradient, the current gradient
corrected by its change since the previous step and clipped per tensor.

Symbols: :math:`g_t` gradient, :math:`g_{t-1}` slot ``prev_grad`` (the gradient of the
previous step, 0 before the first), :math:`w` parameter tensor, :math:`m` slot ``mu``,
:math:`v` slot ``nu``, :math:`t` the 1-based step, :math:`\eta` ``learning_rate``,
:math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``, :math:`\gamma` ``gamma``,
:math:`\epsilon` ``epsilon``, :math:`\epsilon_r` ``eps_root``, :math:`\lambda`
``weight_decay``, :math:`M` ``max_correction_norm``.

The approximate variant of the paper (MARS-approx: the correction uses the previous
step's gradient instead of a second gradient evaluation at the previous iterate):

.. math::

    \tilde c_t = g_t + \gamma\,\frac{\beta_1}{1-\beta_1}\,(g_t - g_{t-1}),\quad
    c_t = \tilde c_t \cdot \frac{M}{\max(M, \|\tilde c_t\|)}

    m \leftarrow \beta_1 m + (1-\beta_1)\, c_t

with :math:`\|\cdot\|` the Euclidean norm of one tensor. :math:`g_0 = 0` (as in
pytorch-optimizer), so the first correction is :math:`(1 + \gamma\beta_1/(1-\beta_1))
g_1` before the clipping. ``variant="adamw"`` (MARS-AdamW):

.. math::

    v \leftarrow \beta_2 v + (1-\beta_2)\, c_t^2,\quad
    w \leftarrow w - \eta\left(\frac{m/(1-\beta_1^t)}{\sqrt{(v + \epsilon_r)/
    (1-\beta_2^t)} + \epsilon} + \lambda w\right)

(``epsilon_placement="outside_uncorrected"``: :math:`\epsilon` is added to
:math:`\sqrt{v + \epsilon_r}` before the bias correction, i.e. an effective
:math:`\epsilon/\sqrt{1-\beta_2^t}`). ``variant="lion"`` (MARS-Lion) has no
:math:`v`: :math:`w \leftarrow w - \eta\,(\operatorname{sign}(m) + \lambda w)`.

The norm of :math:`\tilde c_t` is a reduction over one tensor: the stage is a
per-tensor reduction (a pass for the norms, then one elementwise pass that reads
:math:`g`, :math:`g_{t-1}`, :math:`m`, :math:`v` once and writes them once; the Triton
engine generates both, the NumPy front runs it on the eager engine, JAX traces it).
The three are elementwise slots, so ``state_dtype`` stores them in a 16-bit dtype
(:mod:`gradstep._core.precision`).

References:
  Yuan, Liu, Wu, Zhou & Gu (2024): MARS: Unleashing the Power of Variance Reduction
  for Training Large Models. arXiv:2411.10438.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Slot
from .._core.per_tensor import PerTensorReduction
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import Interval, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import debias, ema, ema_square, maximum, sign, sqrt

VARIANTS = ("adamw", "lion")
PLACEMENTS = ("outside", "outside_uncorrected")


def _mars_adamw(g, prev, mu, nu, k, b1, c1, b2, c2, step_scale, root_scale, eps_root, eps, factor):
    c = (g + k * (g - prev)) * factor
    mu = ema(mu, c, b1, c1)
    nu = ema_square(nu, c, b2, c2)
    return mu * step_scale / (sqrt(nu + eps_root) * root_scale + eps), g, mu, nu


def _adamw_correction(g, prev, mu, nu, k, b1, c1, b2, c2, step_scale, root_scale, eps_root, eps):
    return (g + k * (g - prev),)


def _mars_lion(g, prev, mu, k, b1, c1, factor):
    c = (g + k * (g - prev)) * factor
    mu = ema(mu, c, b1, c1)
    return sign(mu), g, mu


def _lion_correction(g, prev, mu, k, b1, c1):
    return (g + k * (g - prev),)


def _clip_factor(sums: tuple[float], flags: dict, h: dict, *, max_norm) -> dict:
    # M / max(M, ||c||): element operations instead of a branch (the JAX engine traces it)
    (square_sum,) = sums
    return {"factor": max_norm / maximum(sqrt(square_sum), max_norm)}


def _prepare(h: dict, count: Any, *, gamma, variant, epsilon, eps_root, placement) -> dict:
    b1 = h["beta1"]
    scalars = {"k": gamma * b1 / (1.0 - b1), "b1": b1, "c1": 1.0 - b1}
    if variant == "lion":
        return scalars
    t = count + 1
    b2 = h["beta2"]
    bc1, bc2 = debias(b1, t), debias(b2, t)
    if placement == "outside":
        step_scale, root_scale = 1.0 / bc1, (1.0 / bc2) ** 0.5
    else:
        step_scale, root_scale = bc2**0.5 / bc1, 1.0
    return scalars | {
        "b2": b2,
        "c2": 1.0 - b2,
        "step_scale": step_scale,
        "root_scale": root_scale,
        "eps_root": eps_root,
        "eps": epsilon,
    }


_DEFAULTS = {"beta2": 0.99, "epsilon": 1e-8, "eps_root": 0.0, "epsilon_placement": "outside"}


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    gamma=nonnegative(),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    variant=OneOf(VARIANTS),
    max_correction_norm=Interval(0.0, lo_open=True),
    eps_root=nonnegative(),
    epsilon_placement=OneOf(PLACEMENTS),
)
def mars(
    learning_rate: Any = 0.003,
    beta1: float = 0.95,
    beta2: float = 0.99,
    gamma: float = 0.025,
    epsilon: float = 1e-8,
    weight_decay: Any = 0.0,
    *,
    variant: str = "adamw",
    max_correction_norm: float = 1.0,
    eps_root: float = 0.0,
    epsilon_placement: str = "outside",
) -> Chain:
    r"""MARS (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.003 (the paper's
        code and pytorch-optimizer).
      beta1: :math:`\beta_1` in [0, 1): the momentum, also in the correction's
        weight :math:`\gamma\beta_1/(1-\beta_1)`. Default 0.95.
      beta2: :math:`\beta_2` in [0, 1) (``variant="adamw"`` only). Default 0.99.
      gamma: :math:`\gamma` >= 0, the strength of the correction (0: plain AdamW or
        momentum-sign steps on the clipped gradient). Default 0.025.
      epsilon: :math:`\epsilon` >= 0 (``variant="adamw"`` only). Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, or a schedule: decoupled, scaled by
        :math:`\eta`. Default 0.
      variant: ``"adamw"`` (MARS-AdamW, default) or ``"lion"`` (MARS-Lion).
      max_correction_norm: :math:`M` > 0, the norm each tensor's corrected gradient
        is clipped to. Default 1 (the paper).
      eps_root: :math:`\epsilon_r` >= 0, added to the uncorrected :math:`v` inside
        the root (``variant="adamw"`` only). Default 0.
      epsilon_placement: ``"outside"`` (default: on the bias-corrected root, the
        paper) or ``"outside_uncorrected"`` (pytorch-optimizer: on the root of the
        uncorrected :math:`v`) (``variant="adamw"`` only).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.mars(0.1)).step(np.array([0.3, -0.4]))
      >>> w.round(6)  # the first step of the Adam form is the sign step
      array([0.9, 1.1])

    Differences: pytorch-optimizer's ``MARS(mars_type="adamw", optimize_1d=True)``
    is ``epsilon_placement="outside_uncorrected", eps_root=1e-15``. Its default
    ``optimize_1d=False`` steps tensors of rank < 2 with plain AdamW of their own
    hyperparameters (``lr_1d``, ``betas_1d``, ``weight_decay_1d``); here every
    tensor takes the MARS step, and that split is ``gradstep.partition({"mars":
    mars(...), "adamw": adamw(lr_1d, 0.9, 0.95, weight_decay=0.1,
    epsilon_placement="outside_uncorrected")}, labels)`` with the labels chosen by
    rank (``docs/recent.md``; replayed against it in the tests). Its
    coupled decay (``weight_decouple=False``) adds :math:`\lambda w` to the gradient
    only after the step is computed (it reaches the stored previous gradient, not
    the step), and ``fixed_decay``, ``ams_bound``, ``cautious`` and
    ``mars_type="shampoo"`` are not offered. Its MARS-Lion is this ``"lion"``
    variant (the sign of the single momentum). The paper's exact variant, which
    evaluates a second gradient at the previous iterate, is not offered (it needs
    two gradients per step). Neither torch nor optax has MARS.
    """
    if variant == "lion":
        given = {
            "beta2": beta2,
            "epsilon": epsilon,
            "eps_root": eps_root,
            "epsilon_placement": epsilon_placement,
        }
        for name, value in given.items():
            if value != _DEFAULTS[name]:
                raise ValueError(
                    f"mars: invalid {name}={value!r} with variant='lion'; valid values: "
                    f"the default {_DEFAULTS[name]!r} (MARS-Lion has no second moment)"
                )
    adamw = variant == "adamw"
    stage = PerTensorReduction(
        "scale_by_mars",
        _mars_adamw if adamw else _mars_lion,
        norms=_adamw_correction if adamw else _lion_correction,
        combine=functools.partial(_clip_factor, max_norm=max_correction_norm),
        tensor_scalars=("factor",),
        slots=(Slot("prev_grad"), Slot("mu")) + ((Slot("nu", nonnegative=True),) if adamw else ()),
        hyperparams={"beta1": beta1} | ({"beta2": beta2} if adamw else {}),
        prepare=functools.partial(
            _prepare,
            gamma=gamma,
            variant=variant,
            epsilon=epsilon,
            eps_root=eps_root,
            placement=epsilon_placement,
        ),
        uses_count=adamw,
    )
    has_decay = callable(weight_decay) or weight_decay != 0
    return rule(
        "mars",
        stage,
        add_decayed_weights(weight_decay) if has_decay else None,
        scale_by_learning_rate(learning_rate),
    )
