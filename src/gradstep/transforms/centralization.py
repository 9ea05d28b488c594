r"""Gradient centralisation: each output channel's gradient made zero-mean.

Symbols: :math:`g` the incoming update of one tensor of rank :math:`\ge 2`, viewed
as a matrix with one row per output channel (its first axis), :math:`g_i` row
:math:`i`, :math:`n` the row length, :math:`r` ``min_rank``.

.. math::

    g_i \leftarrow g_i - \frac{1}{n} \sum_j g_{ij}

for every tensor of rank :math:`\ge r`; lower-rank tensors (biases, norms' scales)
pass through. The mean is over all axes but the first, so a convolution kernel's
gradient is centred per output filter. Put it first in a chain: it acts on the
gradient, before any moment sees it.

It is a reduction (a mean per row), written once against the array namespace, so it
runs on NumPy, torch and JAX arrays and under ``jax.jit``. On tensors of rank below
:math:`r` it is the identity: its fused form (:mod:`gradstep._core.fused_form`) has no
stage, so a chain holding it runs on the numba engine on tensors of such a rank; the
fronts step the others eagerly beside them where every stage of the chain is
tensorwise (Ranger), else the whole step eagerly.

References:
  Yong, Huang, Hua & Zhang (2020): Gradient Centralization: A New Optimization
  Technique for Deep Neural Networks. ECCV, arXiv:2004.01461.
"""

from __future__ import annotations

from typing import Any

from .._core import tree as _tree
from .._core.fused_form import FusedForm, rank_below, unchanged
from .._core.namespaces import namespace_of
from .._core.transform import Transform
from .._core.validate import Interval, hyperparams


def centralized(g: Any, min_rank: int = 2) -> Any:
    """``g`` with each row's mean (over all axes but the first) subtracted, when
    its rank is at least ``min_rank``; else ``g`` itself."""
    shape = tuple(g.shape)
    if len(shape) < max(min_rank, 2):
        return g
    ns = namespace_of(g)
    rows = shape[0]
    size = 1
    for n in shape:
        size *= n
    matrix = ns.reshape(g, (rows, size // rows))
    return ns.reshape(matrix - ns.mean(matrix, axis=1, keepdims=True), shape)


class Centralize(Transform):
    """See :func:`centralize`."""

    name = "centralize"
    reads_shape = True  # a real view's trailing axis would change it
    per_element_state = True  # no state at all: any shapes may be stepped together
    tensorwise = True  # each tensor's mean of its own gradient

    def __init__(self, min_rank: int):
        self.min_rank = min_rank

    def init(self, params: Any) -> dict:
        return {}

    def fused_form(self) -> FusedForm:
        """No stage at all: the tensors it leaves as they are."""
        rank = max(self.min_rank, 2)
        return FusedForm(
            self.name, unchanged(self.name), rank_below(rank), f"tensors of rank < {rank}"
        )

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        leaves, td = _tree.flatten(grads)
        out = [namespace_of(g).wrap(centralized(g, self.min_rank)) for g in leaves]
        return _tree.unflatten(td, out), {}


@hyperparams(min_rank=Interval(2, integer=True))
def centralize(min_rank: int = 2) -> Centralize:
    r"""Gradient centralisation (see the module docstring for the math).

    Args:
      min_rank: :math:`r`, an integer >= 2: tensors of this rank or more are
        centralised. Default 2 (every weight matrix and kernel: the paper, optax,
        pytorch-optimizer); 4 centralises convolution kernels only
        (pytorch-optimizer's ``gc_conv_only=True``).

    Example:
      >>> import numpy as np, gradstep
      >>> t = gradstep.transforms.centralize()
      >>> u, _ = t.update([np.array([[1.0, 2.0, 3.0], [4.0, 6.0, 8.0]]), np.ones(2)], {})
      >>> u[0]
      array([[-1.,  0.,  1.],
             [-2.,  0.,  2.]])
      >>> u[1]  # a vector passes through
      array([1., 1.])

    Differences: ``optax.centralize()`` and pytorch-optimizer's
    ``centralize_gradient`` (used by its ``use_gc`` options and ``Ranger``) compute
    the same; optax has no rank option.
    """
    return Centralize(min_rank)
