"""Finishing stages: an inner transform's updates, then array code that also reads
the gradient and the parameters of each tensor (AdamP's projection).

A chain's later stages see only the updates of the stages before them; a finishing
stage wraps its inner transform so that its :meth:`Finishing.finish` sees the
gradient the inner transform was given as well. It keeps no state of its own (the
inner transform's is under ``"inner"``). ``finish`` is written against the array
namespace, so every engine can run it: the eager engine calls :meth:`update`, the
JAX engine runs the inner transform as its own node and then ``finish`` in the
graph.
"""

from __future__ import annotations

from typing import Any

from . import tree as _tree
from .transform import Transform


class Finishing(Transform):
    """``inner``'s updates, finished by :meth:`finish` (see the module docstring)."""

    name = "finishing"

    def __init__(self, inner: Transform):
        self.inner = inner

    def finish(self, updates: list, grads: list, params: list, ctx: dict[str, Any]) -> list:
        """The finished update leaves, from the inner transform's update leaves and
        the gradient and parameter leaves in the same order; ``ctx`` holds this
        step's overrides."""
        raise NotImplementedError  # pragma: no cover - interface

    def init(self, params: Any) -> dict:
        return {"inner": self.inner.init(params)}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if params is None:
            raise ValueError(f"{self.name}: this transform needs params in update()")
        direction, inner_state = self.inner.update(grads, state["inner"], params, **ctx)
        leaves, td = _tree.flatten(direction)
        finished = self.finish(
            leaves, _tree.leaves_like(td, grads), _tree.leaves_like(td, params), ctx
        )
        return _tree.unflatten(td, finished), {"inner": inner_state}
