"""The Mechanic wrapper kind: a learned scale for the cumulative step of any rule.

A stage kind the engines must know: it reads the raw gradient beside the inner rule's
update and the parameters, and reduces over every tensor (a dot product and two
norms) into scalar state carried across steps; hence in the core.
:func:`gradstep.rules.mechanic.mechanize` builds it (the math and its symbols are
documented there).

The math is written once, in three parts every engine shares: element helpers for
the per-element work (:func:`mechanic_displacement`, :func:`mechanic_products`,
:func:`mechanic_moved`), :func:`mechanic_combine` for the scalar recursion (element
operations only), and :func:`mechanic_step`, which strings them together on leaf
lists for the eager engine (the arrays' namespace) and the JAX engine
(``jax.numpy``'s). The fused engines run the same parts as a global reduction stage
after the inner rule's stages (:func:`fused_stage`): the sums as a reduction pass
reading the gradient, the parameter and the reference point, then everything else
in the one main pass.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import tree as _tree
from .elementwise import Slot, stored_update
from .global_reduction import GlobalReduction
from .namespaces import element_for, namespace_of
from .transform import Transform
from .xmath import element_helper, maximum, minimum, sqrt, where

#: the scalar state kept per :math:`\\beta_j`, as ``r1, r2, ...``: 0-d values, so every
#: front keeps them as it keeps a step count (torch's per-parameter state holds no
#: shared vectors)
VECTORS = ("r", "m", "v", "s")


def betas(n: int) -> list[float]:
    r""":math:`\beta_j = 1 - 10^{-j}`, :math:`j = 1..n` (0.9, 0.99, ...)."""
    return [1.0 - 0.1**j for j in range(1, n + 1)]


def state_keys(n: int) -> list[str]:
    """The names of the scalar state: ``r1..rn, m1..mn, v1..vn, s1..sn``."""
    return [f"{name}{j}" for name in VECTORS for j in range(1, n + 1)]


def scalar_like(like: Any) -> Any:
    """A 0-d value of the dtype the scalar state is kept in for parameters like
    ``like``: their floating dtype, but float32 for 16-bit ones (the arithmetic runs
    in float32 or wider, only the storage changes; in float16, epsilon 1e-8 would be
    0 and the first step NaN). The one place that decides it: every engine and front
    keeps the state :func:`initial_scalars` makes."""
    ns = namespace_of(like)
    return ns.widened(ns.astype(0.0, like))


def initial_scalars(like: Any, n: int, s_init: float) -> dict:
    """``r``, ``m``, ``v`` zero and every ``s_j`` at ``s_init``, as 0-d arrays of
    ``like``'s library and device, of :func:`scalar_like`'s dtype."""
    like = scalar_like(like)
    ns = namespace_of(like)
    return {
        key: ns.wrap(ns.astype(s_init if key[0] == "s" else 0.0, like)) for key in state_keys(n)
    }


# -- the per-element math (element helpers: every engine runs the same functions) ----


@element_helper
def mechanic_displacement(w, x0, total, eps):
    """:math:`\\Delta = (x - x_\\text{ref}) / (S + \\epsilon)`."""
    return (w - x0) / (total + eps)


@element_helper
def mechanic_products(g, w, delta):
    """The four arrays summed over every element: :math:`g^2, x^2, g\\Delta,
    x\\Delta`."""
    return g * g, w * w, g * delta, w * delta


@element_helper
def mechanic_moved(u, w, x0, delta, new_total):
    """The update :math:`x_\\text{ref} + S'(\\Delta + u) - x`."""
    return (x0 + new_total * (delta + u)) - w


def mechanic_terms(g, w, x0, first, total, eps):
    """The fused engines' terms: :func:`mechanic_products` at the reference of this
    step (the parameter itself on the first update: ``first`` > 0)."""
    x0 = where(first > 0, w, x0)
    return mechanic_products(g, w, mechanic_displacement(w, x0, total, eps))


def mechanic_element(u, w, x0, first, total, eps, new_total):
    """The fused engines' element phase: the update and the reference kept."""
    x0 = where(first > 0, w, x0)
    delta = mechanic_displacement(w, x0, total, eps)
    return mechanic_moved(u, w, x0, delta, new_total), x0


# -- the scalar math ----------------------------------------------------------------


def scale_total(scalars: dict, n: int) -> Any:
    """:math:`S = \\sum_j s_j`, added in order."""
    total = scalars["s1"]
    for j in range(2, n + 1):
        total = total + scalars[f"s{j}"]
    return total


