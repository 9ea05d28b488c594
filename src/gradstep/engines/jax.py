"""The JAX engine: a transform's stages as one traceable function of pytrees.

``JaxEngine(transform)`` gives ``init(params) -> state`` and ``update(grads, state,
params=None, **ctx) -> (updates, state)`` that run inside :func:`jax.jit`,
:func:`jax.vmap` and ``jax.grad``-based training loops:

- **Trees** are JAX pytrees (dicts, lists, tuples, ``None``, and any registered
  pytree node), flattened with :mod:`jax.tree_util`.
- **State** is a pytree of arrays whose structure, dtypes and shapes never change
  from step to step (a step count is an ``int32`` array, incremented without
  overflow), so a jitted step is traced once.
- **Element math**: every :class:`~gradstep._core.elementwise.Elementwise` stage
  runs its own element function with the operations bound to :mod:`jax.numpy`
  (:func:`gradstep._core.namespaces.element_for`); XLA fuses the chain.
- **Per-step scalars** come from each stage's own ``prepare(h, count)`` -- plain
  Python, possibly with schedules that are Python functions; nothing is rewritten.
  Scalars that depend neither on the step count nor on a traced override are
  computed once, while tracing. The others (``scalars="auto"``, the default): where
  ``prepare`` is plain arithmetic of the count and the hyperparameters (Adam's bias
  corrections), it is traced -- the same function, run on the traced count, in
  JAX's float precision as optax computes its own; where it needs Python numbers
  (branches on the count, ``math`` functions, gradstep's Python schedules), it runs
  on the host: ONE :func:`jax.pure_callback` per step serves every such stage of
  the transform (all their counts and traced overrides in, all scalars out).
  ``scalars="host"`` sends every such stage through that callback, so the scalars
  are exactly the Python floats the NumPy engine uses (cast to each leaf's dtype),
  at the cost of a device-host round trip per step.
- **Reductions** (:class:`~gradstep._core.elementwise.NormScaled`: per-tensor or
  global norm) sum squares in the graph (float64 when ``jax_enable_x64`` is on)
  and turn the sums into factors with the stage's own ``factors``: traced where
  its ``factor`` function is (element operations of :mod:`gradstep._core.xmath`
  are bound to :mod:`jax.numpy` for it, as for element functions), else on the
  host with one callback.
- **Stage kinds**: the core's :class:`~gradstep._core.transform.Chain`,
  :class:`~gradstep._core.combine.Masked`, :class:`~gradstep._core.combine.Partition`,
  :class:`~gradstep._core.per_tensor.PerTensorReduction`,
  :class:`~gradstep._core.global_reduction.GlobalReduction`,
  :class:`~gradstep._core.skip.SkipNonfinite`,
  :class:`~gradstep._core.cautious.Cautious`,
  :class:`~gradstep._core.mechanic.Mechanize` and
  :class:`~gradstep._core.finishing.Finishing` have nodes of their own
  (:mod:`.jax_nodes`), registered in this module's table; the node tree is built
  bottom-up with the transform protocol (:func:`~gradstep._core.transform.fold_transform`).
  Other transforms are called as they are (``init``/``update`` on the pytree), which
  works for transforms written with traceable operations (an optax transform wrapped
  by :func:`gradstep.jax.from_optax`); fronts may register a handler for a class
  (:func:`register`). A transform whose update reads array values in Python raises
  :class:`NotTraceable` naming it; one that declares so (``traceable = False``) runs
  on the host with ``fallback="host"`` (:mod:`.jax_host`), with a one-time warning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from jax import tree_util

from .._core.cautious import Cautious
from .._core.combine import Masked, Partition
from .._core.elementwise import Elementwise, NormScaled
from .._core.finishing import Finishing
from .._core.global_reduction import GlobalReduction
from .._core.mechanic import Mechanize
from .._core.per_tensor import PerTensorReduction
from .._core.rounding import ParameterStore
from .._core.sharpness import SharpnessAware
from .._core.skip import SkipNonfinite
from .._core.transform import Chain, Transform, fold_transform
from . import jax_namespace  # noqa: F401  (registers JAX's array namespace)
from .jax_global import GlobalNode
from .jax_host import CallNode
from .jax_mechanic import MechanicNode
from .jax_nodes import (
    ChainNode,
    ElementNode,
    MaskedNode,
    NormNode,
    PartitionNode,
    PerTensorNode,
    _Node,
)
from .jax_rounding import parameter_store_node
from .jax_scalars import NotTraceable, Scalars, guarded
from .jax_wrapper_nodes import CautiousNode, FinishingNode, SharpnessNode, SkipNonfiniteNode

_HALF = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))

__all__ = ["FALLBACKS", "SCALAR_MODES", "JaxEngine", "NotTraceable", "make_plan", "register"]

SCALAR_MODES = ("auto", "host")
FALLBACKS = ("error", "host")


def _element_node(stage: Elementwise, children: list) -> _Node | None:
    # a subclass with its own update is not elementwise math: call it as it is
    return ElementNode(stage) if type(stage).update is Elementwise.update else None


#: ``{transform class: factory(transform, child nodes) -> node or None}``: the stage
#: kinds of the core this engine runs in the graph. A class not found here (along its
#: MRO) is called as it is (:class:`~gradstep.engines.jax_host.CallNode`).
_HANDLERS: dict[type, Callable[[Transform, list], Any]] = {
    Chain: ChainNode,
    Masked: MaskedNode,
    Partition: PartitionNode,
    Elementwise: _element_node,
    NormScaled: lambda stage, children: NormNode(stage),
    PerTensorReduction: PerTensorNode,
    GlobalReduction: GlobalNode,
    SkipNonfinite: SkipNonfiniteNode,
    SharpnessAware: SharpnessNode,
    Cautious: CautiousNode,
    Mechanize: MechanicNode,
    Finishing: FinishingNode,
    ParameterStore: parameter_store_node,
}


def register(cls: type) -> Callable:
    """Register ``factory(transform, children) -> node`` for transforms of class ``cls``
    (a front's own transform kinds; it replaces the engine's handler of ``cls``).

    ``children`` are the nodes of the transform's children (its
    :meth:`~gradstep._core.transform.Transform.children`, in order), built first. A
    node has ``init(leaves, td)``, ``collect(state, ctx, req)`` and ``apply(g, w,
    state, td, ctx, req) -> (updates, state)``; see :class:`~.jax_nodes._Node`.
    """

    def deco(factory):
        _HANDLERS[cls] = factory
        return factory

    return deco


def make_plan(fallback: str = "error", holes: Any = None) -> Callable[[Transform], _Node]:
    """``plan(transform) -> node``: the node tree that runs a transform, built
    bottom-up over the transform tree; ``holes``: see :class:`JaxEngine`."""

    def node_for(transform: Transform, children: list) -> _Node:
        for cls in type(transform).__mro__:
            factory = _HANDLERS.get(cls)
            if factory is not None:
                node = factory(transform, children)
                if node is not None:
                    if holes is not None and isinstance(node, (MaskedNode, PartitionNode)):
                        node.hole = holes
                    return node
                break
        return CallNode(transform, fallback)

    return lambda transform: fold_transform(node_for, transform)


class JaxEngine:
    """Run ``transform`` on JAX pytrees, traceable by ``jax.jit`` and ``jax.vmap``.

    Args:
      transform: any gradstep transform (see the module docstring for what runs).
      scalars: ``"auto"`` (default): each stage's ``prepare`` is traced where it is
        plain arithmetic of the count and the hyperparameters (computed in JAX's
        float precision, as optax computes its bias corrections; no host round
        trip), and evaluated on the host otherwise; ``"host"``: every count- or
        override-dependent scalar comes from the Python ``prepare`` through one host
        callback per step -- the NumPy engine's very numbers, at the cost of a
        device-host round trip.
      fallback: what a transform that cannot be traced does: ``"error"`` (default:
        :class:`NotTraceable` when the step is traced) or ``"host"`` (its eager
        update runs on the host through a callback; see :class:`CallNode`).
      holes: ``None`` (default): a mask or partition hands its inner transforms the
        leaves it selects as a flat list; a class of empty pytree nodes (optax's
        ``MaskedNode``, as :mod:`gradstep.compat.optax` passes): as optax's
        ``masked`` does, the parameters' tree with an instance in place of each
        subtree left out, so that masks, labels and state further in see (and
        hold) that tree.

    Hyperparameter values known only at run time are checked against their declared
    ranges. Python numbers and gradstep's schedules (evaluated on the host) are
    checked by the core and raise ``ValueError`` (inside ``jax.jit``, as the error
    of the host callback). Traced values (a traced ``learning_rate=`` override, a
    schedule traced in the graph) cannot raise: a step in which one is NaN,
    infinite or out of range is a **no-op** -- zero updates, the state (step counts
    included) unchanged -- a NaN-safe guard that costs a few scalar operations.
    """

    def __init__(
        self,
        transform: Transform,
        *,
        scalars: str = "auto",
        fallback: str = "error",
        holes: Any = None,
    ):
        if not isinstance(transform, Transform):
            raise TypeError(f"JaxEngine: expected a transform, got {type(transform).__name__}")
        if scalars not in SCALAR_MODES:
            raise ValueError(
                f"JaxEngine: invalid scalars={scalars!r}; valid values: {', '.join(SCALAR_MODES)}"
            )
        if fallback not in FALLBACKS:
            raise ValueError(
                f"JaxEngine: invalid fallback={fallback!r}; valid values: {', '.join(FALLBACKS)}"
            )
        if holes is not None and not isinstance(holes, type):
            raise ValueError(
                f"JaxEngine: invalid holes={holes!r}; valid values: None, a class of empty "
                "pytree nodes (optax's MaskedNode)"
            )
        self.transform = transform
        self.scalars = scalars
        self.fallback = fallback
        self.holes = holes
        self.root = make_plan(fallback, holes)(transform)

    def init(self, params: Any) -> Any:
        """The initial state for ``params`` (a pytree of arrays)."""
        leaves, td = tree_util.tree_flatten(params)
        leaves = [jnp.asarray(x) for x in leaves]
        return self.root.init(leaves, td)

    def update(self, grads: Any, state: Any, params: Any = None, **ctx: Any):
        """``(updates, new_state)``; ``ctx`` overrides hyperparameters by name (Python
        numbers or traced scalars); other keywords are ignored."""
        g, td = tree_util.tree_flatten(grads)
        g = [jnp.asarray(x) for x in g]
        w = None if params is None else [jnp.asarray(x) for x in td.flatten_up_to(params)]
        req = Scalars(self.scalars)
        self.root.collect(state, ctx, req)
        req.resolve()
        updates, new_state = self.root.apply(g, w, state, td, ctx, req)
        # the math of 16-bit leaves ran in float32; their updates come back in the
        # gradient's dtype, as optax gives them (p + u keeps the parameter's dtype)
        # (a parameter store's are the exact change of the rounded parameter: float32)
        if not isinstance(self.transform, Chain) or not isinstance(
            self.transform.stages[-1], ParameterStore
        ):
            updates = [
                u.astype(x.dtype) if u.dtype != x.dtype and x.dtype in _HALF else u
                for u, x in zip(updates, g)
            ]
        if req.valid:
            # traced hyperparameter values cannot be checked on the host: a step with
            # one that is NaN, infinite or outside its declared range does nothing
            ok = jnp.all(jnp.stack(req.valid))
            updates, new_state = guarded(ok, updates, new_state, state)
        return td.unflatten(updates), new_state
