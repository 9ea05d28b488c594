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
the array namespace (NumPy, torch on its device, ``jax.jit``); the second moment is
Adafactor's with a constant decay and :math:`\epsilon_1` added to :math:`g^2`, and the
clipping is Adafactor's stage (:mod:`gradstep.rules.adafactor`). The arithmetic runs
in float32 or wider for 16-bit parameters (as in the authors' code, and as element
functions run), the state is stored in the parameter's dtype.

References:
  Luo, Ren, Zheng, Jiang, Jiang & You (2023): CAME: Confidence-guided Adaptive Memory
  Efficient Optimization. ACL, arXiv:2307.02047.
  Shazeer & Stern (2018): Adafactor: Adaptive Learning Rates with Sublinear Memory
  Cost. ICML, arXiv:1804.04235.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import namespace_of
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import Interval, decay_rate, hyperparams, nonnegative
from .adafactor import ClipByBlockRms, OrNone, _with_one, factored_axes


def _axes(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The (row, column) axes factored: the last two, for every tensor of rank >= 2."""
    return factored_axes(shape, "last_two", 0)


def _factor_slots(params: Any, full_moments: bool) -> tuple[Any, Any, Any]:
    """Zero row factors, column factors and full moments for ``params``: a tensor of
    rank >= 2 has its two factors, one of lower rank its full moment if
    ``full_moments``; the others are empty."""
    leaves, td = _tree.flatten(params)
    rows, cols, full = [], [], []
    for p in leaves:
        ns = namespace_of(p)
        shape = tuple(np.shape(p))
        axes = _axes(shape)
        if axes is None:
            rows.append(ns.zeros((0,), p))
            cols.append(ns.zeros((0,), p))
            full.append(ns.zeros(shape if full_moments else (0,), p))
        else:
            r, k = axes
            rows.append(ns.zeros(_with_one(shape, k), p))
            cols.append(ns.zeros(_with_one(shape, r), p))
            full.append(ns.zeros((0,), p))
    return tuple(_tree.unflatten(td, x) for x in (rows, cols, full))


def _factored_average(ns, x, row, col, axes, keep, gain):
    """The factors' moving averages of the mean of ``x`` over each of ``axes``."""
    r, k = axes
    row = keep * row + gain * ns.mean(x, axis=k, keepdims=True)
    col = keep * col + gain * ns.mean(x, axis=r, keepdims=True)
    return row, col


def _inverse_root(ns, row, col, r, minus_half):
    r""":math:`(R\,C/\mathrm{mean}_r(R))^{-1/2}`, as two factors' powers (no
    full-size product under the root)."""
    return (row / ns.mean(row, axis=r, keepdims=True)) ** minus_half * col**minus_half


class ScaleByFactoredSecondMoment(Transform):
    r""":math:`u = g / \sqrt{\hat V}` with the second moment of :math:`g^2 +
    \epsilon_1` averaged with a constant decay :math:`\beta_2`, factored over the last
    two axes of tensors of rank >= 2 (Adafactor's estimate)."""

    name = "scale_by_factored_second_moment"

    def __init__(self, beta2: float, epsilon1: float):
        self.beta2 = beta2
        self.epsilon1 = epsilon1

    def init(self, params: Any) -> dict:
        rows, cols, full = _factor_slots(params, True)
        return {"v_row": rows, "v_col": cols, "v": full}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        slots = [_tree.leaves_like(td, state[key]) for key in ("v_row", "v_col", "v")]
        out, new_rows, new_cols, new_full = [], [], [], []
        for stored in zip(g_leaves, *slots):
            ns = namespace_of(stored[0])
            # the math runs in float32 or wider whatever the storage, as an element
            # function's: 16-bit arithmetic would lose epsilon1 (1e-30 is 0 in float16)
            g, row, col, v = (ns.widened(x) for x in stored)
            cast = ns.scalar_caster(g)
            keep, gain, eps = cast(self.beta2), cast(1.0 - self.beta2), cast(self.epsilon1)
            axes = _axes(tuple(np.shape(g)))
            if math.prod(np.shape(g)) == 0:
                out.append(ns.astype(g, g))
            elif axes is None:
                v = keep * v + gain * (g * g + eps)
                out.append(g * v ** cast(-0.5))
            else:
                row, col = _factored_average(ns, g * g + eps, row, col, axes, keep, gain)
                out.append(g * _inverse_root(ns, row, col, axes[0], cast(-0.5)))
            out[-1] = ns.stored_like(ns.wrap(out[-1]), stored[0])
            new_rows.append(ns.stored_like(ns.wrap(row), stored[1]))
            new_cols.append(ns.stored_like(ns.wrap(col), stored[2]))
            new_full.append(ns.stored_like(ns.wrap(v), stored[3]))
        new_state = {
            "v_row": _tree.unflatten(td, new_rows),
            "v_col": _tree.unflatten(td, new_cols),
            "v": _tree.unflatten(td, new_full),
        }
        return _tree.unflatten(td, out), new_state


class ScaleByConfidence(Transform):
    r"""The momentum :math:`m` of the (clipped) steps, scaled for a tensor of rank >= 2
    by :math:`(R'C'/\mathrm{mean}_r(R'))^{-1/2}`, the factored inverse root of the
    average instability :math:`(\hat u - m)^2 + \epsilon_2`; tensors of rank < 2 step
    by :math:`m`."""

    name = "scale_by_confidence"

    def __init__(self, beta1: float, beta3: float, epsilon2: float):
        self.beta1 = beta1
        self.beta3 = beta3
        self.epsilon2 = epsilon2

    def init(self, params: Any) -> dict:
        rows, cols, _ = _factor_slots(params, False)
        leaves, td = _tree.flatten(params)
        mu = _tree.unflatten(td, [namespace_of(p).zeros(tuple(np.shape(p)), p) for p in leaves])
        return {"mu": mu, "res_row": rows, "res_col": cols}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        u_leaves, td = _tree.flatten(grads)
        slots = [_tree.leaves_like(td, state[key]) for key in ("mu", "res_row", "res_col")]
        out, new_mu, new_rows, new_cols = [], [], [], []
        for stored in zip(u_leaves, *slots):
            ns = namespace_of(stored[0])
            u, mu, row, col = (ns.widened(x) for x in stored)  # as in the stage above
            cast = ns.scalar_caster(u)
            axes = _axes(tuple(np.shape(u)))
            mu = cast(self.beta1) * mu + cast(1.0 - self.beta1) * u
            if axes is None or math.prod(np.shape(u)) == 0:
                out.append(ns.astype(mu, u))
            else:
                residual = (u - mu) * (u - mu) + cast(self.epsilon2)
                keep, gain = cast(self.beta3), cast(1.0 - self.beta3)
                row, col = _factored_average(ns, residual, row, col, axes, keep, gain)
                out.append(mu * _inverse_root(ns, row, col, axes[0], cast(-0.5)))
            out[-1] = ns.stored_like(ns.wrap(out[-1]), stored[0])
            new_mu.append(ns.stored_like(ns.wrap(mu), stored[1]))
            new_rows.append(ns.stored_like(ns.wrap(row), stored[2]))
            new_cols.append(ns.stored_like(ns.wrap(col), stored[3]))
        new_state = {
            "mu": _tree.unflatten(td, new_mu),
            "res_row": _tree.unflatten(td, new_rows),
            "res_col": _tree.unflatten(td, new_cols),
        }
        return _tree.unflatten(td, out), new_state


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
