r"""Differentially private aggregation: per-example clipping, summing and Gaussian
noise (DP-SGD).

Symbols: :math:`g_{b}` the gradient tree of example :math:`b` of a batch of
:math:`B` (leaves with a leading batch axis), :math:`C` the clip norm
(``l2_norm_clip``), :math:`\sigma` ``noise_multiplier``, :math:`\xi` standard normal
noise shaped like one example's gradient.

.. math::

    m_b = \min\!\big(1,\ C / \|g_b\|\big)\ (1 \text{ where } \|g_b\| = 0
    \text{ or NaN}),\qquad
    \tilde g = \frac1B\Big(\sum_b m_b\, g_b + \sigma C\, \xi\Big)

:math:`\|g_b\|` is the global L2 norm of the example's whole tree
(:func:`per_example_global_norm_clip`); :func:`per_example_layer_norm_clip` clips
each leaf :math:`i` separately to :math:`C_i = C/\sqrt{K}` (``uniform``, :math:`K`
leaves) or :math:`C\sqrt{D_i/D}` (:math:`D_i` the leaf's size per example, :math:`D`
the total), so that :math:`\sum_i C_i^2 = C^2`.

:func:`differentially_private_aggregate` is a stage that takes per-example gradients
and gives :math:`\tilde g`: put it first in a chain and call the chain's ``update``
(functional API, JAX front) with the per-example gradients (``jax.vmap`` of the
gradient, or torch's ``torch.func.vmap``). The NumPy front's
:class:`~gradstep.Optimizer` checks gradients against the parameters' shapes:
aggregate first with :func:`per_example_global_norm_clip` there.

The noise comes from the key ``(seed, step count)`` with each library's generator
(:mod:`gradstep._core.namespaces`): reproducible on each library, resumed runs draw
what the uninterrupted run drew, but NumPy, torch and JAX draw different numbers.

References:
  Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang (2016): Deep Learning
  with Differential Privacy. CCS, arXiv:1607.00133.
  McMahan, Andrew, Erlingsson, Chien, Mironov, Papernot & Kairouz (2018): A General
  Approach to Adding Differential Privacy to Iterative Training Procedures.
  arXiv:1812.06210 (per-layer clipping).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import namespace_of
from .._core.noise import SeededNoise, optional_seed
from .._core.validate import BOOL, check, hyperparams, nonnegative

_SEED = optional_seed(31)
#: guards the division by an example's norm (a zero norm is never clipped)
_TINY = 1e-30


def _batch_size(owner: str, leaves: list) -> int:
    sizes = {np.shape(g)[0] if np.ndim(g) else None for g in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"{owner}: every gradient needs the same leading batch axis (per-example "
            f"gradients); got shapes {[tuple(np.shape(g)) for g in leaves]}"
        )
    return sizes.pop()


def _clipped_sums(leaves: list, l2_norm_clip: Any, owner: str) -> tuple[list, Any]:
    """``(sum_b m_b g_b for each leaf, number of examples with m_b < 1)``."""
    if not leaves:
        return [], 0
    batch = _batch_size(owner, leaves)
    ns = namespace_of(leaves[0])
    rows = [ns.reshape(g, (batch, -1)) for g in leaves]
    squares = sum(ns.sum(r * r, axis=1) for r in rows)
    norms = ns.sqrt(squares)
    ratio = ns.minimum(l2_norm_clip / ns.maximum(norms, _TINY), 1.0)
    multipliers = ns.where(norms > 0, ratio, ns.astype(1.0, norms))
    weights = ns.reshape(multipliers, (1, batch))
    sums = [
        ns.wrap(ns.reshape(ns.matmul(ns.astype(weights, r), r), tuple(np.shape(g))[1:]))
        for g, r in zip(leaves, rows)
    ]
    return sums, ns.sum(multipliers < 1.0)


def per_example_global_norm_clip(grads: Any, l2_norm_clip: float) -> tuple[Any, Any]:
    r"""``(sum of the clipped per-example gradients, number of examples clipped)``:
    each example's whole tree scaled to a global norm of at most ``l2_norm_clip``
    (see the module docstring).

    ``grads`` is a tree whose leaves have a leading batch axis; the sums have the
    tree's structure without it.

    Example:
      >>> import numpy as np
      >>> g = [np.array([[3.0, 4.0], [0.3, 0.4]])]
      >>> sums, clipped = per_example_global_norm_clip(g, 1.0)
      >>> sums[0], int(clipped)
      (array([0.9, 1.2]), 1)

    Differences: optax's function of the same name takes a list of arrays; here any
    tree, on NumPy, torch or JAX arrays.
    """
    check("per_example_global_norm_clip", "l2_norm_clip", l2_norm_clip, nonnegative())
    leaves, td = _tree.flatten(grads)
    sums, clipped = _clipped_sums(leaves, l2_norm_clip, "per_example_global_norm_clip")
    return _tree.unflatten(td, sums), clipped


def per_example_layer_norm_clip(
    grads: Any, global_l2_norm_clip: float, uniform: bool = True
) -> tuple[Any, Any]:
    r"""``(sums, numbers clipped)``, both trees shaped like ``grads`` without the batch
    axis: each leaf clipped per example on its own, to :math:`C/\sqrt K`
    (``uniform``) or :math:`C\sqrt{D_i/D}` (see the module docstring).

    Example:
      >>> import numpy as np
      >>> g = [np.array([[3.0, 4.0]]), np.array([[0.1]])]
      >>> sums, clipped = per_example_layer_norm_clip(g, np.sqrt(2.0))
      >>> np.round(sums[0], 6), sums[1], [int(c) for c in clipped]
      (array([0.6, 0.8]), array([0.1]), [1, 0])

    Differences: optax's function of the same name; here any tree.
    """
    owner = "per_example_layer_norm_clip"
    check(owner, "global_l2_norm_clip", global_l2_norm_clip, nonnegative())
    check(owner, "uniform", uniform, BOOL)
    leaves, td = _tree.flatten(grads)
    if not leaves:
        return grads, grads
    _batch_size(owner, leaves)
    sizes = [int(np.prod(np.shape(g)[1:])) for g in leaves]
    total = sum(sizes)
    sums, clipped = [], []
    for g, size in zip(leaves, sizes):
        share = 1.0 / len(leaves) if uniform else size / total
        (s,), c = _clipped_sums([g], global_l2_norm_clip * share**0.5, owner)
        sums.append(s)
        clipped.append(c)
    return _tree.unflatten(td, sums), _tree.unflatten(td, clipped)


class PrivateAggregate(SeededNoise):
    """Per-example gradients in, the clipped, noised mean out."""

    name = "differentially_private_aggregate"

    def __init__(self, l2_norm_clip: float, noise_multiplier: float, seed: int | None):
        self.l2_norm_clip = l2_norm_clip
        self.noise_multiplier = noise_multiplier
        self.seed = seed

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        leaves, td = _tree.flatten(grads)
        count, seed, new_state = self.advance(state)
        if not leaves:
            return grads, new_state
        batch = _batch_size(self.name, leaves)
        sums, _ = _clipped_sums(leaves, self.l2_norm_clip, self.name)
        ns = namespace_of(leaves[0])
        noise = ns.normals(seed, count, sums, self.l2_norm_clip * self.noise_multiplier)
        out = [ns.wrap((s + xi) / ns.scalar_caster(s)(batch)) for s, xi in zip(sums, noise)]
        return _tree.unflatten(td, out), new_state


@hyperparams(l2_norm_clip=nonnegative(), noise_multiplier=nonnegative(), seed=_SEED)
def differentially_private_aggregate(
    l2_norm_clip: float, noise_multiplier: float, seed: int | None = None
) -> PrivateAggregate:
    r"""DP-SGD's aggregation: clip each example's gradient to ``l2_norm_clip``, sum,
    add Gaussian noise of standard deviation ``noise_multiplier * l2_norm_clip``,
    divide by the batch size (see the module docstring).

    Args:
      l2_norm_clip: :math:`C` >= 0.
      noise_multiplier: :math:`\sigma` >= 0 (0: no noise).
      seed: an integer in [0, 2**31 - 1] for the noise, or None (default: fresh
        entropy, kept in the state).

    Example:
      >>> import numpy as np, gradstep
      >>> t = gradstep.transforms.chain(
      ...     differentially_private_aggregate(1.0, 0.0), gradstep.sgd(1.0))
      >>> per_example = {"w": np.array([[3.0, 4.0], [0.3, 0.4]])}
      >>> state = t.init({"w": np.zeros(2)})
      >>> t.update(per_example, state)[0]["w"]  # -(0.6, 0.8) and -(0.3, 0.4), averaged
      array([-0.45, -0.6 ])

    Differences: optax ``differentially_private_aggregate`` (``optax.contrib``) takes
    a JAX key and draws with it; here an integer seed and the step count make the
    key, on each library's generator, so the noise differs from optax's (same
    distribution). The privacy accounting (the budget spent) is outside gradstep.
    """
    return PrivateAggregate(l2_norm_clip, noise_multiplier, seed)
