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
- **Combinators**: :class:`~gradstep._core.transform.Chain`,
  :class:`~gradstep._core.combine.Masked`, :class:`~gradstep._core.combine.Partition`.
  Other transforms are called as they are (``init``/``update`` on the pytree), which
  works for transforms written with traceable operations (an optax transform wrapped
  by :func:`gradstep.jax.from_optax`); fronts may register a handler for a class
  (:func:`register`). A transform whose update reads array values in Python raises
  :class:`NotTraceable` naming it.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from .._core.combine import Masked, Partition
from .._core.elementwise import Elementwise, NormScaled
from .._core.namespaces import element_for, namespace_of, nan_to_zero
from .._core.transform import Chain, Transform, fold_transform
from . import jax_namespace  # noqa: F401  (registers JAX's array namespace)

SCALAR_MODES = ("auto", "host")
FALLBACKS = ("error", "host")
COUNT_DTYPE = jnp.int32
_COUNT_MAX = np.iinfo(np.int32).max

# errors that mean "this Python code needs concrete values"
_TRACE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


class NotTraceable(Exception):
    """A stage of the transform cannot run under ``jax.jit`` (the reason is the message)."""


_HANDLERS: dict[type, Callable[[Transform, list], Any]] = {}


def register(cls: type) -> Callable:
    """Register ``factory(transform, children) -> node`` for transforms of class ``cls``.

    ``children`` are the nodes of the transform's children (its
    :meth:`~gradstep._core.transform.Transform.children`, in order), built first. A
    node has ``init(leaves, td)``, ``collect(state, ctx, req)`` and ``apply(g, w,
    state, td, ctx, req) -> (updates, state)``; see :class:`_Node`.
    """

    def deco(factory):
        _HANDLERS[cls] = factory
        return factory

    return deco


def _jax_ns():
    return namespace_of(jnp.zeros(()))


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def float_dtype():
    """The widest float JAX has now: float64 with ``jax_enable_x64``, else float32."""
    return jnp.dtype(jnp.float64) if jax.config.jax_enable_x64 else jnp.dtype(jnp.float32)


def safe_increment(count):
    """``count + 1``, staying at the int32 maximum instead of wrapping."""
    return jnp.where(count < _COUNT_MAX, count + 1, count).astype(COUNT_DTYPE)


def _leaf_dtype(x):
    dtype = jnp.result_type(x)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else float_dtype()


def _cast(values: list, like) -> list:
    """Scalars for element math on ``like``: floats in its dtype, booleans as they are."""
    dtype = _leaf_dtype(like)
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or getattr(v, "dtype", None) == jnp.bool_:
            out.append(v)
        else:
            out.append(jnp.asarray(v).astype(dtype) if hasattr(v, "dtype") else dtype.type(v))
    return out


# -- per-step scalars -------------------------------------------------------------------


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, jax.core.Tracer))


class TracedAttempt:
    """A stage's Python function (``prepare``, ``factor``, ``combine``) run under
    :func:`jax.jit` with its xmath operations bound to :mod:`jax.numpy`.

    ``fn(dynamic, static)``: ``dynamic`` a pytree of arrays (the count, traced
    overrides, sums), ``static`` a hashable tuple (Python overrides, flags). Inside an
    outer ``jax.jit`` the call is inlined; outside it is compiled once per static
    value, so eager and jitted steps compute the very same scalars. A configuration
    whose tracing fails (the function reads a value in Python) is remembered and
    answered with ``None`` from then on: the caller goes to the host.
    """

    def __init__(self, fn: Callable):
        self._jit = jax.jit(fn, static_argnums=(1,))
        self._failed: set = set()

    def __call__(self, dynamic: Any, static: tuple):
        try:
            key = (static, tree_util.tree_structure(dynamic))
            hash(key)
        except TypeError:
            return None
        if key in self._failed:
            return None
        try:
            return self._jit(dynamic, static)
        except _TRACE_ERRORS + (TypeError,):
            self._failed.add(key)
            return None


def _static_items(ctx: dict) -> tuple:
    return tuple(sorted(ctx.items()))


