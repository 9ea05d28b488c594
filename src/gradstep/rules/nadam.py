r"""NAdam: Adam with Nesterov momentum and Dozat's warming momentum schedule.

Symbols: :math:`u` the (handled) gradient, :math:`w` parameter, :math:`m` slot
``mu``, :math:`v` slot ``nu``, :math:`t` the 1-based step, :math:`\eta`
``learning_rate``, :math:`\beta_1, \beta_2` ``beta1, beta2``, :math:`\epsilon`
``epsilon``, :math:`\psi` ``schedule_decay``, :math:`\lambda` ``weight_decay``,
:math:`M` the momentum-schedule product (state ``m_schedule`` with
``schedule_scope="shared"``).

Dozat (2016) lets the momentum coefficient warm up, :math:`\mu_t = \beta_1 (1 -
\tfrac12\, 0.96^{t\psi})` (0.4501 at :math:`t = 1` for :math:`\beta_1 = 0.9`, rising
slowly toward :math:`\beta_1`), and applies the *next* step's momentum now (the
Nesterov look-ahead), with :math:`M_t = \prod_{i \le t} \mu_i`:

.. math::

    m &\leftarrow \beta_1 m + (1-\beta_1) u,\qquad
    v \leftarrow \beta_2 v + (1-\beta_2) u^2\\
    \bar m &= \frac{1-\mu_t}{1-M_t}\, u + \frac{\mu_{t+1}}{1 - M_t \mu_{t+1}}\, m\\
    w &\leftarrow w - \eta\, \bar m \,/\, \left(\sqrt{v / (1-\beta_2^t)} + \epsilon\right)

(the average :math:`m` itself uses the constant :math:`\beta_1`, as torch and MXNet
do). Without the warm-up (``schedule_decay=None``) :math:`\mu_t = \beta_1` and
:math:`M_t = \beta_1^t`, so :math:`\bar m = \frac{1-\beta_1}{1-\beta_1^t} u +
\frac{\beta_1}{1-\beta_1^{t+1}} m`: optax's ``nadam`` (``scale_by_adam(nesterov=True)``),
whose ``eps_root`` goes inside the root, :math:`\sqrt{v/(1-\beta_2^t) + \epsilon_r}`.

**Where the product lives** (``schedule_scope``):

- ``"parameter"`` (torch, Keras, the paper): one product per parameter, advanced once
  per step. Every parameter of a step sees the same :math:`M_t`.
- ``"shared"`` (MXNet 1.x and 2.x ``Nadam``): one product for the whole optimizer,
  multiplied by :math:`\mu_t` once per *parameter* as each is updated, in tree order.
  With :math:`P` parameters, parameter :math:`i` (from 0) uses
  :math:`M = M_{t-1}^{P}\,\mu_t^{\,i+1}`: only the first parameter's first step matches
  the per-parameter form, and the others take smaller first steps (with two
  parameters the second one's first step is 0.739 of the first's at lr 1, g = 1).
  This scope depends on the order of the parameters within a step, so it is not an
  elementwise stage: it runs the same element function tensor by tensor, with each
  tensor's own scalars, written against the array namespace (NumPy, torch tensors on
  their device, ``jax.jit``).

References:
  Dozat (2016): Incorporating Nesterov Momentum into Adam. ICLR workshop.
  Sutskever, Martens, Dahl & Hinton (2013): On the importance of initialization and
  momentum in deep learning. ICML.
  Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR, arXiv:1412.6980.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.carried import Carried
from .._core.elementwise import Elementwise, Slot, cast_scalars
from .._core.gradients import GRADIENT_RANGES, Optional, gradient_stage
from .._core.namespaces import element_for, namespace_of
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import complex_ready, debias, ema, ema_square, sqrt

SCOPES = ("parameter", "shared")


def momentum_schedule(beta1: float, schedule_decay: float | None, t: int) -> float:
    """:math:`\\mu_t = \\beta_1 (1 - \\tfrac12\\, 0.96^{t \\psi})`, or :math:`\\beta_1`
    without warm-up (``schedule_decay=None``)."""
    if schedule_decay is None:
        return beta1
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * schedule_decay))


@complex_ready
def _nadam(g, mu, nu, b1, c1, b2, c2, g_coef, m_coef, inv_bc2, eps_root, eps):
    mu = ema(mu, g, b1, c1)
    nu = ema_square(nu, g, b2, c2)
    return (g_coef * g + m_coef * mu) / (sqrt(nu * inv_bc2 + eps_root) + eps), mu, nu


def _scalars(beta1, beta2, epsilon, eps_root, mu_t, mu_next, product, t) -> dict:
    """The element function's scalars, given :math:`\\mu_t`, :math:`\\mu_{t+1}` and
    the product :math:`M_t` that already includes :math:`\\mu_t`."""
    return {
        "b1": beta1,
        "c1": 1.0 - beta1,
        "b2": beta2,
        "c2": 1.0 - beta2,
        "g_coef": (1.0 - mu_t) / (1.0 - product),
        "m_coef": mu_next / (1.0 - product * mu_next),
        "inv_bc2": 1.0 / debias(beta2, t),
        "eps_root": eps_root,
        "eps": epsilon,
    }


class _ProductCache:
    """:math:`M_t = \\prod_{i \\le t} \\mu_i` as a pure function of ``t``, computed
    incrementally: O(1) per step when steps come in order (a resumed run pays once).

    ``carried``: the stage's :class:`~gradstep._core.carried.Carried`; a front that
    keeps :math:`M_{t-1}` itself as ``mu_product``, multiplied by each step's own
    :math:`\\mu_t` (torch's ``NAdam``), hands it over, and the product is then it
    times this step's :math:`\\mu_t`: another number than the derived one once
    ``beta1`` has changed during training (``OneCycleLR`` and ``CyclicLR`` cycle it)."""

    def __init__(self, beta1: float, schedule_decay: float, carried: Carried):
        self.beta1, self.schedule_decay = beta1, schedule_decay
        self.t, self.product = 0, 1.0
        self.carried = carried

    def __call__(self, t: int) -> float:
        previous = self.carried.get("mu_product")
        if previous is not None:
            return previous * momentum_schedule(self.beta1, self.schedule_decay, t)
        if t < self.t:
            self.t, self.product = 0, 1.0
        while self.t < t:
            self.t += 1
            self.product *= momentum_schedule(self.beta1, self.schedule_decay, self.t)
        return self.product


class ScaleByNadamShared(Transform):
    """NAdam's direction with MXNet's shared momentum-schedule product (see the module
    docstring): the element function of :func:`scale_by_nadam`, run tensor by tensor."""

    per_parameter_state = ("mu", "nu")  # lists indexed by parameter

    def __init__(self, beta1, beta2, epsilon, eps_root, schedule_decay):
        self.name = "scale_by_nadam"
        self.beta1, self.beta2, self.epsilon, self.eps_root = beta1, beta2, epsilon, eps_root
        self.schedule_decay = schedule_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        return {
            "count": np.zeros((), np.int64),
            "m_schedule": np.ones((), np.float64),
            "mu": _tree.unflatten(td, [Slot("mu").initial(p) for p in leaves]),
            "nu": _tree.unflatten(td, [Slot("nu").initial(p) for p in leaves]),
        }

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        mus = _tree.leaves_like(td, state["mu"])
        nus = _tree.leaves_like(td, state["nu"])
        count_ns = namespace_of(state["count"])
        product_ns = namespace_of(state["m_schedule"])
        t = count_ns.count(state["count"]) + 1
        mu_t = momentum_schedule(self.beta1, self.schedule_decay, t)
        mu_next = momentum_schedule(self.beta1, self.schedule_decay, t + 1)
        product = product_ns.astype(state["m_schedule"], state["m_schedule"])
        out, new_mu, new_nu = [], [], []
        for g, mu, nu in zip(g_leaves, mus, nus):
            product = product * mu_t  # once per parameter, as MXNet's Nadam.update
            scalars = _scalars(
                self.beta1, self.beta2, self.epsilon, self.eps_root, mu_t, mu_next, product, t
            )
            ns = namespace_of(g)
            u, mu, nu = element_for(_nadam, ns)(g, mu, nu, *cast_scalars(scalars, g))
            out.append(ns.wrap(u))
            new_mu.append(ns.wrap(mu))
            new_nu.append(ns.wrap(nu))
        new_state = {
            "count": count_ns.count_array(t, state["count"]),
            "m_schedule": product_ns.wrap(product_ns.astype(product, state["m_schedule"])),
            "mu": _tree.unflatten(td, new_mu),
            "nu": _tree.unflatten(td, new_nu),
        }
        return _tree.unflatten(td, out), new_state


_SCHEDULE_DECAY = Optional(nonnegative())


def _nadam_prepare(
    h: dict, count: int, *, beta1, beta2, eps_root, epsilon, products, schedule_decay
) -> dict:
    t = count + 1
    mu_t = momentum_schedule(beta1, schedule_decay, t)
    mu_next = momentum_schedule(beta1, schedule_decay, t + 1)
    return _scalars(beta1, beta2, epsilon, eps_root, mu_t, mu_next, products(t), t)


@hyperparams(
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    schedule_decay=_SCHEDULE_DECAY,
    schedule_scope=OneOf(SCOPES),
)
def scale_by_nadam(
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    eps_root: float = 0.0,
    schedule_decay: float | None = 0.004,
    schedule_scope: str = "parameter",
) -> Transform:
    """NAdam's direction :math:`\\bar m / (\\sqrt{\\hat v} + \\epsilon)` (no learning
    rate); see the module docstring."""
    if schedule_scope == "shared":
        return ScaleByNadamShared(beta1, beta2, epsilon, eps_root, schedule_decay)
    carried = Carried()
    products = _ProductCache(beta1, schedule_decay, carried)

    prepare = functools.partial(
        _nadam_prepare,
        beta1=beta1,
        beta2=beta2,
        eps_root=eps_root,
        epsilon=epsilon,
        products=products,
        schedule_decay=schedule_decay,
    )

    stage = Elementwise(
        "scale_by_nadam",
        _nadam,
        slots=(Slot("mu"), Slot("nu", nonnegative=True)),
        prepare=prepare,
        uses_count=True,
    )
    stage.carried = carried  # mu_product, from a front that keeps it (torch's NAdam)
    return stage


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon=nonnegative(),
    eps_root=nonnegative(),
    schedule_decay=_SCHEDULE_DECAY,
    schedule_scope=OneOf(SCOPES),
    weight_decay=nonnegative(schedulable=True),
    decoupled_weight_decay=BOOL,
    **GRADIENT_RANGES,
)
def nadam(
    learning_rate: Any = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    eps_root: float = 0.0,
    schedule_decay: float | None = 0.004,
    schedule_scope: str = "parameter",
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = True,
) -> Chain:
    r"""NAdam (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001 (MXNet, Keras).
      beta1: :math:`\beta_1` in [0, 1). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, outside the root. Default 1e-8.
      eps_root: >= 0, added inside the root to the bias-corrected :math:`v` (optax).
        Default 0.
      schedule_decay: :math:`\psi` >= 0 (torch's ``momentum_decay``), or None: no
        warm-up, :math:`\mu_t = \beta_1` (optax's ``nadam``). Default 0.004.
      schedule_scope: ``"parameter"`` (default; torch) or ``"shared"`` (MXNet): where
        the momentum-schedule product lives.
      weight_decay: :math:`\lambda` >= 0, or a schedule: coupled L2 (torch, MXNet).
        Default 0.
      decoupled_weight_decay: decay the weight outside the moments instead,
        :math:`w \leftarrow w - \eta(\ldots + \lambda w)` (torch's NAdamW). Default
        False.
      rescale_grad, clip_gradient: MXNet's gradient handling: the gradient is
        multiplied by ``rescale_grad`` (> 0, default 1) and clipped element-wise to
        ``[-clip_gradient, clip_gradient]`` (>= 0, default None: no clip).
      decay_in_clip: with both a clip and a coupled decay, clip :math:`s g + \lambda w`
        (True, default: MXNet 1.x) or add :math:`\lambda w` after the clip (False:
        MXNet 2.x).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(1)
      >>> gradstep.Optimizer(w, gradstep.nadam(1.0)).step(np.ones(1)); w.round(7)
      array([-1.0564518])

    Differences: torch's ``NAdam`` defaults to lr 2e-3 and keeps the product per
    parameter; MXNet's ``Nadam`` shares it across parameters (``"shared"``). Keras
    uses :math:`\mu_t = \beta_1(1 - \tfrac12\,0.96^{t})` and epsilon 1e-7. optax's
    ``nadam`` has no warm-up: ``schedule_decay=None`` (its learning rate is required).
    """
    decoupled = decoupled_weight_decay and (callable(weight_decay) or weight_decay != 0)
    if decoupled_weight_decay and not decoupled:
        raise ValueError(
            "nadam: invalid decoupled_weight_decay=True with weight_decay=0; valid "
            "values: decoupled_weight_decay only applies with weight_decay > 0"
        )
    gradient = gradient_stage(
        "nadam",
        rescale_grad,
        clip_gradient,
        weight_decay,
        decay_in_clip,
        default_in_clip=True,
        coupled=not decoupled,
    )
    return rule(
        "nadam",
        gradient,
        scale_by_nadam(
            beta1,
            beta2,
            epsilon,
            eps_root=eps_root,
            schedule_decay=schedule_decay,
            schedule_scope=schedule_scope,
        ),
        add_decayed_weights(weight_decay) if decoupled else None,
        scale_by_learning_rate(learning_rate),
    )
