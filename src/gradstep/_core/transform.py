"""The transform protocol, chains and applying updates.

A transform is a pure pair of functions:

- ``init(params) -> state``
- ``update(grads, state, params=None, **ctx) -> (updates, state)``

``grads``, ``params`` and ``updates`` are trees of the same structure (see
:mod:`gradstep._core.tree`). Updates are *added* to the parameters
(:func:`apply_updates`); only the learning-rate stage negates. The state is a
``dict`` whose every field has a name (``count``, ``mu``, ``nu``, ...), so a
checkpoint reads like the math. ``ctx`` carries per-step context: a value for any
hyperparameter by its name (``learning_rate=0.01``), which overrides the
transform's own value for this step, and any other keyword a stage does not use,
which it ignores.

Optimizers are short chains: ``adam = chain(scale_by_adam(...),
scale_by_learning_rate(lr))``. A chain's state is a dict keyed by the names of its
stages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import tree as _tree


class Transform:
    """Base class of every transform; subclasses define ``init`` and ``update``.

    ``name`` names the transform's state inside a chain.
    """

    name: str = "transform"

    def init(self, params: Any) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def update(
        self, grads: Any, state: dict, params: Any = None, **ctx: Any
    ) -> tuple[Any, dict]:  # pragma: no cover - interface
        raise NotImplementedError

    def children(self) -> tuple[Transform, ...]:
        """The transforms this one runs (stages of a chain, the inner of a wrapper)."""
        inner = getattr(self, "inner", None)
        return (inner,) if isinstance(inner, Transform) else ()

    def hyperparameters(self) -> dict[str, Any]:
        """``{name: constraint or None}`` for every hyperparameter a step may override
        by name, here or in any child; the constraint is the one the factory declared."""
        out: dict[str, Any] = {}
        for child in self.children():
            for name, constraint in child.hyperparameters().items():
                out[name] = out.get(name) or constraint
        declared = getattr(self, "declared_ranges", {})
        for name in out:
            out[name] = out[name] or declared.get(name)
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def __reduce_ex__(self, protocol: int):
        # a transform made by a factory pickles as that call: its functions are
        # closures, which pickle cannot store (copies rebuild it the same way)
        from .validate import reduce_by_recipe

        reduced = reduce_by_recipe(self)
        return reduced if reduced is not None else super().__reduce_ex__(protocol)


class FunctionTransform(Transform):
    """A transform made of two plain functions."""

    def __init__(self, init: Callable, update: Callable, name: str = "transform"):
        self._init = init
        self._update = update
        self.name = name

    def init(self, params: Any) -> dict:
        return self._init(params)

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        return self._update(grads, state, params, **ctx)


def _no_state(params: Any) -> dict:
    return {}


def _pass_through(grads: Any, state: Any, params: Any = None, **ctx: Any) -> tuple:
    return grads, state


def identity() -> Transform:
    """The transform that passes gradients through unchanged and keeps no state."""
    return FunctionTransform(_no_state, _pass_through, "identity")


class Chain(Transform):
    """Stages applied one after another; each sees the previous one's output."""

    def __init__(self, stages: tuple[Transform, ...], name: str = "chain"):
        self.stages = tuple(stages)
        self.name = name
        self.stage_names = _unique_names([s.name for s in self.stages])

    def children(self) -> tuple[Transform, ...]:
        return self.stages

    def init(self, params: Any) -> dict:
        return {n: s.init(params) for n, s in zip(self.stage_names, self.stages)}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        new_state = {}
        for stage_name, stage in zip(self.stage_names, self.stages):
            grads, new_state[stage_name] = stage.update(grads, state[stage_name], params, **ctx)
        return grads, new_state

    def flat_stages(self) -> list[tuple[tuple[str, ...], Transform]]:
        """Every non-chain stage with its path of state keys, nested chains expanded."""
        out = []
        for stage_name, stage in zip(self.stage_names, self.stages):
            if isinstance(stage, Chain):
                out.extend(((stage_name,) + p, s) for p, s in stage.flat_stages())
            else:
                out.append(((stage_name,), stage))
        return out


def _unique_names(names: list[str]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return tuple(out)


def chain(*stages: Transform, name: str = "chain") -> Chain:
    """Compose transforms: the output of each is the input of the next.

    The state is ``{stage_name: stage_state}``; repeated names get ``_1``, ``_2``.
    """
    for s in stages:
        if not isinstance(s, Transform):
            raise TypeError(f"chain: expected transforms, got {type(s).__name__}")
    return Chain(stages, name)


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates`` leaf by leaf, each result in its parameter's dtype."""

    def add(p, u):
        p_arr = np.asarray(p)
        return (p_arr + u).astype(p_arr.dtype, copy=False)

    return _tree.tree_map(add, params, updates)