def mechanic_combine(
    sums: tuple, old: dict, scalars: dict, *, n: int, hyper: dict, narrow: Any
) -> tuple[dict, dict]:
    """The new scalar state and ``{"new_total": S'}`` from the four sums of
    :func:`mechanic_products` (``grad_sq, param_sq, grad_delta, param_delta``), the
    old state ``old`` (``{r1: .., s1: ..}``) and ``scalars["total"]``, the scale
    :math:`S` in the sums' dtype: a global reduction's ``combine``. ``narrow``
    converts a value to the dtype of the recursion (the eager engines: the state's;
    the fused ones keep float64). Element operations only, called by this function
    itself (engines bind them to their namespace): it runs on NumPy, torch and
    traced JAX values."""
    grad_sq, param_sq, grad_delta, param_delta = sums
    total = scalars["total"]
    wd, eps, s_init = hyper["weight_decay"], hyper["epsilon"], hyper["s_init"]
    # h = <g + c x, Delta> with c = wd S |g| / (|x| + eps): the decayed gradient's
    # inner product with the displacement, without forming the decayed gradient
    decay = wd * total * sqrt(grad_sq) / (sqrt(param_sq) + eps)
    # optax's sign: its h is <g, x_ref - x>; here the displacement is x - x_ref
    h = -narrow(grad_delta + decay * param_delta)
    zero = narrow(0.0)
    new = {}
    for j, b in enumerate(betas(n), start=1):
        beta, m_old, s_old = narrow(b), old[f"m{j}"], old[f"s{j}"]
        clipped = minimum(maximum(h, -m_old), m_old)
        m = maximum(beta * m_old, maximum(h, -h) + eps)
        v = beta * beta * old[f"v{j}"] + h * h
        r = beta * old[f"r{j}"] + clipped * s_old
        new[f"r{j}"], new[f"m{j}"], new[f"v{j}"] = r, m, v
        new[f"s{j}"] = ((s_init / n) * m + maximum(r, zero)) / (sqrt(v) + eps)
    new = {key: new[key] for key in state_keys(n)}
    return new, {"new_total": scale_total(new, n)}


def mechanic_step(
    g: list,
    w: list,
    u: list,
    reference: list,
    scalars: dict,
    first: Any,
    hyper: dict,
    ns: Any,
) -> tuple[list, list, dict]:
    """One Mechanic step on leaf lists (see :func:`gradstep.rules.mechanic.mechanize`).

    ``g`` the raw gradients, ``w`` the parameters, ``u`` the inner rule's updates,
    ``reference`` the kept reference point, ``scalars`` ``{r1: .., s1: ..}``, ``first``
    whether this is the first update (a bool, or a traced one), ``hyper``
    ``{weight_decay, epsilon, s_init}``. Returns ``(updates, new reference, new
    scalars)``. The element math runs in float32 or wider (16-bit arrays are
    widened when read, as every element function's inputs), the sums in the
    library's widest float, the scalar recursion in the state's dtype
    (:func:`scalar_like`); the reference point is kept in the parameters' dtype and
    the updates are returned as :func:`~gradstep._core.elementwise.stored_update`
    returns an element function's.
    """
    if not g:
        return [], [], dict(scalars)
    n = len(scalars) // len(VECTORS)
    like = scalars["s1"]
    if namespace_of(like) is not ns:
        # a front keeps the state as NumPy 0-d values (the torch front): the library's
        # own, of the state's dtype, on the vectors' device (not the library's default
        # dtype, which would round float64 state to float32)
        like = ns.constant(np.asarray(like), g[0])
    # the state as the library's 0-d values
    narrow = functools.partial(ns.astype, like=like)
    scalars = {key: narrow(scalars[key]) for key in state_keys(n)}
    if isinstance(first, bool):
        # a copy: the fronts update the parameters in place
        reference = [ns.copy(x) for x in w] if first else list(reference)
    else:
        reference = [ns.where(first, x, x0) for x, x0 in zip(w, reference)]
    given = g
    # the math in float32 or wider whatever the storage ("opmath")
    g, w, u = ([ns.widened(x) for x in leaves] for leaves in (g, w, u))
    wide_reference = [ns.widened(x) for x in reference]
    displacement = element_for(mechanic_displacement, ns)
    products = element_for(mechanic_products, ns)
    total, eps = scale_total(scalars, n), hyper["epsilon"]
    # displacement from the reference in units of the scale (float64 sums where the
    # library has them)
    delta = [
        displacement(x, x0, ns.astype(total, x), ns.astype(eps, x))
        for x, x0 in zip(w, wide_reference)
    ]
    sums = None
    for gi, xi, di in zip(g, w, delta):
        parts = [ns.wide_sum(p) for p in products(gi, xi, di)]
        sums = parts if sums is None else [a + b for a, b in zip(sums, parts)]
    combine = functools.partial(mechanic_combine, n=n, hyper=hyper, narrow=narrow)
    out, reduced = element_for(combine, ns)(
        tuple(sums), scalars, {"total": ns.astype(total, sums[0])}
    )
    new_total = reduced["new_total"]
    moved = element_for(mechanic_moved, ns)
    updates = [
        stored_update(moved(ui, x, x0, di, ns.astype(new_total, x)), gi, read, ns)
        for x, x0, di, ui, gi, read in zip(w, wide_reference, delta, u, given, g)
    ]
    return updates, reference, {k: ns.wrap(v) for k, v in out.items()}


