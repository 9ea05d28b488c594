"""The JAX engine's host fallback: a transform declared not traceable runs its
eager update on NumPy copies of the arrays through :func:`jax.pure_callback`."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import tree_util

from .._core.transform import Transform
from .jax_nodes import _Node
from .jax_scalars import TRACE_ERRORS, NotTraceable, is_array


class CallNode(_Node):
    """Any other transform: its own ``init``/``update`` called on the pytree.

    That works for transforms written with traceable operations (an optax transform,
    a user's jnp code). A transform whose update reads array values in Python
    declares so (``traceable = False``: gradstep's transforms with Python control
    flow on the state, such as gradient accumulation); with ``fallback="host"`` such
    a transform runs on the host: its eager ``update`` on NumPy copies of the arrays,
    through :func:`jax.pure_callback` (correct, and as fast as the NumPy front plus
    two transfers; trees of dicts, lists and tuples only), with a one-time warning
    naming it. Otherwise a failure to trace raises :class:`NotTraceable`; any other
    error propagates as it is.
    """

    def __init__(self, transform: Transform, fallback: str = "error"):
        self.transform = transform
        self.fallback = fallback

    @property
    def on_host(self) -> bool:
        """Declared not traceable, and the caller accepts the host fallback."""
        return self.fallback == "host" and not self.transform.traceable

    def _explain(self, err: Exception) -> NotTraceable:
        t = self.transform
        what = f"{type(t).__name__} {t.name!r} cannot run under jax.jit: its update reads "
        what += f"array values in Python ({type(err).__name__}: {str(err).splitlines()[0]}). "
        if t.traceable:
            return NotTraceable(
                what + "Only elementwise stages, norm reductions, chains, masks, "
                "partitions and transforms written with traceable operations run in the "
                f"graph; {type(t).__name__} does not declare itself host-only "
                "(traceable = False), so it is not run on the host."
            )
        return NotTraceable(what + "fallback='host' runs this one on the host.")

    def init(self, leaves, td):
        try:
            state = self.transform.init(td.unflatten(leaves))
        except TRACE_ERRORS as err:
            if not self.on_host:
                raise self._explain(err) from err
            return self._host_init(leaves, td)
        # NumPy leaves become JAX arrays of JAX's dtypes now, so the state a step
        # returns has the same types (no retrace)
        return tree_util.tree_map(_as_jax_leaf, state)

    def apply(self, g, w, state, td, ctx, req):
        if self.on_host:
            _warn_once(self.transform)
            return self._host_apply(g, w, state, td, ctx)
        params = None if w is None else td.unflatten(w)
        try:
            u, new_state = self.transform.update(td.unflatten(g), state, params, **ctx)
        except TRACE_ERRORS as err:
            raise self._explain(err) from err
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
        static = {k: v for k, v in ctx.items() if not is_array(v)}
        names = [k for k, v in ctx.items() if is_array(v)]
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


_WARNED: set[tuple[str, str]] = set()


def _warn_once(t: Transform) -> None:
    key = (type(t).__qualname__, t.name)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(
        f"gradstep's JAX engine runs {type(t).__name__} {t.name!r} on the host (it is "
        "declared not traceable): a device-host round trip through jax.pure_callback "
        "on every step",
        RuntimeWarning,
        stacklevel=4,
    )


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
