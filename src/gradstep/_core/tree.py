"""Trees: parameters as one array or nested lists, tuples and dicts of arrays.

A *leaf* is anything that is not a list, tuple, dict or ``None`` (a NumPy array, a
NumPy scalar, a Python number, a torch tensor, ...). ``None`` is an empty subtree: it
holds no leaf, so a tree with ``None`` in it keeps its place in the structure.

The helpers here flatten a tree into its leaves in a fixed order and build it back,
so a transform can work on a flat list of arrays and hand back the structure the user
gave. A dict's leaves come in the order of its sorted keys, as in JAX, so two dicts
with the same entries flatten alike whatever order they were written in (gradients
built in another order than the parameters pair with them by key); a rebuilt dict
keeps the key order of the tree it was flattened from. Trees handed in beside
another (gradients beside parameters, masks beside parameters) are matched to it by
structure, and a difference raises naming the first path where they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TreeDef:
    """The shape of a tree without its leaves.

    ``kind`` is one of ``"leaf"``, ``"none"``, ``"list"``, ``"tuple"``, ``"dict"`` or
    ``"namedtuple"``; ``keys`` holds dict keys (sorted) or the namedtuple class;
    ``children`` the sub-structures in order; ``written`` a dict's keys in the order
    the user wrote them (how it is rebuilt; not part of the structure).
    """

    kind: str
    children: tuple = ()
    keys: Any = None
    num_leaves: int = field(default=-1, compare=False)
    written: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.num_leaves < 0:
            n = 1 if self.kind == "leaf" else sum(c.num_leaves for c in self.children)
            object.__setattr__(self, "num_leaves", n)


_LEAF = TreeDef("leaf")
_NONE = TreeDef("none")
_FLAT_CACHE: dict[tuple[str, int], TreeDef] = {}
_ARRAY_TYPE = {np.ndarray}


def _flat(kind: str, n: int) -> TreeDef:
    """The structure of a list or tuple of ``n`` leaves (cached: models have many)."""
    td = _FLAT_CACHE.get((kind, n))
    if td is None:
        td = _FLAT_CACHE[(kind, n)] = TreeDef(kind, (_LEAF,) * n, None, n)
    return td


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def flatten(tree: Any, none_is_leaf: bool = False) -> tuple[list, TreeDef]:
    """Return ``(leaves, treedef)`` for ``tree``.

    ``none_is_leaf`` makes ``None`` a leaf (for trees of labels, where ``None`` means
    "no label").
    """
    leaves: list = []
    return leaves, _flatten_into(tree, leaves, none_is_leaf)


def _flatten_into(tree: Any, leaves: list, none_is_leaf: bool = False) -> TreeDef:
    if tree is None and not none_is_leaf:
        return _NONE
    if isinstance(tree, dict):
        written = tuple(tree.keys())
        keys = _sorted_keys(written)
        children = tuple(_flatten_into(tree[k], leaves, none_is_leaf) for k in keys)
        return TreeDef("dict", children, keys, written=None if keys == written else written)
    if _is_namedtuple(tree):
        children = tuple(_flatten_into(v, leaves, none_is_leaf) for v in tree)
        return TreeDef("namedtuple", children, type(tree))
    if isinstance(tree, (list, tuple)):
        kind = "list" if isinstance(tree, list) else "tuple"
        if not tree or set(map(type, tree)) == _ARRAY_TYPE:  # the common flat case, fast
            leaves.extend(tree)
            return _flat(kind, len(tree))
        return TreeDef(kind, tuple(_flatten_into(v, leaves, none_is_leaf) for v in tree))
    leaves.append(tree)
    return _LEAF


def _sorted_keys(keys: tuple) -> tuple:
    try:
        return tuple(sorted(keys))
    except TypeError:  # keys of several types: a fixed order all the same
        return tuple(sorted(keys, key=lambda k: (type(k).__name__, repr(k))))


def unflatten(treedef: TreeDef, leaves: list) -> Any:
    """Build the tree described by ``treedef`` from ``leaves``."""
    it = iter(leaves)
    tree = _build(treedef, it)
    if next(it, _SENTINEL) is not _SENTINEL:
        raise ValueError(f"too many leaves for a tree of {treedef.num_leaves} leaves")
    return tree


_SENTINEL = object()


def _build(td: TreeDef, it) -> Any:
    if td.kind == "leaf":
        leaf = next(it, _SENTINEL)
        if leaf is _SENTINEL:
            raise ValueError("too few leaves for the tree structure")
        return leaf
    if td.kind == "none":
        return None
    children = [_build(c, it) for c in td.children]
    if td.kind == "dict":
        built = dict(zip(td.keys, children))
        return built if td.written is None else {k: built[k] for k in td.written}
    if td.kind == "namedtuple":
        return td.keys(*children)
    return children if td.kind == "list" else tuple(children)


def leaves(tree: Any) -> list:
    """The leaves of ``tree`` in flattening order."""
    return flatten(tree)[0]


def structure(tree: Any) -> TreeDef:
    """The structure of ``tree``."""
    return flatten(tree)[1]


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leaf by leaf to ``tree`` and trees of the same structure (matched
    to it by :func:`matching_leaves`: dict entries by key)."""
    flat, td = flatten(tree)
    others = [leaves_like(td, r) for r in rest]
    return unflatten(td, [fn(*args) for args in zip(flat, *others)])