class _Request:
    """The scalars one stage needs this step, to be computed on the host."""

    def __init__(self, stage, key, count, static_ctx, dynamic_ctx, kinds):
        self.stage = stage
        self.key = key
        self.count = count  # an int32 array, or None (count 0 / not counted)
        self.static_ctx = static_ctx  # Python overrides
        self.dynamic_names = list(dynamic_ctx)
        self.dynamic_values = list(dynamic_ctx.values())
        self.kinds = kinds  # per scalar: "f" (float) or "b" (bool)


class Scalars:
    """Collects the stages' scalar requests of one step and answers those for the
    host with one callback."""

    def __init__(self, mode: str):
        self.mode = mode
        self.pending: list[_Request] = []
        self.ready: dict[int, list] = {}
        self.valid: list = []  # traced flags: each traced hyperparameter in its range

    def request(self, node, stage: Elementwise, count, ctx: dict) -> None:
        """Work out this step's scalars of ``stage`` (owned by ``node``)."""
        static_ctx, dynamic_ctx = split_overrides(stage, count, ctx)
        if dynamic_ctx:
            ranges = stage.hyperparameters()
            for name, value in dynamic_ctx.items():
                flag = in_declared_range(value, ranges.get(name))
                if flag is not None:
                    self.valid.append(flag)
        if count is None and not dynamic_ctx:
            # fixed for the whole run: computed now, in Python
            self.ready[id(node)] = list(stage.scalars(0, static_ctx).values())
            return
        if self.mode == "auto" and not _python_schedules(stage, static_ctx, dynamic_ctx):
            traced = node.traced_prepare((count, dynamic_ctx), _static_items(static_ctx))
            if traced is not None:
                _check_arity(stage, traced)
                self.ready[id(node)] = traced
                return
        self.pending.append(_Request(stage, id(node), count, static_ctx, dynamic_ctx, node.kinds()))

    def resolve(self) -> None:
        """Run one host callback for every pending request."""
        if not self.pending:
            return
        counts, values, plans = [], [], []
        n_float = n_bool = 0
        for r in self.pending:
            count_index = -1
            if r.count is not None:
                count_index = len(counts)
                counts.append(r.count)
            value_index = len(values)
            values.extend(r.dynamic_values)
            slots = []
            for kind in r.kinds:
                if kind == "b":
                    slots.append(("b", n_bool))
                    n_bool += 1
                else:
                    slots.append(("f", n_float))
                    n_float += 1
            plans.append((r.stage, count_index, r.static_ctx, r.dynamic_names, value_index, slots))
        fdtype = float_dtype()
        counts_arr = jnp.stack(counts).astype(COUNT_DTYPE) if counts else jnp.zeros(0, COUNT_DTYPE)
        values_arr = (
            jnp.stack([jnp.asarray(v, fdtype) for v in values]) if values else jnp.zeros(0, fdtype)
        )

        def one(count_row: np.ndarray, value_row: np.ndarray):
            floats = np.zeros(n_float, fdtype)
            bools = np.zeros(n_bool, np.bool_)
            for stage, count_index, static_ctx, names, value_index, slots in plans:
                count = int(count_row[count_index]) if count_index >= 0 else 0
                ctx = dict(static_ctx)
                for k, name in enumerate(names):
                    ctx[name] = float(value_row[value_index + k])
                scalars = list(stage.scalars(count, ctx).values())
                _check_arity(stage, scalars)
                for value, (kind, index) in zip(scalars, slots):
                    if kind == "b":
                        bools[index] = bool(value)
                    else:
                        floats[index] = float(value)
            return floats, bools

        shapes = (
            jax.ShapeDtypeStruct((n_float,), fdtype),
            jax.ShapeDtypeStruct((n_bool,), jnp.bool_),
        )
        floats, bools = host_call(one, shapes, counts_arr, values_arr)
        for r, plan_ in zip(self.pending, plans):
            self.ready[r.key] = [bools[i] if kind == "b" else floats[i] for kind, i in plan_[5]]
        self.pending = []

    def of(self, node) -> list:
        return self.ready[id(node)]


def host_call(fn: Callable, shapes: tuple, *args):
    """``fn(*rows) -> tuple of arrays`` evaluated on the host with
    :func:`jax.pure_callback` (under ``jax.vmap`` once per batch, looping over it)."""
    return jax.pure_callback(_batched(fn, shapes), shapes, *args, vmap_method="broadcast_all")


