"""Per-step scalars of the JAX engine: each stage's ``prepare`` (and a reduction's
``factors``) traced where it is plain arithmetic, else answered on the host by one
callback per step; the dtype and count helpers the nodes share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from .._core.elementwise import Elementwise
from .._core.namespaces import element_for, namespace_of
from .._core.transform import shallow_copy

COUNT_DTYPE = jnp.int32
_COUNT_MAX = np.iinfo(np.int32).max

# errors that mean "this Python code needs concrete values"
TRACE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


class NotTraceable(Exception):
    """A stage of the transform cannot run under ``jax.jit`` (the reason is the message)."""


def jax_ns():
    return namespace_of(jnp.zeros(()))


def is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def float_dtype():
    """The widest float JAX has now: float64 with ``jax_enable_x64``, else float32."""
    return jnp.dtype(jnp.float64) if jax.config.jax_enable_x64 else jnp.dtype(jnp.float32)


def safe_increment(count):
    """``count + 1``, staying at the int32 maximum instead of wrapping."""
    return jnp.where(count < _COUNT_MAX, count + 1, count).astype(COUNT_DTYPE)


def leaf_dtype(x):
    """The dtype of the scalars of element math on ``x``: its own, the real one of
    a complex ``x`` (float32 for complex64, so no scalar widens it), else the
    widest float."""
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.finfo(dtype).dtype
    return dtype if jnp.issubdtype(dtype, jnp.floating) else float_dtype()


def square_sum(x, acc):
    """The sum of :math:`|x|^2` over ``x``, accumulated in ``acc``: a complex ``x``
    as the squares of its real and imaginary parts (optax's ``abs_sq``)."""
    x = jnp.asarray(x)
    if jnp.iscomplexobj(x):
        return square_sum(jnp.real(x), acc) + square_sum(jnp.imag(x), acc)
    return jnp.sum(jnp.square(x.astype(acc)))


def cast(values: list, like) -> list:
    """Scalars for element math on ``like``: floats in its dtype, booleans as they are."""
    dtype = leaf_dtype(like)
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or getattr(v, "dtype", None) == jnp.bool_:
            out.append(v)
        else:
            out.append(jnp.asarray(v).astype(dtype) if hasattr(v, "dtype") else dtype.type(v))
    return out


# -- per-step scalars -------------------------------------------------------------------


def is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, jax.core.Tracer))


class TracedAttempt:
    """A stage's Python function (``prepare``, ``factor``, ``combine``) run under
    :func:`jax.jit` with its xmath operations bound to :mod:`jax.numpy`.

    ``fn(dynamic, static)``: ``dynamic`` a pytree of arrays (the count, traced
    overrides, sums), ``static`` a hashable tuple (Python overrides, flags). Inside an
    outer ``jax.jit`` the call is inlined; outside it is compiled once per static
    value, so eager and jitted steps compute the very same scalars. A configuration
    whose tracing fails with a JAX tracing error (the function reads a value in
    Python: ``if count``, ``math.sqrt``) is remembered and answered with ``None`` from
    then on: the caller goes to the host; any other error propagates. ``source`` is
    the stage's own function: one that declares ``evaluate_on_host = True`` (it needs
    Python numbers in ways tracing cannot detect, such as a dict keyed by the
    count) is never traced.
    """

    def __init__(self, fn: Callable, source: Callable | None = None):
        self._jit = jax.jit(fn, static_argnums=(1,))
        self._failed: set = set()
        self._host = bool(getattr(source, "evaluate_on_host", False))

    def __call__(self, dynamic: Any, static: tuple):
        if self._host:
            return None
        try:
            key = (static, tree_util.tree_structure(dynamic))
            hash(key)
        except TypeError:
            return None
        if key in self._failed:
            return None
        try:
            return self._jit(dynamic, static)
        except TRACE_ERRORS:
            self._failed.add(key)
            return None


def static_items(ctx: dict) -> tuple:
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
        if self.mode == "auto" and not python_schedules(stage, static_ctx, dynamic_ctx):
            traced = node.traced_prepare((count, dynamic_ctx), static_items(static_ctx))
            if traced is not None:
                check_arity(stage, traced)
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
                check_arity(stage, scalars)
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
            (dynamic if is_array(value) else static)[name] = value
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


def guarded(ok, updates: list, new_state: Any, old_state: Any) -> tuple[list, Any]:
    """The step where ``ok``; where not, no step: zero updates and the old state."""
    updates = [jnp.where(ok, u, jnp.zeros_like(u)) for u in updates]
    new_leaves, new_td = tree_util.tree_flatten(new_state)
    old_leaves = new_td.flatten_up_to(old_state)
    kept = [
        jnp.where(ok, n, jnp.asarray(o, jnp.result_type(n))) for n, o in zip(new_leaves, old_leaves)
    ]
    return updates, new_td.unflatten(kept)


def python_schedules(stage, static: dict, dynamic: dict) -> bool:
    return any(callable(v) for n, v in stage.hyperparams.items() if n not in static | dynamic)


def _try_trace_schedule(schedule: Callable, count):
    if getattr(schedule, "evaluate_on_host", False):
        return None
    try:
        value = schedule(count)
    except TRACE_ERRORS:
        return None
    return jnp.asarray(value) if is_array(value) else None


def traceable_copy(stage, attr: str):
    """A copy of ``stage`` whose function ``attr`` (``prepare``, ``factor``,
    ``combine``) has the element operations of :mod:`gradstep._core.xmath` bound to
    :mod:`jax.numpy`, so a function written with them (``where`` instead of ``if``)
    traces."""
    clone = shallow_copy(stage)
    setattr(clone, attr, element_for(getattr(stage, attr), jax_ns()))
    return clone


def scalar_kinds(stage) -> list[str]:
    """Whether each scalar of ``stage`` is a float or a boolean (probed at count 0)."""
    try:
        values = list(stage.scalars(0, {}).values())
    except Exception:  # noqa: BLE001 - a probe only; floats are the rule
        return ["f"] * len(stage.scalar_names())
    return [
        "b" if isinstance(v, (bool, np.bool_)) or getattr(v, "dtype", None) == np.bool_ else "f"
        for v in values
    ]


def check_arity(stage, scalars: list) -> None:
    names = stage.scalar_names()
    if len(scalars) != len(names):
        raise ValueError(
            f"{stage.name}: prepare returned {len(scalars)} scalars, the element function "
            f"takes {len(names)} ({', '.join(names)})"
        )


def count_row(count):
    """The count as a 1-d array for a host callback (empty when not counted)."""
    if count is None:
        return jnp.zeros(0, COUNT_DTYPE)
    return jnp.reshape(count, (1,)).astype(COUNT_DTYPE)


def value_row(dynamic: dict):
    """Dynamic override values as a 1-d float array for a host callback."""
    fdtype = float_dtype()
    if not dynamic:
        return jnp.zeros(0, fdtype)
    return jnp.stack([jnp.asarray(v, fdtype) for v in dynamic.values()])
