r"""AdamP and SGDP: steps with the radial part removed on scale-invariant weights.

Symbols: :math:`g` gradient, :math:`w` parameter tensor, :math:`u` the base
optimizer's direction (Adam's :math:`\hat m/(\sqrt{\hat v}+\epsilon)` for AdamP,
the momentum buffer for SGDP), :math:`\eta` ``learning_rate``, :math:`\delta`
``delta``, :math:`r` ``wd_ratio``, :math:`\epsilon` ``epsilon``, :math:`\lambda`
``weight_decay``, :math:`\mu` ``momentum``, :math:`\tau` ``dampening``.

For a tensor of rank 2 or more, viewed as a matrix with one row per output channel
(:math:`n` columns) and as one row (:math:`N` elements), the rows' cosine
similarities between :math:`g` and :math:`w` decide whether :math:`w` is scale
invariant (a weight followed by a normalisation):

.. math::

    \text{channel} = \max_i |\cos(g_i, w_i)| < \delta/\sqrt{n},\qquad
    \text{layer} = |\cos(g, w)| < \delta/\sqrt{N}

with :math:`\cos(x, y) = \langle x, y\rangle / (\max(\|x\|, \epsilon)
\max(\|y\|, \epsilon))`. If either holds (the channel view first), the radial part
of the direction is removed, per row for the channel view and over the whole
tensor for the layer view, and the decay is scaled by :math:`r`:

.. math::

    \hat w = w / (\|w\| + \epsilon),\quad
    u \leftarrow u - \hat w\,\langle \hat w, u\rangle,\quad \rho = r

else :math:`\rho = 1`; vectors are never projected. The step is
:math:`w \leftarrow w - \eta\,(u + \lambda \rho s\, w)` with :math:`s = 1` (AdamP)
or :math:`s = 1/(1-\mu)` (SGDP).

SGDP's momentum: :math:`b \leftarrow \mu b + (1-\tau) g` (from :math:`b = 0`, so
dampening applies on the first step too, unlike torch's SGD), :math:`u = b`, or
:math:`u = g + \mu b` with ``nesterov``.

The projection is written once against the array namespace (row sums and norms of
each tensor), as a finishing stage (:mod:`gradstep._core.finishing`) around the
base direction, so it runs on NumPy, torch and JAX arrays, under ``jax.jit`` too.
On vectors only the decay remains, an element function: the stage's fused form
(:mod:`gradstep._core.fused_form`) is the base direction's stages then that decay,
so the rule runs on the numba engine on tensors of rank < 2; in a list with
matrices too, the fronts step the vectors there and the matrices on the projection's
own update (the stage is ``tensorwise``).

References:
  Heo, Chun, Oh, Han, Yun, Kim, Uh & Ha (2021): AdamP: Slowing Down the Slowdown for
  Momentum Optimizers on Scale-invariant Weights. ICLR, arXiv:2006.08217.
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.finishing import Finishing
from .._core.fused_form import FusedForm, Keyed, rank_below
from .._core.namespaces import element_for, namespace_of
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Interval, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import where
from .adam import scale_by_adam

_POSITIVE = Interval(0.0, lo_open=True)


def project_radial(
    w: Any, g: Any, u: Any, delta: float, wd_ratio: float, eps: float
) -> tuple[Any, Any]:
    """``(u, rho)``: ``u`` without its radial part where ``w`` looks scale invariant
    (see the module docstring), and the decay ratio ``rho`` (``wd_ratio`` there, else
    1). ``w``, ``g`` and ``u`` are arrays of one library, of rank >= 2."""
    ns = namespace_of(u)
    cast = ns.scalar_caster(u)
    shape = tuple(w.shape)
    rows = shape[0]
    size = 1
    for n in shape:
        size *= n
    cols = size // rows
    P, G, U = (ns.reshape(x, (rows, cols)) for x in (w, g, u))
    e = cast(eps)

    def cosine(pg, pp, gg):
        return pg / (ns.maximum(ns.sqrt(gg), e) * ns.maximum(ns.sqrt(pp), e))

    pp_rows = ns.sum(P * P, axis=1, keepdims=True)
    cos_rows = cosine(
        ns.sum(G * P, axis=1, keepdims=True), pp_rows, ns.sum(G * G, axis=1, keepdims=True)
    )
    pp_all = ns.sum(pp_rows)
    cos_all = cosine(ns.sum(G * P), pp_all, ns.sum(G * G))
    channel = ns.max_abs(cos_rows) < cast(delta / cols**0.5)
    layer = ns.max_abs(cos_all) < cast(delta / size**0.5)
    unit = P / (ns.where(channel, ns.sqrt(pp_rows), ns.sqrt(pp_all)) + e)
    radial = ns.where(channel, ns.sum(unit * U, axis=1, keepdims=True), ns.sum(unit * U))
    projected = channel | layer
    U = U - ns.where(projected, unit * radial, ns.zeros_like(U))
    # in u's dtype: torch.where of two Python numbers would give torch's default dtype
    rho = ns.where(projected, ns.astype(wd_ratio, U), ns.astype(1.0, U))
    return ns.reshape(U, shape), rho


def _projection_decay(u, w, weight_decay):
    """``u + rate w``, ``rate`` the decay's coefficient (``u`` itself where it is 0,
    also for a non-finite ``w``)."""
    return where(weight_decay == 0, u, u + weight_decay * w)


def _decay_prepare(h: dict, count: int, *, scale: float) -> dict:
    r"""The decay's coefficient :math:`\lambda s` (before :math:`\rho`)."""
    return {"weight_decay": scale * h["weight_decay"]}


