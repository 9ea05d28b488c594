r"""Adam-mini: Adam's first moment per element, one second moment per block of
parameters.

Symbols: :math:`g` gradient, :math:`w` parameter tensor split into blocks
:math:`B` (see ``partition``), :math:`|B|` a block's number of elements,
:math:`m` slot ``mu`` (one value per element), :math:`v_B` slot ``nu`` (one value
per block), :math:`t` the 1-based step, :math:`\eta` ``learning_rate``,
:math:`\beta_1` ``beta1``, :math:`\beta_2` ``beta2``, :math:`\epsilon` ``epsilon``,
:math:`\lambda` ``weight_decay``.

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\qquad
    v_B \leftarrow \beta_2 v_B + (1-\beta_2)\,\tfrac{1}{|B|}\textstyle\sum_{i\in B} g_i^2

    w_i \leftarrow w_i - \eta\left(\frac{m_i / (1-\beta_1^t)}
        {\sqrt{v_B}/\sqrt{1-\beta_2^t} + \epsilon} + \lambda w_i\right)
    \quad (i \in B)

without the two bias corrections when ``bias_correction=False``. The decay is
decoupled (AdamW's). Every element of a block divides by the same number, so the
second moment costs one value per block instead of one per element: about half of
Adam's state.

Blocks (``partition``):

- ``"tensor"``: each tensor is one block (the paper's block for normalisation
  weights and other small tensors; pytorch-optimizer's for every tensor it does not
  single out by name).
- ``"rows"``: a tensor of rank >= 2 is cut along its first axis into blocks of
  ``rows_per_block`` consecutive rows; a tensor of rank <= 1 is one block.
  ``rows_per_block=head_dim`` gives the paper's per-head blocks of query and key
  projections stored ``(heads * head_dim, d_model)``; ``rows_per_block=1`` its
  per-neuron blocks of values, attention outputs and MLPs stored ``(out, in)``
  (the authors' package; per token for an embedding stored ``(vocab, d)``).

The block means are reductions over slices of a tensor, so the stage is written
against the array namespace (NumPy, torch on its device, ``jax.jit``) and runs on
the eager path of every front; the fused kernels compile elementwise stages and
per-tensor scalars without carried per-tensor state, which :math:`v_B` is.

References:
  Zhang, Chen, Li, Ding, Wu, Kingma, Ye, Luo & Sun (2025): Adam-mini: Use Fewer Learning
  Rates To Gain More. ICLR, arXiv:2406.16793.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import namespace_of
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Interval, OneOf, decay_rate, hyperparams, nonnegative

PARTITIONS = ("tensor", "rows")


def block_count(shape: tuple[int, ...], partition: str, rows_per_block: int) -> int:
    """How many blocks a tensor of ``shape`` has (a ``ValueError`` names a tensor
    whose rows do not split evenly)."""
    if partition == "tensor" or len(shape) <= 1:
        return 1
    rows = shape[0]
    if rows % rows_per_block:
        raise ValueError(
            f"adam_mini: a tensor of shape {tuple(shape)} has {rows} rows, not a multiple "
            f"of rows_per_block={rows_per_block}; valid values: a rows_per_block that "
            "divides the first axis of every tensor of rank >= 2"
        )
    return rows // rows_per_block


class ScaleByAdamMini(Transform):
    r""":math:`u = \hat m / (\sqrt{\hat v_B} + \epsilon)` with one second moment per
    block (no step size, no decay); see the module docstring.

    State: ``count``; ``mu`` shaped like each parameter; ``nu`` of shape
    ``(blocks,)`` per parameter (``(1,)`` for a one-block tensor).
    """

    per_parameter_state = ("mu", "nu")  # lists indexed by parameter

    name = "scale_by_adam_mini"

    @property
    def reads_shape(self) -> bool:  # type: ignore[override]
        """Blocks of rows read the shape (a real view's trailing axis would make a
        vector a matrix of rows); one block per tensor does not."""
        return self.partition != "tensor"

    def __init__(self, beta1, beta2, epsilon, bias_correction, partition, rows_per_block):
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.bias_correction = bias_correction
        self.partition = partition
        self.rows_per_block = rows_per_block

    def _blocks(self, x: Any) -> int:
        return block_count(tuple(np.shape(x)), self.partition, self.rows_per_block)

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        mu, nu = [], []
        for p in leaves:
            ns = namespace_of(p)
            mu.append(ns.zeros_like(p))
            nu.append(ns.zeros((self._blocks(p),), p))
        return {
            "count": np.zeros((), np.int64),
            "mu": _tree.unflatten(td, mu),
            "nu": _tree.unflatten(td, nu),
        }

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        mu_leaves = _tree.leaves_like(td, state["mu"])
        nu_leaves = _tree.leaves_like(td, state["nu"])
        count_ns = namespace_of(state["count"])
        t = count_ns.count(state["count"]) + 1
        b1, b2 = self.beta1, self.beta2
        if self.bias_correction:
            corr1, root2 = 1.0 / (1.0 - b1**t), (1.0 - b2**t) ** 0.5
        else:
            corr1, root2 = 1.0, 1.0
        out, new_mu, new_nu = [], [], []
        for g, mu, nu in zip(g_leaves, mu_leaves, nu_leaves):
            ns = namespace_of(g)
            g, mu, nu = ns.widened(g), ns.widened(mu), ns.widened(nu)
            cast = ns.scalar_caster(g)
            shape = tuple(np.shape(g))
            blocks = self._blocks(g)
            mu = cast(b1) * mu + cast(1.0 - b1) * g
            if math.prod(shape) == 0:
                out.append(ns.wrap(ns.zeros_like(g)))
                new_mu.append(mu)
                new_nu.append(nu)
                continue
            rows = ns.reshape(g, (blocks, -1))
            nu = cast(b2) * nu + cast(1.0 - b2) * ns.mean(rows * rows, axis=1)
            # one step size per block, then one product per element
            step = cast(corr1) / (ns.sqrt(nu) / cast(root2) + cast(self.epsilon))
            scaled = ns.reshape(mu, (blocks, -1)) * ns.reshape(step, (-1, 1))
            out.append(ns.wrap(ns.reshape(scaled, shape)))
            new_mu.append(ns.wrap(mu))
            new_nu.append(ns.wrap(nu))
        stored = [namespace_of(s).stored_like(m, s) for m, s in zip(new_mu, mu_leaves)]
        kept = [namespace_of(s).stored_like(v, s) for v, s in zip(new_nu, nu_leaves)]
        return _tree.unflatten(td, out), {
            "count": count_ns.count_array(t, state["count"]),
            "mu": _tree.unflatten(td, stored),
            "nu": _tree.unflatten(td, kept),
        }


_BETA = decay_rate()


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=_BETA,
    beta2=_BETA,
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    bias_correction=BOOL,
    partition=OneOf(PARTITIONS),
    rows_per_block=Interval(1, integer=True),
)
def adam_mini(
    learning_rate: Any = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    weight_decay: Any = 0.1,
    *,
    bias_correction: bool = True,
    partition: str = "tensor",
    rows_per_block: int = 1,
    weight_decay_mask: Any = None,
) -> Chain:
    r"""Adam-mini (see the module docstring for the math, the symbol map and the
    blocks).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001.
      beta1: :math:`\beta_1` in [0, 1). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999 (pytorch-optimizer; the paper
        trains language models with 0.95).
      epsilon: :math:`\epsilon` >= 0, outside the root on the bias-corrected
        scale. Default 1e-8.
      weight_decay: :math:`\lambda` >= 0, or a schedule: decoupled decay. Default
        0.1 (pytorch-optimizer; the authors' package: 0).
      bias_correction: divide the moments by :math:`1-\beta^t`. Default True.
      partition: ``"tensor"`` (default) or ``"rows"``: the blocks sharing one
        second moment.
      rows_per_block: an integer >= 1: rows per block with ``partition="rows"``
        (must divide the first axis of every tensor of rank >= 2). Default 1.
      weight_decay_mask: a tree of booleans (or a function of the parameters
        returning one) selecting the tensors to decay (the reference skips
        normalisation layers by name); ``None``: all. Needs ``weight_decay`` > 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.adam_mini(0.1, weight_decay=0.0)).step(
      ...     np.array([3.0, -4.0]))
      >>> w.round(6)  # one second moment: mean(g^2) = 12.5
      array([0.915147, 1.113137])

    Differences: the references choose the blocks from parameter *names*.
    pytorch-optimizer's ``AdamMini(model, num_embeds, num_heads)``: embedding and
    output layers get Adam's per-element second moment, ``q_proj``/``k_proj`` one
    per head, a fused ``qkv`` one per head of each of q, k and v, anything else one
    per tensor; names with ``norm`` are not decayed; ``m`` and ``v`` are float32
    whatever the parameter dtype. The authors' ``adam_mini.Adam_mini(named_parameters,
    dim, n_heads)`` (1.1.1): ``bias`` tensors get Adam's, queries and keys one per
    head, embeddings, outputs, values, attention projections and MLPs one per row
    (neuron), anything else one per tensor; ``norm``/``ln``/``bias`` are not
    decayed; default decay 0. gradstep knows no names: one per tensor is the
    default, per head or per row is ``partition="rows"`` with ``rows_per_block``
    the head dimension or 1, Adam's per-element moment is :func:`gradstep.adamw`
    (combine them with :func:`gradstep.partition`), the decay exemption is
    ``weight_decay_mask``. Not offered: the fused-``qkv`` layout and the
    model-sharding all-reduce of the block sums. torch, optax, MXNet and Keras have
    no Adam-mini.
    """
    if partition == "tensor" and rows_per_block != 1:
        raise ValueError(
            f"adam_mini: invalid rows_per_block={rows_per_block!r} with partition='tensor'; "
            "valid values: rows_per_block only with partition='rows'"
        )
    has_decay = callable(weight_decay) or weight_decay != 0
    if weight_decay_mask is not None and not has_decay:
        raise ValueError(
            "adam_mini: invalid weight_decay_mask with weight_decay=0; valid values: a "
            "mask only together with a weight_decay > 0"
        )
    return rule(
        "adam_mini",
        ScaleByAdamMini(beta1, beta2, epsilon, bias_correction, partition, rows_per_block),
        add_decayed_weights(weight_decay, weight_decay_mask) if has_decay else None,
        scale_by_learning_rate(learning_rate),
    )
