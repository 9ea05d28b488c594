"""The JAX engine's wrapper nodes: transforms around one inner transform (skipping
non-finite steps, the sharpness-aware wrapper, Cautious masking, finishing stages),
each running its inner node and selecting or reshaping the result in the graph."""

from __future__ import annotations

import jax.numpy as jnp
from jax import tree_util

from .._core.cautious import Cautious, cautious_mask
from .._core.finishing import Finishing
from .._core.sharpness import SharpnessAware, perturbation
from .._core.skip import SkipNonfinite
from .jax_nodes import _Node
from .jax_scalars import COUNT_DTYPE, float_dtype, jax_ns, square_sum


class SkipNonfiniteNode:
    """:func:`gradstep.transforms.skip_nonfinite` (and ``skip_large_updates``) under
    jit: the inner update is computed every step and selected (``jnp.where``) when
    the gradients are finite (and their sum of squares below the bound),
    or when the run of non-finite steps exceeds ``max_consecutive_errors``; otherwise
    the updates are zero and the inner state is kept."""

    def __init__(self, transform: SkipNonfinite, children):
        self.limit = transform.max_consecutive_errors
        self.bound = getattr(transform, "max_squared_norm", None)
        (self.inner,) = children

    def init(self, leaves, td):
        return {
            "inner": self.inner.init(leaves, td),
            "notfinite_count": jnp.zeros((), COUNT_DTYPE),
            "total_notfinite": jnp.zeros((), COUNT_DTYPE),
        }

    def collect(self, state, ctx, req):
        self.inner.collect(state["inner"], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        finite = jnp.asarray(True)
        for x in g:
            finite = finite & jnp.all(jnp.isfinite(x))
        if self.bound is not None:
            acc = float_dtype()
            total = sum((square_sum(x, acc) for x in g), 0.0)
            finite = finite & (total < self.bound)
        run = jnp.where(finite, 0, state["notfinite_count"] + 1).astype(COUNT_DTYPE)
        total = (state["total_notfinite"] + (~finite).astype(COUNT_DTYPE)).astype(COUNT_DTYPE)
        take = finite if self.limit is None else finite | (run > self.limit)
        updates, inner = self.inner.apply(g, w, state["inner"], td, ctx, req)
        updates = [jnp.where(take, u, jnp.zeros_like(u)) for u in updates]
        inner = tree_util.tree_map(
            lambda new, old: jnp.where(take, new, old), inner, state["inner"]
        )
        return updates, {"inner": inner, "notfinite_count": run, "total_notfinite": total}


class SharpnessNode:
    """:func:`gradstep.sam` under jit: both the ascent and the descent are computed
    every update and the one of this update's phase selected (``jnp.where``); the
    inner state advances on descents only."""

    def __init__(self, transform: SharpnessAware, children):
        self.transform = transform
        (self.inner,) = children

    def init(self, leaves, td):
        return {
            "phase": jnp.zeros((), COUNT_DTYPE),
            "cache": td.unflatten([jnp.array(p, copy=True) for p in leaves]),
            "inner": self.inner.init(leaves, td),
        }

    def collect(self, state, ctx, req):
        self.inner.collect(state["inner"], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        if w is None:
            raise ValueError(f"{self.transform.name}: this transform needs params in update()")
        t = self.transform
        ascent = state["phase"] == 0
        cache = td.flatten_up_to(state["cache"])
        perturbed = perturbation(g, w, t.rho, t.adaptive, t.epsilon)
        inner_updates, inner = self.inner.apply(g, cache, state["inner"], td, ctx, req)
        back = [c - x + u for c, x, u in zip(cache, w, inner_updates)]
        updates = [jnp.where(ascent, e, b) for e, b in zip(perturbed, back)]
        new_cache = [jnp.where(ascent, x, c) for x, c in zip(w, cache)]
        inner = tree_util.tree_map(
            lambda new, old: jnp.where(ascent, old, new), inner, state["inner"]
        )
        return updates, {
            "phase": (1 - state["phase"]).astype(COUNT_DTYPE),
            "cache": td.unflatten(new_cache),
            "inner": inner,
        }


class CautiousNode(_Node):
    """:func:`gradstep.rules.cautious.cautious` under jit: the inner node's update,
    masked and rescaled per tensor by the core's :func:`cautious_mask` on
    ``jax.numpy``."""

    def __init__(self, transform: Cautious, children):
        self.normalization = transform.normalization
        self.min_fraction = transform.min_fraction
        (self.inner,) = children

    def init(self, leaves, td):
        return {"inner": self.inner.init(leaves, td)}

    def collect(self, state, ctx, req):
        self.inner.collect(state["inner"], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        updates, inner = self.inner.apply(g, w, state["inner"], td, ctx, req)
        ns = jax_ns()
        masked = [
            cautious_mask(u, x, ns, self.normalization, self.min_fraction)
            for u, x in zip(updates, g)
        ]
        return masked, {"inner": inner}


class FinishingNode:
    """A :class:`~gradstep._core.finishing.Finishing` stage under jit: the inner
    transform as its own node, then the stage's ``finish`` (array-namespace code) in
    the graph."""

    def __init__(self, transform: Finishing, children):
        self.stage = transform
        (self.inner,) = children

    def init(self, leaves, td):
        return {"inner": self.inner.init(leaves, td)}

    def collect(self, state, ctx, req):
        self.inner.collect(state["inner"], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        if w is None:
            raise ValueError(f"{self.stage.name}: this transform needs params in update()")
        updates, inner = self.inner.apply(g, w, state["inner"], td, ctx, req)
        return self.stage.finish(list(updates), list(g), list(w), ctx), {"inner": inner}
