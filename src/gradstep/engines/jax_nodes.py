"""The JAX engine's nodes: how each kind of transform runs in the traced step
(elementwise stages, norm and per-tensor reductions, chains, masks, partitions);
the wrappers around one inner transform are in :mod:`.jax_wrapper_nodes`."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core import blockwise8
from .._core.blockwise8 import BLOCKWISE8, absmax_name
from .._core.combine import Masked, Partition, mask_flag
from .._core.elementwise import Elementwise, NormScaled, resolve
from .._core.namespaces import element_for, nan_to_zero
from .._core.transform import Chain
from .jax_labels import flat_labels, list_def, shown_structure
from .jax_scalars import (
    COUNT_DTYPE,
    Scalars,
    TracedAttempt,
    cast,
    count_row,
    float_dtype,
    host_call,
    jax_ns,
    leaf_dtype,
    python_schedules,
    safe_increment,
    scalar_kinds,
    split_overrides,
    square_sum,
    static_items,
    traceable_copy,
    value_row,
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
        self.fn = element_for(stage.element, jax_ns())
        self._kinds: list[str] | None = None
        copy = traceable_copy(stage, "prepare")

        def prepare(dynamic, static):
            count, overrides = dynamic
            ctx = {**dict(static), **overrides}
            return list(copy.scalars(0 if count is None else count, ctx).values())

        self.traced_prepare = TracedAttempt(prepare, stage.prepare)

    def kinds(self) -> list[str]:
        if self._kinds is None:
            self._kinds = scalar_kinds(self.stage)
        return self._kinds

    def init(self, leaves, td):
        state = {}
        if self.stage.counted:
            state["count"] = jnp.zeros((), COUNT_DTYPE)
        for slot in self.stage.slots:
            if slot.dtype == BLOCKWISE8:
                pairs = [
                    blockwise8.initial(p, slot.fill, not slot.nonnegative, slot.min_8bit_size)
                    for p in leaves
                ]
                state[slot.name] = td.unflatten([codes for codes, _ in pairs])
                state[absmax_name(slot.name)] = td.unflatten([a for _, a in pairs])
            else:
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
        # 8-bit slots (gradstep._core.blockwise8): their block scales, else None
        scales = [
            td.flatten_up_to(state[absmax_name(s.name)]) if s.dtype == BLOCKWISE8 else None
            for s in stage.slots
        ]
        first_slot = 1 + stage.uses_params
        ns = jax_ns()
        updates, new_slots = [], [[] for _ in stage.slots]
        new_scales: list[list] = [[] for _ in stage.slots]
        cache: dict = {}
        for i, gi in enumerate(g):
            # the math runs in float32 or wider, whatever the storage ("opmath")
            arrays = [ns.widened(a) for a in self.arrays(g, w, slots, i)]
            for k, slot in enumerate(stage.slots):
                if scales[k] is not None and blockwise8.is_codes(slots[k][i]):
                    codes = slots[k][i]
                    signed = not slot.nonnegative
                    arrays[first_slot + k] = blockwise8.dequantised(codes, scales[k][i], signed)
            gi = arrays[0]
            key = leaf_dtype(gi)
            if key not in cache:
                cache[key] = cast(scalars, gi)
            extra = [] if per_leaf is None else cast(per_leaf[i], gi)
            result = self.fn(*arrays, *cache[key], *extra)
            if stage.slots:
                u, *values = result
                for k, value in enumerate(values):
                    if stage.clear_nan_slots:
                        value = nan_to_zero(value, ns)
                    if scales[k] is not None and blockwise8.is_codes(slots[k][i]):
                        value = jnp.asarray(value).astype(jnp.float32)
                        codes, scale = blockwise8.quantised(value, not stage.slots[k].nonnegative)
                        new_slots[k].append(codes)
                        new_scales[k].append(scale)
                        continue
                    if scales[k] is not None:  # below min_8bit_size: float, no scales
                        new_scales[k].append(scales[k][i])
                    new_slots[k].append(_stored(value, slots[k][i], stage.slots[k], state, i))
            else:
                u = result
            updates.append(jnp.asarray(u))
        new_state = {}
        if stage.counted:
            new_state["count"] = safe_increment(state["count"])
        for slot, values, scale in zip(stage.slots, new_slots, new_scales):
            new_state[slot.name] = td.unflatten(values)
            if slot.dtype == BLOCKWISE8:
                new_state[absmax_name(slot.name)] = td.unflatten(scale)
        return updates, new_state

    def arrays(self, g, w, slots, i) -> list:
        """The per-element inputs of leaf ``i``, in the element function's order."""
        return [g[i]] + ([w[i]] if self.stage.uses_params else []) + [s[i] for s in slots]


