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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import tree as _tree
from .namespaces import as_array


class Transform:
    """Base class of every transform; subclasses define ``init`` and ``update``.

    ``name`` names the transform's state inside a chain.
    """

    name: str = "transform"

    #: False for a transform whose ``update`` reads array values in Python (NumPy
    #: code): the JAX engine may then run it on the host through a callback
    #: (``fallback="host"``) instead of tracing it. Nothing else is sent to the host.
    traceable: bool = True

    #: True for a transform whose update of a tensor depends on the tensor's shape
    #: (factored moments, matrix preconditioners, orthogonalisation, per-row or
    #: per-axis blocks): there a complex parameter's real view (``torch.view_as_real``,
    #: a trailing axis of 2) would change the rule's meaning, so the torch front
    #: refuses complex parameters for it, as torch.optim's Adafactor and Muon do.
    reads_shape: bool = False

    #: True for a transform that computes each tensor's update, and its own state for
    #: that tensor, from that tensor's gradient, parameter and state alone (per-tensor
    #: projections, factored moments, centralisation): a step split into calls over
    #: parts of the parameters is then the same step, so the torch front may step the
    #: parameters of a group in separate engine buckets (vectors fused, matrices on the
    #: transform's own update). Elementwise stages need not say so.
    tensorwise: bool = False

    #: Names of its descendants' elementwise slots that this transform reads and
    #: writes as values outside their element functions (Sophia folds Hessian
    #: estimates into ``nu``): 8-bit codes cannot be read that way, so ``state_dtype``
    #: refuses 8-bit storage for them.
    folds_slots: tuple = ()

    #: Where this transform's own state (its children's left out) keeps one item per
    #: parameter leaf, in the parameters' order: paths of keys from the root of its
    #: state, a key alone for a top-level entry (``("mu", "nu")`` for Adam). The torch
    #: front splits a state into torch's ``optimizer.state[p]`` entries by these
    #: declarations (:func:`per_parameter_paths`). ``None``: not declared, which only
    #: a transform whose own state holds no list or tuple may leave it.
    per_parameter_state: tuple | None = None

    def init(self, params: Any) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def update(
        self, grads: Any, state: dict, params: Any = None, **ctx: Any
    ) -> tuple[Any, dict]:  # pragma: no cover - interface
        raise NotImplementedError

    # -- the structural protocol: the one way anything walks a transform tree ------
    #
    # A transform with children says which they are, where each one's state lives in
    # its own state, which parameter leaves each one sees, and how to rebuild itself
    # with other children. :func:`walk`, :func:`map_transform` and
    # :func:`fold_transform` are built on these four methods; engines, fronts and
    # helpers use those functions instead of testing for Chain, Masked, ...

    def children(self) -> tuple[Transform, ...]:
        """The transforms this one runs (stages of a chain, the inner of a wrapper)."""
        inner = getattr(self, "inner", None)
        return (inner,) if isinstance(inner, Transform) else ()

    def child_state_keys(self) -> tuple[str | None, ...]:
        """For each child, the key of its state in this transform's state (``None``:
        its state is not one entry, e.g. one copy per parameter)."""
        return ("inner",) * len(self.children())

    def child_leaves(self, params: Any, grads: Any, n: int) -> tuple[list[int] | None, ...]:
        """For each child, the indices of the ``n`` parameter leaves it sees, in
        order (``None``: all of them). ``params`` or ``grads`` may be ``None``."""
        return (None,) * len(self.children())

    def with_children(self, children: tuple[Transform, ...]) -> Transform:
        """A shallow copy of this transform running ``children`` instead of its own."""
        children = tuple(children)
        if len(children) != len(self.children()):
            raise ValueError(
                f"{self.name}: {len(children)} children given, it has {len(self.children())}"
            )
        if not children:
            return self
        clone = shallow_copy(self)
        clone.inner = children[0]
        return clone

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


