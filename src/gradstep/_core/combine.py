"""Applying transforms to parts of a tree: ``masked`` and ``partition``.

Both select leaves of the parameter tree and hand the selected leaves, as a flat
list, to inner transforms; leaves that no transform takes pass through unchanged.
This is how parameter groups get their own hyperparameters (``partition``) and how a
stage such as weight decay skips biases and norms (``masked``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import tree as _tree
from .transform import Transform, shallow_copy


def _labels_for(labels: Any, params: Any, grads: Any, what: str) -> list:
    """One label per leaf, from a tree shaped like the parameters (or a prefix of
    it) or a function of them; dict entries are matched by key."""
    tree = params if params is not None else grads
    if callable(labels):
        labels = labels(tree)
    return _tree.matching_labels(_tree.structure(tree), labels, what)


def mask_flags(mask: Any, params: Any, grads: Any, what: str) -> list[bool]:
    """One ``True``/``False`` per leaf from ``mask`` (a tree shaped like the
    parameters, a prefix of it, or a function of them), matched by key and checked."""
    return [mask_flag(f, what) for f in _labels_for(mask, params, grads, what)]


def mask_flag(value: Any, name: str) -> bool:
    """A mask entry as a bool: only ``True``/``False`` (Python or NumPy, or a 0-d
    boolean array) -- a string or a number would be read as true by ``bool``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if getattr(value, "shape", None) == () and str(getattr(value, "dtype", "")) == "bool":
        return bool(value)
    shown = f"an array of shape {tuple(value.shape)}" if hasattr(value, "shape") else repr(value)
    raise ValueError(
        f"{name}: a mask holds one True or False per parameter (a tree shaped like the "
        f"parameters, a prefix of it, or a function returning one); got {shown}"
    )


class Partition(Transform):
    """Route each leaf to the transform named by its label."""

    def __init__(self, transforms: dict[str, Transform], labels: Any, name: str = "partition"):
        self.transforms = dict(transforms)
        self.labels = labels
        self.name = name

    def children(self) -> tuple[Transform, ...]:
        return tuple(self.transforms.values())

    def child_state_keys(self) -> tuple[str | None, ...]:
        return tuple(self.transforms)

    def child_leaves(self, params: Any, grads: Any, n: int) -> tuple[list[int] | None, ...]:
        groups = self._groups(params, grads, n)
        return tuple(groups[label] for label in self.transforms)

    def with_children(self, children: tuple[Transform, ...]) -> Partition:
        children = tuple(children)
        if len(children) != len(self.transforms):
            raise ValueError(
                f"{self.name}: {len(children)} children given, it has {len(self.transforms)}"
            )
        clone = shallow_copy(self)
        clone.transforms = dict(zip(self.transforms, children))
        return clone

    def _groups(self, params: Any, grads: Any, n: int) -> dict[str, list[int]]:
        labels = _labels_for(self.labels, params, grads, f"{self.name}: labels")
        if len(labels) != n:
            raise ValueError(f"{self.name}: {len(labels)} labels for {n} parameters")
        groups: dict[str, list[int]] = {k: [] for k in self.transforms}
        for i, label in enumerate(labels):
            if label is None:
                continue
            if label not in groups:
                raise ValueError(
                    f"{self.name}: label {label!r} has no transform; labels with a "
                    f"transform: {sorted(map(str, groups))}"
                )
            groups[label].append(i)
        return groups

    def init(self, params: Any) -> dict:
        leaves = _tree.leaves(params)
        groups = self._groups(params, None, len(leaves))
        return {
            label: self.transforms[label].init([leaves[i] for i in idx])
            for label, idx in groups.items()
        }

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        p_leaves = None if params is None else _tree.leaves_like(td, params)
        groups = self._groups(params, grads, len(g_leaves))
        out = list(g_leaves)
        new_state = {}
        for label, idx in groups.items():
            sub_g = [g_leaves[i] for i in idx]
            sub_p = None if p_leaves is None else [p_leaves[i] for i in idx]
            sub_u, new_state[label] = self.transforms[label].update(
                sub_g, state[label], sub_p, **ctx
            )
            for i, u in zip(idx, sub_u):
                out[i] = u
        return _tree.unflatten(td, out), new_state


def partition(transforms: dict[str, Transform], labels: Any | Callable[[Any], Any]) -> Partition:
    """Apply ``transforms[label]`` to the leaves labelled ``label``.

    ``labels`` is a tree of labels shaped like the parameters, or a function of the
    parameters that returns one. A leaf labelled ``None`` passes through unchanged.
    The state is ``{label: state of that label's transform}``.
    """
    return Partition(transforms, labels)


class Masked(Transform):
    """Apply ``inner`` to the leaves where the mask is true; pass the others through."""

    def __init__(self, inner: Transform, mask: Any):
        self.inner = inner
        self.mask = mask
        self.name = inner.name

    def _selected(self, params: Any, grads: Any, n: int) -> list[int]:
        what = f"masked {self.name}: mask"
        flags = mask_flags(self.mask, params, grads, what)
        if len(flags) != n:
            raise ValueError(f"{what} has {len(flags)} leaves, params {n}")
        return [i for i, f in enumerate(flags) if f]

    def child_leaves(self, params: Any, grads: Any, n: int) -> tuple[list[int] | None, ...]:
        return (self._selected(params, grads, n),)

    def init(self, params: Any) -> dict:
        leaves = _tree.leaves(params)
        idx = self._selected(params, None, len(leaves))
        return {"inner": self.inner.init([leaves[i] for i in idx])}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        p_leaves = None if params is None else _tree.leaves_like(td, params)
        idx = self._selected(params, grads, len(g_leaves))
        sub_p = None if p_leaves is None else [p_leaves[i] for i in idx]
        sub_u, inner_state = self.inner.update(
            [g_leaves[i] for i in idx], state["inner"], sub_p, **ctx
        )
        out = list(g_leaves)
        for i, u in zip(idx, sub_u):
            out[i] = u
        return _tree.unflatten(td, out), {"inner": inner_state}


def masked(inner: Transform, mask: Any | Callable[[Any], Any] | None) -> Transform:
    """``inner`` restricted to the leaves where ``mask`` is true.

    ``mask`` is a tree of booleans shaped like the parameters, a function of the
    parameters returning one, or ``None`` (no mask: ``inner`` itself).
    """
    return inner if mask is None else Masked(inner, mask)
