r"""NovoGrad: momentum of gradients normalised by a per-tensor second moment.

Symbols: :math:`g` gradient of one tensor, :math:`w` parameter, :math:`m` slot
``mu``, :math:`v` slot ``nu`` (one number per tensor), :math:`t` the 1-based step,
:math:`\eta` ``learning_rate``, :math:`\beta_1` ``beta1``, :math:`\beta_2`
``beta2``, :math:`\epsilon` ``epsilon``, :math:`\epsilon_r` ``eps_root``,
:math:`\lambda` ``weight_decay``, :math:`a` is :math:`1-\beta_1` with
``grad_averaging`` and 1 without.

.. math::

    v \leftarrow \begin{cases} \|g\|^2 & t = 1 \\
        \beta_2 v + (1-\beta_2)\|g\|^2 & t > 1 \end{cases}

    m \leftarrow \begin{cases} d & t = 1 \\ \beta_1 m + a\, d & t > 1 \end{cases}
    \quad\text{with}\quad d = \frac{g}{\sqrt{v + \epsilon_r} + \epsilon} + \lambda w,
    \qquad w \leftarrow w - \eta\, m

The norm is of each tensor's whole gradient (a reduction pass), so :math:`v` is one
number per tensor. The weight decay enters the normalised gradient (the paper,
optax, pytorch-optimizer's default); ``decoupled_weight_decay=True`` decays the
weights beside the step instead, :math:`w \leftarrow w - \eta (m + \lambda w)`.

The stage is a per-tensor reduction (:class:`~gradstep._core.per_tensor.
PerTensorReduction`): a reduction pass takes :math:`\|g\|^2` of each tensor, the
elementwise pass does the rest in one sweep. :math:`v` is stored as a slot shaped
like the parameter, every element holding its tensor's value, so that the
elementwise pass can read and write it like any other slot.

References:
  Ginsburg, Castonguay, Hrinchuk, Kuchaiev, Lavrukhin, Leary, Li, Nguyen, Zhang &
  Cohen (2019): Stochastic Gradient Methods with Layer-wise Adaptive Moments for
  Training of Deep Networks. arXiv:1905.11286.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Slot
from .._core.per_tensor import PerTensorReduction
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import BOOL, decay_rate, hyperparams, nonnegative
from .._core.xmath import sqrt


def _novograd(g, w, mu, nu, b1, c1, b2, c2, eps_root, eps, wd, g_sq):
    nu = b2 * nu + c2 * g_sq
    mu = b1 * mu + c1 * (g / (sqrt(nu + eps_root) + eps) + wd * w)
    return mu, mu, nu


def _gradient(g, w, mu, nu, b1, c1, b2, c2, eps_root, eps, wd):
    return (g,)


def _squared_norm(sums: tuple[float], flags: dict, h: dict) -> dict:
    return {"g_sq": sums[0]}


def _novograd_prepare(h: dict, count: int, *, eps_root, epsilon, grad_averaging) -> dict:
    b1, b2 = h["beta1"], h["beta2"]
    first = count == 0
    return {
        "b1": 0.0 if first else b1,
        "c1": 1.0 if first or not grad_averaging else 1.0 - b1,
        "b2": 0.0 if first else b2,
        "c2": 1.0 if first else 1.0 - b2,
        "eps_root": eps_root,
        "eps": epsilon,
        # no coupled decay (a decoupled one is its own stage): no weight_decay here
        "wd": h.get("weight_decay", 0.0),
    }


_RANGES = dict(
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    grad_averaging=BOOL,
)


@hyperparams(weight_decay=nonnegative(schedulable=True), **_RANGES)
def scale_by_novograd(
    beta1: float = 0.9,
    beta2: float = 0.25,
    epsilon: float = 1e-6,
    *,
    eps_root: float = 0.0,
    weight_decay: Any = 0.0,
    grad_averaging: bool = False,
) -> PerTensorReduction:
    """NovoGrad's direction :math:`m` (no learning rate); see the module docstring."""
    return _novograd_stage(beta1, beta2, epsilon, eps_root, weight_decay, grad_averaging)


def _novograd_stage(
    beta1: float,
    beta2: float,
    epsilon: float,
    eps_root: float,
    coupled_weight_decay: Any,
    grad_averaging: bool,
) -> PerTensorReduction:
    """The stage of :func:`scale_by_novograd`; ``coupled_weight_decay=None``: none,
    and no ``weight_decay`` for a step to set here (the decoupled stage holds it)."""
    hyper = {"beta1": beta1, "beta2": beta2}
    if coupled_weight_decay is not None:
        hyper["weight_decay"] = coupled_weight_decay
    prepare = functools.partial(
        _novograd_prepare, eps_root=eps_root, epsilon=epsilon, grad_averaging=grad_averaging
    )
    return PerTensorReduction(
        "scale_by_novograd",
        _novograd,
        norms=_gradient,
        combine=_squared_norm,
        tensor_scalars=("g_sq",),
        slots=(Slot("mu"), Slot("nu", nonnegative=True)),
        hyperparams=hyper,
        prepare=prepare,
        uses_params=True,
        uses_count=True,
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    **_RANGES,
)
def novograd(
    learning_rate: Any = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.25,
    epsilon: float = 1e-6,
    weight_decay: Any = 0.0,
    *,
    eps_root: float = 0.0,
    grad_averaging: bool = False,
    decoupled_weight_decay: bool = False,
) -> Chain:
    r"""NovoGrad (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1). Default 0.9 (optax).
      beta2: :math:`\beta_2` in [0, 1). Default 0.25 (optax).
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-6 (optax).
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      eps_root: :math:`\epsilon_r` >= 0, inside the root. Default 0.
      grad_averaging: scale the new term by :math:`1-\beta_1` after the first step
        (pytorch-optimizer's and NVIDIA's option). Default False.
      decoupled_weight_decay: decay the weights beside the step instead of inside
        the normalised gradient (pytorch-optimizer's ``weight_decouple``).
        Default False.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.novograd(0.1)).step(np.array([3.0, -4.0])); w.round(6)
      array([0.94, 1.08])

    Differences: optax's ``novograd(learning_rate, b1, b2, eps, eps_root,
    weight_decay)`` is this rule; it keeps :math:`v` as one scalar per tensor where
    gradstep keeps a parameter-sized slot (see the module docstring).
    pytorch-optimizer's ``NovoGrad`` defaults to ``betas=(0.95, 0.98)`` and
    ``eps=1e-8``; its ``fixed_decay`` and ``adam_debias`` are not offered. The
    paper's Algorithm 1 uses ``grad_averaging=True``.
    """
    decouple = decoupled_weight_decay and (callable(weight_decay) or weight_decay != 0)
    return rule(
        "novograd",
        _novograd_stage(
            beta1,
            beta2,
            epsilon,
            eps_root,
            None if decoupled_weight_decay else weight_decay,
            grad_averaging,
        ),
        add_decayed_weights(weight_decay) if decouple else None,
        scale_by_learning_rate(learning_rate),
    )
