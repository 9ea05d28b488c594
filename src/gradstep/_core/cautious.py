"""The cautious wrapper: keep only the elements of a direction that agree in sign with
the gradient, and rescale each tensor by the fraction kept.

A stage kind the engines must know (its per-tensor fraction is a reduction over the
inner transform's output, which no elementwise plan holds), hence in the core;
:func:`gradstep.rules.cautious.cautious` builds it. :func:`cautious_mask` is its
math, written once against the array namespace: the eager engine calls it with the
arrays' namespace, the JAX engine with ``jax.numpy``'s.
"""

from __future__ import annotations

from typing import Any

from . import tree as _tree
from .namespaces import element_for, namespace_of
from .transform import Transform
from .xmath import where

NORMALIZATIONS = ("mean", "count_plus_one")


def cautious_element(u, g, factor):
    """The element math of the mask: ``u`` where :math:`u g > 0`, else ``u * 0``,
    times the tensor's ``factor``. A product, not a selection, where masked: a NaN
    or infinite direction stays non-finite (NaN * 0), as in the references, instead
    of being hidden; ``factor - factor`` is a zero of the math dtype."""
    zero = factor - factor
    return where(u * g > zero, u, u * zero) * factor


def cautious_factor(count: Any, n: int, ns: Any, like: Any, normalization: str, min_fraction):
    r"""The tensor's rescaling factor from the number ``count`` of elements kept (in
    ``like``'s dtype) among its ``n``: ``"mean"``, :math:`1/\max(\bar\phi, f)` with
    :math:`\bar\phi` the fraction kept and :math:`f` ``min_fraction``;
    ``"count_plus_one"``: :math:`n / (\sum\phi + 1)`."""
    if normalization == "mean":
        return 1.0 / ns.maximum(count / n, ns.astype(min_fraction, like))
    return n / (count + 1.0)


def cautious_mask(u: Any, g: Any, ns: Any, normalization: str, min_fraction: float) -> Any:
    r"""``u`` where :math:`u g > 0`, else 0, times the tensor's rescaling factor
    (:func:`cautious_factor` of the number of elements kept)."""
    n = 1
    for size in getattr(u, "shape", ()):
        n *= int(size)
    if n == 0:
        return u
    zero = ns.astype(0.0, u)
    count = ns.sum(ns.where(u * g > zero, ns.astype(1.0, u), zero))
    factor = cautious_factor(count, n, ns, u, normalization, min_fraction)
    return element_for(cautious_element, ns)(u, g, ns.astype(factor, u))


class Cautious(Transform):
    """Run ``inner`` (a direction: its output points along the gradient, before any
    learning rate) and mask its output with :func:`cautious_mask` against the
    gradient this wrapper receives."""

    def __init__(self, inner: Transform, normalization: str, min_fraction: float):
        self.inner = inner
        self.normalization = normalization
        self.min_fraction = min_fraction
        self.name = inner.name

    def init(self, params: Any) -> dict:
        return {"inner": self.inner.init(params)}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        updates, inner_state = self.inner.update(grads, state["inner"], params, **ctx)
        g_leaves, td = _tree.flatten(grads)
        u_leaves = _tree.leaves_like(td, updates)
        out = []
        for u, g in zip(u_leaves, g_leaves):
            ns = namespace_of(u)
            out.append(ns.wrap(cautious_mask(u, g, ns, self.normalization, self.min_fraction)))
        return _tree.unflatten(td, out), {"inner": inner_state}
