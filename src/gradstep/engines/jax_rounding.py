"""Stochastic rounding and the Kahan-compensated parameter store in the JAX engine.

The same random stream as :mod:`gradstep._core.rounding` (its NumPy functions are
the reference), in ``jnp`` uint32 arithmetic so that a traced step count keys it
under ``jax.jit``: the bits do not depend on the engine, and a resumed run rounds
as the uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._core.rounding import MIX1, MIX2, ParameterStore, slot_id
from .jax_nodes import ElementNode
from .jax_scalars import safe_increment


def mix32(x: Any) -> Any:
    """lowbias32 on uint32 arrays (JAX's uint32 multiplication wraps)."""
    x = jnp.asarray(x, jnp.uint32)
    x = x ^ (x >> 16)
    x = x * jnp.uint32(MIX1)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(MIX2)
    return x ^ (x >> 16)


def stream_key(seed: int, count: Any, tensor: int, name: str) -> Any:
    """The key of tensor ``tensor`` of the stream ``name`` at step ``count`` (traceable)."""
    head = mix32(mix32(jnp.uint32(slot_id(name))) ^ jnp.uint32(seed))
    head = mix32(head ^ jnp.asarray(count).astype(jnp.uint32))
    return mix32(head ^ jnp.uint32(tensor))


def round_bf16_stochastic(x: Any, key: Any) -> Any:
    """float32 ``x`` rounded stochastically to bfloat16 under ``key``."""
    x = jnp.asarray(x, jnp.float32)
    index = jnp.arange(x.size, dtype=jnp.uint32).reshape(x.shape)
    r = mix32(key ^ mix32(index)) >> 16
    u = jax.lax.bitcast_convert_type(x, jnp.uint32)
    bits = ((u + r) >> 16).astype(jnp.uint16)
    out = jax.lax.bitcast_convert_type(bits, jnp.bfloat16)
    return jnp.where(jnp.isnan(x), x.astype(jnp.bfloat16), out)


def stored(value: Any, like: Any, seed: int | None, count: Any, tensor: int, name: str) -> Any:
    """``value`` in ``like``'s dtype: stochastically rounded where that is bfloat16
    and ``seed`` is set, else to the nearest."""
    if seed is None or jnp.dtype(like.dtype) != jnp.bfloat16:
        return jnp.asarray(value).astype(like.dtype)
    return round_bf16_stochastic(value, stream_key(seed, count, tensor, name))


class ParameterStoreNode(ElementNode):
    """:class:`~gradstep._core.rounding.ParameterStore` in the graph: the update is
    the parameter's change ``round(w + y) - w`` in float32 (``optax.apply_updates``
    stores the rounded value), the compensation slot ``y - change``."""

    def apply(self, g, w, state, td, ctx, req, per_leaf=None):
        stage = self.stage
        if w is None:
            raise ValueError(f"{stage.name}: this transform needs params in update()")
        count = state["count"]
        comp = td.flatten_up_to(state["compensation"]) if stage.kahan else None
        if stage.seed is not None and not stage.rounds_slots:
            from .._core.rounding import check_rounds_something

            check_rounds_something([str(jnp.dtype(x.dtype)) for x in w])
        updates, new_comp = [], []
        for i, (gi, wi) in enumerate(zip(g, w)):
            if not stage.kahan and not (
                stage.seed is not None and jnp.dtype(wi.dtype) == jnp.bfloat16
            ):
                updates.append(gi)  # nothing to round here but apply_updates' rounding
                continue
            wide = jnp.float64 if jnp.dtype(wi.dtype) == jnp.float64 else jnp.float32
            y = jnp.asarray(gi, wide)
            if stage.kahan:
                y = y + jnp.asarray(comp[i], wide)
            w_wide = jnp.asarray(wi, wide)
            rounded = stored(w_wide + y, wi, stage.seed, count, i, "params")
            change = jnp.asarray(rounded, wide) - w_wide
            if stage.kahan:
                new_comp.append((y - change).astype(comp[i].dtype))
            updates.append(change)
        new_state = {"count": safe_increment(count)}
        if stage.kahan:
            new_state["compensation"] = td.unflatten(new_comp)
        return updates, new_state


def parameter_store_node(stage: ParameterStore, children: list) -> ParameterStoreNode:
    return ParameterStoreNode(stage)
