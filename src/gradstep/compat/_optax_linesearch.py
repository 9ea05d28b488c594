r"""optax 0.2.8's backtracking line search, ``value_and_grad_from_state``, shared helpers.

Traceable (``jax.lax`` loops); the zoom search is :mod:`gradstep.compat._optax_zoom`.

Symbols: :math:`w` the parameters, :math:`u` the incoming updates (the direction),
:math:`\phi(\eta) = f(w + \eta u)` the objective along it (``value_fn``),
:math:`\phi'(\eta) = \nabla f(w + \eta u)^\top u` its slope, :math:`c_1`
``slope_rtol``, :math:`\epsilon` ``atol``, :math:`\delta` ``rtol``. A line search
outputs :math:`\eta u` and keeps :math:`\eta`, :math:`\phi(\eta)` and (zoom, or
backtracking with ``store_grad``) :math:`\nabla f(w + \eta u)` in its state, for
:func:`value_and_grad_from_state` to reuse at the next step.

Backtracking (Armijo): :math:`\eta = \min(\text{increase\_factor}\cdot\eta_{prev},
\text{max\_learning\_rate})`, multiplied by ``decrease_factor`` until
:math:`\phi(\eta) \le (1 + \delta)\phi(0) + c_1\eta\,\nabla f(w)^\top u + \epsilon`,
at most ``max_backtracking_steps`` times; :math:`\eta = 0` if every trial was
infinite or NaN.

References:
  Vaswani et al. (2019): Painless Stochastic Gradient. NeurIPS, arXiv:1905.09997.
  Nocedal & Wright (2006): Numerical Optimization, 2nd ed., Springer (Section 3.1).

Differences from optax: hyperparameters are validated; complex parameters are
refused; ``verbose`` prints one summary line when the search fails.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._core.validate import BOOL, Interval, hyperparams, nonnegative
from ._optax_state import state_class
from ._optax_wrappers import _transformation

__all__ = [
    "ScaleByBacktrackingLinesearchState",
    "scale_by_backtracking_linesearch",
    "value_and_grad_from_state",
]

BacktrackingLinesearchInfo = state_class(
    "BacktrackingLinesearchInfo",
    ("num_linesearch_steps", "decrease_error"),
    "optax._src.linesearch",
)
ScaleByBacktrackingLinesearchState = state_class(
    "ScaleByBacktrackingLinesearchState", ("learning_rate", "value", "grad", "info")
)

#: ``slope_rtol``'s range (:math:`c_1`)
SLOPE_RTOL = Interval(0.0, 1.0, hi_open=True)

# -- tree helpers ------------------------------------------------------------------------


def tree_vdot(a: Any, b: Any) -> Any:
    """:math:`a^\\top b` over all leaves: per-leaf full contractions at the highest
    precision, summed in leaf order (optax's ``tree.vdot``)."""
    out = 0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = jnp.asarray(x), jnp.asarray(y)
        out = out + jnp.tensordot(x, y, x.ndim, precision=jax.lax.Precision.HIGHEST)
    return out


def add_scale(x: Any, t: Any, u: Any) -> Any:
    """:math:`x + t u` leaf by leaf."""
    t = jnp.asarray(t)
    return jax.tree_util.tree_map(lambda a, b: a + t * b, x, u)


def _select(cond: Any, a: Any, b: Any) -> Any:
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y), a, b)


def _cast_like(tree: Any, like: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda t, o: t.astype(o.dtype) if hasattr(o, "dtype") else t, tree, like
    )


def _value_dtype(params: Any, owner: str) -> Any:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(f"{owner}: the parameters have no leaves")
    for leaf in leaves:
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            raise ValueError(
                f"{owner}: complex parameters ({leaf.dtype}) are not supported; "
                "step their real and imaginary parts as real parameters"
            )
    return jnp.dtype(leaves[0].dtype)


def _zeros_like(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, p.dtype), params)


def _fn_kwargs(value_fn: Callable, extra: dict, owner: str) -> dict:
    """The extra keyword arguments ``value_fn`` takes; any other is an error (optax)."""
    names = set(inspect.signature(value_fn).parameters)
    unused = sorted(k for k in extra if k not in names)
    if unused:
        raise TypeError(
            f"Unexpected keyword arguments passed to `{owner}.update`. These arguments "
            f"were not consumed by `value_fn`: {unused}. Ensure that all extra keyword "
            "arguments are accepted by `value_fn`."
        )
    return {k: v for k, v in extra.items() if k in names}


def _nan_to_inf(err: Any) -> Any:
    return jnp.where(jnp.isnan(err), jnp.inf, err)


# -- backtracking ----------------------------------------------------------------------


def armijo_error(t, value, value0, slope0, slope_rtol, rtol):
    r""":math:`\max(0, \phi(\eta) - (1 + \delta)\phi(0) - \eta c_1 \phi'(0))`, NaN as
    :math:`\infty`."""
    err = value - (1.0 + rtol) * value0 - t * slope_rtol * slope0
    return jnp.maximum(_nan_to_inf(err), 0.0)


