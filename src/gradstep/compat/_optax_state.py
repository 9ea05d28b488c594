"""optax's state structures for ``gradstep.compat.optax``: the core's named dicts
shown to the user as optax's tuples of NamedTuples, and read back from them.

The core keeps its state as dicts named after stages and slots
(``{"scale_by_adam": {"count", "mu", "nu"}, "learning_rate": {}}``); optax code reads
``(ScaleByAdamState(count, mu, nu), EmptyState())``. Each compat factory describes
the optax state of what it builds with a :class:`Layout`, a small tree parallel to
the core transform tree:

- :class:`Slots` -- one NamedTuple of optax's whose fields are core slots
  (:class:`Tree`: one array per parameter; :class:`Scalar`: one array), a count the
  core does not keep (:class:`Counter`, kept by this layer and incremented per
  update as optax's), or a value derived from other slots (:class:`Derived`);
- :data:`EMPTY` -- optax's ``EmptyState()``;
- :class:`Seq` -- a chain: optax's tuple, one entry per optax stage, each mapped to
  a core stage (or to none, for a stage gradstep leaves out, such as optax's
  ``identity`` in ``sgd`` without momentum);
- :class:`Masked`, :class:`Partition` -- optax's ``MaskedState``/``PartitionState``
  whose inner trees hold ``MaskedNode()`` for the subtrees the inner transform does
  not see (the JAX engine keeps the core's slots in that tree already:
  ``JaxEngine(holes=MaskedNode)``);
- :class:`Raw` -- the core state as it is (a gradstep transform, or a real optax
  transform whose state is optax's own already).

``to_optax(core, node, ctx, prev)`` and ``from_optax(state, node, ctx)`` are
inverse on every field the core keeps; ``node`` is the core transform this layout
describes (walked with the transform protocol), ``prev`` the optax state before the
update (``None`` at ``init``; only counters read it). A layout that does not
account for every key of a core state raises: the mapping never drops state.
"""

from __future__ import annotations

import collections
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.combine import mask_flag
from .._core.transform import Transform
from ..engines.jax_labels import flat_labels, shown_structure

# -- optax's state classes (optax's own where installed, else same-named twins) ------


def state_class(name: str, fields: tuple[str, ...], module: str = "optax") -> type:
    """optax's NamedTuple ``name`` when optax is installed (``isinstance`` checks of
    optax code then hold), else a NamedTuple of the same name and fields."""
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        cls = None
    if cls is not None and tuple(getattr(cls, "_fields", ())) == fields:
        return cls
    return collections.namedtuple(name, fields)  # pragma: no cover - without optax


EmptyState = state_class("EmptyState", ())
MaskedNode = state_class("MaskedNode", ())
MaskedState = state_class("MaskedState", ("inner_state",))
PartitionState = state_class("PartitionState", ("inner_states",))
ApplyIfFiniteState = state_class(
    "ApplyIfFiniteState", ("notfinite_count", "last_finite", "total_notfinite", "inner_state")
)
InjectHyperparamsState = state_class(
    "InjectHyperparamsState", ("count", "hyperparams", "inner_state")
)
InjectStatefulHyperparamsState = state_class(
    "InjectStatefulHyperparamsState", ("count", "hyperparams", "hyperparams_states", "inner_state")
)
ScaleByAdamState = state_class("ScaleByAdamState", ("count", "mu", "nu"))
ScaleByAmsgradState = state_class("ScaleByAmsgradState", ("count", "mu", "nu", "nu_max"))
ScaleByLionState = state_class("ScaleByLionState", ("count", "mu"))
ScaleByRmsState = state_class("ScaleByRmsState", ("nu",))
ScaleByRStdDevState = state_class("ScaleByRStdDevState", ("mu", "nu"))
_TRANSFORM = "optax._src.transform"  # where optax keeps these, not exported at its top
ScaleByRmsWithCountState = state_class("ScaleByRmsWithCountState", ("count", "nu"), _TRANSFORM)
ScaleByRStdDevWithCountState = state_class(
    "ScaleByRStdDevWithCountState", ("count", "mu", "nu"), _TRANSFORM
)
ScaleByRssState = state_class("ScaleByRssState", ("sum_of_squares",))
ScaleByAdaDeltaState = state_class("ScaleByAdaDeltaState", ("e_g", "e_x"))
ScaleByScheduleState = state_class("ScaleByScheduleState", ("count",))
TraceState = state_class("TraceState", ("trace",))
WeightDecaySchedule = state_class("WeightDecaySchedule", ("count",), "optax.transforms._adding")


