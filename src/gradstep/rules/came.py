r"""CAME: Adafactor's factored second moment, with the momentum of a matrix scaled by a
factored estimate of its instability (the confidence of each step).

Symbols: :math:`g` gradient, :math:`w` parameter, :math:`R, C` slots ``v_row``,
``v_col`` (row and column factors of the second moment), :math:`V` slot ``v`` (the full
second moment of tensors that are not factored), :math:`m` slot ``mu``,
:math:`R', C'` slots ``res_row``, ``res_col`` (the factors of the instability),
:math:`\eta` ``learning_rate``, :math:`\beta_1, \beta_2, \beta_3` ``beta1``,
``beta2``, ``beta3``, :math:`\epsilon_1, \epsilon_2` ``epsilon1``, ``epsilon2``,
:math:`d` ``clipping_threshold``, :math:`\lambda` ``weight_decay``;
:math:`\mathrm{mean}_k` averages over the last axis, :math:`\mathrm{mean}_r` over the
one before it, :math:`\mathrm{RMS}(x) = \sqrt{\mathrm{mean}(x^2)}` over one tensor.

For a tensor of rank >= 2 (its last two axes factored):

.. math::

    G = g^2 + \epsilon_1,\quad
    R \leftarrow \beta_2 R + (1-\beta_2)\,\mathrm{mean}_k(G),\quad
    C \leftarrow \beta_2 C + (1-\beta_2)\,\mathrm{mean}_r(G)

    u = g\,\Big(\frac{R\,C}{\mathrm{mean}_r(R)}\Big)^{-1/2},\quad
    \hat u = u / \max(1, \mathrm{RMS}(u)/d),\quad
    m \leftarrow \beta_1 m + (1-\beta_1)\,\hat u

    U = (\hat u - m)^2 + \epsilon_2,\quad
    R' \leftarrow \beta_3 R' + (1-\beta_3)\,\mathrm{mean}_k(U),\quad
    C' \leftarrow \beta_3 C' + (1-\beta_3)\,\mathrm{mean}_r(U)

    w \leftarrow w - \eta\left(m\,\Big(\frac{R'\,C'}{\mathrm{mean}_r(R')}\Big)^{-1/2}
    + \lambda w\right)

A tensor of rank < 2 keeps :math:`V \leftarrow \beta_2 V + (1-\beta_2) G`, takes
:math:`u = g/\sqrt V` and steps by :math:`m` itself (no confidence factor, as the
paper's code). No moment is bias-corrected.

The factors, their means and the RMS of the clipping are array math written once against
the array namespace (NumPy, torch on its device, ``jax.jit``): the factored moments are
Adafactor's (:mod:`gradstep._core.factored`), here with a constant decay and
:math:`\epsilon_1` added to :math:`g^2`, and the clipping is Adafactor's stage
(:mod:`gradstep.rules.adafactor`). The arithmetic runs
in float32 or wider for 16-bit parameters (as in the authors' code, and as element
functions run), the state is stored in the parameter's dtype. On tensors that are not
factored every stage is an element function or a per-tensor reduction (the clip's RMS):
the stages' fused forms (:mod:`gradstep._core.fused_form`), which their own updates call
on those tensors, run on the numba engine on the tensors not factored; in a list with
factored ones too, the fronts step the others there and the factored ones on the
stages' own updates (the stages are ``tensorwise``).

References:
  Luo, Ren, Zheng, Jiang, Jiang & You (2023): CAME: Confidence-guided Adaptive Memory
  Efficient Optimization. ACL, arXiv:2307.02047.
  Shazeer & Stern (2018): Adafactor: Adaptive Learning Rates with Sublinear Memory
  Cost. ICML, arXiv:1804.04235.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Elementwise, Slot
from .._core.factored import (
    factored_average,
    factored_axes,
    factored_slots,
    inverse_root_factors,
    is_empty,
    map_widened,
    moving_average,
)
from .._core.fused_form import FusedForm
from .._core.namespaces import element_for, namespace_of
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import sqrt
from .adafactor import ClipByBlockRms, OrNone

# the last two axes of every tensor of rank >= 2, as the authors' code
_FACTORED, _MIN_SIZE = "last_two", 0


def _inverse_root(ns, row, col, r, minus_half):
    r""":math:`(R\,C/\mathrm{mean}_r(R))^{-1/2}`, its two factors multiplied first (as
    the authors' code)."""
    row_factor, col_factor = inverse_root_factors(ns, row, col, r, minus_half)
    return row_factor * col_factor


def _second_moment(g, v, keep, gain, eps):
    r"""A tensor's full second moment of :math:`g^2 + \epsilon_1` and
    :math:`u = g / \sqrt V` (a tensor that is not factored; a root and a division,
    not a power: they vectorise)."""
    v = keep * v + gain * (g * g + eps)
    return g / sqrt(v), v


def _momentum(u, mu, keep, gain):
    r""":math:`m \leftarrow \beta_1 m + (1-\beta_1)\,\hat u`; a tensor that is not
    factored steps by :math:`m` itself."""
    mu = keep * mu + gain * u
    return mu, mu


def _decay_scalars(h: dict, count: int, *, decay: float, **more: float) -> dict:
    """``keep``, ``gain`` of the moving average with ``decay``, then ``more``."""
    return {"keep": decay, "gain": 1.0 - decay, **more}


def _unfactored(shape: tuple[int, ...]) -> bool:
    return factored_axes(shape, _FACTORED, _MIN_SIZE) is None


_UNFACTORED = "tensors of rank < 2"


class ScaleByFactoredSecondMoment(Transform):
    r""":math:`u = g / \sqrt{\hat V}` with the second moment of :math:`g^2 +
    \epsilon_1` averaged with a constant decay :math:`\beta_2`, factored over the last
    two axes of tensors of rank >= 2 (Adafactor's estimate)."""

    per_parameter_state = ("v_row", "v_col", "v")  # lists indexed by parameter
    tensorwise = True  # each tensor's moments from that tensor alone

    name = "scale_by_factored_second_moment"
    reads_shape = True  # a real view's trailing axis would change it

    def __init__(self, beta2: float, epsilon1: float):
        self.beta2 = beta2
        self.epsilon1 = epsilon1

    def init(self, params: Any) -> dict:
        rows, cols, full = factored_slots(params, _FACTORED, _MIN_SIZE)
        return {"v_row": rows, "v_col": cols, "v": full}

    def _scalars(self) -> functools.partial:
        return functools.partial(_decay_scalars, decay=self.beta2, eps=self.epsilon1)

    def fused_form(self) -> FusedForm:
        """On tensors that are not factored: the full moment's element function."""
        slots = (Slot("v", nonnegative=True),)
        stage = Elementwise(self.name, _second_moment, slots=slots, prepare=self._scalars())
        return FusedForm(self.name, stage, _unfactored, _UNFACTORED, rounds_16bit=True)

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        def step(ns, g, row, col, v):
            cast = ns.scalar_caster(g)
            scalars = [cast(x) for x in self._scalars()({}, 0).values()]
            keep, gain, eps = scalars
            axes = factored_axes(np.shape(g), _FACTORED, _MIN_SIZE)
            if is_empty(g):
                return ns.astype(g, g), row, col, v
            if axes is None:
                u, v = element_for(_second_moment, ns)(g, v, *scalars)
                return u, row, col, v
            row, col, v = moving_average(ns, g * g + eps, row, col, v, axes, keep, gain)
            return g * _inverse_root(ns, row, col, axes[0], cast(-0.5)), row, col, v

        return map_widened(step, grads, state, ("v_row", "v_col", "v"))


class ScaleByConfidence(Transform):
    r"""The momentum :math:`m` of the (clipped) steps, scaled for a tensor of rank >= 2
    by :math:`(R'C'/\mathrm{mean}_r(R'))^{-1/2}`, the factored inverse root of the
    average instability :math:`(\hat u - m)^2 + \epsilon_2`; tensors of rank < 2 step
    by :math:`m`."""

    per_parameter_state = ("mu", "res_row", "res_col")  # lists indexed by parameter
    tensorwise = True

    name = "scale_by_confidence"
    reads_shape = True  # a real view's trailing axis would change it

    def __init__(self, beta1: float, beta3: float, epsilon2: float):
        self.beta1 = beta1
        self.beta3 = beta3
        self.epsilon2 = epsilon2

    def init(self, params: Any) -> dict:
        rows, cols, _ = factored_slots(params, _FACTORED, _MIN_SIZE, full_moments=False)
        leaves, td = _tree.flatten(params)
        mu = _tree.unflatten(td, [namespace_of(p).zeros(tuple(np.shape(p)), p) for p in leaves])
        return {"mu": mu, "res_row": rows, "res_col": cols}

    def _scalars(self) -> functools.partial:
        return functools.partial(_decay_scalars, decay=self.beta1)

    def fused_form(self) -> FusedForm:
        """On tensors that are not factored: the momentum's element function."""
        stage = Elementwise(self.name, _momentum, slots=(Slot("mu"),), prepare=self._scalars())
        return FusedForm(self.name, stage, _unfactored, _UNFACTORED, rounds_16bit=True)

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        def step(ns, u, mu, row, col):
            cast = ns.scalar_caster(u)
            axes = factored_axes(np.shape(u), _FACTORED, _MIN_SIZE)
            scalars = [cast(x) for x in self._scalars()({}, 0).values()]
            m, mu = element_for(_momentum, ns)(u, mu, *scalars)
            if axes is None or is_empty(u):
                return ns.astype(m, u), mu, row, col
            residual = (u - mu) * (u - mu) + cast(self.epsilon2)
            keep, gain = cast(self.beta3), cast(1.0 - self.beta3)
            row, col = factored_average(ns, residual, row, col, axes, keep, gain)
            return mu * _inverse_root(ns, row, col, axes[0], cast(-0.5)), mu, row, col

        return map_widened(step, grads, state, ("mu", "res_row", "res_col"))


_BETA = decay_rate()


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=_BETA,
    beta2=_BETA,
    beta3=_BETA,
    epsilon1=nonnegative(),
    epsilon2=nonnegative(),
    clipping_threshold=OrNone(Interval(0.0, lo_open=True)),
    weight_decay=nonnegative(schedulable=True),
)
def came(
    learning_rate: Any = 2e-4,
    beta1: float = 0.9,
    beta2: float = 0.999,
    beta3: float = 0.9999,
    epsilon1: float = 1e-30,
    epsilon2: float = 1e-16,
    clipping_threshold: float | None = 1.0,
    weight_decay: Any = 0.0,
) -> Chain:
    r"""CAME (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 2e-4 (the paper's
        BERT setting; pytorch-optimizer's default).
      beta1: :math:`\beta_1` in [0, 1), the momentum. Default 0.9.
      beta2: :math:`\beta_2` in [0, 1), the second moment's decay. Default 0.999.
      beta3: :math:`\beta_3` in [0, 1), the instability's decay. Default 0.9999.
      epsilon1: :math:`\epsilon_1` >= 0, added to :math:`g^2`. Default 1e-30.
      epsilon2: :math:`\epsilon_2` >= 0, added to the instability. Default 1e-16.
      clipping_threshold: :math:`d` > 0, or ``None`` for no clipping. Default 1.
      weight_decay: :math:`\lambda` >= 0, or a schedule: decoupled, scaled by
        :math:`\eta`. Default 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.full((2, 2), 1.0)
      >>> opt = gradstep.Optimizer(w, gradstep.came(0.01))
      >>> opt.step(np.array([[0.5, -0.5], [0.5, -0.5]]))
      >>> w.round(6)  # clipped u = +-1: step (1-beta1) u / sqrt((1-beta3) (0.9 u)^2)
      array([[0.888889, 1.111111],
             [0.888889, 1.111111]])

    Differences: the authors' package (``came_pytorch.CAME``, whose ``eps`` is
    ``(epsilon1, epsilon2)`` and ``betas`` is ``(beta1, beta2, beta3)``; it has no
    default learning rate) is this rule; its 16-bit gradients are widened to
    float32, here the engine's business. pytorch-optimizer's ``CAME`` is the same
    rule with decoupled decay (its default; ``eps1``, ``eps2`` are the epsilons);
    its coupled decay (``weight_decouple=False``), ``fixed_decay`` and
    ``ams_bound`` are not offered. ``state_dtype`` is refused:
    the factors are not elementwise slots. Neither torch nor optax has CAME.
    """
    has_decay = callable(weight_decay) or weight_decay != 0
    return rule(
        "came",
        ScaleByFactoredSecondMoment(beta2, epsilon1),
        ClipByBlockRms(clipping_threshold) if clipping_threshold is not None else None,
        ScaleByConfidence(beta1, beta3, epsilon2),
        add_decayed_weights(weight_decay) if has_decay else None,
        scale_by_learning_rate(learning_rate),
    )
