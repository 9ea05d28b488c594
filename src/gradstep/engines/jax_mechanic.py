"""The JAX engine's node for the Mechanic wrapper: the inner rule's node, then the
core's :func:`~gradstep._core.mechanic.mechanic_step` on ``jax.numpy`` in the graph
(the first update selected with ``jnp.where`` on the traced count)."""

from __future__ import annotations

import jax.numpy as jnp

from .._core.elementwise import wide_updates
from .._core.mechanic import Mechanize, initial_scalars, mechanic_step, state_keys
from .jax_nodes import _Node
from .jax_scalars import COUNT_DTYPE, jax_ns, safe_increment


class MechanicNode(_Node):
    """:func:`gradstep.rules.mechanic.mechanize` under jit."""

    def __init__(self, transform: Mechanize, children):
        self.transform = transform
        (self.inner,) = children

    def init(self, leaves, td):
        t = self.transform
        like = leaves[0] if leaves else jnp.zeros(())
        return {
            "count": jnp.zeros((), COUNT_DTYPE),
            "inner": self.inner.init(leaves, td),
            "reference": td.unflatten([jnp.array(p, copy=True) for p in leaves]),
            **initial_scalars(jnp.asarray(like), t.num_betas, t.s_init),
        }

    def collect(self, state, ctx, req):
        self.inner.collect(state["inner"], ctx, req)

    def apply(self, g, w, state, td, ctx, req):
        t = self.transform
        if w is None:
            raise ValueError(f"{t.name}: this transform needs params in update()")
        updates, inner = self.inner.apply(g, w, state["inner"], td, ctx, req)
        reference = td.flatten_up_to(state["reference"])
        scalars = {k: state[k] for k in state_keys(t.num_betas)}
        first = state["count"] == 0
        with wide_updates():  # 16-bit parameters: float32 updates, as every JAX node's
            out, reference, scalars = mechanic_step(
                list(g), list(w), list(updates), reference, scalars, first, t.hyper(), jax_ns()
            )
        scalars = {k: jnp.asarray(v).astype(state[k].dtype) for k, v in scalars.items()}
        return out, {
            "count": safe_increment(state["count"]),
            "inner": inner,
            "reference": td.unflatten(reference),
            **scalars,
        }