def _batched(fn: Callable, shapes) -> Callable:
    """``fn`` of 1-d rows, applied over any leading batch dimensions (``jax.vmap``)."""

    def call(*args):
        args = [np.asarray(a) for a in args]
        batch = args[0].shape[:-1]
        if not batch:
            return fn(*args)
        outs = [np.zeros(batch + s.shape, s.dtype) for s in shapes]
        for index in np.ndindex(*batch):
            for out, value in zip(outs, fn(*(a[index] for a in args))):
                out[index] = value
        return tuple(outs)

    return call


def split_overrides(stage, count, ctx: dict) -> tuple[dict, dict]:
    """``stage``'s hyperparameter values that differ from its own for this step.

    Returns ``(static, dynamic)``: overrides from ``ctx`` (an array, traced or not,
    is dynamic; a Python number static), and schedules that accept the count as an
    array (evaluated in the graph, as optax's schedules are), which are dynamic. A
    schedule that needs a Python number (gradstep's own) is left to the stage.
    """
    static, dynamic = {}, {}
    for name, own in stage.hyperparams.items():
        if name in ctx:
            value = ctx[name]
            (dynamic if _is_array(value) else static)[name] = value
        elif callable(own) and count is not None:
            value = _try_trace_schedule(own, count)
            if value is not None:
                dynamic[name] = value
    return static, dynamic


def in_declared_range(value, constraint) -> Any:
    """A traced boolean: ``value`` is finite and within ``constraint`` (an
    :class:`~gradstep._core.validate.Interval`); None for other constraints."""
    lo, hi = getattr(constraint, "lo", None), getattr(constraint, "hi", None)
    if not hasattr(constraint, "lo_open"):
        return None
    v = jnp.asarray(value)
    ok = jnp.isfinite(v)
    if lo is not None:
        ok = ok & ((v > lo) if constraint.lo_open else (v >= lo))
    if hi is not None:
        ok = ok & ((v < hi) if constraint.hi_open else (v <= hi))
    return jnp.all(ok)


def _guarded(ok, updates: list, new_state: Any, old_state: Any) -> tuple[list, Any]:
    """The step where ``ok``; where not, no step: zero updates and the old state."""
    updates = [jnp.where(ok, u, jnp.zeros_like(u)) for u in updates]
    new_leaves, new_td = tree_util.tree_flatten(new_state)
    old_leaves = new_td.flatten_up_to(old_state)
    kept = [
        jnp.where(ok, n, jnp.asarray(o, jnp.result_type(n))) for n, o in zip(new_leaves, old_leaves)
    ]
    return updates, new_td.unflatten(kept)


def _python_schedules(stage, static: dict, dynamic: dict) -> bool:
    return any(callable(v) for n, v in stage.hyperparams.items() if n not in static | dynamic)


def _try_trace_schedule(schedule: Callable, count):
    if getattr(schedule, "evaluate_on_host", False):
        return None
    try:
        value = schedule(count)
    except _TRACE_ERRORS + (TypeError,):
        return None
    return jnp.asarray(value) if _is_array(value) else None


def _traceable_copy(stage, attr: str):
    """A copy of ``stage`` whose function ``attr`` (``prepare``, ``factor``,
    ``combine``) has the element operations of :mod:`gradstep._core.xmath` bound to
    :mod:`jax.numpy`, so a function written with them (``where`` instead of ``if``)
    traces."""
    copy = _copy.copy(stage)
    setattr(copy, attr, element_for(getattr(stage, attr), _jax_ns()))
    return copy


def _kinds(stage) -> list[str]:
    """Whether each scalar of ``stage`` is a float or a boolean (probed at count 0)."""
    try:
        values = list(stage.scalars(0, {}).values())
    except Exception:  # noqa: BLE001 - a probe only; floats are the rule
        return ["f"] * len(stage.scalar_names())
    return [
        "b" if isinstance(v, (bool, np.bool_)) or getattr(v, "dtype", None) == np.bool_ else "f"
        for v in values
    ]


def _check_arity(stage, scalars: list) -> None:
    names = stage.scalar_names()
    if len(scalars) != len(names):
        raise ValueError(
            f"{stage.name}: prepare returned {len(scalars)} scalars, the element function "
            f"takes {len(names)} ({', '.join(names)})"
        )


# -- nodes: one per transform of the tree --------------------------------------------