@hyperparams(
    max_backtracking_steps=Interval(0, integer=True),
    slope_rtol=SLOPE_RTOL,
    decrease_factor=Interval(0.0, 1.0, lo_open=True, hi_open=True),
    increase_factor=Interval(1.0),
    max_learning_rate=Interval(0.0, lo_open=True),
    atol=nonnegative(),
    rtol=nonnegative(),
    store_grad=BOOL,
    verbose=BOOL,
)
def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: float = 1e-4,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_learning_rate: float = 1.0,
    atol: float = 0.0,
    rtol: float = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
):
    r"""optax's ``scale_by_backtracking_linesearch``: :math:`\eta u` with :math:`\eta`
    meeting the Armijo condition (see the module docstring); ``update`` takes
    ``value``, ``grad``, ``value_fn`` and ``value_fn``'s keyword arguments. Ranges:
    ``max_backtracking_steps`` integer >= 0, ``slope_rtol`` in [0, 1),
    ``decrease_factor`` in (0, 1), ``increase_factor`` >= 1 (``inf``: start at
    ``max_learning_rate``), ``max_learning_rate`` > 0, ``atol``, ``rtol`` >= 0."""
    owner = "scale_by_backtracking_linesearch"

    def init(params):
        dtype = _value_dtype(params, owner)
        return ScaleByBacktrackingLinesearchState(
            learning_rate=jnp.array(1.0, dtype),
            value=jnp.array(jnp.inf, dtype),
            grad=_zeros_like(params) if store_grad else None,
            info=BacktrackingLinesearchInfo(
                num_linesearch_steps=jnp.asarray(0),
                decrease_error=jnp.array(jnp.inf, dtype),
            ),
        )

    def update(updates, state, params=None, *, value, grad, value_fn, **extra):
        kwargs = _fn_kwargs(value_fn, extra, owner)
        _value_dtype(params, owner)
        fn = functools.partial(value_fn, **kwargs)
        slope = tree_vdot(updates, grad)

        def body(carry):
            t, _, new_grad, _, k = carry
            t = jnp.where(k > 0, decrease_factor * t, t)
            trial = add_scale(params, t, updates)
            if store_grad:
                new_value, pullback = jax.vjp(fn, trial)
                err = armijo_error(t, new_value, value, slope, slope_rtol, rtol)
                last = (err <= atol) | (k == max_backtracking_steps)
                new_grad = jax.lax.cond(
                    last, lambda: pullback(jnp.ones_like(new_value))[0], lambda: new_grad
                )
            else:
                new_value = fn(trial)
                err = armijo_error(t, new_value, value, slope, slope_rtol, rtol)
            return _cast_like((t, new_value, new_grad, err, k + 1), carry)

        def more(carry):
            return ~(carry[3] <= atol) & (carry[4] <= max_backtracking_steps)

        t0 = jnp.minimum(increase_factor * state.learning_rate, max_learning_rate)
        start = (t0, value, _zeros_like(params), jnp.array(jnp.inf), 0)
        t, new_value, new_grad, err, k = jax.lax.while_loop(more, body, start)
        if verbose:
            jax.lax.cond(
                err > atol,
                lambda: jax.debug.print(
                    "gradstep.compat.optax.scale_by_backtracking_linesearch: no step size "
                    "met the decrease condition (error {e}); taking {t}",
                    e=err,
                    t=jnp.where(jnp.isinf(err), 0.0, t),
                    ordered=True,
                ),
                lambda: None,
            )
        t = jnp.where(jnp.isinf(err), 0.0, t)
        out = jax.tree_util.tree_map(lambda u: t * u, updates)
        new = ScaleByBacktrackingLinesearchState(
            learning_rate=t,
            value=new_value,
            grad=new_grad if store_grad else None,
            info=BacktrackingLinesearchInfo(num_linesearch_steps=k, decrease_error=err),
        )
        return out, _cast_like(new, state)

    return _transformation(init, update, owner)


# -- reuse of the line search's value and gradient ------------------------------------------


def _find(tree: Any, key: str) -> list:
    """The values of every field or dict entry named ``key`` in ``tree``."""
    found = []
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        items = list(zip(tree._fields, tree))
    elif isinstance(tree, dict):
        items = list(tree.items())
    elif isinstance(tree, (list, tuple)):
        items = [(None, x) for x in tree]
    else:
        return found
    for name, sub in items:
        if name == key:
            found.append(sub)
        else:
            found.extend(_find(sub, key))
    return found


def value_and_grad_from_state(value_fn: Callable) -> Callable:
    """optax's ``value_and_grad_from_state``: like ``jax.value_and_grad(value_fn)``
    but called as ``f(params, *args, state=opt_state, **kwargs)``, it returns the
    value and gradient a line search stored in ``opt_state`` (the fields ``value``
    and ``grad``), and computes them only where the stored value is infinite or NaN
    (the first step). ``ValueError`` when the state holds no value or gradient, or
    more than one."""

    def value_and_grad(params, *args, state, **kwargs):
        stored = {}
        for key in ("value", "grad"):
            found = _find(state, key)
            if len(found) != 1 or found[0] is None:
                raise ValueError(
                    f"value_and_grad_from_state: the state holds {len(found)} fields named "
                    f"{key!r}{' (None)' if found == [None] else ''}; exactly one is needed "
                    "(a line search with the gradient kept, e.g. scale_by_zoom_linesearch "
                    "or scale_by_backtracking_linesearch(store_grad=True))"
                )
            stored[key] = found[0]
        value, grad = stored["value"], stored["grad"]
        return jax.lax.cond(
            ~jnp.isinf(value) & ~jnp.isnan(value),
            lambda p, a, kw: (value, grad),
            lambda p, a, kw: jax.value_and_grad(value_fn)(p, *a, **kw),
            params,
            args,
            kwargs,
        )

    return value_and_grad
