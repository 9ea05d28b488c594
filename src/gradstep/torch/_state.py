"""How a transform's state splits into named per-parameter entries, and back.

torch.optim keeps state per parameter (``optimizer.state[p] = {"step": ...,
"exp_avg": ...}``), created on the parameter's first step, with a step count of its
own. A gradstep transform keeps one state tree for a list of parameters:
``{"scale_by_adam": {"count": 3, "mu": [m0, m1, ...], "nu": [...]}, ...}``. A
:class:`Layout` takes the lists indexed by parameter from the transforms' own
declarations (``Transform.per_parameter_state``, collected over the tree by
:func:`~gradstep._core.transform.per_parameter_paths`; a list nobody declared is
refused), reads the rest of the structure from the state of one parameter, names
every leaf (``mu``, ``nu``, or a path where a short name would
be ambiguous; every ``count`` is the parameter's ``step``), and builds the tree for
any set of parameters from their entries, or reads entries back from a new tree.

Leaves outside the parameter lists (step counts, per-step scalars) are *shared*: a
tree for several parameters holds one value of each. A count inside a parameter list
(a transform run per parameter, ``per_parameter``) is that parameter's own ``step``.
Where the structure depends on the shape, each shape has its layout, and a
:class:`MixedLayout` joins several into one tree, so that one step of the transform
sees parameters of every shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._core import tree as _tree
from .._core.blockwise8 import BLOCKWISE8, absmax_name
from .._core.cautious import Cautious
from .._core.combine import Masked
from .._core.elementwise import Elementwise
from .._core.namespaces import namespace_of
from .._core.noise import seeds_for
from .._core.sharpness import SharpnessAware
from .._core.skip import SkipNonfinite
from .._core.transform import Chain, Transform, per_parameter_paths, walk

STEP = "step"


class StateSplitError(TypeError):
    """The transform's state cannot be split into per-parameter entries."""


@dataclass
class _Node:
    kind: str  # leaf (shared), none, dict, namedtuple, list, tuple, params
    keys: Any = None
    children: tuple = ()
    tokens: tuple = ()
    seq: str = "list"  # for params nodes: list or tuple
    sub: Any = None  # params node: the per-parameter subtree of one parameter
    index: int = -1  # params node: its position among params nodes


