"""The sharpness-aware wrapper (SAM, ASAM): every step of the inner rule takes the
gradient at a point pushed uphill by the global gradient norm.

A stage kind the engines and fronts must know (its steps alternate between an
ascent and a descent, and its perturbation is a reduction over the whole tree),
hence in the core; :func:`gradstep.sam` builds it and documents the math.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import tree as _tree
from .namespaces import namespace_of
from .transform import Transform


def perturbation(g_leaves: list, w_leaves: list, rho: Any, adaptive: bool, epsilon: float) -> list:
    r""":math:`e = \rho\, T^2 g / (\lVert T g\rVert + \epsilon)` for every leaf, with
    :math:`T = |w|` (``adaptive``) or 1 and the norm over all leaves together
    (accumulated in float64 where the library has it)."""
    scaled = [_absolute(w) * g if adaptive else g for g, w in zip(g_leaves, w_leaves)]
    total = None
    for x in scaled:
        s = namespace_of(x).square_sum(x)
        total = s if total is None else total + s
    if total is None:
        return []
    factor = rho / (total**0.5 + epsilon)
    out = []
    for g, w in zip(g_leaves, w_leaves):
        ns = namespace_of(g)
        e = g * ns.scalar_caster(g)(factor)
        out.append(ns.wrap(w * w * e if adaptive else e))
    return out


def _absolute(x: Any) -> Any:
    return namespace_of(x).ops.get("absolute", np.abs)(x)


class SharpnessAware(Transform):
    """Alternating ascent and descent steps around ``inner`` (see :func:`gradstep.sam`).

    State: ``phase`` (0 before an ascent, 1 before a descent; not a step count,
    which fronts may keep in sync with the inner rule's), ``cache`` (the parameters
    before the ascent) and ``inner`` (the inner rule's state, advanced only by
    descents).
    """

    per_parameter_state = ("cache",)  # lists indexed by parameter

    name = "sam"
    #: a closure-driven step of the fronts makes this many updates, each with a
    #: gradient evaluated where the previous one left the parameters
    updates_per_closure = 2

    def __init__(self, inner: Transform, rho: Any, adaptive: bool, epsilon: float):
        self.inner = inner
        self.rho = rho
        self.adaptive = adaptive
        self.epsilon = epsilon

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        return {
            "phase": np.zeros((), np.int64),
            "cache": _tree.unflatten(td, [namespace_of(p).copy(p) for p in leaves]),
            "inner": self.inner.init(params),
        }

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if params is None:
            raise ValueError(f"{self.name}: this transform needs params in update()")
        phase_ns = namespace_of(state["phase"])
        phase = phase_ns.count(state["phase"])
        if phase == 0:
            updates, cache, inner = self.ascend(grads, params), self._copy(params), state["inner"]
        else:
            cache = state["cache"]
            updates, inner = self.descend(grads, state["inner"], cache, params, **ctx)
        return updates, {
            "phase": phase_ns.count_array(1 - phase, state["phase"]),
            "cache": cache,
            "inner": inner,
        }

    def ascend(self, grads: Any, params: Any) -> Any:
        """The ascent's update: the perturbation :math:`e`."""
        g_leaves, td = _tree.flatten(grads)
        w_leaves = _tree.leaves_like(td, params)
        return _tree.unflatten(
            td, perturbation(g_leaves, w_leaves, self.rho, self.adaptive, self.epsilon)
        )

    def descend(self, grads: Any, inner_state: Any, cache: Any, params: Any, **ctx: Any):
        """The descent's update: back to the cached point, plus the inner rule's
        update there for ``grads`` (taken at the perturbed point)."""
        inner_updates, inner_state = self.inner.update(grads, inner_state, cache, **ctx)
        td = _tree.structure(grads)
        leaves = [
            namespace_of(u).wrap(c - w + u)
            for c, w, u in zip(
                _tree.leaves_like(td, cache),
                _tree.leaves_like(td, params),
                _tree.leaves_like(td, inner_updates),
            )
        ]
        return _tree.unflatten(td, leaves), inner_state

    @staticmethod
    def _copy(params: Any) -> Any:
        return _tree.tree_map(lambda p: namespace_of(p).copy(p), params)

    def step_with_closure(
        self,
        loss_and_grad: Callable[[Any], tuple[Any, Any]],
        params: Any,
        state: dict,
        **ctx: Any,
    ) -> tuple[Any, Any, dict]:
        """One sharpness-aware step: ``loss_and_grad(params) -> (loss, grads)`` is
        evaluated at ``params`` and at the perturbed point; returns the first loss,
        the new parameters (new arrays) and the new state. The state must be at the
        start of a step (``phase`` 0)."""
        phase_ns = namespace_of(state["phase"])
        phase = phase_ns.count(state["phase"])
        if isinstance(phase, int) and phase:
            raise ValueError(
                f"{self.name}: a closure step started between an ascent and its descent; "
                "finish the pending descent with update() first"
            )
        params = self._copy(params)  # a front may write trial points into its arrays
        loss, grads = loss_and_grad(params)
        perturbed = _tree.tree_map(lambda w, e: w + e, params, self.ascend(grads, params))
        _, grads = loss_and_grad(perturbed)
        inner_updates, inner = self.inner.update(grads, state["inner"], params, **ctx)
        new_params = _tree.tree_map(lambda w, u: w + u, params, inner_updates)
        return (
            loss,
            new_params,
            {
                "phase": state["phase"],
                "cache": params,
                "inner": inner,
            },
        )