def leaves_like(td: TreeDef, tree: Any, what: str = "tree") -> list:
    """The leaves of ``tree`` in the order of the structure ``td``: dict entries
    matched by key, a difference of structure a ``ValueError`` naming ``what`` and
    the path where the trees differ (see :func:`matching_leaves`)."""
    flat, other = flatten(tree)
    if other is td or other == td:
        return flat
    return matching_leaves(td, tree, what)


def leaf_paths(tree: Any, sep: str = "/") -> list[str]:
    """A readable path for every leaf: ``"0"``, ``"layer1/weight"``, ...

    A tree that is a single leaf has the path ``""``.
    """
    return _paths(structure(tree), (), sep)


def _paths(td: TreeDef, prefix: tuple, sep: str) -> list[str]:
    if td.kind == "leaf":
        return [sep.join(prefix)]
    if td.kind == "none":
        return []
    if td.kind == "dict":
        names = [str(k) for k in td.keys]
    elif td.kind == "namedtuple":
        names = list(td.keys._fields)
    else:
        names = [str(i) for i in range(len(td.children))]
    out: list[str] = []
    for name, child in zip(names, td.children):
        out.extend(_paths(child, prefix + (name,), sep))
    return out


def matching_leaves(td: TreeDef, tree: Any, what: str = "tree") -> list:
    """The leaves of ``tree`` in the order of the structure ``td``, matched by
    structure: dict entries by key (in any order), sequences by position.

    A list may stand for a tuple and the reverse. Anything else that differs (a
    missing or unknown key, another length, a container where a leaf belongs) raises
    a ``ValueError`` naming ``what`` and the first path where the trees differ.
    """
    if (
        td.kind in ("list", "tuple")
        and type(tree) in (list, tuple)
        and len(tree) == td.num_leaves == len(td.children)
        and td.children == _flat(td.kind, td.num_leaves).children
        and set(map(type, tree)) == _ARRAY_TYPE
    ):
        return list(tree)  # the common flat case, fast
    out: list = []
    _match(td, tree, (), out, what)
    return out


def _differ(what: str, path: tuple, problem: str) -> ValueError:
    where = "/".join(str(p) for p in path) or "<root>"
    return ValueError(f"{what}: tree structures differ at {where!r}: {problem}")


def _kind(x: Any) -> str:
    if x is None:
        return "None"
    if isinstance(x, dict):
        return "a dict"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)}"
    return "a leaf"


def _match(td: TreeDef, tree: Any, path: tuple, out: list, what: str, labels=False) -> None:
    """Append the leaves of ``tree`` matched to ``td``; ``labels``: ``tree`` holds
    labels, where ``None`` is a label and a label may stand for a whole subtree."""
    if td.kind == "none":
        if tree is not None:
            raise _differ(what, path, f"expected None, got {_kind(tree)}")
        return
    container = isinstance(tree, (dict, list, tuple))
    if labels and td.kind != "leaf" and not container:
        out.extend([tree] * td.num_leaves)  # a prefix: one label for the subtree
        return
    if td.kind == "leaf":
        if container or (tree is None and not labels):
            expected = "a label" if labels else "a leaf"
            raise _differ(what, path, f"expected {expected}, got {_kind(tree)}")
        out.append(tree)
        return
    if td.kind == "dict":
        if not isinstance(tree, dict):
            raise _differ(what, path, f"expected a dict, got {_kind(tree)}")
        known = set(td.keys)
        missing = [key for key in td.keys if key not in tree]
        for key in tree:  # the caller's own key first: the likelier mistake
            if key not in known:
                instead = ", ".join(repr("/".join(map(str, path + (k,)))) for k in missing)
                problem = f"unexpected key; {instead} missing" if missing else "unexpected key"
                raise _differ(what, path + (key,), problem)
        if missing:
            raise _differ(what, path + (missing[0],), "missing")
        for key, child in zip(td.keys, td.children):
            _match(child, tree[key], path + (key,), out, what, labels)
        return
    if td.kind == "namedtuple":
        fields = td.keys._fields
        if not _is_namedtuple(tree) or type(tree)._fields != fields:
            raise _differ(what, path, f"expected a {td.keys.__name__}, got {_kind(tree)}")
        names = fields
    else:
        if not isinstance(tree, (list, tuple)) or _is_namedtuple(tree):
            expected = f"a {td.kind} of {len(td.children)}"
            raise _differ(what, path, f"expected {expected}, got {_kind(tree)}")
        if len(tree) != len(td.children):
            raise _differ(what, path, f"expected {len(td.children)} entries, got {len(tree)}")
        names = range(len(td.children))
    for name, child, value in zip(names, td.children, tree):
        _match(child, value, path + (name,), out, what, labels)


def matching_labels(td: TreeDef, labels: Any, what: str = "labels") -> list:
    """One label per leaf of the structure ``td``, from a tree of labels shaped like
    it or a prefix of it (optax's convention: a label where ``td`` has a subtree is
    every leaf's below it; ``None`` is a label, "none"). Dict entries are matched by
    key; any other difference raises a ``ValueError`` naming ``what`` and the path."""
    out: list = []
    _match(td, labels, (), out, what, labels=True)
    return out
