r"""L-BFGS: quasi-Newton steps from a short history of steps and gradient changes,
optionally with a strong-Wolfe line search; a step re-evaluates the loss.

Symbols: :math:`x` all parameters flattened into one vector, :math:`g` the gradient
there, :math:`d` the direction, :math:`\alpha` the step length, :math:`s_i, y_i`
the stored steps and gradient changes (slots ``s``, ``y``; :math:`\rho_i = 1/y_i^\top
s_i`, slot ``rho``), :math:`m` ``history_size``, :math:`\gamma` slot ``h_diag``,
:math:`\eta` ``learning_rate``, ``max_iter``, ``max_eval``, :math:`\tau_g`
``tolerance_grad``, :math:`\tau_c` ``tolerance_change``.

One optimisation step (``step_with_closure``, or :func:`gradstep.closure_step` on the NumPy
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

The math is written against the array namespace: NumPy arrays, torch tensors on any
device (the vectors never leave it; the closure step's stopping tests read scalars)
and, for ``update(grads)``, ``jax.jit`` (the history's ring buffer, the curvature
test and the stopping tests become ``where`` selections on traced values). The
strong-Wolfe search is :mod:`gradstep.rules.line_search`.

References:
  Nocedal (1980): Updating Quasi-Newton Matrices with Limited Storage. Mathematics of
  Computation 35(151).
  Liu & Nocedal (1989): On the limited memory BFGS method for large scale
  optimization. Mathematical Programming 45.
  Nocedal & Wright (2006): Numerical Optimization, 2nd ed., Springer (Algorithms
  3.5, 3.6 and 7.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import resolve
from .._core.namespaces import NUMPY, Namespace, namespace_of
from .._core.transform import Transform
from .._core.validate import Interval, OneOf, hyperparams, nonnegative
from .adafactor import OrNone
from .lbfgs_two_loop import two_loop
from .line_search import strong_wolfe

LINE_SEARCHES = (None, "strong_wolfe")
#: a pair (s, y) enters the history only if y.s exceeds this
CURVATURE_THRESHOLD = 1e-10
_COUNTS = ("n_iter", "func_evals", "history_len", "history_start")


def _known(cond: Any) -> bool | None:
    """``cond`` as a Python bool, or ``None`` when it is traced (decided in the graph)."""
    return None if namespace_of(cond).is_traced(cond) else bool(cond)


def _pick(ns: Namespace, cond: Any, a: Any, b: Any) -> Any:
    """``a if cond else b``, as a ``where`` selection when ``cond`` is traced."""
    known = _known(cond)
    if known is not None:
        return a if known else b
    return ns.where(cond, a, b)


# -- the state -------------------------------------------------------------------------


class _History:
    """The working copy of the state during one step (arrays of ``ns``)."""

    def __init__(self, state: dict, ns: Namespace):
        self.ns = ns
        self._count_like = {name: state[name] for name in _COUNTS}
        count = {name: namespace_of(state[name]).count(state[name]) for name in _COUNTS}
        self.n_iter, self.func_evals = count["n_iter"], count["func_evals"]
        self.length, self.start = count["history_len"], count["history_start"]
        self.direction = ns.copy(state["direction"])
        self.step_size = ns.copy(state["step_size"])
        self.prev_grad = ns.copy(state["prev_grad"])
        self.h_diag = ns.copy(state["h_diag"])
        self.s = ns.copy(state["s"])
        self.y = ns.copy(state["y"])
        self.rho = ns.copy(state["rho"])

    def as_state(self) -> dict:
        ns = self.ns

        def count(name: str, value: Any) -> Any:
            like = self._count_like[name]
            return namespace_of(like).count_array(value, like)

        return {
            "n_iter": count("n_iter", self.n_iter),
            "func_evals": count("func_evals", self.func_evals),
            "direction": self.direction,
            "step_size": ns.wrap(self.step_size),
            "prev_grad": self.prev_grad,
            "h_diag": ns.wrap(self.h_diag),
            "s": self.s,
            "y": self.y,
            "rho": self.rho,
            "history_len": count("history_len", self.length),
            "history_start": count("history_start", self.start),
        }

    def push(self, s: Any, y: Any, ys: Any, accept: Any) -> None:
        """Store the pair when ``accept`` (dropping the oldest of a full buffer)."""
        known = _known(accept)
        if known is False:
            return
        ns, size = self.ns, self.s.shape[0]
        if size == 0:
            # only under ranges_waived (torch.optim.LBFGS takes history_size=0 and fails
            # here, at its first curvature pair, with this error type)
            raise IndexError("L-BFGS: a history of size 0 cannot keep a curvature pair")
        full = self.length == size
        row = _pick(ns, full, self.start, (self.start + self.length) % size)
        start = _pick(ns, full, (self.start + 1) % size, self.start)
        length = _pick(ns, full, self.length, self.length + 1)
        new_s = ns.set_row(self.s, row, s)
        new_y = ns.set_row(self.y, row, y)
        new_rho = ns.set_row(self.rho, row, 1.0 / ys)
        if known is None:
            new_s = ns.where(accept, new_s, self.s)
            new_y = ns.where(accept, new_y, self.y)
            new_rho = ns.where(accept, new_rho, self.rho)
        self.s, self.y, self.rho = new_s, new_y, new_rho
        self.start = _pick(ns, accept, start, self.start)
        self.length = _pick(ns, accept, length, self.length)

    def next_direction(self, g: Any) -> Any:
        """Count the iteration and return its direction (step 1 of the docstring);
        also records ``g`` as the previous gradient."""
        ns = self.ns
        self.n_iter = self.n_iter + 1
        first = self.n_iter == 1
        known = _known(first)
        if known:
            d = -g
            self.length = self.start = 0
            self.h_diag = ns.astype(1.0, g)
        else:
            y = g - self.prev_grad
            s = self.direction * self.step_size
            ys = ns.vdot(y, s)
            accept = ys > CURVATURE_THRESHOLD
            self.push(s, y, ys, accept)
            if _known(accept) is not False:
                self.h_diag = _pick(ns, accept, ys / ns.vdot(y, y), self.h_diag)
            d = self._two_loop(g)
            if known is None:  # traced: the first iteration's values where it is the first
                d = ns.where(first, -g, d)
                self.length = ns.where(first, 0, self.length)
                self.start = ns.where(first, 0, self.start)
                self.h_diag = ns.where(first, ns.astype(1.0, g), self.h_diag)
        self.prev_grad = ns.copy(g)
        return d

    def _two_loop(self, g: Any) -> Any:
        return two_loop(self.ns, -g, self.s, self.y, self.rho, self.h_diag, self.start, self.length)


class _Layout:
    """How the parameter leaves map onto one flat vector (of the widest dtype)."""

    def __init__(self, leaves: list):
        self.ns = namespace_of(leaves[0]) if leaves else NUMPY
        self.leaves = list(leaves)
        self.shapes = [tuple(np.shape(a)) for a in leaves]
        self.sizes = [math.prod(s) for s in self.shapes]
        widths = [self.ns.float_dtype(a).itemsize for a in leaves]
        self.like = leaves[int(np.argmax(widths))] if leaves else np.zeros(0)
        self.size = sum(self.sizes)

    def flat(self, leaves: list) -> Any:
        ns = self.ns
        if not leaves:
            return ns.zeros((0,), self.like)
        return ns.concatenate([ns.ravel(ns.astype(x, self.like)) for x in leaves])

    def split(self, x: Any) -> list:
        ns, out, offset = self.ns, [], 0
        for shape, like, n in zip(self.shapes, self.leaves, self.sizes):
            out.append(ns.astype(ns.reshape(x[offset : offset + n], shape), like))
            offset += n
        return out

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self.ns.zeros(shape, self.like)


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
        steps = namespace_of(state["steps"]).count(state["steps"])
        return resolve(self.hyperparams, steps, ctx)["learning_rate"]

    def init(self, params: Any) -> dict:
        layout = _Layout(_tree.leaves(params))
        n, m = layout.size, self.history_size
        return {
            "steps": np.zeros((), np.int64),
            "n_iter": np.zeros((), np.int64),
            "func_evals": np.zeros((), np.int64),
            "direction": layout.zeros((n,)),
            "step_size": layout.zeros(()),
            "prev_grad": layout.zeros((n,)),
            "h_diag": layout.ns.wrap(layout.ns.astype(1.0, layout.like)),
            "s": layout.zeros((m, n)),
            "y": layout.zeros((m, n)),
            "rho": layout.zeros((m,)),
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
        ns = layout.ns
        g = layout.flat(g_leaves)
        lr = self._learning_rate(state, ctx)
        h = _History(state, ns)
        h.func_evals = h.func_evals + 1
        steps_ns = namespace_of(state["steps"])
        steps = steps_ns.count(state["steps"])
        new_state = {"steps": steps_ns.count_array(steps + 1, state["steps"])}
        zero = ns.zeros((layout.size,), layout.like)
        if layout.size == 0:
            return _tree.unflatten(td, layout.split(zero)), {**new_state, **h.as_state()}
        optimal = ns.max_abs(g) <= self.tolerance_grad
        if _known(optimal):
            return _tree.unflatten(td, layout.split(zero)), {**new_state, **h.as_state()}
        before = h.as_state()
        d = h.next_direction(g)
        t = self._first_step_size(h, g, lr)
        h.direction, h.step_size = d, ns.astype(t, g)
        after = h.as_state()
        flat = ns.vdot(g, d) > -self.tolerance_change
        u = d * ns.astype(t, g)
        if _known(optimal) is None:  # traced: select the state and the update
            after = {k: _pick(ns, optimal, before[k], v) for k, v in after.items()}
            flat = flat | optimal
        u = _pick(ns, flat, zero, u)
        return _tree.unflatten(td, layout.split(u)), {**new_state, **after}

    @staticmethod
    def _first_step_size(h: _History, g: Any, lr: float):
        ns, first = h.ns, h.n_iter == 1
        if _known(first) is False:
            return lr
        scaled = ns.minimum(1.0, 1.0 / ns.abs_sum(g)) * lr
        return _pick(ns, first, scaled, lr)

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

        def evaluate(x: Any) -> tuple[float, Any]:
            loss, grads = loss_and_grad(_tree.unflatten(td, layout.split(x)))
            return float(loss), layout.flat(_tree.leaves_like(td, grads))

        x = layout.flat(leaves)
        lr = self._learning_rate(state, ctx)
        h = _History(state, layout.ns)
        loss, x = self._minimize(evaluate, x, h, lr)
        new_state = {"steps": np.asarray(int(state["steps"]) + 1, np.int64), **h.as_state()}
        return loss, _tree.unflatten(td, layout.split(x)), new_state

    def _minimize(self, evaluate, x: Any, h: _History, lr: float):
        ns = h.ns
        loss, g = evaluate(x)
        first_loss = loss
        evals = 1
        h.func_evals += 1
        if math.prod(tuple(np.shape(g))) == 0 or ns.max_abs(g) <= self.tolerance_grad:
            return first_loss, x
        converged = False
        for k in range(1, self.max_iter + 1):
            d = h.next_direction(g)
            prev_loss = loss
            t = self._first_step_size(h, g, lr)
            slope = ns.vdot(g, d)
            h.direction, h.step_size = d, ns.astype(t, g)
            if slope > -self.tolerance_change:
                break
            if self.line_search_fn == "strong_wolfe":

                def probe(step, x=x, d=d):
                    return evaluate(x + step * d)

                loss, g, t, used = strong_wolfe(probe, d, t, loss, g, slope, self.max_eval - evals)
                h.step_size = ns.astype(t, g)
                x = x + t * d
                converged = bool(ns.max_abs(g) <= self.tolerance_grad)
            else:
                x = x + t * d
                used = 0
                if k != self.max_iter:
                    loss, g = evaluate(x)
                    used = 1
                    converged = bool(ns.max_abs(g) <= self.tolerance_grad)
            evals += used
            h.func_evals += used
            if k == self.max_iter or evals >= self.max_eval or converged:
                break
            if ns.max_abs(d * t) <= self.tolerance_change:
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
    driven by ``value_and_grad`` and its own scaling of the first step:
    ``gradstep.compat.optax.lbfgs`` (the same :func:`two_loop`). MXNet, Keras and
    objax have no L-BFGS.
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
