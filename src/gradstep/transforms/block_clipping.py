r"""Clipping by statistics of blocks: the RMS of each tensor, and the norm of each unit
relative to its parameter's (adaptive gradient clipping, AGC).

**Block RMS.** Symbols: :math:`u` one tensor's update, :math:`n` its number of
elements, :math:`\tau` ``threshold``.

.. math::

    u \leftarrow u \,/\, \max\!\big(1,\ \sqrt{\textstyle\sum u^2 / n}\,/\,\tau\big)

**AGC.** Symbols: :math:`G_i`, :math:`W_i` the update and the parameter restricted to
unit :math:`i` (a slice of the tensor, see ``layout``), :math:`\lambda` ``clipping``,
:math:`\epsilon` ``epsilon``, :math:`\|\cdot\|` the L2 norm.

.. math::

    m_i = \lambda \max(\|W_i\|, \epsilon),\qquad
    G_i \leftarrow \begin{cases} G_i & \|G_i\| < m_i \\
        G_i\, m_i / \max(\|G_i\|, 10^{-6}) & \text{otherwise} \end{cases}

so no unit moves by more than the fraction :math:`\lambda` of its own size
(:math:`\epsilon` lets zero-initialised units move at all). The units:

- ``layout="jax"`` (optax ``adaptive_grad_clip``): a tensor whose squeezed rank is
  at most 1 is one unit; rank 2 and 3 (``(in, out)``, multi-head): each slice along
  the last axes, reduced over axis 0; rank 4 (``HWIO``): over axes 0-2; rank 5
  (``DHWIO``): over axes 0-3.
- ``layout="torch"`` (the NFNets reference in PyTorch, timm ``adaptive_clip_grad``):
  rank <= 1 is one unit; otherwise each output unit, reduced over every axis but 0
  (``(out, in)``, ``(O, I, H, W)``).
- ``axis``: the axes to reduce over, for every tensor.

Both are not elementwise (norms over slices); they are written against the array
namespace, so they run on NumPy, torch tensors on their device and under
:func:`jax.jit`, on the eager path. On a tensor that is one unit (a vector, with
either layout), AGC is a per-tensor norm: its fused form runs there on the fused
engines (32- and 64-bit parameters), and the NumPy and torch fronts step a list's
other tensors eagerly beside those (the stage is ``tensorwise``).

References:
  Brock, De, Smith & Simonyan (2021): High-Performance Large-Scale Image Recognition
  Without Normalization. ICML, arXiv:2102.06171 (AGC).
  optax ``clip_by_block_rms`` and ``adaptive_grad_clip``
  (google-deepmind/optax, ``optax/transforms/_clipping.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.fused_form import FusedForm
from .._core.namespaces import element_for, namespace_of
from .._core.per_tensor import PerTensorReduction
from .._core.transform import Transform
from .._core.validate import Axes, Interval, OneOf, hyperparams, nonnegative
from .._core.xmath import element_helper, maximum, sqrt, where

LAYOUTS = ("jax", "torch")
_POSITIVE = Interval(0.0, lo_open=True)
#: guards the division by a unit's norm; it cannot matter, since a unit whose norm
#: is below it is never clipped unless clipping * max(|W|, eps) is smaller still
_DIVISION_GUARD = 1e-6


class Stateless(Transform):
    """A transform without state whose update maps each leaf on its own (with
    statistics of that leaf or of its parameter)."""

    per_element_state = True  # no state at all: any shapes may be stepped together

    def init(self, params: Any) -> dict:
        return {}


class BlockRMSClip(Stateless):
    name = "clip_by_block_rms"

    def __init__(self, threshold: float):
        self.threshold = threshold

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        leaves, td = _tree.flatten(grads)
        out = []
        for u in leaves:
            ns = namespace_of(u)
            rms = ns.sqrt(ns.mean(u * u))
            out.append(ns.wrap(u / ns.maximum(rms / self.threshold, 1.0)))
        return _tree.unflatten(td, out), state


@hyperparams(threshold=_POSITIVE)
def clip_by_block_rms(threshold: float) -> BlockRMSClip:
    r"""Scale each tensor's update down so its root mean square is at most
    ``threshold`` (see the module docstring).

    Args:
      threshold: :math:`\tau` > 0.

    Example:
      >>> import numpy as np
      >>> from gradstep.transforms import clip_by_block_rms
      >>> u, _ = clip_by_block_rms(1.0).update([np.array([3.0, 4.0]), np.array([0.5])], {})
      >>> [np.round(x, 4) for x in u]
      [array([0.8485, 1.1314]), array([0.5])]

    Differences: optax ``clip_by_block_rms`` is the same; torch has none.
    """
    return BlockRMSClip(threshold)


def unit_axes(shape: tuple[int, ...], layout: str, axis: Any) -> tuple[int, ...]:
    """The axes a tensor of ``shape`` is reduced over to get its units' norms."""
    ndim = len(shape)
    if axis is not None:
        return tuple(axis) if isinstance(axis, Sequence) else (int(axis),)
    if layout == "torch":
        return tuple(range(ndim)) if ndim <= 1 else tuple(range(1, ndim))
    if sum(1 for d in shape if d != 1) <= 1:
        return tuple(range(ndim))
    by_rank = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}
    if ndim not in by_rank:
        raise ValueError(
            f"adaptive_clip: a tensor of shape {tuple(shape)} has no default units; valid "
            "values: tensors of 1 to 5 dimensions, or give axis"
        )
    return by_rank[ndim]


