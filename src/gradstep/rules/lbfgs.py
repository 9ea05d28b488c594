r"""L-BFGS: quasi-Newton steps from a short history of steps and gradient changes,
optionally with a strong-Wolfe line search; a step re-evaluates the loss.

Symbols: :math:`x` all parameters flattened into one vector, :math:`g` the gradient
there, :math:`d` the direction, :math:`\alpha` the step length, :math:`s_i, y_i`
the stored steps and gradient changes (slots ``s``, ``y``; :math:`\rho_i = 1/y_i^\top
s_i`, slot ``rho``), :math:`m` ``history_size``, :math:`\gamma` slot ``h_diag``,
:math:`\eta` ``learning_rate``, ``max_iter``, ``max_eval``, :math:`\tau_g`
``tolerance_grad``, :math:`\tau_c` ``tolerance_change``.

One optimisation step (``step_with_closure``, or :func:`closure_step` on the NumPy
front) evaluates the loss and gradient, returns at once if
:math:`\max|g| \le \tau_g`, and then runs up to ``max_iter`` iterations:

1. After the first iteration ever, store :math:`s = \alpha d` (the last step) and
   :math:`y = g - g_{prev}` when :math:`y^\top s > 10^{-10}` (dropping the oldest of
   :math:`m` pairs), with :math:`\gamma = y^\top s / y^\top y`. The direction
   :math:`d = -H g` comes from the two-loop recursion: for the pairs from newest to
   oldest :math:`a_i = \rho_i s_i^\top q,\ q \leftarrow q - a_i y_i` (from
   :math:`q = -g`), then :math:`r = \gamma q` and for the pairs from oldest to newest
   :math:`r \leftarrow r + (a_i - \rho_i y_i^\top r) s_i`; :math:`d = r`. The first
   iteration ever takes :math:`d = -g`.
2. :math:`\alpha = \eta \min(1, 1/\lVert g\rVert_1)` on the first iteration ever,
   :math:`\eta` afterwards. If :math:`g^\top d > -\tau_c` the step ends.
3. Without line search :math:`x \leftarrow x + \alpha d`, and the loss is evaluated
   again unless this was the last iteration. With ``line_search_fn="strong_wolfe"``,
   :math:`\alpha` is found by bracketing and cubic-interpolation zoom until
   :math:`f(x+\alpha d) \le f(x) + c_1 \alpha g^\top d` and :math:`|g(x+\alpha
   d)^\top d| \le -c_2 g^\top d` (:math:`c_1 = 10^{-4}, c_2 = 0.9`), with at most
   ``max_eval`` evaluations in the whole step.
4. The step ends after ``max_iter`` iterations or ``max_eval`` evaluations, when
   :math:`\max|g| \le \tau_g`, :math:`\max|\alpha d| \le \tau_c` or the loss changed
   by less than :math:`\tau_c`.

The history, the last direction and step length, the previous gradient and the
iteration count persist across steps, as in torch.

``update(grads, ...)`` (the gradient-only protocol, used by ``Optimizer.step(grads)``)
runs exactly one iteration per gradient with a fixed step length: it requires
``max_iter=1`` and no line search, and then equals torch's ``LBFGS(max_iter=1)``.

References:
  Nocedal (1980): Updating Quasi-Newton Matrices with Limited Storage. Mathematics of
  Computation 35(151).
  Liu & Nocedal (1989): On the limited memory BFGS method for large scale
  optimization. Mathematical Programming 45.
  Nocedal & Wright (2006): Numerical Optimization, 2nd ed., Springer (Algorithms
  3.5, 3.6 and 7.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import float_dtype, resolve
from .._core.transform import Transform
from .._core.validate import Interval, OneOf, hyperparams, nonnegative
from .adafactor import OrNone

LINE_SEARCHES = (None, "strong_wolfe")
#: sufficient-decrease and curvature constants of the strong-Wolfe search
C1, C2 = 1e-4, 0.9
#: the line search stops shrinking its bracket below this width times max|d| (torch's
#: fixed value, independent of ``tolerance_change``)
LINE_SEARCH_TOLERANCE = 1e-9
#: a pair (s, y) enters the history only if y.s exceeds this
CURVATURE_THRESHOLD = 1e-10


# -- the state -------------------------------------------------------------------------


class _History:
    """The mutable working copy of the state during one step."""

    def __init__(self, state: dict, copy: bool = True):
        take = (lambda a: np.array(a, copy=True)) if copy else np.asarray
        self.n_iter = int(state["n_iter"])
        self.func_evals = int(state["func_evals"])
        self.direction = take(state["direction"])
        self.step_size = take(state["step_size"])
        self.prev_grad = take(state["prev_grad"])
        self.h_diag = take(state["h_diag"])
        self.s = take(state["s"])
        self.y = take(state["y"])
        self.rho = take(state["rho"])
        self.length = int(state["history_len"])
        self.start = int(state["history_start"])

    def as_state(self) -> dict:
        return {
            "n_iter": np.asarray(self.n_iter, np.int64),
            "func_evals": np.asarray(self.func_evals, np.int64),
            "direction": self.direction,
            "step_size": np.asarray(self.step_size),
            "prev_grad": self.prev_grad,
            "h_diag": np.asarray(self.h_diag),
            "s": self.s,
            "y": self.y,
            "rho": self.rho,
            "history_len": np.asarray(self.length, np.int64),
            "history_start": np.asarray(self.start, np.int64),
        }

    def order(self) -> list[int]:
        """Buffer rows from the oldest pair to the newest."""
        size = self.s.shape[0]
        return [(self.start + i) % size for i in range(self.length)]

    def push(self, s: np.ndarray, y: np.ndarray, ys) -> None:
        size = self.s.shape[0]
        if self.length == size:
            row = self.start
            self.start = (self.start + 1) % size
        else:
            row = (self.start + self.length) % size
            self.length += 1
        self.s[row] = s
        self.y[row] = y
        self.rho[row] = 1.0 / ys

    def next_direction(self, g: np.ndarray) -> np.ndarray:
        """Count the iteration and return its direction (step 1 of the docstring);
        also records ``g`` as the previous gradient."""
        self.n_iter += 1
        if self.n_iter == 1:
            d = -g
            self.length = self.start = 0
            self.h_diag = np.asarray(1.0, g.dtype)
        else:
            y = g - self.prev_grad
            s = self.direction * self.step_size
            ys = y @ s
            if ys > CURVATURE_THRESHOLD:
                self.push(s, y, ys)
                self.h_diag = ys / (y @ y)
            d = self._two_loop(g)
        self.prev_grad = np.array(g, copy=True)
        return d

    def _two_loop(self, g: np.ndarray) -> np.ndarray:
        rows = self.order()
        q = -g
        a = {}
        for i in reversed(rows):
            a[i] = (self.s[i] @ q) * self.rho[i]
            q = q - a[i] * self.y[i]
        r = q * self.h_diag
        for i in rows:
            b = (self.y[i] @ r) * self.rho[i]
            r = r + (a[i] - b) * self.s[i]
        return r


# -- the strong-Wolfe line search --------------------------------------------------------


@dataclass
class _Point:
    """A trial step length with the loss, gradient and slope found there."""

    t: Any
    f: float
    g: np.ndarray
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
    d2 = np.sqrt(disc)
    # written from the farther point of the two, as the interpolation formula has it
    if p.t <= q.t:
        t = q.t - (q.t - p.t) * ((q.slope + d2 - d1) / (q.slope - p.slope + 2 * d2))
    else:
        t = p.t - (p.t - q.t) * ((p.slope + d2 - d1) / (p.slope - q.slope + 2 * d2))
    return min(max(t, lo), hi)


def strong_wolfe(
    probe: Callable[[Any], tuple[float, np.ndarray]],
    d: np.ndarray,
    t,
    f0: float,
    g0: np.ndarray,
    slope0,
    max_evals: int,
    c1: float = C1,
    c2: float = C2,
    tolerance: float = LINE_SEARCH_TOLERANCE,
) -> tuple[float, np.ndarray, Any, int]:
    """A step length along ``d`` satisfying the strong Wolfe conditions.

    ``probe(t)`` returns the loss and gradient at ``x + t d``. Returns ``(f, g, t,
    evaluations)`` at the accepted step. Phase one extrapolates (cubic steps kept in
    ``[t + 0.01 (t - t_prev), 10 t]``) until the interval between the last two
    trials must contain an acceptable point; phase two shrinks that interval by
    safeguarded cubic interpolation. After ``max_evals`` evaluations the better of
    the start and the last trial is returned.
    """

    def at(step) -> _Point:
        f, g = probe(step)
        return _Point(step, f, g, g @ d)

    def sufficient_decrease(p: _Point) -> bool:
        return not p.f > f0 + c1 * p.t * slope0

    def flat_enough(p: _Point) -> bool:
        return abs(p.slope) <= -c2 * slope0

    d_scale = np.max(np.abs(d))
    start = _Point(0, f0, np.array(g0, copy=True), slope0)
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


# -- the transform ---------------------------------------------------------------------------


class _Layout:
    """How the parameter leaves map onto one flat vector."""

    def __init__(self, leaves: list):
        arrays = [np.asarray(p) for p in leaves]
        self.shapes = [a.shape for a in arrays]
        self.dtypes = [float_dtype(a) for a in arrays]
        self.sizes = [a.size for a in arrays]
        self.dtype = np.result_type(*self.dtypes) if arrays else np.dtype(np.float64)
        self.size = sum(self.sizes)

    def flat(self, leaves: list) -> np.ndarray:
        if not leaves:
            return np.zeros(0, self.dtype)
        return np.concatenate([np.asarray(x, self.dtype).ravel() for x in leaves])

    def split(self, x: np.ndarray) -> list[np.ndarray]:
        out, offset = [], 0
        for shape, dtype, n in zip(self.shapes, self.dtypes, self.sizes):
            out.append(x[offset : offset + n].reshape(shape).astype(dtype, copy=False))
            offset += n
        return out


class LBFGS(Transform):
    """The L-BFGS transform (see the module docstring); built by :func:`lbfgs`."""

    name = "lbfgs"
    needs_closure = True

    def __init__(
        self,
        learning_rate: float,
        max_iter: int,
        max_eval: int | None,
        tolerance_grad: float,
        tolerance_change: float,
        history_size: int,
        line_search_fn: str | None,
    ):
        self.hyperparams = {"learning_rate": learning_rate}
        self.max_iter = int(max_iter)
        self.max_eval = int(max_eval) if max_eval is not None else self.max_iter * 5 // 4
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self.history_size = int(history_size)
        self.line_search_fn = line_search_fn

    def hyperparameters(self) -> dict[str, Any]:
        declared = getattr(self, "declared_ranges", {})
        return {name: declared.get(name) for name in self.hyperparams}

    def _learning_rate(self, state: dict, ctx: dict) -> float:
        # a schedule of the learning rate is evaluated at the number of steps so far
        return resolve(self.hyperparams, int(state["steps"]), ctx)["learning_rate"]

    def init(self, params: Any) -> dict:
        layout = _Layout(_tree.leaves(params))
        n, m, dtype = layout.size, self.history_size, layout.dtype
        return {
            "steps": np.zeros((), np.int64),
            "n_iter": np.zeros((), np.int64),
            "func_evals": np.zeros((), np.int64),
            "direction": np.zeros(n, dtype),
            "step_size": np.zeros((), dtype),
            "prev_grad": np.zeros(n, dtype),
            "h_diag": np.ones((), dtype),
            "s": np.zeros((m, n), dtype),
            "y": np.zeros((m, n), dtype),
            "rho": np.zeros(m, dtype),
            "history_len": np.zeros((), np.int64),
            "history_start": np.zeros((), np.int64),
        }

    # -- one iteration per gradient ------------------------------------------------------

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if self.max_iter != 1 or self.line_search_fn is not None:
            raise ValueError(
                f"lbfgs: update(grads) runs one iteration per gradient, which cannot honour "
                f"max_iter={self.max_iter}, line_search_fn={self.line_search_fn!r}; step "
                "with a closure (LBFGS.step_with_closure, gradstep.closure_step) or use "
                "max_iter=1 and line_search_fn=None"
            )
        g_leaves, td = _tree.flatten(grads)
        layout = _Layout(g_leaves)
        g = layout.flat(g_leaves)
        lr = self._learning_rate(state, ctx)
        h = _History(state)
        h.func_evals += 1
        new_state = {"steps": np.asarray(int(state["steps"]) + 1, np.int64)}
        zero = _tree.unflatten(td, layout.split(np.zeros_like(g)))
        if g.size == 0 or np.max(np.abs(g)) <= self.tolerance_grad:
            return zero, {**new_state, **h.as_state()}
        d = h.next_direction(g)
        t = self._first_step_size(h, g, lr)
        h.direction, h.step_size = d, np.asarray(t, g.dtype)
        if g @ d > -self.tolerance_change:
            return zero, {**new_state, **h.as_state()}
        u = d * g.dtype.type(t)
        return _tree.unflatten(td, layout.split(u)), {**new_state, **h.as_state()}

    @staticmethod
    def _first_step_size(h: _History, g: np.ndarray, lr: float):
        if h.n_iter == 1:
            return min(1.0, 1.0 / np.sum(np.abs(g))) * lr
        return lr

    # -- a full step with a closure --------------------------------------------------------

    def step_with_closure(
        self,
        loss_and_grad: Callable[[Any], tuple[Any, Any]],
        params: Any,
        state: dict,
        **ctx: Any,
    ) -> tuple[float, Any, dict]:
        """One optimisation step, as torch's ``LBFGS.step(closure)``.

        ``loss_and_grad(params) -> (loss, grads)`` evaluates the objective at a tree
        shaped like ``params``. Returns ``(loss, new_params, new_state)``: the loss
        at the starting point (what torch's ``step`` returns), the parameters after
        the step (new arrays; ``params`` is not modified) and the new state.
        """
        leaves, td = _tree.flatten(params)
        layout = _Layout(leaves)

        def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
            loss, grads = loss_and_grad(_tree.unflatten(td, layout.split(x)))
            return float(loss), layout.flat(_tree.leaves_like(td, grads))

        x = layout.flat(leaves)
        lr = self._learning_rate(state, ctx)
        h = _History(state)
        loss, x = self._minimize(evaluate, x, h, lr)
        new_state = {"steps": np.asarray(int(state["steps"]) + 1, np.int64), **h.as_state()}
        return loss, _tree.unflatten(td, layout.split(x)), new_state

    def _minimize(self, evaluate, x: np.ndarray, h: _History, lr: float):
        loss, g = evaluate(x)
        first_loss = loss
        evals = 1
        h.func_evals += 1
        if g.size == 0 or np.max(np.abs(g)) <= self.tolerance_grad:
            return first_loss, x
        converged = False
        for k in range(1, self.max_iter + 1):
            d = h.next_direction(g)
            prev_loss = loss
            t = self._first_step_size(h, g, lr)
            slope = g @ d
            h.direction, h.step_size = d, np.asarray(t, g.dtype)
            if slope > -self.tolerance_change:
                break
            if self.line_search_fn == "strong_wolfe":

                def probe(step, x=x, d=d):
                    return evaluate(x + step * d)

                loss, g, t, used = strong_wolfe(probe, d, t, loss, g, slope, self.max_eval - evals)
                h.step_size = np.asarray(t, g.dtype)
                x = x + t * d
                converged = bool(np.max(np.abs(g)) <= self.tolerance_grad)
            else:
                x = x + t * d
                used = 0
                if k != self.max_iter:
                    loss, g = evaluate(x)
                    used = 1
                    converged = bool(np.max(np.abs(g)) <= self.tolerance_grad)
            evals += used
            h.func_evals += used
            if k == self.max_iter or evals >= self.max_eval or converged:
                break
            if np.max(np.abs(d * t)) <= self.tolerance_change:
                break
            if abs(loss - prev_loss) < self.tolerance_change:
                break
        return first_loss, x


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    max_iter=Interval(1, integer=True),
    max_eval=OrNone(Interval(1, integer=True)),
    tolerance_grad=nonnegative(),
    tolerance_change=nonnegative(),
    history_size=Interval(1, integer=True),
    line_search_fn=OneOf(LINE_SEARCHES),
)
def lbfgs(
    learning_rate: Any = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> LBFGS:
    r"""L-BFGS over all parameters as one vector (see the module docstring for the
    math and the symbol map).

    A step needs a closure that re-evaluates the loss and the gradients: on the NumPy
    front, ``gradstep.closure_step(opt, closure)`` with ``closure() -> (loss,
    grads)`` at the optimizer's (in-place updated) parameters; functionally,
    ``transform.step_with_closure(loss_and_grad, params, state)``. With
    ``max_iter=1`` and no line search it also runs on gradients alone
    (``Optimizer.step(grads)``): one fixed-length quasi-Newton step per gradient.

    Args:
      learning_rate: :math:`\eta` >= 0 (or a schedule of the step count): the step
        length, and the line search's first trial. Default 1.
      max_iter: integer >= 1, iterations per step. Default 20.
      max_eval: integer >= 1, loss evaluations per step, or ``None`` (default) for
        ``max_iter * 5 // 4``.
      tolerance_grad: :math:`\tau_g` >= 0. Default 1e-7.
      tolerance_change: :math:`\tau_c` >= 0. Default 1e-9.
      history_size: :math:`m`, integer >= 1. Default 100. The history is allocated
        at ``init``: ``2 m`` vectors of the parameters' total size.
      line_search_fn: ``None`` (default) or ``"strong_wolfe"``.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([3.0, -1.0])
      >>> def closure():  # loss and gradient of (w0 - 1)^2 + 10 (w1 + 2)^2
      ...     loss = (w[0] - 1) ** 2 + 10 * (w[1] + 2) ** 2
      ...     return loss, np.array([2 * (w[0] - 1), 20 * (w[1] + 2)])
      >>> opt = gradstep.Optimizer(w, gradstep.lbfgs(line_search_fn="strong_wolfe"))
      >>> loss = gradstep.closure_step(opt, closure)
      >>> w.round(6)
      array([ 1., -2.])

    Differences: this is torch's ``LBFGS`` (same defaults, iteration, stopping rules
    and line search, including its fixed 1e-9 bracket tolerance and the first-step
    length :math:`\min(1, 1/\lVert g\rVert_1)\eta`); torch's learning rate is a plain
    number. optax's ``lbfgs`` is a gradient transformation with a zoom line search
    driven by ``value_and_grad`` and its own scaling of the first step. MXNet, Keras
    and objax have no L-BFGS.
    """
    return LBFGS(
        learning_rate,
        max_iter,
        max_eval,
        tolerance_grad,
        tolerance_change,
        history_size,
        line_search_fn,
    )


def closure_step(optimizer: Any, closure: Callable[[], tuple[Any, Any]], **ctx: Any) -> float:
    """Run one closure-driven step of ``optimizer`` (a :class:`gradstep.Optimizer`
    whose transform has ``step_with_closure``, such as :func:`lbfgs`).

    ``closure()`` returns ``(loss, grads)`` for the optimizer's parameters as they
    are when it is called: the step writes each trial point into the parameter
    arrays before calling it, and leaves the arrays at the new point. ``ctx``
    overrides hyperparameters for this step, as in ``Optimizer.step``. Returns the
    loss at the starting point, as torch's ``LBFGS.step``.
    """
    transform = optimizer.transform
    if not hasattr(transform, "step_with_closure"):
        raise TypeError(
            f"closure_step: {getattr(transform, 'name', type(transform).__name__)!r} does not "
            "step with a closure; use Optimizer.step(grads)"
        )
    overrides = {**optimizer.hyperparams, **ctx}
    optimizer._check_overrides(overrides)
    live = _tree.leaves(optimizer.params)

    def write(tree: Any) -> None:
        for target, value in zip(live, _tree.leaves(tree)):
            np.copyto(target, value, casting="same_kind")

    def loss_and_grad(trial: Any):
        write(trial)
        return closure()

    start = [np.array(p, copy=True) for p in live]
    try:
        loss, new_params, optimizer.state = transform.step_with_closure(
            loss_and_grad, optimizer.params, optimizer.state, **overrides
        )
    except BaseException:
        for target, value in zip(live, start):
            np.copyto(target, value)
        raise
    write(new_params)
    return loss
