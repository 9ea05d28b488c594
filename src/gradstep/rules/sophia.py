r"""Sophia: momentum divided by an average of a diagonal Hessian estimate, clipped
element by element.

Symbols: :math:`g` gradient, :math:`m` slot ``mu``, :math:`h` slot ``nu`` (the
average of the Hessian diagonal estimates), :math:`\hat h` the step's estimate,
:math:`t` the 1-based step, :math:`k` ``update_interval``, :math:`\eta`
``learning_rate``, :math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``,
:math:`\gamma` ``gamma``, :math:`\epsilon` ``epsilon``, :math:`\rho`
``clip_threshold``, :math:`\lambda` ``weight_decay``.

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\qquad
    h \leftarrow \beta_2 h + (1-\beta_2)\hat h
    \quad\text{on refresh steps } t \equiv 1 \pmod k

    w \leftarrow w - \eta\left(\mathrm{clip}\!\left(
        \frac{\hat m}{\max(\gamma h, \epsilon)}, -\rho, \rho\right) + \lambda w\right)

with :math:`\hat m = m/(1-\beta_1^t)` when ``bias_correction=True`` (optax) and
:math:`\hat m = m` otherwise (the paper, pytorch-optimizer). ``refresh="before"``
(the paper) folds the step's estimate into :math:`h` before the division;
``"after"`` (optax) divides by the previous :math:`h` and refreshes it afterwards.
Where :math:`h` is small or negative the step is :math:`\pm\eta\rho`: sign
momentum, the paper's safeguard.

**The Hessian estimate is a hook**, an extra input of a refresh step (any other step
uses none); the update itself stays one element function (momentum, division,
clip), and the estimate only enters the average :math:`h`:

- ``hessian=``: the estimate itself, a tree like the gradients (any estimator:
  Gauss-Newton-Bartlett :math:`B\,\hat g\odot\hat g` with sampled labels,
  Hutchinson, an exact diagonal);
- ``hvp=``: a function taking a tree of vectors :math:`z` (like the parameters) and
  returning the Hessian-vector products :math:`Hz`; the step draws Rademacher
  :math:`z` from ``(seed, step)`` and takes Hutchinson's estimate
  :math:`\hat h = z\odot Hz` (SophiaH).

The fused engines (numba's: ``gradstep.Optimizer``, the torch front's CPU parameters;
Triton's: its CUDA parameters) run the element function compiled and the fold into
:math:`h` as a host step around their launch, with the code of the eager update
(:meth:`HessianAverage.fused_form`; on the Triton engine its torch operations are
queued on the device).

Both are keyword arguments of the step: ``Optimizer.step(grads, hessian=h)``,
``transform.update(grads, state, params, hvp=f)`` on NumPy arrays, torch tensors or
JAX arrays (under ``jax.jit``: close over ``hvp``, e.g.
``lambda z: jax.jvp(jax.grad(loss), (params,), (z,))[1]``; on torch,
``torch.autograd.grad(grads, params, z)`` of gradients taken with
``create_graph=True``). The torch class ``gradstep.torch.Sophia`` takes
``step(hessian=[...])``, or builds ``hvp=`` itself from gradients taken with
``create_graph=True``. A refresh step without either leaves :math:`h` as it is,
so a run that never supplies one is clipped sign momentum.

References:
  Liu, Li, Hall, Liang & Ma (2024): Sophia: A Scalable Stochastic Second-order
  Optimizer for Language Model Pre-training. ICLR, arXiv:2305.14342.
  Hutchinson (1989): A stochastic estimator of the trace of the influence matrix for
  Laplacian smoothing splines. Communications in Statistics - Simulation and
  Computation 18(3).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Elementwise, Slot, cast_scalars
from .._core.fused_form import FusedForm, HostWrite, Keyed, every_shape
from .._core.namespaces import element_for, namespace_of, nan_to_zero
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Interval, OneOf, decay_rate, hyperparams, nonnegative
from .._core.xmath import clip, ema, maximum
from .layerwise import NoneOr

REFRESH = ("before", "after")
#: the step's keyword arguments that carry the Hessian estimate
HOOKS = ("hessian", "hvp")


def _sophia(g, mu, nu, b1, c1, corr1, gamma, eps, low, high):
    mu = ema(mu, g, b1, c1)
    return clip(mu * corr1 / maximum(gamma * nu, eps), low, high), mu, nu


def _prepare(h: dict, count: Any, *, bias_correction, clip_threshold) -> dict:
    b1 = h["beta1"]
    t = count + 1
    limit = float("inf") if clip_threshold is None else clip_threshold
    return {
        "b1": b1,
        "c1": 1.0 - b1,
        "corr1": 1.0 / (1.0 - b1**t) if bias_correction else 1.0,
        "gamma": h["gamma"],
        "eps": h["epsilon"],
        "low": -limit,
        "high": limit,
    }


def scale_by_sophia_step(
    beta1: float, gamma: float, epsilon: float, clip_threshold: float | None, bias_correction: bool
) -> Elementwise:
    """The element math of a Sophia step: momentum, division by the average Hessian
    ``nu``, clip (``nu`` is read, not changed: :class:`HessianAverage` keeps it)."""
    return Elementwise(
        "scale_by_sophia",
        _sophia,
        slots=(Slot("mu"), Slot("nu")),
        hyperparams={"beta1": beta1, "gamma": gamma, "epsilon": epsilon},
        prepare=functools.partial(
            _prepare, bias_correction=bias_correction, clip_threshold=clip_threshold
        ),
        uses_count=True,
    )


class HessianAverage(Transform):
    """The hook around :func:`scale_by_sophia_step`: on a refresh step, the estimate
    given as ``hessian=`` (or Hutchinson's from ``hvp=``) is folded into the inner
    stage's ``nu`` before or after the inner step (see the module docstring)."""

    name = "sophia"
    folds_slots = ("nu",)  # the estimates are folded into the inner stage's nu

    def __init__(self, inner: Elementwise, beta2, update_interval, refresh, seed):
        self.inner = inner
        self.beta2 = beta2
        self.update_interval = update_interval
        self.refresh = refresh
        self.seed = seed

    def init(self, params: Any) -> dict:
        return {"inner": self.inner.init(params)}

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), **dict.fromkeys(HOOKS)}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        inner = state["inner"]
        fold = self._fold_of(td, g_leaves, inner["count"], ctx)
        if fold is not None and self.refresh == "before":
            inner = {**inner, "nu": self._folded(td, inner["nu"], *fold)}
        updates, inner = self._step(grads, inner, fold[2] if fold else None, ctx)
        if fold is not None and self.refresh == "after":
            inner = {**inner, "nu": self._folded(td, inner["nu"], *fold)}
        return updates, {"inner": inner}

    def _fold_of(self, td: Any, g_leaves: list, count: Any, ctx: dict) -> tuple | None:
        """Take the step's estimate out of ``ctx``: ``(estimates, hvp, step, due)``
        for :meth:`_folded` where one is given and the step may be a refresh step,
        else None; a ``ValueError`` for invalid inputs (before anything changes)."""
        hessian, hvp = ctx.pop("hessian", None), ctx.pop("hvp", None)
        if hessian is not None and hvp is not None:
            raise ValueError("sophia: hessian= and hvp= given; valid values: one of them")
        # an estimate is checked whenever it is given, used on refresh steps
        estimates = None if hessian is None else _estimate_leaves(td, hessian, g_leaves)
        step = namespace_of(count).count(count)
        due = step % self.update_interval == 0
        if (estimates is None and hvp is None) or due is False:
            return None
        return estimates, hvp, step, due

    def fused_form(self) -> FusedForm:
        """The inner stage, compiled, with :meth:`_host_fold` as its host step: the
        numba engine folds the estimate into ``nu`` with this transform's own code
        (:mod:`gradstep._core.fused_form`)."""
        form = Keyed(self.name, (self.inner,), ("inner",))
        return FusedForm(
            self.name, form, every_shape, "tensors of any shape", host=self._host_fold, inputs=HOOKS
        )

    def _host_fold(self, state: dict, params: Any, g_leaves: list, ctx: dict) -> HostWrite | None:
        """The fused form's host step: on a refresh step given an estimate, the new
        ``nu`` (:meth:`_folded`), written before or after the launch (``refresh``)."""
        if ctx.get("hessian") is None and ctx.get("hvp") is None:
            return None  # the kernel's step alone
        td = _tree.flatten(params)[1]
        fold = self._fold_of(td, g_leaves, state["inner"]["count"], dict(ctx))
        if fold is None:
            return None
        nu = self._folded(td, state["inner"]["nu"], *fold)
        return HostWrite(self.refresh, {("inner", "nu"): _tree.leaves_like(td, nu)})

    def _step(self, grads: Any, inner: dict, step: Any, ctx: dict) -> tuple[Any, dict]:
        """The inner stage's step: :meth:`Elementwise.update` where the count is a
        number; under ``jax.jit`` (a traced count, which that method would read in
        Python) the same element function over every leaf."""
        stage = self.inner
        if not namespace_of(inner["count"]).is_traced(inner["count"]):
            return stage.update(grads, inner, None, **ctx)
        if step is None:
            step = namespace_of(inner["count"]).count(inner["count"])
        g_leaves, td = _tree.flatten(grads)
        slots = [_tree.leaves_like(td, inner[s.name]) for s in stage.slots]
        scalars = stage.scalars(step, ctx)
        updates, new_slots = [], [[] for _ in stage.slots]
        for i, g in enumerate(g_leaves):
            ns = namespace_of(g)
            stored = [leaves[i] for leaves in slots]
            args = [ns.widened(a) for a in [g, *stored]]
            u, *values = element_for(stage.element, ns)(*args, *cast_scalars(scalars, args[0]))
            for k, value in enumerate(values):
                if stage.clear_nan_slots:  # Dandelion's clear_nan, as Elementwise.update
                    value = nan_to_zero(value, ns)
                new_slots[k].append(ns.stored_like(ns.wrap(value), stored[k]))
            updates.append(ns.wrap(u if args[0] is g else ns.stored_like(ns.wrap(u), g)))
        new_inner = {"count": namespace_of(inner["count"]).count_array(step + 1, inner["count"])}
        for slot, values in zip(stage.slots, new_slots):
            new_inner[slot.name] = _tree.unflatten(td, values)
        return _tree.unflatten(td, updates), new_inner

    def _folded(self, td, nu, estimates, hvp, step, due) -> Any:
        """``nu`` with the step's estimate folded in; under ``jax.jit`` (``due``
        traced) a branch of the graph, so ``hvp`` runs on refresh steps only."""
        nu_leaves = _tree.leaves_like(td, nu)
        if not nu_leaves:
            return nu

        def fold(leaves: list) -> list:
            found = estimates
            if found is None:
                found = hutchinson(hvp, leaves, td, self.seed, step)
            out = []
            for v, e in zip(leaves, found):
                ns = namespace_of(v)
                cast = ns.scalar_caster(v)
                out.append(ns.wrap(cast(self.beta2) * v + cast(1.0 - self.beta2) * ns.astype(e, v)))
            return out

        if due is True:
            return _tree.unflatten(td, fold(nu_leaves))
        kept = namespace_of(nu_leaves[0]).cond(due, fold, list, nu_leaves)
        return _tree.unflatten(td, list(kept))


