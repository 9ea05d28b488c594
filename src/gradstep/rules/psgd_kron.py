r"""PSGD-Kron: preconditioned SGD with a Kronecker-factored preconditioner
:math:`P = Q^\top Q`, :math:`Q = Q_1 \otimes \cdots \otimes Q_k`, fitted online on
the Lie group of upper-triangular (or diagonal) matrices.

Symbols: :math:`G` gradient of a tensor of shape :math:`(n_1, \dots, n_k)` (a tensor of
more than two axes is first viewed as a matrix, ``merge_dims``; a 0-d one as a
1-vector), :math:`m` slot ``mu``, :math:`Q_i` slot ``factors`` (axis :math:`i`'s
factor: an upper-triangular :math:`n_i \times n_i` matrix, or a diagonal kept as a
vector), :math:`t` the step (1 on the first), :math:`\eta` ``learning_rate``,
:math:`\beta` ``b1``, :math:`\lambda` ``weight_decay``, :math:`\mu_Q`
``precond_lr``, :math:`s` ``precond_init_scale``, :math:`V` the probe vector (standard
normal, shaped like :math:`G`), :math:`\epsilon = 2^{-23}` (float32's machine epsilon).
:math:`X \times_i M` multiplies every fibre of :math:`X` along axis :math:`i` by
:math:`M` (a diagonal :math:`M` elementwise), and :math:`\mathcal{Q}(X) = X \times_1
Q_1 \cdots \times_k Q_k`.

Each step:

.. math::

    m \leftarrow \beta m + (1-\beta) G,\qquad \hat m = m / (1 - \beta^t)

On a step that updates the preconditioner (see below), with :math:`H = \hat m`
(``momentum_into_precond_update``, and then :math:`\hat m \leftarrow H` after the
perturbation) or :math:`H = G`:

.. math::

    H \leftarrow H + \sqrt\epsilon\, \mathrm{mean}|H|\, V,\quad
    A = \mathcal{Q}(H),\quad B = V \times_1 Q_1^{-\top} \cdots \times_k Q_k^{-\top}

and for every axis, with :math:`X_{(i)}` the unfolding of :math:`X` along axis
:math:`i`, :math:`T_\pm = A_{(i)} A_{(i)}^\top \pm B_{(i)} B_{(i)}^\top`:

.. math::

    Q_i \leftarrow Q_i - \frac{\mu_Q}{\ell(T_+)}\, \mathrm{triu}(T_-)\, Q_i
    \quad\text{(triangular)},\qquad
    q_i \leftarrow q_i - \frac{\mu_Q}{\max |T_+|}\, \mathrm{diag}(T_-) \odot q_i
    \quad\text{(diagonal)}

where :math:`\ell(T)` is a cheap lower bound of the spectral norm of :math:`T` (one
power-iteration step from its largest column, at least the dtype's smallest normal
number). Then

.. math::

    D = \hat m \times_1 Q_1^\top Q_1 \cdots \times_k Q_k^\top Q_k,\quad
    D \leftarrow D \min\!\Big(1, \frac{1.1}{\mathrm{rms}(D) + 10^{-12}}\Big),\quad
    w \leftarrow w - \eta\,(D + \lambda w)

(:math:`\lambda w` only for tensors of two or more axes). Every factor starts as
:math:`s^{1/k} I`. An axis gets a diagonal factor when it is 1 long, longer than
``max_size_triangular``, in a tensor of fewer than ``min_ndim_triangular`` axes, or
picked by ``memory_save_mode`` (``"one_diag"``: the longest axis; ``"smart_one_diag"``:
the longest if strictly longer than the next; ``"all_diag"``: every axis).

**Update schedule.** With :math:`c` the number of steps since the last
preconditioner update, step :math:`n` (0 on the first) updates when
:math:`c + 1 \ge 1/p(n)` (and :math:`c` restarts). :math:`p` is
``preconditioner_update_probability``, or by default the annealing schedule
:math:`p(n) = \mathrm{clip}(e^{-0.001 (n - 500)}, 0.03, 1)` computed in float32 (every
step for 500 steps, then every 34th step from about step 4000). The decisions are a
function of :math:`n` alone: they are tabulated once on the host
(:func:`update_table`), so a traced step count looks them up.

**Probe vectors and balancing.** :math:`V` comes from the rule's probe source: by
default gradstep's seeded noise (:mod:`gradstep._core.noise`: the key
``(seed, count)`` draws one normal tensor per parameter and one more normal
:math:`z`); on a step that updates, the factors of each tensor of two or more axes
are first *balanced* (each :math:`Q_i` times :math:`\bar q / \max|Q_i|`, with
:math:`\bar q` the geometric mean of the :math:`\max|Q_i|`; :math:`P` is unchanged)
when :math:`z > 2.3263` (probability 0.01). A ``probe_source`` callable
``(seed, count, likes) -> (probes, balance)`` replaces that (the conformance test
plays back the reference's draws with it). A resumed run draws what the
uninterrupted run drew.

The matrix work (products along axes, triangular solves, Gram matrices) is written
once against the array namespace: it runs on NumPy, on torch tensors on their
device and under ``jax.jit`` (a traced update decision picks the fitted factors with
``lax.cond``; the probes are then drawn every step).

References:
  Li (2018): Preconditioned Stochastic Gradient Descent. IEEE Transactions on Neural
  Networks and Learning Systems 29(5), arXiv:1512.04202.
  Li (2022): Black Box Lie Group Preconditioners for SGD. arXiv:2211.04422.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Elementwise
from .._core.namespaces import namespace_of
from .._core.noise import SEED, SeededNoise, normals
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import BOOL, Constraint, Interval, OneOf, decay_rate, hyperparams, nonnegative
from .adafactor import OrNone
from .psgd_schedule import updates_at

#: the memory_save_mode values
MEMORY_SAVE_MODES = (None, "smart_one_diag", "one_diag", "all_diag")
#: the balancing threshold of the default probe source: P(z > BALANCE_Z) = 0.01
BALANCE_Z = 2.3263478740408408
#: float32's machine epsilon, whose square root scales the gradient's perturbation
EPS32 = float(np.finfo(np.float32).eps)
#: the smallest normal number of a floating dtype, by its machine epsilon (bfloat16:
#: float32's exponent range)
TINY = {
    2.0**-52: float(np.finfo(np.float64).tiny),
    2.0**-23: float(np.finfo(np.float32).tiny),
    2.0**-10: float(np.finfo(np.float16).tiny),
    2.0**-7: float(np.finfo(np.float32).tiny),
}


class OrCallable(Constraint):
    """``None`` or a callable."""

    def contains(self, value: Any) -> bool:
        return value is None or callable(value)

    def describe(self) -> str:
        return "None or a callable (seed, count, likes) -> (probes, balance)"

    def invalid_example(self) -> Any:
        return "<not-callable>"


def work_shape(shape: tuple[int, ...], merge_dims: bool) -> tuple[int, ...]:
    """The shape a tensor is preconditioned in: a 0-d tensor as a 1-vector; with
    ``merge_dims`` a tensor of more than two axes as the more balanced of
    ``(n_1 \\cdots n_{k-1}, n_k)`` and ``(n_1, n_2 \\cdots n_k)``."""
    if len(shape) == 0:
        return (1,)
    if len(shape) > 2 and merge_dims:
        first = (int(np.prod(shape[:-1])), shape[-1])
        second = (shape[0], int(np.prod(shape[1:])))
        return first if first[1] - first[0] <= second[1] - second[0] else second
    return tuple(shape)


def triangular_axes(shape, max_size, min_ndim, memory_save_mode) -> tuple[bool, ...]:
    """For each axis of the work shape, whether its factor is triangular."""
    diag = [False] * len(shape)
    if memory_save_mode == "all_diag":
        diag = [True] * len(shape)
    elif memory_save_mode in ("one_diag", "smart_one_diag"):
        longest = int(np.argsort(shape)[::-1][0])
        ordered = sorted(shape)
        if memory_save_mode == "one_diag" or (len(shape) > 1 and ordered[-1] > ordered[-2]):
            diag[longest] = True
    return tuple(
        not (n == 1 or n > max_size or len(shape) < min_ndim or d) for n, d in zip(shape, diag)
    )


def _by_factor(ns, x, axis, q, triangular, kind):
    """Every fibre of ``x`` along ``axis`` multiplied by :math:`Q` (``kind`` "q"), by
    :math:`Q^\\top Q` ("precondition") or by :math:`Q^{-\\top}` ("inverse_transpose"),
    a diagonal :math:`Q` elementwise. The fibres are the rows of a matrix here, so
    :math:`Q v` is ``rows @ Q^T``."""
    moved = ns.moveaxis(x, axis, -1)
    rows = ns.reshape(moved, (-1, np.shape(moved)[-1]))
    if triangular:
        if kind == "inverse_transpose":
            rows = ns.solve_triangular_right(rows, q)
        else:
            rows = ns.matmul(rows, ns.matrix_transpose(q))
            rows = ns.matmul(rows, q) if kind == "precondition" else rows
    elif kind == "inverse_transpose":
        rows = rows / q
    else:
        rows = rows * q * q if kind == "precondition" else rows * q
    return ns.moveaxis(ns.reshape(rows, np.shape(moved)), -1, axis)


def _gram(ns, x, axis, triangular):
    """:math:`X_{(i)} X_{(i)}^\\top`, or its diagonal for a diagonal factor."""
    n = np.shape(x)[axis]
    unfolded = ns.reshape(ns.moveaxis(x, axis, 0), (n, -1))
    if triangular:
        return ns.matmul(unfolded, ns.matrix_transpose(unfolded))
    return ns.sum(unfolded * unfolded, axis=1)


def _norm2(ns, x):
    return ns.sqrt(ns.sum(x * x))


def _spectral_lower_bound(ns, t, t_max, tiny):
    """:math:`\\ell(T)`: one power-iteration step from the largest column of
    :math:`T / \\max|T|`, scaled back (``t_max`` where it is 0), at least ``tiny``."""
    a = t / ns.maximum(t_max, tiny)
    column = ns.argsort(-ns.sum(a * a, axis=0))[:1]  # the first largest column
    x = ns.reshape(ns.take(a, column, 1), (-1,))
    x = ns.matmul(x, a)
    x = x / ns.maximum(_norm2(ns, x), tiny)
    bound = _norm2(ns, ns.matmul(a, x)) * t_max
    return ns.maximum(ns.where(t_max > 0, bound, t_max), tiny)


def seeded_probes(seed: Any, count: Any, likes: list) -> tuple[list, Any]:
    """The default probe source: standard normals shaped like each of ``likes`` and a
    balancing decision (one more normal above :data:`BALANCE_Z`), from the key
    ``(seed, count)``."""
    one = namespace_of(likes[0]).zeros((1,), likes[0])  # also when likes[0] is empty
    draws = normals(likes + [one], seed, count, 1.0)
    z = draws[-1]  # compared on the array's library: no host read
    return draws[:-1], namespace_of(z).reshape(z, (-1,))[0] > BALANCE_Z


class ScaleByKron(SeededNoise):
    """The clipped preconditioned direction :math:`D + \\lambda w` of the module
    docstring and what it keeps (state ``count``, ``seed``, ``mu``,
    ``factors``: each tensor's factors one flat vector)."""

    per_parameter_state = ("mu", "factors")  # lists indexed by parameter

    name = "scale_by_psgd_kron"
    reads_shape = True  # a real view's trailing axis would change its factors

    def __init__(self, **options: Any):
        for k, v in options.items():
            setattr(self, k, v)
        self.probes = self.probe_source or seeded_probes
        self.probability = self.preconditioner_update_probability

    def _layout(self, shape):
        ws = work_shape(shape, self.merge_dims)
        tri = triangular_axes(
            ws, self.max_size_triangular, self.min_ndim_triangular, self.memory_save_mode
        )
        return ws, tri

    def _unpack(self, ns, flat, ws, tri):
        out, start = [], 0
        for n, t in zip(ws, tri):
            size = n * n if t else n
            part = flat[start : start + size]
            out.append(ns.reshape(part, (n, n)) if t else part)
            start += size
        return out

    def init(self, params: Any) -> dict:
        state = super().init(params)
        leaves, td = _tree.flatten(params)
        mus, factors = [], []
        for p in leaves:
            ns = namespace_of(p)
            ws, tri = self._layout(tuple(np.shape(p)))
            s = self.precond_init_scale
            scale = s ** (1.0 / len(ws)) if np.ndim(p) else s
            parts = [np.eye(n).ravel() if t else np.ones(n) for n, t in zip(ws, tri)]
            flat = scale * np.concatenate(parts)
            mus.append(ns.zeros(tuple(np.shape(p)), p))
            factors.append(ns.astype(ns.constant(flat, p), p))
        state.update(
            mu=_tree.unflatten(td, mus),
            factors=_tree.unflatten(td, factors),
        )
        return state

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        p_leaves = _tree.leaves_like(td, params)
        mus = _tree.leaves_like(td, state["mu"])
        flats = _tree.leaves_like(td, state["factors"])
        count, seed, new_state = self.advance(state)
        traced = namespace_of(state["count"]).is_traced(count)
        update = updates_at(namespace_of(state["count"]), count, self.probability)
        works = [namespace_of(g).reshape(g, self._layout(tuple(np.shape(g)))[0]) for g in g_leaves]
        drawn = traced or update  # a traced step draws always, and branches on update
        probes, balance = self.probes(seed, count, works) if drawn else (None, None)
        out, new_mu, new_flat = [], [], []
        for i, (g, w, mu, flat) in enumerate(zip(g_leaves, p_leaves, mus, flats)):
            ns = namespace_of(g)
            shape = tuple(np.shape(g))
            if math.prod(shape) == 0:  # an empty tensor: nothing to precondition
                out.append(ns.wrap(g))
                new_mu.append(ns.wrap(mu))
                new_flat.append(ns.wrap(flat))
                continue
            ws, tri = self._layout(shape)
            cast = ns.scalar_caster(g)
            mu = mu * cast(self.b1) + cast(1.0 - self.b1) * g
            m_hat = ns.reshape(mu / cast(1.0 - self.b1 ** (count + 1)), ws)
            factors = self._unpack(ns, flat, ws, tri)

            def fitted(m_hat, g, factors, v, balance, tri=tri, ns=ns):
                if len(tri) > 1:
                    factors = self._balance(ns, factors, balance)
                h = m_hat if self.momentum_into_precond_update else g
                h, factors = self._fit(ns, h, v, factors, tri)
                # the reference perturbs its momentum in place
                return (h if self.momentum_into_precond_update else m_hat), factors

            def kept(m_hat, g, factors, v, balance):
                return m_hat, factors

            if traced:
                operands = (m_hat, works[i], factors, probes[i], balance)
                m_hat, factors = ns.cond(update, fitted, kept, *operands)
            elif update:
                m_hat, factors = fitted(m_hat, works[i], factors, probes[i], balance)
            d = m_hat
            for axis, (q, t) in enumerate(zip(factors, tri)):
                d = _by_factor(ns, d, axis, q, t, "precondition")
            rms = ns.sqrt(ns.mean(d * d))
            d = d * ns.minimum(cast(1.0), cast(1.1) / (rms + cast(1e-12)))
            d = ns.reshape(d, shape)
            if self.weight_decay != 0 and len(shape) >= 2:
                d = d + w * cast(self.weight_decay)
            out.append(ns.wrap(d))
            new_mu.append(ns.wrap(mu))
            parts = [ns.reshape(q, (-1,)) for q in factors]
            new_flat.append(ns.wrap(ns.concatenate(parts)))
        new_state["mu"] = _tree.unflatten(td, new_mu)
        new_state["factors"] = _tree.unflatten(td, new_flat)
        return _tree.unflatten(td, out), new_state

    def _balance(self, ns, factors, balance):
        """Each factor times :math:`\\bar q / \\max|Q_i|` where ``balance`` holds."""
        tops = [ns.amax(abs(q)) for q in factors]
        product = tops[0]
        for top in tops[1:]:
            product = product * top
        mean = product ** (1.0 / len(tops))
        if isinstance(balance, (bool, np.bool_)):
            return [q * (mean / top) for q, top in zip(factors, tops)] if balance else factors
        return [
            q * ns.where(balance, mean / top, ns.full_like(top, 1.0))
            for q, top in zip(factors, tops)
        ]

    def _fit(self, ns, h, v, factors, tri):
        """One step of the factors on the pair (:math:`V`, :math:`H`); returns the
        perturbed :math:`H` and the new factors."""
        cast = ns.scalar_caster(h)
        v = ns.astype(v, h)
        h = h + cast(np.sqrt(EPS32)) * ns.mean(abs(h)) * v
        a, b = h, v
        for axis, (q, t) in enumerate(zip(factors, tri)):
            a = _by_factor(ns, a, axis, q, t, "q")
            b = _by_factor(ns, b, axis, q, t, "inverse_transpose")
        tiny = cast(TINY[ns.eps(h)])
        step = cast(self.precond_lr)
        new = []
        for axis, (q, t) in enumerate(zip(factors, tri)):
            aa, bb = _gram(ns, a, axis, t), _gram(ns, b, axis, t)
            minus, plus = (aa - bb) * step, aa + bb
            top = ns.amax(abs(plus))
            if t:
                n = np.shape(q)[0]
                upper = ns.astype(ns.constant(np.triu(np.ones((n, n))), q), q)
                bound = _spectral_lower_bound(ns, plus, top, tiny)
                new.append(q - ns.matmul((minus * upper) / bound, q))
            else:
                new.append(q - minus * (q / ns.maximum(top, tiny)))
        return h, new


def _kron_step(g, factor):
    return g * factor


def _kron_step_prepare(h: dict, count: int) -> dict:
    return {"factor": -h["learning_rate"]}


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    b1=decay_rate(),
    weight_decay=nonnegative(),
    preconditioner_update_probability=OrNone(Interval(0.0, 1.0, lo_open=True)),
    max_size_triangular=Interval(0, integer=True),
    min_ndim_triangular=Interval(0, integer=True),
    memory_save_mode=OneOf(MEMORY_SAVE_MODES),
    momentum_into_precond_update=BOOL,
    precond_lr=nonnegative(),
    precond_init_scale=Interval(0.0, lo_open=True),
    merge_dims=BOOL,
    seed=SEED,
    probe_source=OrCallable(),
)
def psgd_kron(
    learning_rate: Any = 0.0003,
    b1: float = 0.9,
    weight_decay: float = 0.0,
    preconditioner_update_probability: float | None = None,
    max_size_triangular: int = 8192,
    min_ndim_triangular: int = 2,
    memory_save_mode: str | None = None,
    *,
    momentum_into_precond_update: bool = True,
    precond_lr: float = 0.1,
    precond_init_scale: float = 1.0,
    merge_dims: bool = True,
    seed: int | None = None,
    probe_source: Any = None,
) -> Chain:
    r"""PSGD-Kron (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.0003.
      b1: :math:`\beta` in [0, 1), the momentum. Default 0.9.
      weight_decay: :math:`\lambda` >= 0, for tensors of two or more axes. Default 0.
      preconditioner_update_probability: :math:`p` in (0, 1], or None (default) for
        the annealing schedule.
      max_size_triangular: an integer >= 0: longer axes get a diagonal factor.
        Default 8192.
      min_ndim_triangular: an integer >= 0: tensors of fewer axes get diagonal
        factors only. Default 2.
      memory_save_mode: None (default), ``"smart_one_diag"``, ``"one_diag"`` or
        ``"all_diag"``.
      momentum_into_precond_update: fit the preconditioner to the debiased momentum
        (default True) rather than the gradient.
      precond_lr: :math:`\mu_Q` >= 0. Default 0.1.
      precond_init_scale: :math:`s` > 0. Default 1.
      merge_dims: view tensors of more than two axes as matrices. Default True.
      seed: the seed of the probe vectors (an integer of 63 bits, or None for fresh
        entropy, the default).
      probe_source: None (default: gradstep's seeded noise) or a callable
        ``(seed, count, likes) -> (probes, balance)`` giving the probe vectors
        shaped like ``likes`` and whether to balance the factors.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(3)
      >>> opt = gradstep.Optimizer(w, gradstep.psgd_kron(0.1, seed=0))
      >>> opt.step(np.array([1.0, 2.0, 3.0])); bool(np.all(w < 0))
      True

    Differences: kron-torch's ``Kron`` (the reference, 0.3.3) has the same defaults
    and math but keeps the factors in float32 (``precond_dtype``) and solves the
    triangular systems in float32 for any parameter dtype (gradstep: the
    parameter's dtype; ``mu_dtype``/``precond_dtype`` are not offered), draws
    :math:`V` with torch's global generator and decides balancing with Python's
    ``random.Random(42)`` (gradstep: its seeded noise, see the module docstring),
    computes the geometric mean of the balance as ``exp(mean(log))`` (here a
    root of the product), accepts any callable as the probability (here a number
    or the default schedule) and prints the state size on the first step.
    optax and torch.optim have no PSGD.
    """
    return rule(
        "psgd_kron",
        ScaleByKron(
            b1=b1,
            weight_decay=weight_decay,
            preconditioner_update_probability=preconditioner_update_probability,
            max_size_triangular=max_size_triangular,
            min_ndim_triangular=min_ndim_triangular,
            memory_save_mode=memory_save_mode,
            momentum_into_precond_update=momentum_into_precond_update,
            precond_lr=precond_lr,
            precond_init_scale=precond_init_scale,
            merge_dims=merge_dims,
            seed=seed,
            probe_source=probe_source,
        ),
        Elementwise(
            "learning_rate",
            _kron_step,
            hyperparams={"learning_rate": learning_rate},
            prepare=_kron_step_prepare,
        ),
    )
