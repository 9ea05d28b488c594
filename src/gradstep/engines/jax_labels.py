"""Masks and labels in the JAX engine: one label per parameter leaf, from a tree shaped
like the parameters (JAX's structure, or gradstep's plain containers where the two
differ only as list and tuple), a prefix of it, or a function of the parameters; and
the structure a masked child sees in optax's convention."""

from __future__ import annotations

from typing import Any

from jax import tree_util

from .._core import tree as _tree
from .jax_scalars import NotTraceable, is_traced


def flat_labels(labels: Any, td, g, w) -> list:
    """The labels (or mask flags) of the leaves, from a tree or a function of params."""
    tree = td.unflatten(w if w is not None else g)
    if callable(labels):
        labels = labels(tree)
    try:
        flat = td.flatten_up_to(labels)
    except (ValueError, TypeError):
        flat = _prefix_labels(labels, tree)
    if flat is None:  # plain containers that differ only as list and tuple
        flat = _tree.matching_labels(_tree.structure(tree), labels, "labels")
    if len(flat) != td.num_leaves:
        raise ValueError(f"labels have {len(flat)} leaves, the parameters {td.num_leaves}")
    for x in flat:
        if is_traced(x):
            raise NotTraceable(
                "a mask or label is a traced array; masks and labels choose leaves while "
                "tracing, so they must be Python values (a tree, or a function of the "
                "parameters' structure and shapes)"
            )
    return flat


def _prefix_labels(labels: Any, tree: Any) -> list | None:
    """A tree of labels that is a prefix of the parameters' (optax's masks and labels:
    ``{"encoder": False, "head": True}`` over nested parameters): each label given to
    every leaf below it. ``None`` when ``labels`` is no prefix of ``tree``."""
    is_label = lambda x: x is None  # noqa: E731 - None is a label ("no label")
    prefix = tree_util.tree_structure(labels, is_leaf=is_label)
    try:
        subtrees = prefix.flatten_up_to(tree)
    except (ValueError, TypeError):
        return None
    out: list = []
    for label, sub in zip(tree_util.tree_leaves(labels, is_leaf=is_label), subtrees):
        out.extend([label] * len(tree_util.tree_leaves(sub)))
    return out


def shown_structure(labels: Any, keep: Any, td, g, w, hole: Any, n: int):
    """The structure a masked child sees in optax's convention: the tree with
    ``hole()`` in place of each subtree whose label (of ``labels``: a tree, a prefix
    tree or a function of the tree) ``keep`` rejects -- one hole per label, so a
    prefix label leaves one hole for its whole subtree. Labels that do not map onto
    the tree (a flat list of flags) give the flat list of the ``n`` seen leaves."""
    tree = td.unflatten(w if w is not None else g)
    label_tree = labels(tree) if callable(labels) else labels
    try:
        skeleton = tree_util.tree_map(
            # a None label over a None subtree is no leaf of the mask: optax leaves it
            lambda label, sub: sub if keep(label) or (label is None and sub is None) else hole(),
            label_tree,
            tree,
            is_leaf=lambda x: x is None,
        )
    except (ValueError, TypeError):
        return list_def(n)
    out = tree_util.tree_structure(skeleton)
    return out if out.num_leaves == n else list_def(n)


def list_def(n: int):
    """The JAX structure of a flat list of ``n`` leaves."""
    return tree_util.tree_structure([0] * n)
