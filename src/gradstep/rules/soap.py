r"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner, the basis refreshed
every few steps by one step of power iteration.

Symbols: :math:`G` gradient of a tensor of shape :math:`(n_1, \dots, n_k)`,
:math:`L_i` slot ``statistics`` (the :math:`n_i \times n_i` Gram statistic of axis
:math:`i`), :math:`Q_i` slot ``bases`` (its eigenbasis), :math:`m` slot ``mu``,
:math:`v` slot ``nu`` (kept in the rotated coordinates), :math:`t` the number of
steps before this one (0 on the first), :math:`\eta` ``learning_rate``,
:math:`\beta_1, \beta_2` ``beta1``, ``beta2``, :math:`\beta_s` ``shampoo_beta``,
:math:`\epsilon` ``epsilon``, :math:`\lambda` ``weight_decay``, :math:`f`
``precondition_frequency``. :math:`X \times_i M` multiplies every fibre of
:math:`X` along axis :math:`i` by :math:`M^\top` (see
:mod:`gradstep.rules.kronecker`), and :math:`\mathcal{Q}(X) = X \times_1 Q_1
\cdots \times_k Q_k` rotates into the eigenbasis, :math:`\mathcal{Q}^{-1}` back.

Each step (:math:`t \ge 1`) is Adam on the rotated gradient, with the first moment
kept in the original coordinates:

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) G,\quad
    v \leftarrow \beta_2 v + (1-\beta_2)\, \mathcal{Q}(G)^2,\quad
    D = \mathcal{Q}^{-1}\!\Big(\frac{\mathcal{Q}(m)}{\sqrt v + \epsilon}\Big)

.. math::

    w \leftarrow \Big(w - \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\, D\Big)(1-\eta\lambda)

(``bias_correction=False`` drops the fraction; ``normalize_gradient`` divides
:math:`D` by :math:`\sqrt{\mathrm{mean}(D^2)} + \epsilon`). Then the statistics
take the gradient, :math:`L_i \leftarrow \beta_s L_i + (1-\beta_s)
G_{(i)}G_{(i)}^\top`, and every :math:`f` steps (:math:`t \bmod f = 0`) each basis
takes one power-iteration step: the columns of :math:`P = L_i Q_i` are sorted by the
estimated eigenvalues :math:`\mathrm{diag}(Q_i^\top L_i Q_i)`, descending (the axis
:math:`i` of :math:`v` is permuted the same way), and :math:`Q_i` becomes the
orthonormal factor of the QR decomposition of the sorted :math:`P`.

The first step only starts the statistics and sets each :math:`Q_i` to the
eigenvectors of :math:`L_i` (eigenvalues descending); the parameters do not move.
An axis longer than ``max_precondition_dim``, and a vector unless
``precondition_1d``, gets no matrix (:math:`Q_i = I`); a tensor with no
preconditioned axis is stepped by Adam.

**Numerics.** A direction in which the gradient is exactly zero (a weight that
never gets a gradient) is an eigenvector of eigenvalue 0; in the rotated
coordinates both moments along it are rounding noise of the basis (about
:math:`10^{-8}` in float32), and :math:`\epsilon` decides whether their ratio is
noise or a step of order :math:`\eta`. Libraries, and gradstep's backends, round
differently there; an :math:`\epsilon` well above the dtype's rounding (e.g.
:math:`10^{-3}` in float32) makes the step there negligible.
A statistic with a repeated eigenvalue has no unique eigenbasis: the first
statistic of a vector (``precondition_1d``) has rank one, so on the first step
its eigenvalue 0 is repeated and each library (NumPy, torch, JAX, each LAPACK
build) picks its own basis of that eigenspace; the steps until the statistic has
full rank depend on that choice.

The matrix work (eigendecomposition, QR, axis products) is written once against
the array namespace: it runs on NumPy, on torch tensors on their device and under
``jax.jit`` (a traced step count picks the refresh with ``lax.cond``).

References:
  Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade (2025): SOAP:
  Improving and Stabilizing Shampoo using Adam. ICLR, arXiv:2409.11321.
  Gupta, Koren & Singer (2018): Shampoo: Preconditioned Stochastic Tensor
  Optimization. ICML, arXiv:1802.09568.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Elementwise
from .._core.namespaces import namespace_of
from .._core.stages import rule
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from .adafactor import OrNone
from .kronecker import axes_to_precondition, axis_gram, multiply_axes, pack, packed_size, unpack