class Mechanize(Transform):
    """Run ``inner`` (a whole rule: its update is the step added to the parameters)
    and rescale its cumulative step with :func:`mechanic_step`."""

    per_parameter_state = ("reference",)  # lists indexed by parameter

    per_element_state = True  # the reference point per element; the rest shared

    def __init__(
        self, inner: Transform, weight_decay: float, epsilon: float, s_init: float, num_betas: int
    ):
        self.inner = inner
        self.weight_decay = weight_decay
        self.epsilon = epsilon
        self.s_init = s_init
        self.num_betas = num_betas
        self.name = "mechanize"

    def hyper(self) -> dict:
        return {"weight_decay": self.weight_decay, "epsilon": self.epsilon, "s_init": self.s_init}

    def fused_stage(self) -> GlobalReduction:
        """This step's own work as the fused engines run it, after the inner rule's
        stages (:func:`fused_stage`)."""
        return fused_stage(self)

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        state = {"count": _count0(), "inner": self.inner.init(params)}
        state["reference"] = _tree.unflatten(td, [namespace_of(p).copy(p) for p in leaves])
        like = leaves[0] if leaves else _float0()
        state.update(initial_scalars(like, self.num_betas, self.s_init))
        return state

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if params is None:
            raise ValueError(f"{self.name}: this transform needs params in update()")
        updates, inner = self.inner.update(grads, state["inner"], params, **ctx)
        g, td = _tree.flatten(grads)
        w = _tree.leaves_like(td, params)
        u = _tree.leaves_like(td, updates)
        x0 = _tree.leaves_like(td, state["reference"])
        count = int(state["count"])
        ns = namespace_of(g[0]) if g else namespace_of(state["s1"])
        scalars = {k: state[k] for k in state_keys(self.num_betas)}
        out, reference, scalars = mechanic_step(g, w, u, x0, scalars, count == 0, self.hyper(), ns)
        new_state = {
            "count": _count(count + 1),
            "inner": inner,
            "reference": _tree.unflatten(td, reference),
            **scalars,
        }
        return _tree.unflatten(td, out), new_state


# -- the fused engines' form: a global reduction stage after the inner rule's ------


def _unchanged(value: Any) -> Any:
    return value


def _prepare(h: dict, count: Any, *, n: int, eps: float) -> dict:
    """The element phase's scalars: ``first`` (1 on the first update, else 0), the
    scale :math:`S` and :math:`\\epsilon`."""
    return {"first": where(count == 0, 1.0, 0.0), "total": scale_total(h, n), "eps": eps}


def fused_stage(t: Mechanize) -> GlobalReduction:
    """Mechanic as the fused engines run it: a global reduction stage placed after
    the inner rule's stages, in the wrapper's state (its reference point as a slot,
    its scalar state carried). Its element function takes the inner rule's update,
    its terms the raw gradient: the reduction pass runs the stages before the inner
    rule's only (:attr:`gradstep.engines.plan.Stage.terms_from`). The math is this
    module's, the eager engine's: :func:`mechanic_terms`, :func:`mechanic_combine`,
    :func:`mechanic_element`."""
    n = t.num_betas
    return GlobalReduction(
        t.name,
        mechanic_element,
        terms=mechanic_terms,
        combine=functools.partial(mechanic_combine, n=n, hyper=t.hyper(), narrow=_unchanged),
        reduced_scalars=("new_total",),
        carried={key: t.s_init if key[0] == "s" else 0.0 for key in state_keys(n)},
        slots=(Slot("reference", fill="params"),),
        prepare=functools.partial(_prepare, n=n, eps=t.epsilon),
        uses_params=True,
        uses_count=True,
    )


def _count0() -> Any:
    return np.zeros((), np.int64)


def _count(value: int) -> Any:
    return np.asarray(value, np.int64)


def _float0() -> Any:
    return np.zeros((), np.float64)
