r"""optax 0.2.8's line searches, traceable (``jax.lax`` loops): ``scale_by_zoom_linesearch``,
``scale_by_backtracking_linesearch`` and ``value_and_grad_from_state``.

Symbols: :math:`w` the parameters, :math:`u` the incoming updates (the direction),
:math:`\phi(\eta) = f(w + \eta u)` the objective along it (``value_fn``),
:math:`\phi'(\eta) = \nabla f(w + \eta u)^\top u` its slope, :math:`c_1`
``slope_rtol``, :math:`c_2` ``curv_rtol``, :math:`c_3` ``approx_dec_rtol``,
:math:`\epsilon` ``tol``/``atol``, :math:`\delta` ``rtol``. A line search outputs
:math:`\eta u` and keeps :math:`\eta`, :math:`\phi(\eta)` and (zoom, or backtracking
with ``store_grad``) :math:`\nabla f(w + \eta u)` in its state, for
:func:`value_and_grad_from_state` to reuse at the next step.

Zoom (Nocedal & Wright Alg. 3.5/3.6, with optax's safeguards). The errors of a trial
:math:`\eta` are :math:`e_d = \max(0, \min(\phi(\eta) - \phi(0) - c_1\eta\phi'(0),\
\max(\phi'(\eta) - (2c_1 - 1)\phi'(0),\ \phi(\eta) - \phi(0) - c_3|\phi(0)|)))`
(Armijo, or Hager & Zhang's approximate decrease near the minimum; without
:math:`c_3` only Armijo) and :math:`e_c = \max(0, |\phi'(\eta)| - c_2|\phi'(0)|)`
(NaN counts as :math:`\infty`); :math:`\eta` is accepted when both are
:math:`\le \epsilon`. Phase 1 tries :math:`\eta_0` (1, or the last step's
:math:`\eta` with ``initial_guess_strategy="keep"``), then multiplies by
``increase_factor`` (capped at ``max_learning_rate``) until a trial fails the
decrease test or does not lower :math:`\phi`, or has :math:`\phi' \ge 0`: that
brackets an interval [low, high] with :math:`\phi(low) \le \phi(high)`. Phase 2 tries a
point inside it: the minimiser of the cubic through low (value and slope), high and
the previous reference point when it lies at least 20 % of the width inside, else of
the quadratic through low (value and slope) and high when at least 10 % inside, else
the midpoint; the bracket is narrowed as in Alg. 3.6. After ``max_linesearch_steps``
trials, or once the bracket is narrower than ``stepsize_precision`` with a
decreasing trial known, the trial of lowest value that passed the decrease test is
taken (the last trial if none did and no trial was infinite or NaN).

Backtracking (Armijo): :math:`\eta = \min(\text{increase\_factor}\cdot\eta_{prev},
\text{max\_learning\_rate})`, multiplied by ``decrease_factor`` until
:math:`\phi(\eta) \le (1 + \delta)\phi(0) + c_1\eta\,\nabla f(w)^\top u + \epsilon`,
at most ``max_backtracking_steps`` times; :math:`\eta = 0` if every trial was
infinite or NaN.

References:
  Nocedal & Wright (2006): Numerical Optimization, 2nd ed., Springer (Algorithms 3.5,
  3.6; the interpolation of Section 3.5).
  Hager & Zhang (2006): Algorithm 851: CG_DESCENT. ACM TOMS 32(1).
  Vaswani et al. (2019): Painless Stochastic Gradient. NeurIPS, arXiv:1905.09997.

Differences from optax: hyperparameters are validated (``max_linesearch_steps`` >= 1:
optax also runs one trial for 0); complex parameters are refused; ``verbose`` prints
one summary line when a search fails instead of optax's several diagnostics.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._core.validate import BOOL, Interval, OneOf, hyperparams, nonnegative
from ..rules.adafactor import OrNone
from ._optax_state import safe_increment, state_class
from ._optax_wrappers import _transformation

__all__ = [
    "ScaleByBacktrackingLinesearchState",
    "ScaleByZoomLinesearchState",
    "ZoomLinesearchInfo",
    "scale_by_backtracking_linesearch",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
]

_LINESEARCH = "optax._src.linesearch"
BacktrackingLinesearchInfo = state_class(
    "BacktrackingLinesearchInfo", ("num_linesearch_steps", "decrease_error"), _LINESEARCH
)
ScaleByBacktrackingLinesearchState = state_class(
    "ScaleByBacktrackingLinesearchState", ("learning_rate", "value", "grad", "info")
)
ZoomLinesearchInfo = state_class(
    "ZoomLinesearchInfo", ("num_linesearch_steps", "decrease_error", "curvature_error")
)
ScaleByZoomLinesearchState = state_class(
    "ScaleByZoomLinesearchState", ("learning_rate", "value", "grad", "info")
)

_RTOL = Interval(0.0, 1.0, hi_open=True)

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


# -- zoom ------------------------------------------------------------------------------


def cubic_minimizer(a, fa, da, b, fb, c, fc):
    r"""The critical point of the cubic through :math:`(a, f_a)` with slope
    :math:`d_a` there, :math:`(b, f_b)` and :math:`(c, f_c)` (NaN when it has none)."""
    db, dc = b - a, c - a
    denom = (db * dc) ** 2 * (db - dc)
    rb, rc = fb - fa - da * db, fc - fa - da * dc
    m = jnp.array([[dc**2, -(db**2)], [-(dc**3), db**3]])
    k3, k2 = jnp.dot(m, jnp.array([rb, rc]), precision=jax.lax.Precision.HIGHEST) / denom
    return a + (-k2 + jnp.sqrt(k2 * k2 - 3.0 * k3 * da)) / (3.0 * k3)


def quadratic_minimizer(a, fa, da, b, fb):
    r"""The critical point of the quadratic through :math:`(a, f_a)` with slope
    :math:`d_a` there and :math:`(b, f_b)`."""
    db = b - a
    k2 = (fb - fa - da * db) / (db**2)
    return a - da / (2.0 * k2)


class _Trial(NamedTuple):
    """The zoom search's loop carry (optax's ``ZoomLinesearchState`` less the
    constants, which the loop closes over)."""

    count: Any
    stepsize: Any
    value: Any
    grad: Any
    slope: Any
    decrease_error: Any
    curvature_error: Any
    error: Any
    interval_found: Any
    done: Any
    failed: Any
    low: Any
    value_low: Any
    slope_low: Any
    high: Any
    value_high: Any
    slope_high: Any
    cubic_ref: Any
    value_cubic_ref: Any
    safe_stepsize: Any
    safe_value: Any
    safe_grad: Any


class _Zoom:
    """One zoom search along ``updates`` from ``params`` (the math of the module
    docstring), run by :meth:`search`."""

    def __init__(self, hp: dict, params, updates, value, grad, guess, value_and_grad):
        self.hp, self.params, self.updates = hp, params, updates
        self.value0, self.guess, self.value_and_grad = value, guess, value_and_grad
        self.slope0 = tree_vdot(updates, grad)
        self.grad0 = grad

    def errors(self, t, value, slope):
        c1, c3 = self.hp["slope_rtol"], self.hp["approx_dec_rtol"]
        dec = value - self.value0 - c1 * t * self.slope0
        if c3 is not None:
            approx = slope - (2 * c1 - 1.0) * self.slope0
            near = value - self.value0 - c3 * jnp.abs(self.value0)
            dec = jnp.minimum(jnp.maximum(approx, near), dec)
        dec = _nan_to_inf(jnp.maximum(dec, 0.0))
        curv = jnp.abs(slope) - self.hp["curv_rtol"] * jnp.abs(self.slope0)
        curv = _nan_to_inf(jnp.maximum(curv, 0.0))
        return dec, curv, jnp.maximum(dec, curv)

    def probe(self, t):
        value, grad = self.value_and_grad(add_scale(self.params, t, self.updates))
        return value, grad, tree_vdot(grad, self.updates)

    def start(self, val_dtype) -> _Trial:
        v, s, inf, zero = self.value0, self.slope0, jnp.asarray(jnp.inf), jnp.asarray(0.0)
        false = jnp.asarray(False)
        return _Trial(
            jnp.asarray(0), jnp.asarray(0.0, val_dtype), jnp.array(v, val_dtype), self.grad0,
            s, inf, inf, inf, false, false, false,
            zero, v, s, zero, v, s, zero, v, zero, v, self.grad0,
        )  # fmt: skip

    def bracket(self, st: _Trial) -> _Trial:
        """Alg. 3.5: a larger trial until an interval is bracketed."""
        hp, k = self.hp, st.count
        t = jnp.where(k == 0, self.guess, hp["increase_factor"] * st.stepsize)
        if hp["max_learning_rate"] is not None:
            at_max = t >= hp["max_learning_rate"]
            t = jnp.minimum(t, hp["max_learning_rate"])
        else:
            at_max = jnp.asarray(False)
        value, grad, slope = self.probe(t)
        dec, curv, err = self.errors(t, value, slope)
        safe = _select(
            dec <= hp["tol"],
            (t, value, grad),
            (st.safe_stepsize, st.safe_value, st.safe_grad),
        )
        high_is_new = (dec > 0.0) | ((value >= st.value) & (k > 0))
        low_is_new = (slope >= 0.0) & ~high_is_new
        prev, new = (st.stepsize, st.value, st.slope), (t, value, slope)
        low, high = _select(low_is_new, (new, prev), (prev, new))
        found = high_is_new | low_is_new | (err <= hp["tol"])
        done = (err <= hp["tol"]) | (at_max & ~found)
        failed = (k + 1 >= hp["max_linesearch_steps"]) & ~done
        new_st = _Trial(
            safe_increment(k), t, value, grad, slope, dec, curv, err,
            jnp.asarray(found), jnp.asarray(done), jnp.asarray(failed),
            *low, *high, low[0], low[1], *safe,
        )  # fmt: skip
        return _cast_like(new_st, st)

    def zoom(self, st: _Trial) -> _Trial:
        """Alg. 3.6: a trial inside [low, high] (interpolated), the bracket narrowed."""
        hp = self.hp
        lo, hi = st.low, st.high
        width = jnp.abs(hi - lo)
        left, right = jnp.minimum(hi, lo), jnp.maximum(hi, lo)
        cubic = cubic_minimizer(
            lo, st.value_low, st.slope_low, hi, st.value_high, st.cubic_ref, st.value_cubic_ref
        )
        use_cubic = (cubic > left + 0.2 * width) & (cubic < right - 0.2 * width)
        quad = quadratic_minimizer(lo, st.value_low, st.slope_low, hi, st.value_high)
        use_quad = ~use_cubic & (quad > left + 0.1 * width) & (quad < right - 0.1 * width)
        t = jnp.where(use_cubic, cubic, st.cubic_ref)
        t = jnp.where(use_quad, quad, t)
        t = jnp.where(~use_cubic & ~use_quad, (lo + hi) / 2.0, t)
        value, grad, slope = self.probe(t)
        dec, curv, err = self.errors(t, value, slope)
        safe = _select(
            (dec <= hp["tol"]) & (value < st.safe_value),
            (t, value, grad),
            (st.safe_stepsize, st.safe_value, st.safe_grad),
        )
        done = err <= hp["tol"]
        high_to_mid = (dec > 0.0) | (value >= st.value_low)
        high_to_low = (slope * (hi - lo) >= 0.0) & ~high_to_mid
        mid, low = (t, value, slope), (lo, st.value_low, st.slope_low)
        new_high = _select(high_to_mid, mid, (hi, st.value_high, st.slope_high))
        new_high = _select(high_to_low, low, new_high)
        new_low = _select(~high_to_mid, mid, low)
        ref = _select(high_to_mid | high_to_low, (hi, st.value_high), (lo, st.value_low))
        too_narrow = width <= hp["stepsize_precision"]
        stop = (st.count + 1 >= hp["max_linesearch_steps"]) | (too_narrow & (safe[0] > 0.0))
        new_st = _Trial(
            safe_increment(st.count), t, value, grad, slope, dec, curv, err,
            st.interval_found, done, stop & ~done,
            *new_low, *new_high, *ref, *safe,
        )  # fmt: skip
        return _cast_like(new_st, st)

    def fall_back(self, st: _Trial) -> _Trial:
        """A failed search takes the best decreasing trial (see the module docstring)."""
        use_safe = (st.safe_stepsize > 0.0) | jnp.isinf(st.decrease_error)
        t, value, grad = _select(
            use_safe,
            (st.safe_stepsize, st.safe_value, st.safe_grad),
            (st.stepsize, st.value, st.grad),
        )
        if self.hp["verbose"]:
            jax.debug.print(
                "gradstep.compat.optax.scale_by_zoom_linesearch: no step size met both "
                "conditions (decrease error {d}, curvature error {c}); taking {t}",
                d=st.decrease_error,
                c=st.curvature_error,
                t=t,
                ordered=True,
            )
        return _cast_like(st._replace(stepsize=t, value=value, grad=grad), st)

    def step(self, st: _Trial) -> _Trial:
        st = jax.lax.cond(st.interval_found, self.zoom, self.bracket, st)
        return jax.lax.cond(st.failed, self.fall_back, lambda s: s, st)

    def search(self, val_dtype) -> _Trial:
        return jax.lax.while_loop(lambda s: ~(s.done | s.failed), self.step, self.start(val_dtype))


@hyperparams(
    max_linesearch_steps=Interval(1, integer=True),
    max_learning_rate=OrNone(Interval(0.0, lo_open=True)),
    tol=nonnegative(),
    increase_factor=Interval(1.0),
    slope_rtol=_RTOL,
    curv_rtol=Interval(0.0, lo_open=True),
    approx_dec_rtol=OrNone(nonnegative()),
    stepsize_precision=nonnegative(),
    initial_guess_strategy=OneOf(("one", "keep")),
    verbose=BOOL,
)
def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
):
    r"""optax's ``scale_by_zoom_linesearch``: :math:`\eta u` with :math:`\eta` meeting
    the decrease and curvature conditions (see the module docstring). ``update``
    takes ``value``, ``grad`` (at ``params``), ``value_fn`` and the keyword arguments
    ``value_fn`` takes. Ranges: ``max_linesearch_steps`` integer >= 1,
    ``max_learning_rate`` > 0 or None, ``tol`` >= 0, ``increase_factor`` >= 1,
    ``slope_rtol`` in [0, 1), ``curv_rtol`` > 0 (``inf`` drops the curvature
    condition), ``approx_dec_rtol`` >= 0 or None, ``stepsize_precision`` >= 0,
    ``initial_guess_strategy`` ``"one"`` or ``"keep"``."""
    hp = dict(
        max_linesearch_steps=max_linesearch_steps,
        max_learning_rate=max_learning_rate,
        tol=tol,
        increase_factor=increase_factor,
        slope_rtol=slope_rtol,
        curv_rtol=curv_rtol,
        approx_dec_rtol=approx_dec_rtol,
        stepsize_precision=stepsize_precision,
        verbose=verbose,
    )

    def init(params):
        dtype = _value_dtype(params, "scale_by_zoom_linesearch")
        return ScaleByZoomLinesearchState(
            learning_rate=jnp.asarray(1.0, dtype),
            value=jnp.asarray(jnp.inf, dtype),
            grad=_zeros_like(params),
            info=ZoomLinesearchInfo(
                num_linesearch_steps=jnp.asarray(0),
                decrease_error=jnp.asarray(jnp.inf),
                curvature_error=jnp.asarray(jnp.inf),
            ),
        )

    def update(updates, state, params=None, *, value, grad, value_fn, **extra):
        kwargs = _fn_kwargs(value_fn, extra, "scale_by_zoom_linesearch")
        dtype = _value_dtype(params, "scale_by_zoom_linesearch")
        value_and_grad = functools.partial(jax.value_and_grad(value_fn), **kwargs)
        guess = jnp.asarray(1.0) if initial_guess_strategy == "one" else state.learning_rate
        zoom = _Zoom(hp, params, updates, value, grad, guess, value_and_grad)
        end = zoom.search(dtype)
        out = jax.tree_util.tree_map(lambda u: end.stepsize * u, updates)
        info = ZoomLinesearchInfo(end.count, end.decrease_error, end.curvature_error)
        new = ScaleByZoomLinesearchState(end.stepsize, end.value, end.grad, info)
        return out, _cast_like(new, state)

    return _transformation(init, update, "scale_by_zoom_linesearch")


# -- backtracking ----------------------------------------------------------------------


def armijo_error(t, value, value0, slope0, slope_rtol, rtol):
    r""":math:`\max(0, \phi(\eta) - (1 + \delta)\phi(0) - \eta c_1 \phi'(0))`, NaN as
    :math:`\infty`."""
    err = value - (1.0 + rtol) * value0 - t * slope_rtol * slope0
    return jnp.maximum(_nan_to_inf(err), 0.0)


@hyperparams(
    max_backtracking_steps=Interval(0, integer=True),
    slope_rtol=_RTOL,
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
