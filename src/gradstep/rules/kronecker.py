r"""Per-axis (Kronecker-factored) matrices of a tensor, shared by Shampoo and SOAP:
which axes get one, their statistics, products along an axis, how a tensor's
matrices are kept in the state as one flat vector, and Shampoo's blocks (a tensor
split along every axis, each block with its own matrices) and inverse roots.

A tensor :math:`G` of shape :math:`(n_1, \dots, n_k)` gets an :math:`n_i \times n_i`
matrix for each *preconditioned* axis :math:`i`. Its statistic is the Gram matrix
of the axis, :math:`G_{(i)} G_{(i)}^\top`, with :math:`G_{(i)}` the
:math:`n_i \times \prod_{j \ne i} n_j` unfolding of :math:`G` along axis :math:`i`.
A product along axis :math:`i` with a matrix :math:`M` is :math:`G \times_i M`:
every fibre of :math:`G` along axis :math:`i` multiplied by :math:`M^\top` (so
:math:`G \times_1 M = M^\top G` for a matrix :math:`G`).

Everything is written against the array namespace (NumPy, torch on the tensor's
device, JAX under ``jax.jit``). A tensor's matrices live in the state as one flat
vector (each matrix raveled, axis 0's first), so the state has one array per
parameter whatever its rank.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np


def axes_to_precondition(
    shape: tuple[int, ...], max_dim: int, precondition_1d: bool = True
) -> tuple[bool, ...]:
    """For each axis of ``shape``, whether it gets a matrix: at most ``max_dim``
    elements long, and for a vector only with ``precondition_1d``."""
    if len(shape) == 1 and not precondition_1d:
        return (False,)
    return tuple(n <= max_dim for n in shape)


def packed_size(shape: tuple[int, ...], axes: tuple[bool, ...]) -> int:
    """Length of the flat vector holding a tensor's matrices."""
    return sum(n * n for n, on in zip(shape, axes) if on)


def unpack(ns: Any, flat: Any, shape: tuple[int, ...], axes: tuple[bool, ...]) -> list:
    """The matrices of a flat vector: one per axis, ``None`` for an axis without."""
    out, start = [], 0
    for n, on in zip(shape, axes):
        if on:
            out.append(ns.reshape(flat[start : start + n * n], (n, n)))
            start += n * n
        else:
            out.append(None)
    return out


def pack(ns: Any, matrices: list, like: Any) -> Any:
    """The flat vector of ``matrices`` (``None`` entries left out)."""
    parts = [ns.reshape(m, (int(np.prod(np.shape(m))),)) for m in matrices if m is not None]
    return ns.concatenate(parts) if parts else ns.zeros((0,), like)


def axis_gram(ns: Any, g: Any, axis: int) -> Any:
    """:math:`G_{(i)} G_{(i)}^\\top`, the Gram matrix of axis ``axis``."""
    shape = tuple(np.shape(g))
    unfolded = ns.reshape(ns.moveaxis(g, axis, 0), (shape[axis], -1))
    return ns.matmul(unfolded, ns.matrix_transpose(unfolded))


def multiply_axes(ns: Any, g: Any, matrices: list, transpose: bool = False) -> Any:
    r""":math:`G \times_1 M_1 \times_2 M_2 \cdots` (a ``None`` matrix is the identity);
    with ``transpose``, by each :math:`M_i^\top` instead.

    Axis 0 is multiplied and moved last, then the next, so after all axes the order
    is restored (each product contracts the first axis).
    """
    for m in matrices:
        g = ns.moveaxis(g, 0, -1) if np.ndim(g) > 1 else g
        if m is not None:
            g = ns.matmul(g, ns.matrix_transpose(m) if transpose else m)
    return g


# -- blocks of a tensor and inverse roots (Shampoo) --------------------------------------


def block_ranges(n: int, block_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the blocks of an axis of length ``n``: ``block_size``
    long, the last one shorter where ``block_size`` does not divide ``n``."""
    return [(start, min(start + block_size, n)) for start in range(0, n, block_size)]


def tensor_blocks(shape: tuple[int, ...], block_size: int) -> list[tuple[slice, ...]]:
    """The blocks of a tensor of ``shape``, each axis split by :func:`block_ranges`:
    one index (a tuple of slices) per block, the last axis varying fastest."""
    per_axis = [block_ranges(n, block_size) for n in shape]
    return [tuple(slice(a, b) for a, b in combo) for combo in itertools.product(*per_axis)]


def merge_blocks(ns: Any, blocks: list, shape: tuple[int, ...], block_size: int) -> Any:
    """The tensor of ``shape`` whose blocks (in the order of :func:`tensor_blocks`)
    are ``blocks``: the runs along the last axis are joined first, then the next."""
    counts = [len(block_ranges(n, block_size)) for n in shape]
    parts = list(blocks)
    for axis in reversed(range(len(shape))):
        run = counts[axis]
        parts = [_join(ns, parts[i : i + run], axis) for i in range(0, len(parts), run)]
    return parts[0]


def _join(ns: Any, parts: list, axis: int) -> Any:
    if len(parts) == 1:
        return parts[0]
    # the namespace concatenates along axis 0: bring the axis there and back
    joined = ns.concatenate([ns.moveaxis(p, axis, 0) for p in parts])
    return ns.moveaxis(joined, 0, axis)


def unpack_squares(ns: Any, flat: Any, sizes: list[int]) -> list:
    """The ``n x n`` matrices, one per entry of ``sizes``, raveled one after the
    other in ``flat`` (the inverse of :func:`pack` for matrices without gaps)."""
    out, start = [], 0
    for n in sizes:
        out.append(ns.reshape(flat[start : start + n * n], (n, n)))
        start += n * n
    return out


def inverse_root(ns: Any, statistic: Any, root: int, shift: Any) -> Any:
    r""":math:`(S + cI)^{-1/r}` of a symmetric positive semi-definite :math:`S` (``shift``
    :math:`c > 0`), from its eigendecomposition :math:`S = V \Lambda V^\top`:
    :math:`V (\max(\Lambda, 0) + c)^{-1/r} V^\top`. Eigenvalues that rounding made
    negative count as 0, so the result is finite for any :math:`c > 0`.

    A statistic with a NaN or infinite entry gives a root of NaN (some libraries'
    eigensolvers raise on such input instead: the decomposition sees zeros there).
    """
    finite = statistic * 0 == 0
    poison = ns.sum(statistic * 0)  # 0, or NaN where an entry is not finite
    values, vectors = ns.eigh(ns.where(finite, statistic, ns.zeros_like(statistic)))
    scale = (ns.maximum(values, ns.zeros_like(values)) + shift) ** (-1.0 / root)
    return ns.matmul(vectors * scale, ns.matrix_transpose(vectors)) + poison
