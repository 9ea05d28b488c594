r"""optax 0.2.8's ``scale_by_zoom_linesearch``, traceable (``jax.lax`` loops).

Symbols as in :mod:`gradstep.compat._optax_linesearch`, and :math:`c_2`
``curv_rtol``, :math:`c_3` ``approx_dec_rtol``, :math:`\epsilon` ``tol``. The errors
of a trial :math:`\eta` are :math:`e_d = \max(0, \min(\phi(\eta) - \phi(0) -
c_1\eta\phi'(0),\ \max(\phi'(\eta) - (2c_1 - 1)\phi'(0),\ \phi(\eta) - \phi(0) -
c_3|\phi(0)|)))` (Armijo, or Hager & Zhang's approximate decrease near the minimum;
without :math:`c_3` only Armijo) and :math:`e_c = \max(0, |\phi'(\eta)| -
c_2|\phi'(0)|)` (NaN counts as :math:`\infty`); :math:`\eta` is accepted when both
are :math:`\le \epsilon`. Phase 1 (Nocedal & Wright Alg. 3.5) tries :math:`\eta_0`
(1, or the last step's :math:`\eta` with ``initial_guess_strategy="keep"``), then
multiplies by ``increase_factor`` (capped at ``max_learning_rate``) until a trial
fails the decrease test or does not lower :math:`\phi`, or has :math:`\phi' \ge 0`:
that brackets an interval [low, high] with :math:`\phi(low) \le \phi(high)`. Phase 2
(Alg. 3.6) tries a point inside it: the minimiser of the cubic through low (value
and slope), high and the previous reference point when it lies at least 20 % of the
width inside, else of the quadratic through low (value and slope) and high when at
least 10 % inside, else the midpoint; the bracket is narrowed as in Alg. 3.6. After
``max_linesearch_steps`` trials, or once the bracket is narrower than
``stepsize_precision`` with a decreasing trial known, the trial of lowest value that
passed the decrease test is taken (the last trial if none did and no trial was
infinite or NaN).

References:
  Nocedal & Wright (2006): Numerical Optimization, 2nd ed., Springer (Algorithms 3.5,
  3.6; the interpolation of Section 3.5).
  Hager & Zhang (2006): Algorithm 851: CG_DESCENT. ACM TOMS 32(1).

Differences from optax: hyperparameters are validated (``max_linesearch_steps`` >= 1:
optax also runs one trial for 0); complex parameters are refused; ``verbose`` prints
one summary line when a search fails instead of optax's several diagnostics.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._core.validate import BOOL, Interval, OneOf, hyperparams, nonnegative
from ..rules.adafactor import OrNone
from ._optax_linesearch import (
    SLOPE_RTOL,
    _cast_like,
    _fn_kwargs,
    _nan_to_inf,
    _select,
    _value_dtype,
    _zeros_like,
    add_scale,
    tree_vdot,
)
from ._optax_state import safe_increment, state_class
from ._optax_wrappers import _transformation

__all__ = ["ScaleByZoomLinesearchState", "ZoomLinesearchInfo", "scale_by_zoom_linesearch"]

ZoomLinesearchInfo = state_class(
    "ZoomLinesearchInfo", ("num_linesearch_steps", "decrease_error", "curvature_error")
)
ScaleByZoomLinesearchState = state_class(
    "ScaleByZoomLinesearchState", ("learning_rate", "value", "grad", "info")
)


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
    slope_rtol=SLOPE_RTOL,
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