def _estimate_leaves(td: Any, hessian: Any, g_leaves: list) -> list:
    """The leaves of ``hessian`` matched to the gradients' structure ``td`` and shapes
    (a ``ValueError`` otherwise); for a flat sequence of parameters, its entries may
    be any array-likes (nested lists: what a recorded fixture holds)."""
    flat = td.kind in ("list", "tuple") and all(c.kind == "leaf" for c in td.children)
    if flat and type(hessian) in (list, tuple) and len(hessian) == td.num_leaves:
        leaves = list(hessian)
    else:
        leaves = _tree.matching_leaves(td, hessian, "sophia: hessian")
    out = []
    for e, g in zip(leaves, g_leaves):
        e = e if hasattr(e, "shape") else np.asarray(e)
        if tuple(np.shape(e)) != tuple(np.shape(g)):
            raise ValueError(
                f"sophia: invalid hessian: an estimate of shape {tuple(np.shape(e))} for a "
                f"gradient of shape {tuple(np.shape(g))}; valid values: a tree like the "
                "gradients"
            )
        out.append(e)
    return out


def hutchinson(hvp: Any, likes: list, td: Any, seed: int, step: Any) -> list:
    r"""Hutchinson's estimate :math:`z \odot Hz` of the Hessian diagonal, leaf by
    leaf, with Rademacher :math:`z` drawn from ``(seed, step)`` (signs of the
    namespace's normal draws) and ``hvp(z)`` the Hessian-vector products (a tree
    like ``z``)."""
    if not likes:
        return []
    ns = namespace_of(likes[0])
    normals = ns.normals(seed, step, likes, 1.0)
    probes = [ns.wrap(ns.astype(ns.where(z < 0, -1.0, 1.0), z)) for z in normals]
    products = _tree.matching_leaves(td, hvp(_tree.unflatten(td, probes)), "sophia: hvp")
    return [z * ns.astype(p, z) for z, p in zip(probes, products)]


