r"""Adam, AdamW and AMSGrad.

Symbols: :math:`g` gradient (after any coupled decay), :math:`w` parameter,
:math:`m` slot ``mu``, :math:`v` slot ``nu``, :math:`\hat v_{max}` slot ``nu_max``,
:math:`t` the 1-based step, :math:`\eta` ``learning_rate``, :math:`\beta_1`
``beta1``, :math:`\beta_2` ``beta2``, :math:`\epsilon` ``epsilon``,
:math:`\lambda` ``weight_decay``.

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
    v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    \hat m = m / (1-\beta_1^t),\quad \hat v = v / (1-\beta_2^t)

and the step, by ``epsilon_placement``:

- ``"outside"`` (the paper's Algorithm 1, torch, optax):
  :math:`w \leftarrow w - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)`
- ``"inside"``: :math:`w \leftarrow w - \eta\, \hat m / \sqrt{\hat v + \epsilon}`
- ``"outside_uncorrected"`` (the paper's section 2 "efficient" form; Lasagne,
  Dandelion, MXNet, Keras): :math:`w \leftarrow w - \eta_t\, m / (\sqrt{v} +
  \epsilon)` with :math:`\eta_t = \eta \sqrt{1-\beta_2^t}/(1-\beta_1^t)`, i.e. an
  effective epsilon of :math:`\epsilon/\sqrt{1-\beta_2^t}`
- ``"inside_uncorrected"`` (objax): :math:`w \leftarrow w - \eta_t\, m /
  \sqrt{v + \epsilon}`

AMSGrad replaces :math:`v` in the step by a running maximum: ``"raw"`` (torch,
Lasagne, Keras) keeps :math:`\max(v)` and bias-corrects it afterwards;
``"corrected"`` (optax) keeps :math:`\max(\hat v)`.

References:
  Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR, arXiv:1412.6980.
  Loshchilov & Hutter (2019): Decoupled Weight Decay Regularization. ICLR,
  arXiv:1711.05101.
  Reddi, Kale & Kumar (2018): On the Convergence of Adam and Beyond. ICLR.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import GRADIENT_RANGES, gradient_stage
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import (
    complex_ready,
    debias,
    element_helper,
    ema,
    ema_square,
    maximum,
    sqrt,
    where,
)

PLACEMENTS = ("outside", "inside", "outside_uncorrected", "inside_uncorrected")
AMSGRAD = (False, True, "raw", "corrected")


# The root of the bias-corrected moment is sqrt(v * v_scale + e) (optax's order,
# which the recorded trajectories pin to float32 rounding). Where v * v_scale
# overflows float32 (v above ~3.4e35 / v_scale: |g| > ~1.8e19 on the first step) and
# sqrt(v) / sqrt(bc2) does not, the root is taken first, as torch does: the same value,
# written sqrt(v + e / v_scale) / root_div, so no rule is less overflow-safe than torch.
# v * v_scale + e is never negative, so "< inf" is "finite" (on every engine).
# One square root of whichever argument applies, not two roots and a choice between
# them: the same values, and half the square roots where the divider is what bounds
# a kernel (8-bit and 16-bit state, Triton on small tensors).
@element_helper
def adam_root(v, v_scale, eps_in, root_div, eps_root_in, inf):
    scaled = v * v_scale + eps_in
    fits = scaled < inf
    root = sqrt(where(fits, scaled, v + eps_root_in))
    return where(fits, root, root / root_div)


@complex_ready
def _adam(
    g, mu, nu, b1, c1, b2, c2, step_scale, v_scale, eps_in, root_div, eps_root_in, inf, eps_out
):
    mu = ema(mu, g, b1, c1)
    nu = ema_square(nu, g, b2, c2)
    root = adam_root(nu, v_scale, eps_in, root_div, eps_root_in, inf)
    return mu * step_scale / (root + eps_out), mu, nu


@complex_ready
def _amsgrad(
    g, mu, nu, nu_max, b1, c1, b2, c2, max_scale, step_scale, v_scale, eps_in, root_div,
    eps_root_in, inf, eps_out,
):  # fmt: skip
    mu = ema(mu, g, b1, c1)
    nu = ema_square(nu, g, b2, c2)
    nu_max = maximum(nu_max, nu * max_scale)
    root = adam_root(nu_max, v_scale, eps_in, root_div, eps_root_in, inf)
    return mu * step_scale / (root + eps_out), mu, nu, nu_max


def _denominator_scalars(
    placement: str, eps: float, eps_root: float, bc1: float, bc2: float
) -> dict:
    """Scalars that turn the one element formula into each epsilon placement.

    The step is ``m * step_scale / (sqrt(v * v_scale + eps_in) + eps_out)``, with the
    same root written ``sqrt(v + eps_root_in) / root_div`` where ``v * v_scale``
    overflows.
    """
    if placement in ("outside", "inside"):
        scales = {"step_scale": 1.0 / bc1, "v_scale": 1.0 / bc2}
    else:
        scales = {"step_scale": math.sqrt(bc2) / bc1, "v_scale": 1.0}
    eps_in, eps_out = (eps_root, eps) if placement.startswith("outside") else (eps + eps_root, 0.0)
    return {**scales, **_root_scalars(scales["v_scale"], eps_in), "eps_out": eps_out}


def _root_scalars(v_scale: Any, eps_in: Any) -> dict:
    """``eps_in``, ``root_div``, ``eps_root_in`` and ``inf`` for a ``v_scale``
    (``** 0.5``, not math.sqrt: the JAX engine traces prepare)."""
    return {
        "eps_in": eps_in,
        "root_div": (1.0 / v_scale) ** 0.5,
        "eps_root_in": eps_in / v_scale,
        "inf": math.inf,
    }


def _adam_prepare(
    h: dict, count: int, *, bias_correction, eps_root, epsilon, epsilon_placement, mode
) -> dict:
    t = count + 1
    b1, b2 = h["beta1"], h["beta2"]
    bc1, bc2 = (debias(b1, t), debias(b2, t)) if bias_correction else (1.0, 1.0)
    scalars = {"b1": b1, "c1": 1.0 - b1, "b2": b2, "c2": 1.0 - b2}
    denom = _denominator_scalars(epsilon_placement, epsilon, eps_root, bc1, bc2)
    if mode == "corrected":
        # the maximum is taken over v-hat, so the step uses it unscaled
        scalars["max_scale"] = denom["v_scale"]
        denom["v_scale"] = 1.0
        denom.update(_root_scalars(1.0, denom["eps_in"]))
    elif mode == "raw":
        scalars["max_scale"] = 1.0
    return {**scalars, **denom}


@hyperparams(
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    amsgrad=OneOf(AMSGRAD),
    epsilon_placement=OneOf(PLACEMENTS),
    bias_correction=BOOL,
)
def scale_by_adam(
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    eps_root: float = 0.0,
    amsgrad: bool | str = False,
    epsilon_placement: str = "outside",
    bias_correction: bool = True,
) -> Elementwise:
    """Adam's direction :math:`\\hat m / (\\sqrt{\\hat v} + \\epsilon)` (no learning rate).

    ``eps_root`` is added inside the root on the bias-corrected scale, as optax's
    argument of that name. ``amsgrad``: False, True (= ``"raw"``), ``"raw"`` or
    ``"corrected"``. See the module docstring for ``epsilon_placement``.
    ``bias_correction=False`` uses the moments as they are (:math:`\\hat m = m`,
    :math:`\\hat v = v`; LAMB's option).
    """
    mode = "raw" if amsgrad is True else amsgrad
    if mode == "corrected" and epsilon_placement not in ("outside", "inside"):
        raise ValueError(
            f"scale_by_adam: invalid amsgrad={amsgrad!r} with epsilon_placement="
            f"{epsilon_placement!r}; valid values: amsgrad='corrected' needs "
            "epsilon_placement 'outside' or 'inside'"
        )

    prepare = functools.partial(
        _adam_prepare,
        bias_correction=bias_correction,
        eps_root=eps_root,
        epsilon=epsilon,
        epsilon_placement=epsilon_placement,
        mode=mode,
    )

    slots = (Slot("mu"), Slot("nu", nonnegative=True)) + (
        (Slot("nu_max", nonnegative=True),) if mode else ()
    )
    return Elementwise(
        "scale_by_adam",
        _amsgrad if mode else _adam,
        slots=slots,
        hyperparams={"beta1": beta1, "beta2": beta2},
        prepare=prepare,
        uses_count=True,
    )


_COMMON = dict(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(schedulable=True),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    clear_nan=BOOL,
    amsgrad=OneOf(AMSGRAD),
    epsilon_placement=OneOf(PLACEMENTS),
    weight_decay=nonnegative(schedulable=True),
)


@hyperparams(**_COMMON, **GRADIENT_RANGES)
def adam(
    learning_rate: Any = 0.001,
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    clear_nan: bool = False,
    *,
    amsgrad: bool | str = False,
    epsilon_placement: str = "outside",
    weight_decay: Any = 0.0,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = True,
) -> Chain:
    r"""Adam (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1), or a schedule. Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0. Default 1e-8.
      clear_nan: Dandelion's NaN handling (new ``mu``, ``nu`` and parameter elements
        that are NaN become 0).
      amsgrad: False, True/``"raw"`` (torch) or ``"corrected"`` (optax).
      epsilon_placement: ``"outside"`` (default), ``"inside"``,
        ``"outside_uncorrected"`` or ``"inside_uncorrected"``.
      weight_decay: :math:`\lambda` >= 0: coupled L2, :math:`g + \lambda w` enters
        the moments (torch ``Adam(weight_decay=...)``). For decoupled decay use
        :func:`adamw`.
      rescale_grad, clip_gradient: MXNet's gradient handling: the gradient is
        multiplied by ``rescale_grad`` (> 0, default 1) and clipped element-wise to
        ``[-clip_gradient, clip_gradient]`` (>= 0, default None: no clip).
      decay_in_clip: with both a clip and a decay, clip :math:`s g + \lambda w`
        (True, default: MXNet 1.x) or add :math:`\lambda w` after the clip (False:
        MXNet 2.x).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.adam(0.1)).step(np.array([0.5, -2.0])); w
      array([0.9, 1.1])

    Differences: torch and optax use ``"outside"``; Lasagne, Dandelion, MXNet and
    Keras use ``"outside_uncorrected"`` (a larger effective epsilon early on:
    :math:`31.6\epsilon` at step 1); objax ``"inside_uncorrected"``. Keras' default
    epsilon is 1e-7. AMSGrad: optax takes the maximum of the bias-corrected
    :math:`\hat v`, everyone else of the raw :math:`v`. MXNet's ``Adam`` is
    ``epsilon_placement="outside_uncorrected"`` with its ``rescale_grad``,
    ``clip_gradient`` and ``wd`` (1.x clips the decayed gradient).
    """
    return rule(
        "adam",
        gradient_stage(
            "adam", rescale_grad, clip_gradient, weight_decay, decay_in_clip, default_in_clip=True
        ),
        scale_by_adam(beta1, beta2, epsilon, amsgrad=amsgrad, epsilon_placement=epsilon_placement),
        scale_by_learning_rate(learning_rate),
        clear_nan=clear_nan,
    )


@hyperparams(**_COMMON)
def adamw(
    learning_rate: Any = 0.001,
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    clear_nan: bool = False,
    *,
    weight_decay: Any = 0.01,
    amsgrad: bool | str = False,
    epsilon_placement: str = "outside",
    mask: Any = None,
) -> Chain:
    r"""Adam with decoupled weight decay:
    :math:`w \leftarrow w - \eta\,(\hat m / (\sqrt{\hat v} + \epsilon) + \lambda w)`.

    The decay uses the parameter before the step and is scaled by the learning rate
    (and by its schedule), as torch, optax and Keras do.

    Args: as :func:`adam`, and
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.01 (torch).
      mask: a tree of booleans (or a function of the parameters returning one) that
        selects the leaves to decay; ``None`` decays all.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([2.0])
      >>> gradstep.Optimizer(w, gradstep.adamw(0.1, weight_decay=0.5)).step(np.zeros(1)); w
      array([1.9])

    Differences: torch applies :math:`w(1-\eta\lambda)` before the Adam step; the two
    are the same arithmetic up to rounding. Default decay: torch 0.01, optax 1e-4,
    Keras 0.004. The primer's AdamW pseudo-code (seed 4) omits bias correction;
    gradstep follows the paper and torch.
    """
    return rule(
        "adamw",
        scale_by_adam(beta1, beta2, epsilon, amsgrad=amsgrad, epsilon_placement=epsilon_placement),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
        clear_nan=clear_nan,
    )
