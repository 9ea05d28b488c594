r"""optax 0.2.8's ``lbfgs`` and ``scale_by_lbfgs`` on gradstep's two-loop recursion.

The line searches are :mod:`gradstep.compat._optax_zoom` and
:mod:`gradstep.compat._optax_linesearch`.

Symbols: :math:`u_k` the incoming updates (gradients) at step :math:`k`, :math:`w_k`
the parameters, :math:`m` ``memory_size``, :math:`\delta w = w_k - w_{k-1}`,
:math:`\delta u = u_k - u_{k-1}`, :math:`\rho = 1/\delta u^\top\delta w` (0 when
:math:`\delta u^\top \delta w = 0`), fields of optax's ``ScaleByLBFGSState``:
``diff_params_memory`` (:math:`\delta w`), ``diff_updates_memory`` (:math:`\delta u`),
``weights_memory`` (:math:`\rho`), each a ring of :math:`m` rows.

``scale_by_lbfgs`` at step :math:`k`: for :math:`k > 0` it stores
:math:`(\delta w, \delta u, \rho)` in row :math:`(k-1) \bmod m` (every pair, without
a curvature test: a pair with :math:`\delta u^\top \delta w < 0` is kept; before step
1 the rows are zeros, which act as absent pairs), then outputs :math:`H_k u_k` by
:func:`gradstep.rules.lbfgs_two_loop.two_loop` over the :math:`m` rows oldest first, with the
initial matrix :math:`\gamma I`, :math:`\gamma = \delta u^\top \delta w /
\lVert\delta u\rVert^2` (1 if :math:`\delta u = 0`) and, at :math:`k = 0`,
:math:`\gamma = \min(1, 1/\lVert u_0\rVert_2)`; with ``scale_init_precond=False``,
:math:`\gamma = 1`. ``lbfgs`` is ``chain(scale_by_lbfgs, scale(-1) or
scale_by_learning_rate(learning_rate), linesearch or identity)``.

References:
  Nocedal & Wright (2006): Numerical Optimization, 2nd ed., Springer (Algorithms 7.4,
  7.5).
  Liu & Nocedal (1989): On the limited memory BFGS method for large scale
  optimization. Mathematical Programming 45.

Differences from optax: the two-loop recursion runs on the leaves flattened into one
vector (dot products still summed leaf by leaf, as optax's): leaves of different
dtypes are computed in the widest one, where optax rounds each leaf to its own dtype
after every axpy; complex parameters are refused (``ValueError``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._core.namespaces import namespace_of
from .._core.validate import BOOL, Interval, hyperparams
from ..rules.adafactor import OrNone
from ..rules.lbfgs_two_loop import two_loop
from ._optax_linesearch import (
    ScaleByBacktrackingLinesearchState,
    _value_dtype,
    _zeros_like,
    scale_by_backtracking_linesearch,
    tree_vdot,
    value_and_grad_from_state,
)
from ._optax_state import safe_increment, state_class
from ._optax_transforms import chain, identity, scale, scale_by_learning_rate
from ._optax_wrappers import _transformation
from ._optax_zoom import ScaleByZoomLinesearchState, ZoomLinesearchInfo, scale_by_zoom_linesearch

__all__ = [
    "ScaleByBacktrackingLinesearchState",
    "ScaleByLBFGSState",
    "ScaleByZoomLinesearchState",
    "ZoomLinesearchInfo",
    "lbfgs",
    "scale_by_backtracking_linesearch",
    "scale_by_lbfgs",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
]

ScaleByLBFGSState = state_class(
    "ScaleByLBFGSState",
    (
        "count",
        "params",
        "updates",
        "diff_params_memory",
        "diff_updates_memory",
        "weights_memory",
    ),
)


def _sub(a: Any, b: Any) -> Any:
    return jax.tree_util.tree_map(lambda x, y: x - y, a, b)


def _squared_norm(tree: Any) -> Any:
    return sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree))


class _Flat:
    """The leaves of a tree as one vector (rows of the memory likewise), and back;
    dot products summed leaf by leaf."""

    def __init__(self, tree: Any):
        self.leaves, self.treedef = jax.tree_util.tree_flatten(tree)
        self.sizes = [x.size for x in self.leaves]
        self.dtype = jnp.result_type(*self.leaves)

    def vector(self, tree: Any) -> Any:
        return jnp.concatenate(
            [jnp.ravel(x).astype(self.dtype) for x in jax.tree_util.tree_leaves(tree)]
        )

    def rows(self, memory: Any) -> Any:
        leaves = jax.tree_util.tree_leaves(memory)
        return jnp.concatenate(
            [x.reshape(x.shape[0], -1).astype(self.dtype) for x in leaves], axis=1
        )

    def vdot(self, a: Any, b: Any) -> Any:
        out, offset = 0, 0
        for n in self.sizes:
            out = out + tree_vdot(a[offset : offset + n], b[offset : offset + n])
            offset += n
        return out

    def tree(self, v: Any) -> Any:
        out, offset = [], 0
        for leaf, n in zip(self.leaves, self.sizes):
            out.append(v[offset : offset + n].reshape(leaf.shape).astype(leaf.dtype))
            offset += n
        return jax.tree_util.tree_unflatten(self.treedef, out)


@hyperparams(memory_size=Interval(1, integer=True), scale_init_precond=BOOL)
def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True):
    r"""optax's ``scale_by_lbfgs``: the L-BFGS direction :math:`H_k u_k` (not negated;
    see the module docstring). ``memory_size`` integer >= 1; ``scale_init_precond``
    bool."""
    m = memory_size

    def init(params):
        _value_dtype(params, "scale_by_lbfgs")
        rows = jax.tree_util.tree_map(lambda p: jnp.zeros((m, *p.shape), p.dtype), params)
        return ScaleByLBFGSState(
            count=jnp.asarray(0, jnp.int32),
            params=_zeros_like(params),
            updates=_zeros_like(params),
            diff_params_memory=rows,
            diff_updates_memory=rows,
            weights_memory=jnp.zeros(m),
        )

    def update(updates, state, params=None, **extra):
        _value_dtype(params, "scale_by_lbfgs")
        k = state.count
        dw, du = _sub(params, state.params), _sub(updates, state.updates)
        curvature = tree_vdot(du, dw)
        rho = jnp.where(curvature == 0.0, 0.0, 1.0 / curvature)
        dw, du, rho = jax.tree_util.tree_map(
            lambda x: jnp.where(k > 0, x, jnp.zeros_like(x)), (dw, du, rho)
        )
        row = (k - 1) % m
        dw_mem, du_mem, rho_mem = jax.tree_util.tree_map(
            lambda mem, x: mem.at[row].set(x),
            (state.diff_params_memory, state.diff_updates_memory, state.weights_memory),
            (dw, du, rho),
        )
        if scale_init_precond:
            yy = _squared_norm(du)
            gamma = jnp.where(yy > 0.0, tree_vdot(du, dw) / yy, 1.0)
            first = jnp.minimum(1.0, 1.0 / jnp.sqrt(_squared_norm(jax.lax.stop_gradient(updates))))
            gamma = jnp.where(k > 0, gamma, first)
        else:
            gamma = 1.0
        flat = _Flat(updates)
        v = flat.vector(updates)
        direction = two_loop(
            namespace_of(v),
            v,
            flat.rows(dw_mem),
            flat.rows(du_mem),
            rho_mem,
            gamma,
            k % m,
            m,
            vdot=flat.vdot,
        )
        new = ScaleByLBFGSState(safe_increment(k), params, updates, dw_mem, du_mem, rho_mem)
        return flat.tree(direction), new

    return _transformation(init, update, "scale_by_lbfgs")


_DEFAULT_LINESEARCH = scale_by_zoom_linesearch(
    max_linesearch_steps=20, initial_guess_strategy="one"
)


@hyperparams(
    learning_rate=OrNone(Interval(0.0, lo_open=True, schedulable=True)),
    memory_size=Interval(1, integer=True),
    scale_init_precond=BOOL,
)
def lbfgs(
    learning_rate: Any = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: Any = _DEFAULT_LINESEARCH,
):
    r"""optax's ``lbfgs``: ``chain(scale_by_lbfgs(memory_size, scale_init_precond),
    scale(-1.0)`` (or ``scale_by_learning_rate(learning_rate)``), ``linesearch``)``;
    ``linesearch=None`` for none (the default is
    ``scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")``).
    ``update`` takes the line search's ``value``, ``grad`` and ``value_fn`` (see
    :func:`value_and_grad_from_state`). ``learning_rate`` None, > 0 or a schedule."""
    base = scale(-1.0) if learning_rate is None else scale_by_learning_rate(learning_rate)
    return chain(
        scale_by_lbfgs(memory_size=memory_size, scale_init_precond=scale_init_precond),
        base,
        identity() if linesearch is None else linesearch,
    )