class ScaleByProjection(Finishing):
    """``inner``'s direction, projected per tensor (:func:`project_radial`) against
    the gradient and the parameter, plus the decay :math:`\\lambda \\rho s w`."""

    name = "projection"
    reads_shape = True  # a real view's trailing axis would change it
    per_element_state = True  # only the wrapped stage's: the torch front may step
    # parameters of any shapes together
    tensorwise = True  # each tensor projected against its own gradient and parameter

    def __init__(
        self,
        inner: Transform,
        delta: float,
        wd_ratio: float,
        epsilon: float,
        weight_decay: float,
        decay_scale: float,
    ):
        super().__init__(inner)
        self.delta = delta
        self.wd_ratio = wd_ratio
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.decay_scale = decay_scale
        self.declared_ranges = {"weight_decay": nonnegative()}

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "weight_decay": self.declared_ranges["weight_decay"]}

    def _decay(self) -> Elementwise:
        """The decay as an elementwise stage (what a vector's update finishes with)."""
        return Elementwise(
            "projection_decay",
            _projection_decay,
            hyperparams={"weight_decay": self.weight_decay},
            prepare=functools.partial(_decay_prepare, scale=self.decay_scale),
            uses_params=True,
        )

    def fused_form(self) -> FusedForm:
        """On vectors: the inner stages, then the decay (no projection)."""
        form = Keyed(self.name, (self.inner, self._decay()), ("inner", None))
        return FusedForm(self.name, form, rank_below(2), "tensors of rank < 2")

    def finish(self, updates: list, grads: list, params: list, ctx: dict[str, Any]) -> list:
        h = {"weight_decay": ctx.get("weight_decay", self.weight_decay)}
        rate = _decay_prepare(h, 0, scale=self.decay_scale)["weight_decay"]
        # a traced override (JAX) is not a number: decay with it; a 0 adds nothing
        decays = not (isinstance(rate, (int, float)) and rate == 0)
        out = []
        for u, g, w in zip(updates, grads, params):
            ns = namespace_of(u)
            cast = ns.scalar_caster(u)
            rho = 1.0
            if len(w.shape) > 1:
                u, rho = project_radial(w, g, u, self.delta, self.wd_ratio, self.epsilon)
            if decays:
                u = element_for(_projection_decay, ns)(u, w, cast(rate) * rho)
            out.append(ns.wrap(u))
        return out


def _sgdp_momentum(g, buf, keep, gain):
    buf = keep * buf + gain * g
    return buf, buf


def _sgdp_nesterov(g, buf, keep, gain, momentum):
    buf = keep * buf + gain * g
    return g + momentum * buf, buf


def _sgdp_prepare(h: dict, count: int, *, dampening, nesterov) -> dict:
    out = {"keep": h["momentum"], "gain": 1.0 - dampening}
    if nesterov:
        out["momentum"] = h["momentum"]
    return out


def _sgdp_trace(momentum: float, dampening: float, nesterov: bool) -> Elementwise:
    return Elementwise(
        "sgdp_momentum",
        _sgdp_nesterov if nesterov else _sgdp_momentum,
        slots=(Slot("momentum_buffer"),),
        hyperparams={"momentum": momentum},
        prepare=functools.partial(_sgdp_prepare, dampening=dampening, nesterov=nesterov),
    )