_BETA = decay_rate()
_POSITIVE = Interval(0.0, lo_open=True)


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=_BETA,
    beta2=_BETA,
    epsilon=_POSITIVE,
    gamma=_POSITIVE,
    clip_threshold=NoneOr(_POSITIVE),
    update_interval=Interval(1, integer=True),
    weight_decay=nonnegative(schedulable=True),
    bias_correction=BOOL,
    refresh=OneOf(REFRESH),
    seed=Interval(0, integer=True),
)
def sophia(
    learning_rate: Any = 1e-4,
    beta1: float = 0.965,
    beta2: float = 0.99,
    epsilon: float = 1e-12,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    weight_decay: Any = 0.0,
    *,
    bias_correction: bool = False,
    refresh: str = "before",
    seed: int = 0,
    weight_decay_mask: Any = None,
) -> Chain:
    r"""Sophia (see the module docstring for the math, the symbol map and how a step
    receives its Hessian estimate).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 1e-4.
      beta1: :math:`\beta_1` in [0, 1). Default 0.965 (the paper, optax).
      beta2: :math:`\beta_2` in [0, 1): the average over refresh steps. Default 0.99.
      epsilon: :math:`\epsilon` > 0, the floor of :math:`\gamma h`. Default 1e-12
        (the paper, pytorch-optimizer; optax 1e-8).
      gamma: :math:`\gamma` > 0, scales :math:`h`. Default 0.01 (the paper's
        Sophia-H, optax).
      clip_threshold: :math:`\rho` > 0, or None (no clip). Default 1.
      update_interval: :math:`k`, an integer >= 1: the estimate is taken on steps
        1, k+1, 2k+1, ... Default 10.
      weight_decay: :math:`\lambda` >= 0, or a schedule: decoupled decay. Default 0.
      bias_correction: divide the momentum by :math:`1-\beta_1^t` (optax). Default
        False (the paper).
      refresh: ``"before"`` (default, the paper) or ``"after"`` (optax): whether a
        refresh step's division sees the new average.
      seed: an integer >= 0: the key of the Rademacher probes of ``hvp=``. Default 0.
      weight_decay_mask: a tree of booleans (or a function of the parameters
        returning one) selecting the tensors to decay; ``None``: all. Needs
        ``weight_decay`` > 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.sophia(0.1, gamma=1.0))
      >>> opt.step(np.array([0.5, -0.02]), hessian=np.array([10.0, 0.5]))
      >>> w  # m/(gamma h) = [0.0175/0.1, -0.0007/0.005]: the first is clipped
      array([0.9825, 1.014 ])

    Differences: pytorch-optimizer's ``SophiaH(lr, betas, p, update_period, eps)``
    is ``learning_rate=lr``, ``gamma=1``, ``clip_threshold=p``,
    ``bias_correction=False``, ``refresh="before"``, with its Hutchinson estimate
    (Gaussian probes by default, Rademacher with
    ``hessian_distribution="rademacher"``) or ``step(hessian=...)``; it refreshes on
    any step given an estimate, gradstep on refresh steps only. optax's
    ``contrib.sophia(learning_rate, b1, b2, eps, weight_decay, gamma,
    clip_threshold, update_interval, hessian_diagonal_fn)`` is
    ``bias_correction=True``, ``refresh="after"``; its estimator is a transform
    called with ``obj_fn``, here ``hvp=`` (or ``hessian=`` for any other
    estimator). The win-rate printing of optax is not offered. torch, MXNet and
    Keras have no Sophia.
    """
    has_decay = callable(weight_decay) or weight_decay != 0
    if weight_decay_mask is not None and not has_decay:
        raise ValueError(
            "sophia: invalid weight_decay_mask with weight_decay=0; valid values: a mask "
            "only together with a weight_decay > 0"
        )
    stage = scale_by_sophia_step(beta1, gamma, epsilon, clip_threshold, bias_correction)
    return rule(
        "sophia",
        HessianAverage(stage, beta2, update_interval, refresh, seed),
        add_decayed_weights(weight_decay, weight_decay_mask) if has_decay else None,
        scale_by_learning_rate(learning_rate),
    )
