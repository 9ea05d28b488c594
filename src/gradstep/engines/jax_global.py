"""The JAX engine's node for a global reduction stage (Prodigy's distance estimate):
its terms, sums, ``combine`` and element phase all traced, the carried scalar state
a pytree leaf of its own."""

from __future__ import annotations

import jax.numpy as jnp

from .._core.global_reduction import GlobalReduction
from .._core.namespaces import element_for, nan_to_zero
from .jax_nodes import _Node
from .jax_scalars import (
    COUNT_DTYPE,
    NotTraceable,
    cast,
    float_dtype,
    jax_ns,
    leaf_dtype,
    safe_increment,
)


class GlobalNode(_Node):
    """Runs a :class:`GlobalReduction` in the graph: ``prepare`` and ``combine`` are
    traced on the carried state (0-d arrays in JAX's widest float), the sums are taken
    in that float, nothing goes to the host."""

    def __init__(self, stage: GlobalReduction, children: list):
        self.stage = stage
        ns = jax_ns()
        self.element = element_for(stage.element, ns)
        self.terms = element_for(stage.terms, ns)
        self.combine = element_for(stage.combine, ns)
        self.prepare = element_for(stage.prepare, ns)

    def init(self, leaves, td):
        stage = self.stage
        state = {}
        if stage.counted:
            state["count"] = jnp.zeros((), COUNT_DTYPE)
        for slot in stage.slots:
            state[slot.name] = td.unflatten([slot.initial(p) for p in leaves])
        for name, value in stage.carried.items():
            state[name] = jnp.asarray(value, float_dtype())
        return state

    def apply(self, g, w, state, td, ctx, req):
        stage = self.stage
        if stage.uses_params and w is None:
            raise ValueError(f"{stage.name}: this transform needs params in update()")
        count = state["count"] if stage.counted else 0
        carried = {name: state[name] for name in stage.carried}
        try:
            h = stage.step_values(carried, count, ctx)
            scalars = self.prepare(h, count)
        except Exception as error:  # a schedule or prepare that needs host numbers
            raise NotTraceable(
                f"{stage.name}: its per-step scalars need host values ({error}); give "
                "traceable schedules (functions of a traced step count)"
            ) from error
        slots = [td.flatten_up_to(state[s.name]) for s in stage.slots]
        ns = jax_ns()
        # the math runs in float32 or wider, whatever the storage ("opmath"): the
        # terms and the element phase read 16-bit arrays widened, as the eager engine
        arrays = [
            [ns.widened(a) for a in [g[i], *([w[i]] if stage.uses_params else [])]]
            + [ns.widened(s[i]) for s in slots]
            for i in range(len(g))
        ]
        wide = float_dtype()
        sums = None
        for i in range(len(g)):
            gi = arrays[i][0]
            terms = self.terms(*arrays[i], *cast(list(scalars.values()), gi))
            terms = terms if isinstance(terms, tuple) else (terms,)
            part = [jnp.sum(jnp.asarray(x).astype(wide)) for x in terms]
            sums = part if sums is None else [a + b for a, b in zip(sums, part)]
        new_state = {}
        if sums is None:  # no leaves
            return [], dict(state)
        new_carried, reduced = self.combine(tuple(sums), h, scalars)
        values = list(scalars.values()) + list(reduced.values())
        updates, new_slots = [], [[] for _ in stage.slots]
        cache: dict = {}
        for i in range(len(g)):
            gi = arrays[i][0]
            key = leaf_dtype(gi)
            if key not in cache:
                cache[key] = cast(values, gi)
            result = self.element(*arrays[i], *cache[key])
            if stage.slots:
                u, *slot_values = result
                for k, value in enumerate(slot_values):
                    if stage.clear_nan_slots:
                        value = nan_to_zero(value, jax_ns())
                    new_slots[k].append(jnp.asarray(value).astype(slots[k][i].dtype))
            else:
                u = result
            updates.append(jnp.asarray(u))
        if stage.counted:
            new_state["count"] = safe_increment(state["count"])
        for slot, leaves in zip(stage.slots, new_slots):
            new_state[slot.name] = td.unflatten(leaves)
        for name in stage.carried:
            new_state[name] = jnp.asarray(new_carried[name]).astype(state[name].dtype)
        return updates, new_state
