"""JAX-engine handlers of the wrappers in :mod:`gradstep.transforms`.

The engine (:mod:`gradstep.engines.jax`) imports only the core; the wrappers whose
control flow reads array values (skip a step when a gradient is not finite) get a
traceable equivalent here, registered with :func:`gradstep.engines.jax.register`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from .._core.elementwise import resolve
from .._core.namespaces import element_for
from ..engines.jax import (
    COUNT_DTYPE,
    ElementNode,
    TracedAttempt,
    _cast,
    _count_row,
    _flat_labels,
    _jax_ns,
    _python_schedules,
    _static_items,
    _value_row,
    float_dtype,
    host_call,
    register,
    split_overrides,
)
from ..transforms.nonfinite import SkipNonfinite


@register(SkipNonfinite)
class SkipNonfiniteNode:
    """:func:`gradstep.transforms.skip_nonfinite` under jit: the inner update is
    computed every step and selected (``jnp.where``) when the gradients are finite,
    or when the run of non-finite steps exceeds ``max_consecutive_errors``; otherwise
    the updates are zero and the inner state is kept."""

    def __init__(self, transform: SkipNonfinite, children):
        self.limit = transform.max_consecutive_errors
        (self.inner,) = children

    def init(self, leaves, td):
        return {
            "inner": self.inner.init(leaves, td),
            "notfinite_count": jnp.zeros((), COUNT_DTYPE),
            "total_notfinite": jnp.zeros((), COUNT_DTYPE),
        }

    def collect(self, state, ctx, req):
        self.inner.collect(state["inner"], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        finite = jnp.asarray(True)
        for x in g:
            finite = finite & jnp.all(jnp.isfinite(x))
        run = jnp.where(finite, 0, state["notfinite_count"] + 1).astype(COUNT_DTYPE)
        total = (state["total_notfinite"] + (~finite).astype(COUNT_DTYPE)).astype(COUNT_DTYPE)
        take = finite if self.limit is None else finite | (run > self.limit)
        updates, inner = self.inner.apply(g, w, state["inner"], td, ctx, req)
        updates = [jnp.where(take, u, jnp.zeros_like(u)) for u in updates]
        inner = tree_util.tree_map(
            lambda new, old: jnp.where(take, new, old), inner, state["inner"]
        )
        return updates, {"inner": inner, "notfinite_count": run, "total_notfinite": total}


try:  # the per-tensor reduction of the layer-wise rules (LARS, LAMB), if present
    from ..rules.layerwise import PerTensorReduction
except ImportError:  # pragma: no cover - older trees
    PerTensorReduction = None


if PerTensorReduction is not None:

    @register(PerTensorReduction)
    class PerTensorNode(ElementNode):
        """A per-tensor reduction stage (trust ratios): its ``norms`` element math and
        the sums of squares run in the graph; its Python ``combine`` turns each
        tensor's sums into that tensor's scalars (traced where it is plain
        arithmetic, else on the host with one callback for all tensors); then the
        element phase, as the eager engine does."""

        def __init__(self, stage, children):
            super().__init__(stage)
            self.norms = element_for(stage.norms, _jax_ns())
            combine = element_for(stage.combine, _jax_ns())

            def traced(dynamic, static):
                sums, overrides = dynamic
                static_ctx, flags = static
                h = resolve(stage.hyperparams, 0, {**dict(static_ctx), **overrides})
                return [list(combine(tuple(s), dict(f), h).values()) for s, f in zip(sums, flags)]

            self.traced_combine = TracedAttempt(traced)

        def apply(self, g, w, state, td, ctx, req, per_leaf=None):
            stage = self.stage
            if stage.uses_params and w is None:
                raise ValueError(f"{stage.name}: this transform needs params in update()")
            scalars = req.of(self)
            slots = [td.flatten_up_to(state[s.name]) for s in stage.slots]
            acc = float_dtype()
            sums = []
            for i, gi in enumerate(g):
                terms = self.norms(*self.arrays(g, w, slots, i), *_cast(scalars, gi))
                sums.append([jnp.sum(jnp.square(jnp.asarray(x).astype(acc))) for x in terms])
            flags = self._flags(td, g, w)
            count = state["count"] if stage.counted else None
            static_ctx, dynamic_ctx = split_overrides(stage, count, ctx)
            own = None
            if req.mode == "auto" and not _python_schedules(stage, static_ctx, dynamic_ctx):
                frozen = tuple(tuple(sorted(f.items())) for f in flags)
                own = self.traced_combine((sums, dynamic_ctx), (_static_items(static_ctx), frozen))
            if own is None:
                own = self._host(sums, flags, count, static_ctx, dynamic_ctx)
            return super().apply(g, w, state, td, ctx, req, per_leaf=own)

        def _flags(self, td, g, w) -> list[dict]:
            n = len(g)
            out: list[dict] = [{} for _ in range(n)]
            for flag, mask in self.stage.flags.items():
                values = [True] * n if mask is None else _flat_labels(mask, td, g, w)
                for i, v in enumerate(values):
                    out[i][flag] = bool(v)
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
                _count_row(count),
                flat,
                _value_row(dynamic_ctx),
            )
            return [[table[i, j] for j in range(m)] for i in range(n)]