class ScaleBySoap(Transform):
    """The direction :math:`D` of the module docstring (0 on the first step) and the
    statistics and bases it keeps (state ``count``, ``mu``, ``nu``, ``statistics``,
    ``bases``; each tensor's matrices one flat vector)."""

    per_parameter_state = ("mu", "nu", "statistics", "bases")  # lists indexed by parameter

    name = "scale_by_soap"
    reads_shape = True  # a real view's trailing axis would change it

    def __init__(
        self,
        beta1: float,
        beta2: float,
        shampoo_beta: float,
        epsilon: float,
        precondition_frequency: int,
        max_precondition_dim: int,
        precondition_1d: bool,
        normalize_gradient: bool,
    ):
        self.beta1 = beta1
        self.beta2 = beta2
        self.shampoo_beta = shampoo_beta
        self.epsilon = epsilon
        self.precondition_frequency = precondition_frequency
        self.max_precondition_dim = max_precondition_dim
        self.precondition_1d = precondition_1d
        self.normalize_gradient = normalize_gradient

    def _axes(self, shape: tuple[int, ...]) -> tuple[bool, ...]:
        return axes_to_precondition(shape, self.max_precondition_dim, self.precondition_1d)

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        fields: dict[str, list] = {"mu": [], "nu": [], "statistics": [], "bases": []}
        for p in leaves:
            ns = namespace_of(p)
            shape = tuple(np.shape(p))
            size = packed_size(shape, self._axes(shape))
            fields["mu"].append(ns.zeros(shape, p))
            fields["nu"].append(ns.zeros(shape, p))
            fields["statistics"].append(ns.zeros((size,), p))
            fields["bases"].append(ns.zeros((size,), p))
        state = {"count": np.zeros((), np.int64)}
        state.update({k: _tree.unflatten(td, v) for k, v in fields.items()})
        return state

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        names = ("mu", "nu", "statistics", "bases")
        old = [_tree.leaves_like(td, state[k]) for k in names]
        count_ns = namespace_of(state["count"])
        t = count_ns.count(state["count"])
        out: list = []
        new: list[list] = [[] for _ in names]
        for g, mu, nu, stats, bases in zip(g_leaves, *old):
            ns = namespace_of(g)
            shape = tuple(np.shape(g))
            axes = self._axes(shape)
            stats = unpack(ns, stats, shape, axes)
            bases = unpack(ns, bases, shape, axes)
            direction, mu, nu = self._adam(ns, t, g, mu, nu, bases)
            stats = self._accumulate(ns, g, stats)
            bases, nu = self._refresh(ns, t, stats, bases, nu)
            out.append(ns.wrap(direction))
            for k, value in enumerate((mu, nu, pack(ns, stats, g), pack(ns, bases, g))):
                new[k].append(ns.wrap(value))
        new_state = {"count": count_ns.count_array(t + 1, state["count"])}
        new_state.update({k: _tree.unflatten(td, v) for k, v in zip(names, new)})
        return _tree.unflatten(td, out), new_state

    def _adam(self, ns, t, g, mu, nu, bases):
        """:math:`D` and the new moments; on the first step (``t == 0``, bases not
        set yet) the moments stay and :math:`D = 0`."""
        cast = ns.scalar_caster(g)
        started = ns.where(t > 0, 1.0, 0.0)  # a traced count under jax.jit
        gain1, gain2 = cast((1.0 - self.beta1) * started), cast((1.0 - self.beta2) * started)
        rotated = multiply_axes(ns, g, bases)
        mu = mu + gain1 * (g - mu)
        nu = nu + gain2 * (rotated * rotated - nu)
        eps = cast(self.epsilon)
        scaled = multiply_axes(ns, mu, bases) / (ns.sqrt(nu) + eps)
        direction = multiply_axes(ns, scaled, bases, transpose=True)
        if self.normalize_gradient:
            size = int(np.prod(np.shape(g)))
            rms = (ns.sum(direction * direction) / cast(max(size, 1))) ** 0.5
            direction = direction / (rms + eps)
        return direction, mu, nu

    def _accumulate(self, ns, g, stats):
        """:math:`L_i \\leftarrow \\beta_s L_i + (1-\\beta_s) G_{(i)} G_{(i)}^\\top`."""
        cast = ns.scalar_caster(g)
        gain = cast(1.0 - self.shampoo_beta)
        return [
            None if s is None else s + gain * (axis_gram(ns, g, i) - s) for i, s in enumerate(stats)
        ]

    def _refresh(self, ns, t, stats, bases, nu):
        """The bases after this step: the eigenvectors of the statistics on the first
        step, one power-iteration step when :math:`t \\bmod f = 0`, else unchanged
        (with ``nu`` permuted as the bases' columns)."""
        f = self.precondition_frequency

        def keep(stats, bases, nu):
            return bases, nu

        def refreshed(stats, bases, nu):
            return ns.cond(t % f == 0, self._power_step, keep, stats, bases, nu)

        return ns.cond(t == 0, self._eigenbases, refreshed, stats, bases, nu)

    def _eigenbases(self, stats, bases, nu):
        out = []
        for s in stats:
            if s is None:
                out.append(None)
                continue
            ns = namespace_of(s)
            out.append(ns.flip(ns.eigh(s)[1], 1))  # eigenvalues descending
        return out, nu

    def _power_step(self, stats, bases, nu):
        out = []
        for axis, (s, q) in enumerate(zip(stats, bases)):
            if s is None:
                out.append(None)
                continue
            ns = namespace_of(s)
            product = ns.matmul(s, q)
            estimate = ns.sum(q * product, axis=0)  # diag(Q^T L Q)
            order = ns.argsort(-estimate)
            nu = ns.take(nu, order, axis)
            out.append(ns.qr(ns.take(product, order, 1)))
        return out, nu