# -- where the core's per-parameter trees sit ------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """What the current transform sees, as the JAX engine hands it to it: ``td``,
    the structure of its view (the parameters' tree at the root; inside a mask or a
    partition optax's tree, with ``MaskedNode()`` in place of each subtree left
    out), and the leaves of the updates and parameters in that view. The core's
    per-parameter slots already have optax's structure ``td``
    (``JaxEngine(holes=MaskedNode)``), so :meth:`expand` and :meth:`compress` keep
    them as they are."""

    td: Any
    grads: list | None
    params: list | None

    @staticmethod
    def of(params: Any, grads: Any) -> Ctx:
        tree = params if grads is None else grads
        td = jax.tree_util.tree_structure(tree)
        g = None if grads is None else td.flatten_up_to(grads)
        w = None if params is None else td.flatten_up_to(params)
        return Ctx(td, g, w)

    def _seen(self) -> list:
        return self.grads if self.grads is not None else self.params

    def labels(self, labels: Any) -> list:
        """The label (or mask flag) of each leaf seen here, chosen exactly as the
        JAX engine chooses them (a function of the updates, as optax's)."""
        return flat_labels(labels, self.td, self._seen(), None)

    def tree(self) -> Any:
        return self.td.unflatten(self.params if self.params is not None else self.grads)

    def sub(self, sel: list[int], keep: Callable[[Any], bool], labels: Any) -> Ctx:
        """The context of a child that sees the leaves ``sel`` of these, chosen by
        ``labels`` (a tree, a prefix tree or a function of the tree) through
        ``keep(label)``: the structure the engine gives it."""
        pick = lambda xs: None if xs is None else [xs[i] for i in sel]  # noqa: E731
        td = shown_structure(labels, keep, self.td, self._seen(), None, MaskedNode, len(sel))
        return Ctx(td, pick(self.grads), pick(self.params))

    def expand(self, tree: Any) -> Any:
        """A core slot as optax's tree (it is one already)."""
        return tree

    def compress(self, tree: Any) -> Any:
        """optax's tree as the core's slot (the same)."""
        return tree


# -- layouts ---------------------------------------------------------------------------


class Layout:
    def to_optax(self, core: Any, node: Transform, ctx: Ctx, prev: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - interface

    def from_optax(self, state: Any, node: Transform, ctx: Ctx) -> Any:
        raise NotImplementedError  # pragma: no cover - interface


class Raw(Layout):
    """The core state unchanged."""

    def to_optax(self, core, node, ctx, prev):
        return core

    def from_optax(self, state, node, ctx):
        return state


RAW = Raw()


@dataclass(frozen=True)
class Tree:
    """A core slot holding one array per parameter."""

    key: str


@dataclass(frozen=True)
class Scalar:
    """A core slot holding one array (a step count)."""

    key: str


@dataclass(frozen=True)
class Counter:
    """A step count optax keeps and the core does not: 0 at ``init``, then
    incremented by every update (saturating at the int32 maximum, as optax's)."""


@dataclass(frozen=True)
class Derived:
    """A field optax keeps that follows from core slots (read-only: a value set by
    the user is not read back)."""

    fn: Callable[[dict], Any]


def safe_increment(count: Any) -> Any:
    count = jnp.asarray(count)
    top = np.iinfo(np.int32).max
    return jnp.where(count < top, count + 1, count).astype(count.dtype)


class Slots(Layout):
    """One optax NamedTuple over a core stage's slot dict."""

    def __init__(self, cls: type, **fields: Any):
        self.cls = cls
        self.fields = fields
        self.keys = {f.key for f in fields.values() if isinstance(f, (Tree, Scalar))}

    def to_optax(self, core, node, ctx, prev):
        if set(core) != self.keys:
            raise RuntimeError(
                f"gradstep.compat.optax: {self.cls.__name__} maps the core slots "
                f"{sorted(self.keys)} but {node.name}'s state has {sorted(core)}"
            )
        values = {}
        for name, f in self.fields.items():
            if isinstance(f, Tree):
                values[name] = ctx.expand(core[f.key])
            elif isinstance(f, Scalar):
                values[name] = core[f.key]
            elif isinstance(f, Counter):
                values[name] = (
                    jnp.zeros((), jnp.int32)
                    if prev is None
                    else safe_increment(getattr(prev, name))
                )
            else:
                values[name] = f.fn(core)
        return self.cls(**values)

    def from_optax(self, state, node, ctx):
        out = {}
        for name, f in self.fields.items():
            if isinstance(f, Tree):
                out[f.key] = ctx.compress(getattr(state, name))
            elif isinstance(f, Scalar):
                out[f.key] = getattr(state, name)
        return out


EMPTY = Slots(EmptyState)


def schedule_state(value: Any, cls: type = ScaleByScheduleState) -> Slots:
    """optax's state of a stage taking a number or a schedule: ``cls(count)`` for a
    schedule, ``EmptyState()`` for a number."""
    return Slots(cls, count=Scalar("count")) if callable(value) else EMPTY


class Seq(Layout):
    """A chain: optax's tuple of stage states. ``parts`` pairs each optax stage's
    layout with the position of its core stage among the chain's children (``None``:
    no core stage, its optax state built from nothing, e.g. ``EmptyState()``)."""

    def __init__(self, parts: list[tuple[int | None, Layout]]):
        self.parts = parts

    @staticmethod
    def of(chain: Transform, *pairs: tuple[Transform | None, Layout]) -> Seq:
        """Positions found by identity: ``pairs`` are ``(core stage or None, layout)``."""
        stages = chain.children()
        parts = []
        for stage, layout in pairs:
            pos = None
            if stage is not None:
                pos = next(i for i, s in enumerate(stages) if s is stage)
            parts.append((pos, layout))
        covered = {p for p, _ in parts if p is not None}
        if covered != set(range(len(stages))):
            raise RuntimeError(f"gradstep.compat.optax: a layout misses stages of {chain.name}")
        return Seq(parts)

    def to_optax(self, core, node, ctx, prev):
        stages, keys = node.children(), node.child_state_keys()
        out = []
        for j, (pos, layout) in enumerate(self.parts):
            p = None if prev is None else prev[j]
            if pos is None:
                out.append(layout.to_optax({}, node, ctx, p))
            else:
                out.append(layout.to_optax(core[keys[pos]], stages[pos], ctx, p))
        return tuple(out)

    def from_optax(self, state, node, ctx):
        stages, keys = node.children(), node.child_state_keys()
        core = {}
        for j, (pos, layout) in enumerate(self.parts):
            if pos is not None:
                core[keys[pos]] = layout.from_optax(state[j], stages[pos], ctx)
        return core


class Named(Layout):
    """optax's ``named_chain``: an ``OrderedDict`` of stage states keyed by the given
    names (the core chain's stage keys are those names)."""

    def __init__(self, layouts: list[Layout]):
        self.layouts = layouts

    def to_optax(self, core, node, ctx, prev):
        return collections.OrderedDict(  # optax's: the stages in order, not sorted
            (k, lay.to_optax(core[k], s, ctx, None if prev is None else prev[k]))
            for k, s, lay in zip(node.child_state_keys(), node.children(), self.layouts)
        )

    def from_optax(self, state, node, ctx):
        return {
            k: lay.from_optax(state[k], s, ctx)
            for k, s, lay in zip(node.child_state_keys(), node.children(), self.layouts)
        }


class Masked(Layout):
    """optax's ``MaskedState(inner_state)``. With a ``mask`` the core transform is a
    mask wrapping the inner one (state ``{"inner": ...}``); with ``mask=None``
    (optax's ``mask=True``, where gradstep needs no mask) it is the inner one."""

    def __init__(self, inner: Layout, mask: Any = None):
        self.inner = inner
        self.mask = mask

    def _child(self, node, ctx):
        flags = ctx.labels(self.mask)
        sel = [i for i, f in enumerate(flags) if mask_flag(f, "masked: mask")]
        return node.children()[0], node.child_state_keys()[0], ctx.sub(sel, bool, self.mask)

    def to_optax(self, core, node, ctx, prev):
        p = None if prev is None else prev.inner_state
        if self.mask is None:
            return MaskedState(self.inner.to_optax(core, node, ctx, p))
        child, key, c = self._child(node, ctx)
        return MaskedState(self.inner.to_optax(core[key], child, c, p))

    def from_optax(self, state, node, ctx):
        if self.mask is None:
            return self.inner.from_optax(state.inner_state, node, ctx)
        child, key, c = self._child(node, ctx)
        return {key: self.inner.from_optax(state.inner_state, child, c)}


class Partition(Layout):
    """optax's ``PartitionState(inner_states={label: MaskedState(inner_state)})``."""

    def __init__(self, inner: dict[Any, Layout], labels: Any):
        self.inner = inner
        self.labels = labels

    def _children(self, node, ctx):
        flat = ctx.labels(self.labels)
        for key, child in zip(node.child_state_keys(), node.children()):
            sel = [i for i, label in enumerate(flat) if label == key]
            yield key, child, ctx.sub(sel, lambda label, key=key: label == key, self.labels)

    def to_optax(self, core, node, ctx, prev):
        out = {}
        for key, child, c in self._children(node, ctx):
            p = None if prev is None else prev.inner_states[key].inner_state
            out[key] = MaskedState(self.inner[key].to_optax(core[key], child, c, p))
        return PartitionState(out)

    def from_optax(self, state, node, ctx):
        return {
            key: self.inner[key].from_optax(state.inner_states[key].inner_state, child, c)
            for key, child, c in self._children(node, ctx)
        }


class ApplyIfFinite(Layout):
    """optax's ``ApplyIfFiniteState``; ``last_finite`` is ``notfinite_count == 0``
    (optax resets the run of errors exactly on finite steps)."""

    def __init__(self, inner: Layout):
        self.inner = inner

    def to_optax(self, core, node, ctx, prev):
        p = None if prev is None else prev.inner_state
        count = jnp.asarray(core["notfinite_count"], jnp.int32)
        return ApplyIfFiniteState(
            notfinite_count=count,
            last_finite=count == 0,
            total_notfinite=jnp.asarray(core["total_notfinite"], jnp.int32),
            inner_state=self.inner.to_optax(core["inner"], node.children()[0], ctx, p),
        )

    def from_optax(self, state, node, ctx):
        return {
            "inner": self.inner.from_optax(state.inner_state, node.children()[0], ctx),
            "notfinite_count": state.notfinite_count,
            "total_notfinite": state.total_notfinite,
        }


def layout_of(t: Any) -> Layout:
    """The layout of a compat object; a gradstep transform or a real optax one keeps
    its own state (:data:`RAW`)."""
    return getattr(t, "layout", RAW)