def _stored(value: Any, like: Any, slot: Any, state: dict, i: int) -> Any:
    if slot.stochastic_seed is None:
        return jnp.asarray(value).astype(like.dtype)
    from .jax_rounding import stored  # stochastic rounding (gradstep._core.rounding)

    return stored(value, like, slot.stochastic_seed, state["count"], i, slot.name)


class NormNode(_Node):
    """A :class:`NormScaled` stage: sums of squares in the graph, then the stage's
    own ``factors``: traced where its ``factor`` is, else on the host."""

    def __init__(self, stage: NormScaled):
        self.stage = stage
        self.fn = element_for(stage.element, jax_ns())
        copy = traceable_copy(stage, "factor")

        def factors(dynamic, static):
            sums, count, overrides = dynamic
            ctx = {**dict(static), **overrides}
            return copy.factors(list(sums), 0 if count is None else count, ctx)

        self.traced_factors = TracedAttempt(factors, stage.factor)

    def init(self, leaves, td):
        return {"count": jnp.zeros((), COUNT_DTYPE)} if self.stage.counted else {}

    def apply(self, g, w, state, td, ctx, req):
        stage = self.stage
        count = state["count"] if stage.counted else None
        if stage.of_params and w is None:
            raise ValueError(f"{stage.name}: this transform needs params in update()")
        ws = w if stage.of_params else g  # a norm of the new parameters reads them
        sums = [square_sum(stage.normed(x, wx, jax_ns()), float_dtype()) for x, wx in zip(g, ws)]
        static_ctx, dynamic_ctx = split_overrides(stage, count, ctx)
        factors = None
        if req.mode == "auto" and not python_schedules(stage, static_ctx, dynamic_ctx):
            factors = self.traced_factors((sums, count, dynamic_ctx), static_items(static_ctx))
        if factors is None:
            factors = self._host_factors(sums, count, static_ctx, dynamic_ctx)
        args = [[x, wx] if stage.of_params else [x] for x, wx in zip(g, ws)]
        out = [self.fn(*a, *cast([f], a[0])) for a, f in zip(args, factors)]
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
            count_row(count),
            jnp.stack(sums).astype(fdtype),
            value_row(dynamic_ctx),
        )
        return [factors[i] for i in range(n)]


class ChainNode(_Node):
    def __init__(self, chain: Chain, children: list):
        self.names = chain.child_state_keys()
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


def _sub(values: list | None, idx: list[int]) -> list | None:
    return None if values is None else [values[i] for i in idx]