class _Node:
    """How the engine runs one transform.

    ``init(leaves, td)``: the state for these leaves (``td`` rebuilds their tree).
    ``collect(state, ctx, req)``: ask ``req`` for the scalars this step needs.
    ``apply(g, w, state, td, ctx, req)``: ``(update leaves, new state)``.
    """

    def init(self, leaves: list, td) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def collect(self, state: Any, ctx: dict, req: Scalars) -> None:
        pass

    def apply(self, g, w, state, td, ctx, req):  # pragma: no cover - interface
        raise NotImplementedError


class ElementNode(_Node):
    def __init__(self, stage: Elementwise):
        self.stage = stage
        self.fn = element_for(stage.element, _jax_ns())
        self._kinds: list[str] | None = None
        copy = _traceable_copy(stage, "prepare")

        def prepare(dynamic, static):
            count, overrides = dynamic
            ctx = {**dict(static), **overrides}
            return list(copy.scalars(0 if count is None else count, ctx).values())

        self.traced_prepare = TracedAttempt(prepare)

    def kinds(self) -> list[str]:
        if self._kinds is None:
            self._kinds = _kinds(self.stage)
        return self._kinds

    def init(self, leaves, td):
        state = {}
        if self.stage.counted:
            state["count"] = jnp.zeros((), COUNT_DTYPE)
        for slot in self.stage.slots:
            state[slot.name] = td.unflatten([slot.initial(p) for p in leaves])
        return state

    def collect(self, state, ctx, req):
        count = state["count"] if self.stage.counted else None
        req.request(self, self.stage, count, ctx)

    def apply(self, g, w, state, td, ctx, req, per_leaf=None):
        """``per_leaf[i]``: scalars appended for leaf ``i`` only (per-tensor reductions)."""
        stage = self.stage
        if stage.uses_params and w is None:
            raise ValueError(f"{stage.name}: this transform needs params in update()")
        scalars = req.of(self)
        slots = [td.flatten_up_to(state[s.name]) for s in stage.slots]
        ns = _jax_ns()
        updates, new_slots = [], [[] for _ in stage.slots]
        cache: dict = {}
        for i, gi in enumerate(g):
            key = _leaf_dtype(gi)
            if key not in cache:
                cache[key] = _cast(scalars, gi)
            extra = [] if per_leaf is None else _cast(per_leaf[i], gi)
            result = self.fn(*self.arrays(g, w, slots, i), *cache[key], *extra)
            if stage.slots:
                u, *values = result
                for k, value in enumerate(values):
                    if stage.clear_nan_slots:
                        value = nan_to_zero(value, ns)
                    new_slots[k].append(jnp.asarray(value).astype(slots[k][i].dtype))
            else:
                u = result
            updates.append(jnp.asarray(u))
        new_state = {}
        if stage.counted:
            new_state["count"] = safe_increment(state["count"])
        for slot, values in zip(stage.slots, new_slots):
            new_state[slot.name] = td.unflatten(values)
        return updates, new_state

    def arrays(self, g, w, slots, i) -> list:
        """The per-element inputs of leaf ``i``, in the element function's order."""
        return [g[i]] + ([w[i]] if self.stage.uses_params else []) + [s[i] for s in slots]


