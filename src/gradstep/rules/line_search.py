"""The strong-Wolfe line search of L-BFGS (torch's ``_strong_wolfe``): bracketing,
then safeguarded cubic-interpolation zoom, written against the array namespace.

The search is sequential Python control flow over a few scalars (losses, slopes and
step lengths); the vectors (gradients, the direction) stay arrays of their library,
so it runs on NumPy arrays and torch tensors on any device. It is not traceable by
``jax.jit``: each trial re-evaluates the loss through a closure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._core.namespaces import namespace_of

#: sufficient-decrease and curvature constants of the strong-Wolfe search
C1, C2 = 1e-4, 0.9
#: the line search stops shrinking its bracket below this width times max|d| (torch's
#: fixed value, independent of ``tolerance_change``)
LINE_SEARCH_TOLERANCE = 1e-9


@dataclass
class _Point:
    """A trial step length with the loss, gradient and slope found there."""

    t: Any
    f: float
    g: Any
    slope: Any


def cubic_minimizer(p: _Point, q: _Point, bounds: tuple | None = None):
    """The minimiser of the cubic matching ``f`` and its slope at ``p`` and ``q``,
    clipped to ``bounds`` (default: between the two points); the middle of the
    bounds when the cubic has no minimiser."""
    lo, hi = bounds if bounds is not None else (min(p.t, q.t), max(p.t, q.t))
    d1 = p.slope + q.slope - 3 * (p.f - q.f) / (p.t - q.t)
    disc = d1**2 - p.slope * q.slope
    if disc < 0:
        return (lo + hi) / 2.0
    d2 = namespace_of(disc).sqrt(disc)
    # written from the farther point of the two, as the interpolation formula has it
    if p.t <= q.t:
        t = q.t - (q.t - p.t) * ((q.slope + d2 - d1) / (q.slope - p.slope + 2 * d2))
    else:
        t = p.t - (p.t - q.t) * ((p.slope + d2 - d1) / (p.slope - q.slope + 2 * d2))
    return min(max(t, lo), hi)


def strong_wolfe(
    probe: Callable[[Any], tuple[float, Any]],
    d: Any,
    t,
    f0: float,
    g0: Any,
    slope0,
    max_evals: int,
    c1: float = C1,
    c2: float = C2,
    tolerance: float = LINE_SEARCH_TOLERANCE,
) -> tuple[float, Any, Any, int]:
    """A step length along ``d`` satisfying the strong Wolfe conditions.

    ``probe(t)`` returns the loss and gradient at ``x + t d``. Returns ``(f, g, t,
    evaluations)`` at the accepted step. Phase one extrapolates (cubic steps kept in
    ``[t + 0.01 (t - t_prev), 10 t]``) until the interval between the last two
    trials must contain an acceptable point; phase two shrinks that interval by
    safeguarded cubic interpolation. After ``max_evals`` evaluations the better of
    the start and the last trial is returned.
    """

    ns = namespace_of(d)

    def at(step) -> _Point:
        f, g = probe(step)
        return _Point(step, f, g, ns.vdot(g, d))

    def sufficient_decrease(p: _Point) -> bool:
        return not p.f > f0 + c1 * p.t * slope0

    def flat_enough(p: _Point) -> bool:
        return abs(p.slope) <= -c2 * slope0

    d_scale = ns.max_abs(d)
    start = _Point(0, f0, ns.copy(g0), slope0)
    prev, cur = start, at(t)
    evals, trials = 1, 0
    bracket: list[_Point] = []
    found = False
    # phase one: bracketing
    while trials < max_evals:
        if not sufficient_decrease(cur) or (trials > 1 and cur.f >= prev.f):
            bracket = [prev, cur]
            break
        if flat_enough(cur):
            bracket, found = [cur], True
            break
        if cur.slope >= 0:
            bracket = [prev, cur]
            break
        bounds = (cur.t + 0.01 * (cur.t - prev.t), cur.t * 10)
        step = cubic_minimizer(prev, cur, bounds)
        prev, cur = cur, at(step)
        evals += 1
        trials += 1
    if trials == max_evals:
        # out of evaluations while extrapolating: the better of the start and the end
        bracket = [_Point(0, f0, start.g, None), cur]

    # phase two: zoom; ``low`` indexes the better end of the bracket
    low = 0 if bracket[0].f <= bracket[-1].f else 1
    stalled = False
    while not found and trials < max_evals:
        a, b = bracket
        if abs(b.t - a.t) * d_scale < tolerance:
            break
        step = cubic_minimizer(a, b)
        left, right = min(a.t, b.t), max(a.t, b.t)
        margin = 0.1 * (right - left)
        if min(right - step, step - left) < margin:
            # too close to an end: accept once, move inside the second time (or at once
            # when the interpolation landed on or beyond an end)
            if stalled or step >= right or step <= left:
                step = right - margin if abs(step - right) < abs(step - left) else left + margin
                stalled = False
            else:
                stalled = True
        else:
            stalled = False
        new = at(step)
        evals += 1
        trials += 1
        high = 1 - low
        if not sufficient_decrease(new) or new.f >= bracket[low].f:
            bracket[high] = new
            low = 0 if bracket[0].f <= bracket[1].f else 1
        else:
            if flat_enough(new):
                found = True
            elif new.slope * (bracket[high].t - bracket[low].t) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = new
    best = bracket[low]
    return best.f, best.g, best.t, evals
