"""The Mechanic wrapper kind: a learned scale for the cumulative step of any rule.

A stage kind the engines must know: it reads the raw gradient beside the inner rule's
update and the parameters, and reduces over every tensor (a dot product and two
norms) into scalar state carried across steps, which no elementwise plan holds; hence
in the core. :func:`gradstep.rules.mechanic.mechanize` builds it (the math and its
symbols are documented there). :func:`mechanic_step` is the math, written once
against the array namespace: the eager engine calls it with the arrays' namespace,
the JAX engine with ``jax.numpy``'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import tree as _tree
from .namespaces import namespace_of
from .transform import Transform

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


def initial_scalars(like: Any, n: int, s_init: float) -> dict:
    """``r``, ``m``, ``v`` zero and every ``s_j`` at ``s_init``, as 0-d arrays of
    ``like``'s library, floating dtype and device."""
    ns = namespace_of(like)
    return {
        key: ns.wrap(ns.astype(s_init if key[0] == "s" else 0.0, like)) for key in state_keys(n)
    }


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
    scalars)``. The sums run in the library's widest float; the scalar recursion in
    the vectors' dtype, as the reference implementation does.
    """
    if not g:
        return [], [], dict(scalars)
    n = len(scalars) // len(VECTORS)
    like = scalars["s1"]
    vectors = {
        name: _vector([scalars[f"{name}{j}"] for j in range(1, n + 1)], like, ns)
        for name in VECTORS
    }
    if isinstance(first, bool):
        # a copy: the fronts update the parameters in place
        reference = [ns.copy(x) for x in w] if first else list(reference)
    else:
        reference = [ns.where(first, x, x0) for x, x0 in zip(w, reference)]
    wd, eps, s_init = hyper["weight_decay"], hyper["epsilon"], hyper["s_init"]
    total = ns.sum(vectors["s"])  # S, the current scale
    # displacement from the reference in units of the scale (float64 sums where the
    # library has them): Delta = (x - x_ref) / (S + eps)
    delta = [(x - x0) / (ns.astype(total, x) + ns.astype(eps, x)) for x, x0 in zip(w, reference)]
    grad_sq = param_sq = grad_delta = param_delta = None
    for gi, xi, di in zip(g, w, delta):
        parts = (ns.wide_sum(gi * gi), ns.wide_sum(xi * xi), ns.wide_sum(gi * di))
        parts += (ns.wide_sum(xi * di),)
        if grad_sq is None:
            grad_sq, param_sq, grad_delta, param_delta = parts
        else:
            grad_sq, param_sq = grad_sq + parts[0], param_sq + parts[1]
            grad_delta, param_delta = grad_delta + parts[2], param_delta + parts[3]
    # h = <g + c x, Delta> with c = wd S |g| / (|x| + eps): the decayed gradient's
    # inner product with the displacement, without forming the decayed gradient
    decay = wd * ns.astype(total, grad_sq) * ns.sqrt(grad_sq) / (ns.sqrt(param_sq) + eps)
    h = ns.astype(grad_delta + decay * param_delta, like)
    beta = _vector(betas(n), like, ns)
    m_old, s_old = vectors["m"], vectors["s"]
    # optax's sign: its h is <g, x_ref - x>; here the displacement is x - x_ref
    h = -h
    clipped = ns.minimum(ns.maximum(h, -m_old), m_old)
    m = ns.maximum(beta * m_old, ns.maximum(h, -h) + eps)
    v = beta * beta * vectors["v"] + h * h
    r = beta * vectors["r"] + clipped * s_old
    wealth = (s_init / n) * m + ns.maximum(r, ns.astype(0.0, like))
    s = wealth / (ns.sqrt(v) + eps)
    new_total = ns.sum(s)
    updates = []
    for x, x0, di, ui in zip(w, reference, delta, u):
        step = ns.astype(new_total, x)
        # x_new = x_ref + S' (Delta + u); the update is x_new - x
        updates.append(ns.wrap((x0 + step * (di + ui)) - x))
    new = {"r": r, "m": m, "v": v, "s": s}
    out = {f"{name}{j}": ns.wrap(new[name][j - 1]) for name in VECTORS for j in range(1, n + 1)}
    return updates, reference, out


def _vector(values: list[float], like: Any, ns: Any) -> Any:
    """``values`` (numbers or 0-d arrays) as a vector of ``like``'s library, dtype
    and device."""
    return ns.concatenate([ns.reshape(ns.astype(b, like), (1,)) for b in values])


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


def _count0() -> Any:
    return np.zeros((), np.int64)


def _count(value: int) -> Any:
    return np.asarray(value, np.int64)


def _float0() -> Any:
    return np.zeros((), np.float64)
