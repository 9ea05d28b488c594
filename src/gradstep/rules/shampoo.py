r"""Shampoo: each axis of a tensor preconditioned by an inverse root of its Gram
statistic, in blocks, with the step length grafted from a diagonal method.

Symbols: :math:`G` gradient of a tensor of shape :math:`(n_1, \dots, n_r)`, split
along every axis into blocks of at most :math:`b` (``block_size``) elements;
:math:`G_B` one block; :math:`\Sigma_{B,i}` slot ``statistics`` (the Gram statistic
of axis :math:`i` of block :math:`B`), :math:`P_{B,i}` slot ``roots`` (its inverse
root), :math:`a` slot ``graft_nu`` (the grafted method's accumulator), :math:`m`
slot ``mu`` and :math:`\tilde m` slot ``graft_mu`` (momenta), :math:`k` the number
of this step (1 on the first), :math:`\eta` ``learning_rate``, :math:`\beta_1,
\beta_2` ``beta1``, ``beta2``, :math:`\epsilon` ``epsilon``, :math:`\delta`
``graft_epsilon``, :math:`\lambda` ``weight_decay``, :math:`f`
``preconditioning_compute_steps``, :math:`s` ``statistics_compute_steps``,
:math:`k_0` ``start_preconditioning_step``. :math:`X \times_i M` multiplies every
fibre of :math:`X` along axis :math:`i` by the (here symmetric) matrix :math:`M`
(see :mod:`gradstep.rules.kronecker`).

Every :math:`s` steps each block's statistics take the gradient, with
:math:`c_2 = 1-\beta_2` (:math:`c_2 = 1` when :math:`\beta_2 = 1`: the paper's sum):

.. math::

    \Sigma_{B,i} \leftarrow \beta_2 \Sigma_{B,i} + c_2\, G_{B(i)} G_{B(i)}^\top

and every :math:`f` steps the roots are recomputed from the regularised
statistic :math:`L_{B,i} = \Sigma_{B,i} + \epsilon \beta_2^{\lfloor k/s \rfloor} I`
(the paper's :math:`L_0 = \epsilon I`, decayed with the statistic), with
:math:`p = 2r`:

.. math::

    P_{B,i} = L_{B,i}^{-1/p},\qquad
    S_B = G_B \times_1 P_{B,1} \cdots \times_r P_{B,r}

(:math:`S = G` before the first recomputation, :math:`k < f`; a tensor of rank 0
or 1 gets no matrix, :math:`S = H`). The grafted method gives the direction
:math:`H` and the length: :math:`H = G` (``"sgd"``, ``"none"``),
:math:`\mathrm{sign}(G)` (``"sqrt_n"``), :math:`G/(\sqrt{a}+\delta)` with
:math:`a \leftarrow a + G^2` (``"adagrad"``) or :math:`a \leftarrow \beta_2 a +
(1-\beta_2) G^2` (``"rmsprop"``); unless ``graft="none"``,

.. math::

    S \leftarrow S\, \frac{\lVert H \rVert}{\lVert S \rVert + 10^{-16}}

(Frobenius norms over the whole tensor). Coupled decay adds :math:`\lambda w` to
both :math:`S` and :math:`H`; the momenta are :math:`m \leftarrow \beta_1 m + S`,
:math:`\tilde m \leftarrow \beta_1 \tilde m + H` (``moving_average_momentum``:
:math:`(1-\beta_1)S` and :math:`(1-\beta_1)H` instead), and from step :math:`k_0`
on the step follows Shampoo, before it the grafted method:

.. math::

    U = \begin{cases} m & k \ge k_0 \\ \tilde m & k < k_0 \end{cases},\qquad
    w \leftarrow w - \eta\, U

(``nesterov``: :math:`U \leftarrow \beta_1 U + S` or :math:`\beta_1 U + H`, the
moving-average form likewise; ``decoupled_weight_decay``: :math:`w \leftarrow
w - \eta (U + \lambda w)`, :math:`\lambda` kept out of :math:`S` and :math:`H`).

**Numerics.** The roots come from the eigendecomposition
:math:`\Sigma = V \Lambda V^\top` of the statistic:
:math:`P = V(\max(\Lambda, 0) + \epsilon\beta_2^{\lfloor k/s \rfloor})^{-1/p}
V^\top`, exact to rounding (no iteration, no tolerance). A statistic of lower rank
than its order (a block that has seen fewer gradients than it has rows, a weight
that never gets a gradient) has eigenvalues that are 0 up to rounding (about
:math:`10^{-7}\lVert\Sigma\rVert` in float32). Where the decayed regulariser
falls below that rounding, the root along those directions is rounding noise, and
a later gradient with a component there is scaled by it: libraries (and gradstep's
backends) then differ far beyond their rounding. An :math:`\epsilon` well above
the statistics' rounding avoids this. A float16 or bfloat16 tensor steps in float32,
its statistics and roots kept in float32 (eigensolvers take no 16-bit input), its
other slots in its own dtype.

The matrix work (blocks, eigendecompositions, axis products) is written once
against the array namespace: it runs on NumPy, on torch tensors on their device and
under ``jax.jit`` (a traced step count picks the statistics update, the root
recomputation and the start of preconditioning with ``lax.cond``).

References:
  Gupta, Koren & Singer (2018): Shampoo: Preconditioned Stochastic Tensor
  Optimization. ICML, arXiv:1802.09568.
  Anil, Gupta, Koren, Regan & Singer (2020): Scalable Second Order Optimization
  for Deep Learning. arXiv:2002.09018.
  Agarwal, Anil, Hazan, Koren & Zhang (2020): Disentangling Adaptive Gradient
  Methods from Learning Rates. arXiv:2002.11803 (grafting).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import namespace_of
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Interval, OneOf, decay_rate, hyperparams, nonnegative
from .kronecker import (
    axis_gram,
    inverse_root,
    merge_blocks,
    multiply_axes,
    pack,
    tensor_blocks,
    unpack_squares,
)

GRAFTS = ("none", "sgd", "adagrad", "rmsprop", "sqrt_n")

#: added to the norm of Shampoo's direction before grafting (as the references do)
_GRAFT_FLOOR = 1e-16


class ScaleByShampoo(Transform):
    """The direction :math:`U` of the module docstring, with the coupled decay
    (state ``count``, ``statistics``, ``roots``, and as the options need them ``mu``,
    ``graft_mu``, ``graft_nu``; each tensor's matrices one flat vector)."""

    per_parameter_state = (
        "mu",
        "statistics",
        "roots",
        "graft_mu",
        "graft_nu",
    )  # lists indexed by parameter

    name = "scale_by_shampoo"
    reads_shape = True  # a real view's trailing axis would change it

    def __init__(
        self,
        beta1: float,
        beta2: float,
        epsilon: float,
        graft: str,
        graft_epsilon: float,
        block_size: int,
        start_preconditioning_step: int,
        preconditioning_compute_steps: int,
        statistics_compute_steps: int,
        nesterov: bool,
        moving_average_momentum: bool,
        weight_decay: float,
    ):
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.graft = graft
        self.graft_epsilon = graft_epsilon
        self.block_size = block_size
        self.start_preconditioning_step = start_preconditioning_step
        self.preconditioning_compute_steps = preconditioning_compute_steps
        self.statistics_compute_steps = statistics_compute_steps
        self.nesterov = nesterov
        self.moving_average_momentum = moving_average_momentum
        self.weight_decay = weight_decay

    # -- layout ------------------------------------------------------------------------

    def _slots(self) -> tuple[str, ...]:
        """The parameter-shaped slots this setting needs."""
        slots = []
        if self.beta1 > 0:
            slots.append("mu")
            if self.start_preconditioning_step > 1:  # the grafted method steps first
                slots.append("graft_mu")
        if self.graft in ("adagrad", "rmsprop"):
            slots.append("graft_nu")
        return tuple(slots)

    def _blocks(self, shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
        """The blocks of a tensor that gets matrices (rank >= 2), else none."""
        return tensor_blocks(shape, self.block_size) if len(shape) >= 2 else []

    def _sizes(self, shape: tuple[int, ...]) -> list[int]:
        """The order of each matrix of a tensor, block after block, axis after axis."""
        return [s.stop - s.start for block in self._blocks(shape) for s in block]

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        names = ("statistics", "roots", *self._slots())
        fields: dict[str, list] = {k: [] for k in names}
        for p in leaves:
            ns = namespace_of(p)
            shape = tuple(np.shape(p))
            size = sum(n * n for n in self._sizes(shape))
            # the matrices in float32 at least: eigensolvers take no 16-bit input
            fields["statistics"].append(ns.zeros((size,), ns.widened(p)))
            # read only from the first recomputation on, so zeros until then
            fields["roots"].append(ns.zeros((size,), ns.widened(p)))
            for k in names[2:]:
                fields[k].append(ns.zeros(shape, p))
        state = {"count": np.zeros((), np.int64)}
        state.update({k: _tree.unflatten(td, v) for k, v in fields.items()})
        return state

    # -- the step ----------------------------------------------------------------------

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if self.weight_decay and params is None:
            raise ValueError("scale_by_shampoo: weight_decay > 0 needs the parameters")
        g_leaves, td = _tree.flatten(grads)
        w_leaves = _tree.leaves_like(td, params) if params is not None else [None] * len(g_leaves)
        names = ("statistics", "roots", *self._slots())
        old = [_tree.leaves_like(td, state[k]) for k in names]
        count_ns = namespace_of(state["count"])
        step = count_ns.count(state["count"]) + 1
        out: list = []
        new: list[list] = [[] for _ in names]
        for g, w, *slots in zip(g_leaves, w_leaves, *old):
            ns = namespace_of(g)
            # 16-bit tensors step in float32 and store back in their dtype
            wide = [ns.widened(x) if x is not None else None for x in (g, w, *slots)]
            direction, wide_slots = self._tensor(step, *wide[:2], dict(zip(names, wide[2:])))
            out.append(ns.wrap(ns.stored_like(direction, g)))
            for k, (name, like) in enumerate(zip(names, slots)):
                new[k].append(ns.wrap(ns.stored_like(wide_slots[name], like)))
        new_state = {"count": count_ns.count_array(step, state["count"])}
        new_state.update({k: _tree.unflatten(td, v) for k, v in zip(names, new)})
        return _tree.unflatten(td, out), new_state

    def _tensor(self, step, g, w, slots: dict):
        """One tensor's :math:`U` and its new slots."""
        ns = namespace_of(g)
        cast = ns.scalar_caster(g)
        graft_dir, graft_nu = self._graft(ns, g, slots.get("graft_nu"))
        shampoo_dir, slots["statistics"], slots["roots"] = self._precondition(
            ns, step, g, slots["statistics"], slots["roots"]
        )
        if len(np.shape(g)) < 2:
            shampoo_dir = graft_dir  # no matrix: the grafted method alone
        if self.graft != "none":
            length = ns.sum(graft_dir * graft_dir) ** 0.5
            own = ns.sum(shampoo_dir * shampoo_dir) ** 0.5
            shampoo_dir = shampoo_dir * (length / (own + cast(_GRAFT_FLOOR)))
        if self.weight_decay:
            decay = cast(self.weight_decay) * w
            graft_dir, shampoo_dir = graft_dir + decay, shampoo_dir + decay
        # both momenta run every step: the switch at k0 keeps the one it then reads
        mu = self._momentum(ns, slots.get("mu"), shampoo_dir, lerp=True)
        graft_mu = self._momentum(ns, slots.get("graft_mu"), graft_dir, lerp=False)
        for name, value in (("mu", mu), ("graft_mu", graft_mu), ("graft_nu", graft_nu)):
            if name in slots:
                slots[name] = value

        def shampoo(mu, graft_mu):
            return self._nesterov(ns, mu, shampoo_dir)

        def grafted(mu, graft_mu):
            return self._nesterov(ns, graft_mu, graft_dir)

        started = step >= self.start_preconditioning_step
        return ns.cond(started, shampoo, grafted, mu, graft_mu), slots

    def _graft(self, ns, g, nu):
        """The grafted method's direction :math:`H` and its new accumulator."""
        cast = ns.scalar_caster(g)
        if self.graft == "sqrt_n":
            ones = ns.full_like(g, 1.0)
            zeros = ns.zeros_like(g)
            return ns.where(g > 0, ones, ns.where(g < 0, -ones, zeros)), nu
        if self.graft == "adagrad":
            nu = nu + g * g
        elif self.graft == "rmsprop":
            nu = cast(self.beta2) * nu + cast(1.0 - self.beta2) * (g * g)
        else:
            return g, nu
        return g / (ns.sqrt(nu) + cast(self.graft_epsilon)), nu

    def _precondition(self, ns, step, g, stats_flat, roots_flat):
        """:math:`S` (before grafting) and the new statistics and roots."""
        shape = tuple(np.shape(g))
        sizes = self._sizes(shape)
        if not sizes:
            return g, stats_flat, roots_flat
        cast = ns.scalar_caster(g)
        blocks = self._blocks(shape)
        rank = len(shape)
        stats = unpack_squares(ns, stats_flat, sizes)
        roots = unpack_squares(ns, roots_flat, sizes)
        b2 = self.beta2
        gain = cast(1.0 if b2 == 1.0 else 1.0 - b2)
        s, f = self.statistics_compute_steps, self.preconditioning_compute_steps

        def accumulate(stats):
            grams = [axis_gram(ns, g[block], i) for block in blocks for i in range(rank)]
            return [cast(b2) * old + gain * gram for old, gram in zip(stats, grams)]

        def keep(*matrices):  # the other branch of both conds: the last operand as is
            return matrices[-1]

        stats = ns.cond(step % s == 0, accumulate, keep, stats)
        # the regulariser epsilon I of the paper's L_0, decayed with the statistics
        shift = cast(self.epsilon) * cast(b2) ** (step // s)

        def recompute(stats, roots):
            return [inverse_root(ns, m, 2 * rank, shift) for m in stats]

        roots = ns.cond(step % f == 0, recompute, keep, stats, roots)

        def preconditioned(roots):
            parts = []
            for j, block in enumerate(blocks):
                parts.append(multiply_axes(ns, g[block], roots[j * rank : (j + 1) * rank]))
            return merge_blocks(ns, parts, shape, self.block_size)

        def identity(roots):
            return g

        direction = ns.cond(step >= f, preconditioned, identity, roots)
        return direction, pack(ns, stats, g), pack(ns, roots, g)

    def _momentum(self, ns, mu, update, lerp: bool):
        """:math:`\\beta_1 m + u`, or with ``moving_average_momentum`` the average
        (as the reference rounds it: a lerp for Shampoo's, a multiply-add for the
        grafted method's); :math:`u` itself without momentum."""
        if mu is None:
            return update
        cast = ns.scalar_caster(update)
        b1 = self.beta1
        if not self.moving_average_momentum:
            return cast(b1) * mu + update
        if lerp:
            return mu + cast(1.0 - b1) * (update - mu)
        return cast(b1) * mu + cast(1.0 - b1) * update

    def _nesterov(self, ns, momentum, update):
        if not self.nesterov or self.beta1 == 0:
            return momentum
        cast = ns.scalar_caster(update)
        if self.moving_average_momentum:
            return momentum + cast(1.0 - self.beta1) * (update - momentum)
        return cast(self.beta1) * momentum + update


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=decay_rate(),
    beta2=Interval(0.0, 1.0),
    epsilon=Interval(0.0, lo_open=True),
    graft=OneOf(GRAFTS),
    graft_epsilon=nonnegative(),
    block_size=Interval(1, integer=True),
    start_preconditioning_step=Interval(1, integer=True),
    preconditioning_compute_steps=Interval(1, integer=True),
    statistics_compute_steps=Interval(1, integer=True),
    weight_decay=nonnegative(),
    nesterov=BOOL,
    moving_average_momentum=BOOL,
    decoupled_weight_decay=BOOL,
)
def shampoo(
    learning_rate: Any = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-6,
    graft: str = "sgd",
    graft_epsilon: float = 1e-10,
    block_size: int = 512,
    start_preconditioning_step: int = 25,
    preconditioning_compute_steps: int = 1,
    statistics_compute_steps: int = 1,
    weight_decay: float = 0.0,
    *,
    nesterov: bool = True,
    moving_average_momentum: bool = False,
    decoupled_weight_decay: bool = False,
) -> Chain:
    r"""Shampoo with blocks and grafting (see the module docstring for the math and
    the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 1e-3.
      beta1: :math:`\beta_1` in [0, 1): momentum. Default 0.9.
      beta2: :math:`\beta_2` in [0, 1]: decay of the statistics (1: their sum, the
        original Shampoo) and of the ``"rmsprop"`` graft. Default 0.999.
      epsilon: :math:`\epsilon` > 0: the statistics start at :math:`\epsilon I`.
        Default 1e-6.
      graft: the method whose per-tensor step length Shampoo's direction takes:
        ``"sgd"`` (default), ``"adagrad"``, ``"rmsprop"``, ``"sqrt_n"`` (the sign
        of the gradient), or ``"none"`` (Shampoo's own length).
      graft_epsilon: :math:`\delta` >= 0, added to the root in the ``"adagrad"``
        and ``"rmsprop"`` grafts. Default 1e-10.
      block_size: :math:`b`, an integer >= 1: longer axes are split into blocks of
        this length, each block with its own matrices. Default 512.
      start_preconditioning_step: :math:`k_0`, an integer >= 1: the steps before it
        follow the grafted method. Default 25.
      preconditioning_compute_steps: :math:`f`, an integer >= 1: steps between
        recomputations of the inverse roots. Default 1.
      statistics_compute_steps: :math:`s`, an integer >= 1: steps between updates
        of the statistics. Default 1.
      weight_decay: :math:`\lambda` >= 0. Default 0.
      nesterov: Nesterov momentum. Default True.
      moving_average_momentum: average the momentum (:math:`1-\beta_1` on the new
        direction) instead of summing it. Default False.
      decoupled_weight_decay: decay the weights by :math:`\eta\lambda w` instead of
        adding :math:`\lambda w` to the directions. Default False.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros((2, 2))
      >>> opt = gradstep.Optimizer(
      ...     w, gradstep.shampoo(0.1, beta1=0.0, start_preconditioning_step=1))
      >>> g = np.array([[3.0, 0.0], [0.0, 4.0]])
      >>> opt.step(g); w.round(4)  # L^(-1/4) G R^(-1/4) = sign(G), grafted to |G| = 5
      array([[-0.3535,  0.    ],
             [ 0.    , -0.3536]])

    Differences: the reference is pytorch_optimizer's ``ScalableShampoo`` with
    ``use_svd=True`` (inverse roots from an SVD, which equals the eigendecomposition
    of a symmetric statistic) and ``shape_interpretation=False``; gradstep matches
    its grafting, blocks, frequencies, momentum and both decays. Its default
    ``use_svd=False`` computes the roots by a coupled Newton iteration stopped at a
    residual of 1e-3 and regularised by :math:`\epsilon` times a power-iteration
    estimate (from a random start) of the largest eigenvalue: an approximation of
    the same root (not offered here). Its ``shape_interpretation`` merges small
    axes (and, for a tensor of at most ``block_size`` elements, leaves it without
    matrices); its ``pre_conditioner_type`` (one side only),
    ``inverse_exponent_override``, ``skip_preconditioning_rank_lt``,
    ``no_preconditioning_for_layers_with_dim_gt`` and
    ``decoupled_learning_rate=False`` are not offered; its default
    ``preconditioning_compute_steps=1000`` is 1 here (the paper's every step).
    pytorch_optimizer's plain ``Shampoo`` sums the statistics without decay, has no
    grafting and no blocks. The paper (Gupta et al.) has no momentum, grafting or
    blocks; ``beta2=1, graft="none", beta1=0, start_preconditioning_step=1`` is
    its algorithm. optax has no Shampoo; google-research's
    ``distributed_shampoo`` (the Anil et al. code, JAX) has the same structure and
    adds a coupled Newton root with its own tolerances, quantised statistics and
    sharding.
    """
    if decoupled_weight_decay:
        coupled, decoupled = 0.0, weight_decay
    else:
        coupled, decoupled = weight_decay, 0.0
    return rule(
        "shampoo",
        ScaleByShampoo(
            beta1,
            beta2,
            epsilon,
            graft,
            graft_epsilon,
            block_size,
            start_preconditioning_step,
            preconditioning_compute_steps,
            statistics_compute_steps,
            nesterov,
            moving_average_momentum,
            coupled,
        ),
        add_decayed_weights(decoupled) if decoupled else None,
        scale_by_learning_rate(learning_rate),
    )
