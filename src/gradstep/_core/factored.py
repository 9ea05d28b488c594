r"""Factored second moments (Adafactor, CAME), written once against the array namespace.

For a tensor of rank >= 2 two axes are chosen, "rows" :math:`r` and "columns" :math:`k`;
the running mean of :math:`x` is stored as :math:`R`, its mean over :math:`k`, and
:math:`C`, its mean over :math:`r`, and estimated as :math:`\hat V = R\,C /
\mathrm{mean}_r(R)`. Other tensors keep the full running mean :math:`V`. The rules
(:mod:`gradstep.rules.adafactor`, :mod:`gradstep.rules.came`) bring their decays, what
they average and where they put their epsilons.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import tree as _tree
from .namespaces import namespace_of

FACTORED = ("last_two", "largest_two", "none")


def factored_axes(shape: tuple[int, ...], rule_name: str, min_size: int) -> tuple[int, int] | None:
    """The ``(row, column)`` axes whose second moment is factored, or ``None``.

    ``"last_two"`` takes the last two axes (torch, Keras, the paper); ``"largest_two"``
    the two largest (optax, ties resolved as ``numpy.argsort`` orders them). Both
    axes must have at least ``min_size`` elements.
    """
    shape = tuple(int(n) for n in shape)
    if rule_name == "none" or len(shape) < 2:
        return None
    if rule_name == "last_two":
        r, k = len(shape) - 2, len(shape) - 1
    else:
        order = np.argsort(shape)
        r, k = int(order[-2]), int(order[-1])
    if shape[r] < min_size or shape[k] < min_size:
        return None
    return r, k


def is_empty(x: Any) -> bool:
    """Whether ``x`` has no element (its moments are empty and its step is itself)."""
    return math.prod(np.shape(x)) == 0


def _with_one(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return tuple(1 if i == axis else n for i, n in enumerate(shape))


def factored_slots(
    params: Any, factored: str, min_size: int, *, full_moments: bool = True
) -> tuple[Any, Any, Any]:
    """Zero row factors, column factors and full moments for ``params``, each a tree.

    A tensor factored by :func:`factored_axes` has its two factors (the tensor's shape
    with a 1 for the axis averaged over), the others their full moment if
    ``full_moments``; the slots a tensor does not use are empty (shape ``(0,)``).
    """
    leaves, td = _tree.flatten(params)
    rows, cols, full = [], [], []
    for p in leaves:
        ns = namespace_of(p)
        shape = tuple(np.shape(p))
        axes = factored_axes(shape, factored, min_size)
        if axes is None:
            rows.append(ns.zeros((0,), p))
            cols.append(ns.zeros((0,), p))
            full.append(ns.zeros(shape if full_moments else (0,), p))
        else:
            r, k = axes
            rows.append(ns.zeros(_with_one(shape, k), p))
            cols.append(ns.zeros(_with_one(shape, r), p))
            full.append(ns.zeros((0,), p))
    return tuple(_tree.unflatten(td, x) for x in (rows, cols, full))


def factored_average(ns, x, row, col, axes, keep, gain):
    """The factors' moving averages (``keep`` times the old, ``gain`` times the new)
    of the mean of ``x`` over each of ``axes``."""
    r, k = axes
    row = keep * row + gain * ns.mean(x, axis=k, keepdims=True)
    col = keep * col + gain * ns.mean(x, axis=r, keepdims=True)
    return row, col


def moving_average(ns, x, row, col, full, axes, keep, gain):
    """``(row, col, full)`` after one step of the running mean of ``x``: the factors
    where ``axes`` is set, else the full moment (the slots not used pass through)."""
    if axes is None:
        return row, col, keep * full + gain * x
    row, col = factored_average(ns, x, row, col, axes, keep, gain)
    return row, col, full


def inverse_root_factors(ns, row, col, r, minus_half):
    r""":math:`(R/\mathrm{mean}_r(R))^{-1/2}` and :math:`C^{-1/2}`, whose product is
    the estimate's :math:`(R\,C/\mathrm{mean}_r(R))^{-1/2}` without a full-size
    product under the root. The rules multiply them in the order of their references
    (floating-point products do not associate)."""
    return (row / ns.mean(row, axis=r, keepdims=True)) ** minus_half, col**minus_half


def map_widened(step: Callable, grads: Any, state: dict, keys: tuple[str, ...]):
    """``step(ns, g, *slots) -> (u, *new_slots)`` on each tensor of ``grads`` with its
    slots ``state[key]`` for ``key`` in ``keys``, returning the tree of ``u`` and
    ``{key: new slot tree}``.

    The math runs in float32 or wider whatever the storage, as an element function's
    (16-bit arithmetic would lose epsilon1: 1e-30 is 0 in float16); each result is
    stored back in its input's dtype.
    """
    g_leaves, td = _tree.flatten(grads)
    slots = [_tree.leaves_like(td, state[key]) for key in keys]
    columns: list[list] = [[] for _ in range(1 + len(keys))]
    for stored in zip(g_leaves, *slots):
        ns = namespace_of(stored[0])
        results = step(ns, *(ns.widened(x) for x in stored))
        for column, x, like in zip(columns, results, stored):
            column.append(ns.stored_like(ns.wrap(x), like))
    trees = [_tree.unflatten(td, column) for column in columns]
    return trees[0], dict(zip(keys, trees[1:]))