def unit_norms(x: Any, axes: tuple[int, ...]) -> Any:
    """The L2 norm of each unit of ``x`` (kept dimensions, broadcastable to ``x``)."""
    ns = namespace_of(x)
    if not axes:
        return ns.sqrt(x * x)
    return ns.sqrt(ns.sum(x * x, axis=axes, keepdims=True))


def _agc_clipped(g, w, guard, g_norm, max_norm):
    # the update itself where its unit is within the limit (no rounding); ``w`` is
    # read by the reduction only
    return where(g_norm < max_norm, g, g * (max_norm / maximum(g_norm, guard)))


@element_helper
def agc_limit(w_norm, epsilon, clipping):
    """:math:`m_i`, the largest norm unit :math:`i` may keep, from its parameter's
    (an element helper: the combine of the fused form calls it on columns and device
    tensors too)."""
    return maximum(w_norm, epsilon) * clipping


def _agc_norms(g, w, guard):
    return g, w


def _agc_combined(sums: tuple, flags: dict, h: dict, *, epsilon, clipping) -> dict:
    return {"g_norm": sqrt(sums[0]), "max_norm": agc_limit(sqrt(sums[1]), epsilon, clipping)}


def _agc_prepare(h: dict, count: int) -> dict:
    return {"guard": _DIVISION_GUARD}


@dataclass(frozen=True)
class _WholeUnits:
    """The shape test of tensors that are one unit each (picklable)."""

    layout: str
    axis: Any

    def __call__(self, shape: tuple[int, ...]) -> bool:
        try:
            axes = unit_axes(tuple(shape), self.layout, self.axis)
        except ValueError:
            return False
        n = len(shape)
        covered = {a % n for a in axes} if n else set()
        if not all(-n <= a < n for a in axes) or len(covered) < len(axes):
            return False  # out of range or repeated: the eager update says why
        return covered == set(range(n))


class AdaptiveClip(Stateless):
    name = "adaptive_clip"
    reads_shape = True  # a real view's trailing axis would change it
    tensorwise = True  # each tensor's units, from its own parameter

    def __init__(self, clipping: float, epsilon: float, layout: str, axis: Any):
        self.clipping = clipping
        self.epsilon = epsilon
        self.layout = layout
        self.axis = axis

    def fused_form(self) -> FusedForm:
        """On tensors that are one unit each (vectors): a per-tensor reduction of the
        update's and the parameter's sums of squares, then the same clip."""
        stage = PerTensorReduction(
            self.name,
            _agc_clipped,
            norms=_agc_norms,
            combine=functools.partial(_agc_combined, epsilon=self.epsilon, clipping=self.clipping),
            tensor_scalars=("g_norm", "max_norm"),
            prepare=_agc_prepare,
            uses_params=True,
        )
        return FusedForm(
            self.name,
            stage,
            _WholeUnits(self.layout, self.axis),
            "tensors whose units are the whole tensor",
            rounds_16bit=True,
        )

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if params is None:
            raise ValueError(f"{self.name}: this transform needs params in update()")
        leaves, td = _tree.flatten(grads)
        out = []
        for g, w in zip(leaves, _tree.leaves_like(td, params)):
            ns = namespace_of(g)
            axes = unit_axes(tuple(np.shape(g)), self.layout, self.axis)
            w_norm = unit_norms(ns.astype(w, g), axes)
            max_norm = element_for(agc_limit, ns)(w_norm, self.epsilon, self.clipping)
            guard = ns.scalar_caster(g)(_DIVISION_GUARD)
            clipped = element_for(_agc_clipped, ns)(g, w, guard, unit_norms(g, axes), max_norm)
            out.append(ns.wrap(clipped))
        return _tree.unflatten(td, out), state


@hyperparams(
    clipping=_POSITIVE, epsilon=nonnegative(), layout=OneOf(LAYOUTS), axis=Axes(single=True)
)
def adaptive_clip(
    clipping: float = 0.01, epsilon: float = 1e-3, *, layout: str = "jax", axis: Any = None
) -> AdaptiveClip:
    r"""Adaptive gradient clipping (AGC): each unit's update at most ``clipping``
    times its parameter's norm (see the module docstring for the math and units).

    Place it first, on the gradients (it needs the parameters).

    Args:
      clipping: :math:`\lambda` > 0. Default 0.01 (the paper's value for batch 4096;
        timm's default; optax has none).
      epsilon: :math:`\epsilon` >= 0. Default 1e-3 (optax, timm, the paper).
      layout: ``"jax"`` (default: optax's units for ``(in, out)``/``HWIO``
        parameters) or ``"torch"`` (timm's units for ``(out, in)``/``OIHW``).
      axis: an axis or a tuple of axes to reduce over, for every tensor (overrides
        ``layout``). Default None.

    Example:
      >>> import numpy as np
      >>> from gradstep.transforms import adaptive_clip
      >>> w, g = np.array([[3.0, 0.0], [4.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 0.0]])
      >>> adaptive_clip(0.1).update(g, {}, w)[0]  # column 0: norm 5, so at most 0.5
      array([[0.5, 0. ],
             [0. , 0. ]])

    Differences: optax ``adaptive_grad_clip(clipping, eps, axis)`` is ``layout="jax"``;
    timm's ``adaptive_clip_grad`` (``clip_factor``, ``eps``) is ``layout="torch"``
    with its ``norm_type=2``; other norm types are not offered.
    """
    return AdaptiveClip(clipping, epsilon, layout, axis)