def shallow_copy(t: Transform) -> Transform:
    """A copy of ``t`` sharing its fields, about to get some of them replaced.

    Not ``copy.copy``: a factory-made transform copies by calling its factory again
    (:meth:`Transform.__reduce_ex__`), and the changed copy must not pickle as that
    call; it keeps no recipe, so it pickles field by field.
    """
    clone = object.__new__(type(t))
    clone.__dict__.update(t.__dict__)
    clone.__dict__.pop("_recipe", None)
    return clone


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

    def child_state_keys(self) -> tuple[str | None, ...]:
        return self.stage_names

    def with_children(self, children: tuple[Transform, ...]) -> Chain:
        children = tuple(children)
        if len(children) != len(self.stages):
            raise ValueError(
                f"{self.name}: {len(children)} stages given, it has {len(self.stages)}"
            )
        clone = shallow_copy(self)  # keeps a subclass (Lookahead, ParameterEMA) and its fields
        clone.stages = children
        clone.stage_names = _unique_names([s.name for s in children])
        return clone

    def init(self, params: Any) -> dict:
        return {n: s.init(params) for n, s in zip(self.stage_names, self.stages)}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        new_state = {}
        for stage_name, stage in zip(self.stage_names, self.stages):
            grads, new_state[stage_name] = stage.update(grads, state[stage_name], params, **ctx)
        return grads, new_state


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
    """``params + updates`` leaf by leaf, each result in its parameter's dtype, in
    the parameters' array library (NumPy, torch, JAX) and on their device."""

    def add(p, u):
        ns, p = as_array(p)
        return ns.stored_like(p + u, p)

    return _tree.tree_map(add, params, updates)


# -- walking the tree ------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """One transform of a tree, as :func:`walk` reaches it.

    ``path``: the keys from the root's state to this transform's state (``None``
    below a child whose state is not one entry). ``parents``: the enclosing
    transforms, outermost first. ``leaves``: the indices of the root's parameter
    leaves this transform sees (``None`` when the walk was given no parameters).
    """

    transform: Transform
    path: tuple[str, ...] | None
    parents: tuple[Transform, ...]
    leaves: list[int] | None

    def state(self, root_state: Any) -> Any:
        """This transform's part of ``root_state`` (``None`` if it has no single part)."""
        if self.path is None:
            return None
        for key in self.path:
            root_state = root_state[key]
        return root_state


def walk(transform: Transform, params: Any = None) -> Iterator[Visit]:
    """Every transform of the tree, parents before children (depth first, in order).

    With ``params`` (the root's parameter tree), each visit also knows which leaves
    the transform sees (masks and partitions select some).
    """
    idx = None if params is None else list(range(len(_tree.leaves(params))))
    yield from _walk(transform, (), (), idx, params)


def _walk(t: Transform, path, parents, idx, params) -> Iterator[Visit]:
    """``params``: the parameters exactly as ``t`` receives them (a wrapper that
    selects leaves hands its children a list of the selected ones)."""
    yield Visit(t, path, parents, idx)
    children = t.children()
    if not children:
        return
    keys = t.child_state_keys()
    selections = (None,) * len(children)
    if idx is not None:
        selections = t.child_leaves(params, None, len(idx))
        leaves = _tree.leaves(params)
    for child, key, sel in zip(children, keys, selections):
        child_path = None if path is None or key is None else path + (key,)
        child_idx, child_params = idx, params
        if idx is not None and sel is not None:
            child_idx = [idx[i] for i in sel]
            child_params = [leaves[i] for i in sel]
        yield from _walk(child, child_path, parents + (t,), child_idx, child_params)


def per_parameter_paths(transform: Transform) -> tuple[set[tuple], dict[tuple, Transform]]:
    """The state paths, from the root's state, of every list indexed by parameter
    that the tree's transforms declare (:attr:`Transform.per_parameter_state`), and
    for each transform whose state is one entry, the path of that entry (to find
    who owns any other list). Below a child whose state is not one entry (one copy
    per parameter, as MXNet's per-parameter wrapper keeps), nothing is collected:
    that child's state lies inside an item of its parent's declared list."""
    declared: set[tuple] = set()
    owners: dict[tuple, Transform] = {}
    for visit in walk(transform):
        if visit.path is None:
            continue
        owners[visit.path] = visit.transform
        for entry in visit.transform.per_parameter_state or ():
            declared.add(visit.path + (entry if isinstance(entry, tuple) else (entry,)))
    return declared, owners


def map_transform(fn: Callable[[Transform], Transform], transform: Transform) -> Transform:
    """The tree with ``fn`` applied to every transform, children first.

    ``fn(t)`` gets ``t`` already rebuilt with its mapped children and returns its
    replacement (``t`` itself to keep it). Subtrees ``fn`` leaves alone are not
    copied.
    """

    def rebuild(t: Transform, mapped: list[Transform]) -> Transform:
        if any(m is not c for m, c in zip(mapped, t.children())):
            t = t.with_children(tuple(mapped))
        return fn(t)

    return fold_transform(rebuild, transform)


def fold_transform(fn: Callable[[Transform, list], Any], transform: Transform) -> Any:
    """``fn(t, [results of t's children])``, computed bottom-up over the tree: how an
    engine builds its own node for each transform from its children's nodes."""
    return fn(transform, [fold_transform(fn, c) for c in transform.children()])