@dataclass
class Layout:
    """The per-parameter view of one transform's state (see the module docstring),
    for parameters like ``like`` (a NumPy array of their shape, for transforms whose
    state depends on the shape; any small array otherwise): the state initialised for
    that one parameter gives the structure, the declarations say which lists in it
    are indexed by parameter."""

    transform: Transform
    like: Any = None
    root: _Node = field(init=False)
    params_nodes: list = field(init=False, default_factory=list)
    shared: dict = field(init=False, default_factory=dict)  # name -> numpy dtype
    names: tuple = field(init=False, default=())  # per-parameter entry names

    def __post_init__(self) -> None:
        a = np.zeros(2) if self.like is None else self.like
        try:
            one = self.transform.init([a])
        except Exception as error:  # a fixed mask or label tree, a required argument...
            raise StateSplitError(
                f"cannot initialise {self.transform!r} for one parameter at a time ({error}); "
                "give masks and labels as functions of the parameters, or use param groups"
            ) from None
        self._declared, self._owners = per_parameter_paths(self.transform)
        self._fulls: list[tuple] = []
        self.root = self._analyse(_tree.structure(one), ())
        self._shorts = _short_names(self._fulls)
        for tokens, value in _walk_shared(self.root, one):
            self.shared[self.name(tokens)] = np.asarray(value).dtype
        names = []
        for node in self.params_nodes:
            for tokens in _subtree_tokens(node.sub, node.tokens):
                names.append(self.name(tokens))
        self.names = tuple(names)
        self.subs = [node.sub for node in self.params_nodes]
        # entries a parameter of this shape leaves empty (e.g. the unused factor of
        # Adafactor): not kept in the state, made on the fly
        # (not the block scales of 8-bit slots: empty for a tensor below
        # min_8bit_size, a scale per block above it, whatever the shape of ``like``)
        scales = _block_scale_names(self.transform)
        self.empty = frozenset(
            self.name(tokens)
            for tokens, value, is_shared in _walk(self.root, one)
            if not is_shared
            and np.size(value) == 0
            and np.size(a) > 0
            and not scales.intersection(map(str, tokens))
        )

    def same_structure(self, other: Layout) -> bool:
        """``other`` splits and names the state as this one does (the same tree, entry
        names, shared values and empty entries), whatever the shapes it was built for:
        parameters of either share one engine bucket and one state tree."""
        return (
            self.transform is other.transform
            and self.names == other.names
            and self.shared == other.shared
            and self.empty == other.empty
            and self.root == other.root
        )

    # -- analysis ----------------------------------------------------------------------

    def _analyse(self, td, tokens: tuple) -> _Node:
        """The node of the one-parameter state's structure ``td`` at ``tokens``."""
        if tokens in self._declared:
            if td.kind not in ("list", "tuple") or len(td.children) > 1:
                raise StateSplitError(
                    f"{self._owner(tokens)!r} declares {'/'.join(map(str, tokens))} a list "
                    f"indexed by parameter, but its state for one parameter holds {td.kind} "
                    f"{'of ' + str(len(td.children)) if td.children else ''} there"
                )
            # an empty list: the one parameter is not selected (a mask, a label)
            sub = td.children[0] if td.children else None
            node = _Node("params", tokens=tokens, seq=td.kind, sub=sub)
            node.index = len(self.params_nodes)
            self.params_nodes.append(node)
            if sub is not None:
                self._fulls.extend(_subtree_tokens(sub, tokens))
            return node
        if td.kind == "leaf":
            self._fulls.append(tokens)
            return _Node("leaf", tokens=tokens)
        if td.kind == "none":
            return _Node("none")
        if td.kind in ("list", "tuple"):
            owner = self._owner(tokens)
            if owner.per_parameter_state is None and tokens not in self._owners:
                raise StateSplitError(
                    f"{owner!r} keeps a {td.kind} at {'/'.join(map(str, tokens))} and does not "
                    "declare which of its state's entries are indexed by parameter "
                    "(Transform.per_parameter_state), so its state cannot be split into "
                    "torch's per-parameter entries"
                )
            children = tuple(self._analyse(c, tokens + (i,)) for i, c in enumerate(td.children))
            return _Node(td.kind, children=children, tokens=tokens)
        keys = td.keys
        names = keys._fields if td.kind == "namedtuple" else keys
        children = tuple(self._analyse(c, tokens + (k,)) for k, c in zip(names, td.children))
        return _Node(td.kind, keys=keys, children=children, tokens=tokens)

    def _owner(self, tokens: tuple) -> Transform:
        """The transform whose state holds the entry at ``tokens`` (the deepest one
        whose state's path leads there)."""
        for n in range(len(tokens), -1, -1):
            owner = self._owners.get(tokens[:n])
            if owner is not None:
                return owner
        return self.transform

    def name(self, tokens: tuple) -> str:
        """The entry name of the leaf at ``tokens`` (parameter indices left out)."""
        last = str(tokens[-1]) if tokens else "state"
        if last == "count":
            return STEP
        if self._shorts.get(last, 0) <= 1:
            return last
        return "/".join(map(str, tokens))

    @property
    def counted(self) -> bool:
        return STEP in self.shared

    def shared_names(self) -> list[str]:
        """Shared entries other than the step."""
        return [n for n in self.shared if n != STEP]

    # -- per-parameter entries ---------------------------------------------------------

    def init_entries(self, like: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(per-parameter entries, shared values)`` of a fresh state for ``like``
        (a NumPy stand-in: seeds of noise stages still come from torch's generator)."""
        with seeds_for(namespace_of(torch.empty(0))):
            state = self.transform.init([like])
        own: dict[str, Any] = {}
        shared: dict[str, Any] = {}
        for tokens, value, is_shared in _walk(self.root, state):
            (shared if is_shared else own)[self.name(tokens)] = value
        return own, shared

    def build(self, entries: list[dict[str, Any]], shared: dict[str, Any]):
        """The state tree of a list of parameters from their entries.

        ``entries[i]`` maps names to parameter ``i``'s arrays; ``shared`` maps the
        shared names (``step`` included) to their common value. Returns ``(tree,
        refs)``: ``refs`` lists ``(container, key, name)`` for the shared leaves, to
        refresh them in place.
        """
        refs: list = []
        tree = self._build(self.root, entries, shared, refs, None, None)
        return tree, refs

    def _build(self, node, entries, shared, refs, parent, key):
        kind = node.kind
        if kind == "leaf":
            name = self.name(node.tokens)
            refs.append((parent, key, name))
            if name == STEP:
                return np.asarray(int(shared[STEP]), dtype=np.int64)
            return np.asarray(shared[name], dtype=self.shared[name])
        if kind == "none":
            return None
        if kind == "params":
            if node.sub is None:  # no parameter of this layout is selected there
                return [] if node.seq == "list" else ()
            items = [_fill(node.sub, node.tokens, e, self.name) for e in entries]
            return items if node.seq == "list" else tuple(items)
        if kind in ("dict", "namedtuple"):
            names = node.keys._fields if kind == "namedtuple" else node.keys
            out: dict = {}
            for k, child in zip(names, node.children):
                out[k] = self._build(child, entries, shared, refs, out, k)
            return out if kind == "dict" else node.keys(**out)
        items = []
        for i, child in enumerate(node.children):
            items.append(self._build(child, entries, shared, refs, items, i))
        return items if kind == "list" else tuple(items)

    def read(self, tree: Any, n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Entries of ``n`` parameters and the shared values from a state tree."""
        own: list[dict[str, Any]] = [{} for _ in range(n)]
        shared: dict[str, Any] = {}
        self._read(self.root, tree, own, shared)
        return own, shared

    def _read(self, node, value, own, shared) -> None:
        kind = node.kind
        if kind == "leaf":
            shared[self.name(node.tokens)] = value
        elif kind == "params":
            for i, item in enumerate(value):
                for tokens, leaf in _walk_value(item, node.tokens):
                    own[i][self.name(tokens)] = leaf
        elif kind in ("dict", "namedtuple"):
            names = node.keys._fields if kind == "namedtuple" else node.keys
            for k, child in zip(names, node.children):
                item = value[k] if kind == "dict" else getattr(value, k)
                self._read(child, item, own, shared)
        elif kind in ("list", "tuple"):
            for child, item in zip(node.children, value):
                self._read(child, item, own, shared)


# -- helpers --------------------------------------------------------------------------


def _short_names(fulls: list[tuple]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tokens in {tuple(t) for t in fulls}:
        if tokens:
            counts[str(tokens[-1])] = counts.get(str(tokens[-1]), 0) + 1
    return counts


def _subtree_tokens(td, prefix: tuple) -> list[tuple]:
    if td is None:  # a per-parameter list the parameter ``like`` is not in
        return []
    if td.kind == "leaf":
        return [prefix]
    if td.kind == "none":
        return []
    if td.kind == "dict":
        names = td.keys
    elif td.kind == "namedtuple":
        names = td.keys._fields
    else:
        names = range(len(td.children))
    out = []
    for k, child in zip(names, td.children):
        out.extend(_subtree_tokens(child, prefix + (k,)))
    return out


def _fill(td, prefix: tuple, entries: dict, name) -> Any:
    """The per-parameter subtree ``td`` with its leaves taken from ``entries`` (a
    count kept per parameter, e.g. by ``per_parameter``, is the parameter's torch
    ``step``, a float tensor: the transform gets it as the int64 count it keeps)."""
    if td.kind == "leaf":
        key = name(prefix)
        if key == STEP:
            return np.asarray(int(entries[key]), dtype=np.int64)
        return entries[key]
    if td.kind == "none":
        return None
    if td.kind == "dict":
        return {k: _fill(c, prefix + (k,), entries, name) for k, c in zip(td.keys, td.children)}
    if td.kind == "namedtuple":
        values = [
            _fill(c, prefix + (k,), entries, name) for k, c in zip(td.keys._fields, td.children)
        ]
        return td.keys(*values)
    items = [_fill(c, prefix + (i,), entries, name) for i, c in enumerate(td.children)]
    return items if td.kind == "list" else tuple(items)


def _walk_value(value: Any, prefix: tuple):
    if value is None:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_value(v, prefix + (k,))
    elif isinstance(value, tuple) and hasattr(type(value), "_fields"):
        for k in value._fields:
            yield from _walk_value(getattr(value, k), prefix + (k,))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk_value(v, prefix + (i,))
    else:
        yield prefix, value


def _walk(node: _Node, value: Any):
    """``(tokens, leaf, shared)`` for every leaf of a one-parameter state."""
    kind = node.kind
    if kind == "leaf":
        yield node.tokens, value, True
    elif kind == "params":
        for item in value[:1]:
            for tokens, leaf in _walk_value(item, node.tokens):
                yield tokens, leaf, False
    elif kind in ("dict", "namedtuple"):
        names = node.keys._fields if kind == "namedtuple" else node.keys
        for k, child in zip(names, node.children):
            yield from _walk(child, value[k] if kind == "dict" else getattr(value, k))
    elif kind in ("list", "tuple"):
        for child, item in zip(node.children, value):
            yield from _walk(child, item)


def _walk_shared(node: _Node, value: Any):
    for tokens, leaf, is_shared in _walk(node, value):
        if is_shared:
            yield tokens, leaf


def _block_scale_names(t: Transform) -> set[str]:
    """The state names of the block scales of ``t``'s 8-bit slots."""
    return {
        absmax_name(s.name)
        for v in walk(t)
        if isinstance(v.transform, Elementwise)
        for s in v.transform.slots
        if s.dtype == BLOCKWISE8
    }


def shape_independent(t: Transform) -> bool:
    """Every stage keeps per-element state only and none is selected by a mask, so
    the state's structure does not depend on the parameter's shape."""
    for visit in walk(t):
        node = visit.transform
        if isinstance(node, Masked):
            return False  # a mask may select by shape
        # skip_nonfinite keeps two shared counters besides its inner state; SAM a
        # shared counter and a per-element copy of the parameters; the cautious
        # wrapper keeps only its inner state; another transform says so itself
        # (``per_element_state = True``: its own state, if any, is per-element arrays
        # and shared counts, whatever the shapes)
        kinds = (Chain, Elementwise, SkipNonfinite, SharpnessAware, Cautious)
        if not isinstance(node, kinds) and not getattr(node, "per_element_state", False):
            return False
    return True


# -- one tree for parameters of several layouts ----------------------------------------


class MixedLayout:
    """One state tree for parameters whose layouts differ (a rule whose state depends
    on the shape, e.g. Adafactor's factored moments, or a mask that selects by shape).

    The layouts' structures must agree outside their per-parameter lists; a list that
    is per-parameter in one layout may be empty in another (a mask or a partition's
    label that does not select that parameter), and its items are then the items of
    the parameters that have one, in order: what ``init`` of the whole list gives.
    ``layouts[i]`` is parameter ``i``'s; entries keep each parameter's own names, and
    the shared leaves must have one name in every layout. Same interface as
    :class:`Layout` for :meth:`build`, :meth:`read` and :meth:`shared_names`.
    """

    def __init__(self, layouts: list[Layout]):
        self.layouts = list(layouts)
        self.distinct = list({id(x): x for x in layouts}.values())
        self.shared: dict[str, Any] = {}
        self.root = self._merge([x.root for x in self.distinct])

    def _merge(self, nodes: list[_Node]) -> Any:
        kinds = {n.kind for n in nodes}
        if "params" in kinds:
            owners = {}
            for layout, node in zip(self.distinct, nodes):
                if node.kind == "params":
                    if node.sub is not None:  # else: the layout's parameters are not in it
                        owners[id(layout)] = node
                elif node.kind not in ("list", "tuple") or node.children:
                    raise StateSplitError("a per-parameter list faces another structure")
            return ("params", owners)
        first = nodes[0]
        if len(kinds) > 1 or any(
            n.keys != first.keys or len(n.children) != len(first.children) for n in nodes
        ):
            raise StateSplitError("the layouts differ outside their per-parameter lists")
        if first.kind == "leaf":
            names = {x.name(first.tokens) for x in self.distinct}
            if len(names) != 1:
                raise StateSplitError(f"a shared leaf has several names: {sorted(names)}")
            (name,) = names
            self.shared[name] = np.result_type(*(x.shared[name] for x in self.distinct))
            return ("leaf", name)
        children = [self._merge([n.children[i] for n in nodes]) for i in range(len(first.children))]
        return (first.kind, first.keys, children)

    def shared_names(self) -> list[str]:
        return [n for n in self.shared if n != STEP]

    def build(self, entries: list[dict[str, Any]], shared: dict[str, Any]):
        refs: list = []
        return self._build(self.root, entries, shared, refs, None, None), refs

    def _build(self, node, entries, shared, refs, parent, key):
        kind = node[0]
        if kind == "leaf":
            name = node[1]
            refs.append((parent, key, name))
            if name == STEP:
                return np.asarray(int(shared[STEP]), dtype=np.int64)
            return np.asarray(shared[name], dtype=self.shared[name])
        if kind == "params":
            owners, items, seq = node[1], [], "list"
            for layout, e in zip(self.layouts, entries):
                own = owners.get(id(layout))
                if own is not None:
                    items.append(_fill(own.sub, own.tokens, e, layout.name))
                    seq = own.seq
            return items if seq == "list" else tuple(items)
        if kind == "none":
            return None
        _, keys, children = node
        if kind in ("dict", "namedtuple"):
            names = keys._fields if kind == "namedtuple" else keys
            out: dict = {}
            for k, child in zip(names, children):
                out[k] = self._build(child, entries, shared, refs, out, k)
            return out if kind == "dict" else keys(**out)
        items = []
        for i, child in enumerate(children):
            items.append(self._build(child, entries, shared, refs, items, i))
        return items if kind == "list" else tuple(items)

    def read(self, tree: Any, n: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        own: list[dict[str, Any]] = [{} for _ in range(n)]
        shared: dict[str, Any] = {}
        self._read(self.root, tree, own, shared)
        return own, shared

    def _read(self, node, value, own, shared) -> None:
        kind = node[0]
        if kind == "leaf":
            shared[node[1]] = value
        elif kind == "params":
            items = iter(value)
            for i, layout in enumerate(self.layouts):
                params_node = node[1].get(id(layout))
                if params_node is not None:
                    for tokens, leaf in _walk_value(next(items), params_node.tokens):
                        own[i][layout.name(tokens)] = leaf
        elif kind in ("dict", "namedtuple"):
            _, keys, children = node
            names = keys._fields if kind == "namedtuple" else keys
            for k, child in zip(names, children):
                self._read(child, value[k] if kind == "dict" else getattr(value, k), own, shared)
        elif kind in ("list", "tuple"):
            for child, item in zip(node[2], value):
                self._read(child, item, own, shared)