_PROJECTION = dict(
    delta=_POSITIVE,
    wd_ratio=Interval(0.0, 1.0),
    epsilon=nonnegative(),
    weight_decay=nonnegative(),
)


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    epsilon_placement=OneOf(("outside_uncorrected", "outside")),
    **_PROJECTION,
)
def adamp(
    learning_rate: Any = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    epsilon_placement: str = "outside_uncorrected",
) -> Chain:
    r"""AdamP: Adam's direction, projected on scale-invariant weights (see the module
    docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, of Adam's denominator and of the projection.
        Default 1e-8.
      weight_decay: :math:`\lambda` >= 0: decoupled, scaled by :math:`\rho`.
        Default 0.
      delta: :math:`\delta` > 0, the cosine threshold. Default 0.1.
      wd_ratio: :math:`r` in [0, 1], the decay's scale on projected tensors.
        Default 0.1.
      epsilon_placement: where Adam's :math:`\epsilon` sits:
        ``"outside_uncorrected"`` (default, pytorch-optimizer: added to
        :math:`\sqrt{v}`) or ``"outside"`` (timm and the authors' code: added to
        :math:`\sqrt{\hat v}`); see :func:`gradstep.adam`.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([[3.0, 4.0]])
      >>> opt = gradstep.Optimizer(w, gradstep.adamp(0.1))
      >>> opt.step(np.array([[-4.0, 3.0]])); w.round(4)  # the gradient is tangential
      array([[3.112, 3.916]])

    Differences: pytorch-optimizer's ``AdamP`` (``weight_decouple=True``, its
    default) adds :math:`\epsilon` to :math:`\sqrt{v}`; timm's ``AdamP`` and the
    authors' package add it to :math:`\sqrt{v}/\sqrt{1-\beta_2^t}`. Their
    ``nesterov`` option, pytorch-optimizer's ``fixed_decay``, ``adanorm``, ``use_gc``
    and ``cautious``, and timm's ``caution`` are not offered; pytorch-optimizer's
    ``weight_decouple=False`` adds the decay to the gradient after the moments have
    used it, so it has no effect, and is not offered either.
    """
    return rule(
        "adamp",
        ScaleByProjection(
            scale_by_adam(beta1, beta2, epsilon, epsilon_placement=epsilon_placement),
            delta,
            wd_ratio,
            epsilon,
            weight_decay,
            1.0,
        ),
        scale_by_learning_rate(learning_rate),
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    momentum=decay_rate(),
    dampening=Interval(0.0, 1.0),
    nesterov=BOOL,
    **_PROJECTION,
)
def sgdp(
    learning_rate: Any = 0.1,
    momentum: float = 0.9,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    *,
    nesterov: bool = False,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    epsilon: float = 1e-8,
) -> Chain:
    r"""SGDP: SGD with momentum, projected on scale-invariant weights (see the
    module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.1.
      momentum: :math:`\mu` in [0, 1). Default 0.9.
      dampening: :math:`\tau` in [0, 1], applied from the first step. Default 0.
      weight_decay: :math:`\lambda` >= 0: decoupled, scaled by
        :math:`\rho / (1-\mu)`. Default 0.
      nesterov: :math:`u = g + \mu b`. Default False.
      delta: :math:`\delta` > 0, the cosine threshold. Default 0.1.
      wd_ratio: :math:`r` in [0, 1], the decay's scale on projected tensors.
        Default 0.1.
      epsilon: :math:`\epsilon` >= 0, of the projection. Default 1e-8.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([[3.0, 4.0]])
      >>> opt = gradstep.Optimizer(w, gradstep.sgdp(0.1))
      >>> opt.step(np.array([[-4.0, 3.0]])); w.round(4)  # the gradient is tangential
      array([[3.4, 3.7]])

    Differences: timm's and pytorch-optimizer's ``SGDP`` (decoupled decay, their
    only working form) have no default learning rate and momentum 0; gradstep
    defaults to 0.1 and 0.9. Unlike ``torch.optim.SGD``, the buffer starts at 0, so
    dampening already scales the first gradient. pytorch-optimizer's
    ``fixed_decay`` and timm's ``caution`` are not offered.
    """
    return rule(
        "sgdp",
        ScaleByProjection(
            _sgdp_trace(momentum, dampening, nesterov),
            delta,
            wd_ratio,
            epsilon,
            weight_decay,
            1.0 / (1.0 - momentum),
        ),
        scale_by_learning_rate(learning_rate),
    )