class NormNode(_Node):
    """A :class:`NormScaled` stage: sums of squares in the graph, then the stage's
    own ``factors``: traced where its ``factor`` is, else on the host."""

    def __init__(self, stage: NormScaled):
        self.stage = stage
        self.fn = element_for(stage.element, _jax_ns())
        copy = _traceable_copy(stage, "factor")

        def factors(dynamic, static):
            sums, count, overrides = dynamic
            ctx = {**dict(static), **overrides}
            return copy.factors(list(sums), 0 if count is None else count, ctx)

        self.traced_factors = TracedAttempt(factors)

    def init(self, leaves, td):
        return {"count": jnp.zeros((), COUNT_DTYPE)} if self.stage.counted else {}

    def apply(self, g, w, state, td, ctx, req):
        stage = self.stage
        count = state["count"] if stage.counted else None
        acc = float_dtype()
        sums = [jnp.sum(jnp.square(jnp.asarray(x).astype(acc))) for x in g]
        static_ctx, dynamic_ctx = split_overrides(stage, count, ctx)
        factors = None
        if req.mode == "auto" and not _python_schedules(stage, static_ctx, dynamic_ctx):
            factors = self.traced_factors((sums, count, dynamic_ctx), _static_items(static_ctx))
        if factors is None:
            factors = self._host_factors(sums, count, static_ctx, dynamic_ctx)
        out = [self.fn(x, *_cast([f], x)) for x, f in zip(g, factors)]
        new_state = {"count": safe_increment(state["count"])} if stage.counted else {}
        return out, new_state

    def _host_factors(self, sums, count, static_ctx, dynamic_ctx):
        stage = self.stage
        n = len(sums)
        if n == 0:
            return []
        fdtype = float_dtype()
        names = list(dynamic_ctx)

        def one(count_row, sums_row, value_row):
            ctx = dict(static_ctx)
            ctx.update({name: float(v) for name, v in zip(names, value_row)})
            c = int(count_row[0]) if count_row.size else 0
            factors = stage.factors([float(s) for s in sums_row], c, ctx)
            return (np.asarray(factors, fdtype),)

        (factors,) = host_call(
            one,
            (jax.ShapeDtypeStruct((n,), fdtype),),
            _count_row(count),
            jnp.stack(sums).astype(fdtype),
            _value_row(dynamic_ctx),
        )
        return [factors[i] for i in range(n)]


def _count_row(count):
    """The count as a 1-d array for a host callback (empty when not counted)."""
    if count is None:
        return jnp.zeros(0, COUNT_DTYPE)
    return jnp.reshape(count, (1,)).astype(COUNT_DTYPE)


def _value_row(dynamic: dict):
    """Dynamic override values as a 1-d float array for a host callback."""
    fdtype = float_dtype()
    if not dynamic:
        return jnp.zeros(0, fdtype)
    return jnp.stack([jnp.asarray(v, fdtype) for v in dynamic.values()])