def _soap_step(g, w, factor, decay):
    return g * factor + decay * w


def _soap_step_prepare(h: dict, count: int, *, beta1, beta2, bias_correction) -> dict:
    lr, wd = h["learning_rate"], h["weight_decay"]
    # arithmetic, not branches: the JAX engine traces the count; the first step
    # (count 0) does not move the parameters
    started = (count > 0) * 1.0
    t = count + (count == 0)
    if bias_correction:
        step = lr * (1.0 - beta2**t) ** 0.5 / (1.0 - beta1**t)
    else:
        step = lr
    return {"factor": -step * (1.0 - lr * wd) * started, "decay": -lr * wd * started}


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=decay_rate(),
    shampoo_beta=OrNone(decay_rate()),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    precondition_frequency=Interval(1, integer=True),
    max_precondition_dim=Interval(1, integer=True),
    precondition_1d=BOOL,
    bias_correction=BOOL,
    normalize_gradient=BOOL,
)
def soap(
    learning_rate: Any = 0.003,
    beta1: float = 0.95,
    beta2: float = 0.95,
    shampoo_beta: float | None = None,
    epsilon: float = 1e-8,
    weight_decay: Any = 0.01,
    precondition_frequency: int = 10,
    max_precondition_dim: int = 10000,
    *,
    precondition_1d: bool = False,
    bias_correction: bool = True,
    normalize_gradient: bool = False,
) -> Chain:
    r"""SOAP (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.003.
      beta1: :math:`\beta_1` in [0, 1). Default 0.95.
      beta2: :math:`\beta_2` in [0, 1). Default 0.95.
      shampoo_beta: :math:`\beta_s` in [0, 1), or ``None`` (default) for
        :math:`\beta_2`.
      epsilon: :math:`\epsilon` >= 0. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, or a schedule; decoupled, applied after
        the step. Default 0.01.
      precondition_frequency: :math:`f`, an integer >= 1: steps between basis
        refreshes. Default 10.
      max_precondition_dim: an integer >= 1: longer axes get no matrix. Default
        10000.
      precondition_1d: give vectors a matrix too. Default False.
      bias_correction: scale the step by :math:`\sqrt{1-\beta_2^t}/(1-\beta_1^t)`.
        Default True.
      normalize_gradient: divide :math:`D` by its RMS. Default False.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros((2, 2))
      >>> opt = gradstep.Optimizer(w, gradstep.soap(0.1, weight_decay=0.0))
      >>> g = np.array([[1.0, 2.0], [2.0, 4.0]])
      >>> opt.step(g); w  # the first step only sets the bases
      array([[0., 0.],
             [0., 0.]])
      >>> opt.step(g); w  # then Adam in the eigenbasis: 0.1 along g / |g|
      array([[-0.02, -0.04],
             [-0.04, -0.08]])

    Differences: pytorch_optimizer's ``SOAP`` (the reference; the authors' code
    reads the same) has the same defaults and math, runs the QR decomposition in
    float32 even for float64 parameters (gradstep in the parameter's dtype),
    adds :math:`10^{-30} I` to the statistics before the eigendecomposition (not
    here) and offers ``merge_dims``/``data_format`` to merge small axes (not here).
    heavyball's ``SOAP`` differs (it preconditions from the first step, foreach
    state, its own defaults).
    """
    if shampoo_beta is None:
        shampoo_beta = beta2
    return rule(
        "soap",
        ScaleBySoap(
            beta1,
            beta2,
            shampoo_beta,
            epsilon,
            precondition_frequency,
            max_precondition_dim,
            precondition_1d,
            normalize_gradient,
        ),
        Elementwise(
            "learning_rate",
            _soap_step,
            hyperparams={"learning_rate": learning_rate, "weight_decay": weight_decay},
            prepare=functools.partial(
                _soap_step_prepare, beta1=beta1, beta2=beta2, bias_correction=bias_correction
            ),
            uses_params=True,
            uses_count=True,
        ),
    )
