r"""Freezing parameters: zero updates for some leaves, with or without the optimizer
keeping state for them.

- :func:`set_to_zero`: every update becomes 0 (an elementwise stage).
- :func:`freeze`: :func:`set_to_zero` on the leaves of a mask, everything else passes
  through; placed after an optimizer, the optimizer still keeps (and advances) its
  state for the frozen leaves. Elementwise and masked: the fused engine runs it in
  the optimizer's pass.
- :func:`selective_transform`: the optimizer runs only on the leaves that are not
  frozen (a partition), so it keeps no state for the frozen ones.

A mask is a tree of booleans shaped like the parameters, a function of the
parameters returning one, or a single boolean for every leaf.

References:
  optax ``freeze``, ``selective_transform`` and ``set_to_zero``
  (google-deepmind/optax, ``optax/transforms/_freezing.py``).
"""

from __future__ import annotations

import functools
from typing import Any

from .._core import tree as _tree
from .._core.combine import masked, partition
from .._core.elementwise import Elementwise
from .._core.transform import Transform
from .._core.xmath import finite_or_zero


def _zeroed(g, zero):
    # finite_or_zero keeps a NaN or infinite update from making 0 * g NaN
    return finite_or_zero(g) * zero


def _zero_scalar(h: dict, count: int) -> dict:
    return {"zero": 0.0}


def set_to_zero() -> Elementwise:
    """Every update becomes 0 (optax ``set_to_zero``; NaN and infinities too)."""
    return Elementwise("set_to_zero", _zeroed, prepare=_zero_scalar)


def _everywhere(flag: bool, params: Any) -> Any:
    return _tree.tree_map(lambda _: flag, params)


def _as_mask(mask: Any) -> Any:
    """A single boolean means every leaf."""
    if isinstance(mask, bool):
        return functools.partial(_everywhere, mask)
    return mask


def freeze(mask: Any) -> Transform:
    """Zero updates on the leaves where ``mask`` is true (see the module docstring).

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import chain, freeze
      >>> w = {"a": np.array([1.0]), "b": np.array([1.0])}
      >>> opt = gradstep.Optimizer(w, chain(gradstep.sgd(0.5), freeze({"a": True, "b": False})))
      >>> opt.step({"a": np.array([1.0]), "b": np.array([1.0])}); w
      {'a': array([1.]), 'b': array([0.5])}

    Differences: optax ``freeze`` is the same; torch freezes with
    ``requires_grad_(False)`` (no gradient, so no update and no state).
    """
    return masked(set_to_zero(), _as_mask(mask))


def _freeze_labels(freeze_mask: Any, params: Any) -> Any:
    if isinstance(freeze_mask, bool):
        freeze_mask = _everywhere(freeze_mask, params)
    return _tree.tree_map(lambda frozen: "freeze" if frozen else "train", freeze_mask)


def selective_transform(inner: Transform, *, freeze_mask: Any) -> Transform:
    """``inner`` on the leaves where ``freeze_mask`` is false, zero updates (and no
    state of ``inner``) on the others (see the module docstring).

    The state is ``{"train": inner's state, "freeze": {}}``.

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import selective_transform
      >>> w = [np.array([1.0]), np.array([1.0])]
      >>> t = selective_transform(gradstep.momentum(0.5, 0.9), freeze_mask=[True, False])
      >>> opt = gradstep.Optimizer(w, t)
      >>> opt.step([np.array([1.0]), np.array([1.0])]); w
      [array([1.]), array([0.5])]
      >>> len(opt.state["train"]["momentum"]["velocity"])  # one buffer, not two
      1

    Differences: optax ``selective_transform`` is the same (a partition with labels
    ``"train"`` and ``"freeze"``).
    """
    if not isinstance(inner, Transform):
        raise TypeError(f"selective_transform: expected a transform, got {type(inner).__name__}")
    labels = functools.partial(_freeze_labels, freeze_mask)
    return partition({"train": inner, "freeze": set_to_zero()}, labels)