class ChainNode(_Node):
    def __init__(self, chain: Chain, children: list):
        self.names = chain.stage_names
        self.nodes = list(children)

    def init(self, leaves, td):
        return {n: node.init(leaves, td) for n, node in zip(self.names, self.nodes)}

    def collect(self, state, ctx, req):
        for n, node in zip(self.names, self.nodes):
            node.collect(state[n], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        new_state = {}
        for n, node in zip(self.names, self.nodes):
            g, new_state[n] = node.apply(g, w, state[n], td, ctx, req)
        return g, new_state


def _flat_labels(labels: Any, td, g, w) -> list:
    """The labels (or mask flags) of the leaves, from a tree or a function of params."""
    if callable(labels):
        tree = td.unflatten(w if w is not None else g)
        labels = labels(tree)
    try:
        flat = td.flatten_up_to(labels)
    except (ValueError, TypeError):
        flat = tree_util.tree_leaves(labels, is_leaf=lambda x: x is None)
    if len(flat) != td.num_leaves:
        raise ValueError(f"labels have {len(flat)} leaves, the parameters {td.num_leaves}")
    for x in flat:
        if _is_traced(x):
            raise NotTraceable(
                "a mask or label is a traced array; masks and labels choose leaves while "
                "tracing, so they must be Python values (a tree, or a function of the "
                "parameters' structure and shapes)"
            )
    return flat


def _sub(values: list | None, idx: list[int]) -> list | None:
    return None if values is None else [values[i] for i in idx]


def _list_def(n: int):
    return tree_util.tree_structure([0] * n)


class MaskedNode(_Node):
    def __init__(self, masked: Masked, children: list):
        self.masked = masked
        (self.inner,) = children

    def _idx(self, td, g, w):
        return [i for i, f in enumerate(_flat_labels(self.masked.mask, td, g, w)) if bool(f)]

    def init(self, leaves, td):
        idx = self._idx(td, leaves, leaves)
        return {"inner": self.inner.init(_sub(leaves, idx), _list_def(len(idx)))}

    def collect(self, state, ctx, req):
        self.inner.collect(state["inner"], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        idx = self._idx(td, g, w)
        sub_u, inner = self.inner.apply(
            _sub(g, idx), _sub(w, idx), state["inner"], _list_def(len(idx)), ctx, req
        )
        out = list(g)
        for i, u in zip(idx, sub_u):
            out[i] = u
        return out, {"inner": inner}


class PartitionNode(_Node):
    def __init__(self, part: Partition, children: list):
        self.part = part
        self.nodes = dict(zip(part.child_state_keys(), children))

    def _groups(self, td, g, w):
        groups: dict = {label: [] for label in self.nodes}
        for i, label in enumerate(_flat_labels(self.part.labels, td, g, w)):
            if label is None:
                continue
            if label not in groups:
                raise ValueError(
                    f"{self.part.name}: label {label!r} has no transform; labels with a "
                    f"transform: {sorted(map(str, groups))}"
                )
            groups[label].append(i)
        return groups

    def init(self, leaves, td):
        groups = self._groups(td, leaves, leaves)
        return {
            label: self.nodes[label].init(_sub(leaves, idx), _list_def(len(idx)))
            for label, idx in groups.items()
        }

    def collect(self, state, ctx, req):
        for label, node in self.nodes.items():
            node.collect(state[label], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        out = list(g)
        new_state = {}
        for label, idx in self._groups(td, g, w).items():
            sub_u, new_state[label] = self.nodes[label].apply(
                _sub(g, idx), _sub(w, idx), state[label], _list_def(len(idx)), ctx, req
            )
            for i, u in zip(idx, sub_u):
                out[i] = u
        return out, new_state


class CallNode(_Node):
    """Any other transform: its own ``init``/``update`` called on the pytree.

    That works for transforms written with traceable operations (an optax transform,
    a user's jnp code, gradstep's rules written against the array namespace:
    Adafactor, Muon, SGLD, L-BFGS's gradient steps, LARS's momentum correction,
    NAdam's shared schedule). One whose update reads array values in Python
    (Lasagne's norm constraints) raises :class:`NotTraceable`, or with
    ``fallback="host"`` runs on the host: its eager ``update`` on NumPy copies of
    the arrays, through :func:`jax.pure_callback` (correct, and as fast as the NumPy
    front plus two transfers; trees of dicts, lists and tuples only).
    """

    def __init__(self, transform: Transform, fallback: str = "error"):
        self.transform = transform
        self.fallback = fallback

    def _explain(self, err: Exception) -> NotTraceable:
        t = self.transform
        return NotTraceable(
            f"{type(t).__name__} {t.name!r} cannot run under jax.jit: its update reads "
            f"array values in Python ({type(err).__name__}). Only elementwise stages, "
            "norm reductions, chains, masks, partitions and transforms written with "
            "traceable operations run in the graph; fallback='host' runs this one on "
            "the host."
        )

    def init(self, leaves, td):
        try:
            state = self.transform.init(td.unflatten(leaves))
        except _TRACE_ERRORS as err:
            if self.fallback != "host":
                raise self._explain(err) from err
            return self._host_init(leaves, td)
        # NumPy leaves become JAX arrays of JAX's dtypes now, so the state a step
        # returns has the same types (no retrace)
        return tree_util.tree_map(_as_jax_leaf, state)

    def apply(self, g, w, state, td, ctx, req):
        params = None if w is None else td.unflatten(w)
        try:
            u, new_state = self.transform.update(td.unflatten(g), state, params, **ctx)
        except _TRACE_ERRORS as err:
            if self.fallback != "host":
                raise self._explain(err) from err
            return self._host_apply(g, w, state, td, ctx)
        return td.flatten_up_to(u), new_state

    # -- the host fallback ---------------------------------------------------------

    def _host_init(self, leaves, td):
        t = self.transform
        zeros = [np.zeros(np.shape(x), jnp.result_type(x)) for x in leaves]
        template, s_td = tree_util.tree_flatten(t.init(td.unflatten(zeros)))
        shapes = [_host_struct(x) for x in template]

        def host(*arrays):
            state = t.init(td.unflatten([np.asarray(x) for x in arrays]))
            return [_fit(x, s.dtype) for x, s in zip(tree_util.tree_leaves(state), shapes)]

        out = jax.pure_callback(host, shapes, *leaves, vmap_method="sequential")
        return s_td.unflatten(out)

    def _host_apply(self, g, w, state, td, ctx):
        t = self.transform
        s_leaves, s_td = tree_util.tree_flatten(state)
        static = {k: v for k, v in ctx.items() if not _is_array(v)}
        names = [k for k, v in ctx.items() if _is_array(v)]
        shapes = (
            [jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)) for x in g],
            [_host_struct(x) for x in s_leaves],
        )
        has_w = w is not None

        def host(g_np, w_np, s_np, values):
            grads = td.unflatten([np.asarray(x) for x in g_np])
            params = td.unflatten([np.asarray(x) for x in w_np]) if has_w else None
            old = s_td.unflatten([np.asarray(x) for x in s_np])
            kwargs = dict(static)
            kwargs.update({k: np.asarray(v).item() for k, v in zip(names, values)})
            updates, new = t.update(grads, old, params, **kwargs)
            new_leaves, new_td = tree_util.tree_flatten(new)
            if new_td != s_td:
                raise ValueError(f"{t.name}: the state changed structure between steps")
            return (
                [np.asarray(x, s.dtype) for x, s in zip(td.flatten_up_to(updates), shapes[0])],
                [_fit(x, s.dtype) for x, s in zip(new_leaves, shapes[1])],
            )

        u, new = jax.pure_callback(
            host,
            shapes,
            list(g),
            list(w) if has_w else [],
            list(s_leaves),
            [ctx[k] for k in names],
            vmap_method="sequential",
        )
        return list(u), s_td.unflatten(list(new))


def _fit(x, dtype) -> np.ndarray:
    """``x`` as ``dtype``; an integer that does not fit (an int64 seed without
    ``jax_enable_x64``) is an error, not a silent wrap-around."""
    a = np.asarray(x)
    if np.issubdtype(a.dtype, np.integer) and np.dtype(dtype) != a.dtype:
        info = np.iinfo(dtype)
        if a.size and (a.min() < info.min or a.max() > info.max):
            raise ValueError(
                f"a state value {a.max()} does not fit JAX's {np.dtype(dtype).name}; enable "
                "jax_enable_x64 (jax.config.update('jax_enable_x64', True)) to keep int64 state"
            )
    return a.astype(dtype, copy=False)


def _as_jax_leaf(x):
    if isinstance(x, (np.ndarray, np.generic)):
        return jnp.asarray(_fit(x, jax.dtypes.canonicalize_dtype(x.dtype)))
    return x


def _host_struct(x) -> jax.ShapeDtypeStruct:
    """The shape and (JAX-canonical) dtype of a state leaf made on the host."""
    dtype = jax.dtypes.canonicalize_dtype(np.result_type(x))
    return jax.ShapeDtypeStruct(np.shape(x), dtype)


def make_plan(fallback: str = "error") -> Callable[[Transform], _Node]:
    """``plan(transform) -> node``: the node tree that runs a transform, built
    bottom-up over the transform tree."""

    def node_for(transform: Transform, children: list) -> _Node:
        for cls in type(transform).__mro__:
            if cls in _HANDLERS:
                return _HANDLERS[cls](transform, children)
        if isinstance(transform, NormScaled):
            return NormNode(transform)
        if isinstance(transform, Elementwise) and type(transform).update is Elementwise.update:
            return ElementNode(transform)
        if isinstance(transform, Chain):
            return ChainNode(transform, children)
        if isinstance(transform, Masked):
            return MaskedNode(transform, children)
        if isinstance(transform, Partition):
            return PartitionNode(transform, children)
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

    Hyperparameter values known only at run time are checked against their declared
    ranges. Python numbers and gradstep's schedules (evaluated on the host) are
    checked by the core and raise ``ValueError`` (inside ``jax.jit``, as the error
    of the host callback). Traced values (a traced ``learning_rate=`` override, a
    schedule traced in the graph) cannot raise: a step in which one is NaN,
    infinite or out of range is a **no-op** -- zero updates, the state (step counts
    included) unchanged -- a NaN-safe guard that costs a few scalar operations.
    """

    def __init__(self, transform: Transform, *, scalars: str = "auto", fallback: str = "error"):
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
        self.transform = transform
        self.scalars = scalars
        self.fallback = fallback
        self.root = make_plan(fallback)(transform)

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
        if req.valid:
            # traced hyperparameter values cannot be checked on the host: a step with
            # one that is NaN, infinite or outside its declared range does nothing
            ok = jnp.all(jnp.stack(req.valid))
            updates, new_state = _guarded(ok, updates, new_state, state)
        return td.unflatten(updates), new_state