class MaskedNode(_Node):
    """A mask: its inner node runs on the selected leaves. With ``hole`` (a class
    of empty pytree nodes, optax's ``MaskedNode``) the inner node sees them in the
    parameters' tree with a ``hole()`` in place of each masked-out subtree, as
    optax's ``masked`` hands them on (its masks and labels see that tree, its state
    holds it); without, as a flat list."""

    hole: Any = None

    def __init__(self, masked: Masked, children: list):
        self.masked = masked
        (self.inner,) = children

    def _view(self, td, g, w):
        if self.hole is not None:
            w = None  # optax's masks see the updates (the parameters at init)
        flags = flat_labels(self.masked.mask, td, g, w)
        idx = [i for i, f in enumerate(flags) if mask_flag(f, f"masked {self.masked.name}: mask")]
        if self.hole is None:
            return idx, list_def(len(idx))
        return idx, shown_structure(self.masked.mask, bool, td, g, w, self.hole, len(idx))

    def init(self, leaves, td):
        idx, sub_td = self._view(td, leaves, leaves)
        return {"inner": self.inner.init(_sub(leaves, idx), sub_td)}

    def collect(self, state, ctx, req):
        self.inner.collect(state["inner"], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        idx, sub_td = self._view(td, g, w)
        sub_u, inner = self.inner.apply(
            _sub(g, idx), _sub(w, idx), state["inner"], sub_td, ctx, req
        )
        out = list(g)
        for i, u in zip(idx, sub_u):
            out[i] = u
        return out, {"inner": inner}


class PartitionNode(_Node):
    """A partition: each label's node runs on the leaves of that label (as a flat
    list, or with ``hole`` in optax's tree with holes, as :class:`MaskedNode`)."""

    hole: Any = None

    def __init__(self, part: Partition, children: list):
        self.part = part
        self.nodes = dict(zip(part.child_state_keys(), children))

    def _groups(self, td, g, w):
        if self.hole is not None:
            w = None  # optax's labels see the updates (the parameters at init)
        groups: dict = {label: [] for label in self.nodes}
        for i, label in enumerate(flat_labels(self.part.labels, td, g, w)):
            if label is None:
                continue
            if label not in groups:
                raise ValueError(
                    f"{self.part.name}: label {label!r} has no transform; labels with a "
                    f"transform: {sorted(map(str, groups))}"
                )
            groups[label].append(i)
        out = {}
        for label, idx in groups.items():
            if self.hole is None:
                out[label] = idx, list_def(len(idx))
            else:
                keep = lambda x, label=label: x == label  # noqa: E731
                labels = self.part.labels
                out[label] = idx, shown_structure(labels, keep, td, g, w, self.hole, len(idx))
        return out

    def init(self, leaves, td):
        groups = self._groups(td, leaves, leaves)
        return {
            label: self.nodes[label].init(_sub(leaves, idx), sub_td)
            for label, (idx, sub_td) in groups.items()
        }

    def collect(self, state, ctx, req):
        for label, node in self.nodes.items():
            node.collect(state[label], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        out = list(g)
        new_state = {}
        for label, (idx, sub_td) in self._groups(td, g, w).items():
            sub_u, new_state[label] = self.nodes[label].apply(
                _sub(g, idx), _sub(w, idx), state[label], sub_td, ctx, req
            )
            for i, u in zip(idx, sub_u):
                out[i] = u
        return out, new_state


class PerTensorNode(ElementNode):
    """A per-tensor reduction stage (trust ratios): its ``norms`` element math and
    the sums of squares run in the graph; its Python ``combine`` turns each
    tensor's sums into that tensor's scalars (traced where it is plain
    arithmetic, else on the host with one callback for all tensors); then the
    element phase, as the eager engine does."""

    def __init__(self, stage, children):
        super().__init__(stage)
        self.norms = element_for(stage.norms, jax_ns())
        combine = element_for(stage.combine, jax_ns())

        def traced(dynamic, static):
            sums, overrides = dynamic
            static_ctx, flags = static
            h = resolve(stage.hyperparams, 0, {**dict(static_ctx), **overrides})
            rows = stage.with_totals([tuple(s) for s in sums])
            return [list(combine(s, dict(f), h).values()) for s, f in zip(rows, flags)]

        self.traced_combine = TracedAttempt(traced, stage.combine)

    def apply(self, g, w, state, td, ctx, req, per_leaf=None):
        stage = self.stage
        if stage.uses_params and w is None:
            raise ValueError(f"{stage.name}: this transform needs params in update()")
        scalars = req.of(self)
        slots = [td.flatten_up_to(state[s.name]) for s in stage.slots]
        acc = float_dtype()
        sums = []
        for i, gi in enumerate(g):
            terms = self.norms(*self.arrays(g, w, slots, i), *cast(scalars, gi))
            kinds = zip(terms if isinstance(terms, tuple) else (terms,), stage.sum_kinds)
            sums.append(
                [square_sum(x, acc) if k == "squares" else jnp.sum(x.astype(acc)) for x, k in kinds]
            )
            if stage.sized:  # the tensor's size follows its sums
                sums[-1].append(jnp.asarray(math.prod(gi.shape), acc))
        flags = self._flags(td, g, w)
        count = state["count"] if stage.counted else None
        static_ctx, dynamic_ctx = split_overrides(stage, count, ctx)
        own = None
        if req.mode == "auto" and not python_schedules(stage, static_ctx, dynamic_ctx):
            frozen = tuple(tuple(sorted(f.items())) for f in flags)
            own = self.traced_combine((sums, dynamic_ctx), (static_items(static_ctx), frozen))
        if own is None:
            own = self._host(sums, flags, count, static_ctx, dynamic_ctx)
        return super().apply(g, w, state, td, ctx, req, per_leaf=own)

    def _flags(self, td, g, w) -> list[dict]:
        n = len(g)
        out: list[dict] = [{} for _ in range(n)]
        for flag, mask in self.stage.flags.items():
            values = [True] * n if mask is None else flat_labels(mask, td, g, w)
            for i, v in enumerate(values):
                out[i][flag] = mask_flag(v, f"{self.stage.name}: {flag} mask")
        return out

    def _host(self, sums, flags, count, static_ctx, dynamic_ctx):
        stage = self.stage
        n, m = len(sums), len(stage.tensor_scalars)
        if n == 0:
            return []
        k = len(sums[0])
        fdtype = float_dtype()
        names = list(dynamic_ctx)

        def one(count_row, sums_row, value_row):
            ctx = dict(static_ctx)
            ctx.update({name: float(v) for name, v in zip(names, value_row)})
            c = int(count_row[0]) if count_row.size else 0
            h = resolve(stage.hyperparams, c, ctx)
            rows = [tuple(float(x) for x in sums_row[i * k : (i + 1) * k]) for i in range(n)]
            values = stage.tensor_scalar_values(rows, flags, h)
            return (np.asarray([list(v.values()) for v in values], fdtype).reshape(n, m),)

        flat = jnp.stack([x for row in sums for x in row]).astype(fdtype)
        (table,) = host_call(
            one,
            (jax.ShapeDtypeStruct((n, m), fdtype),),
            count_row(count),
            flat,
            value_row(dynamic_ctx),
        )
        return [[table[i, j] for j in range(m)] for i in range(n)]
