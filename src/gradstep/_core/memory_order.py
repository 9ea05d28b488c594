"""Whether a transform's math is indifferent to the order of each tensor's elements in memory.

An elementwise rule computes each element from the elements at the same place in the
gradient and the state, and at most sums over whole tensors: it steps a tensor laid
out in another order (Fortran order, a transposed view, torch's ``channels_last``) as
it steps the same values in C order, provided the gradient and the state are laid out
as the parameter. The engines then walk the parameter's memory as one flat block.
Three things tie a value to its element's place and rule that out: a stage that reads
each tensor's shape (``reads_shape``: factored moments, per-row blocks, projections),
8-bit slots (blocks of 256 consecutive elements in C order) and stochastic rounding
(a random stream keyed by the element's C-order index).
"""

from __future__ import annotations

from .blockwise8 import BLOCKWISE8
from .elementwise import Elementwise
from .rounding import ParameterStore
from .transform import Transform, walk


def position_free(t: Transform) -> bool:
    """No stage of ``t`` ties a value to its element's position: no 8-bit slot and no
    stochastic rounding."""
    for visit in walk(t):
        node = visit.transform
        if isinstance(node, ParameterStore) and node.seed is not None:
            return False
        for slot in node.slots if isinstance(node, Elementwise) else ():
            if slot.stochastic_seed is not None or slot.dtype == BLOCKWISE8:
                return False
    return True


def order_free(t: Transform) -> bool:
    """``t`` steps a tensor laid out in memory in any order of its axes as the same
    values in C order: :func:`position_free`, and no stage reads a tensor's shape."""
    shapes = any(getattr(v.transform, "reads_shape", False) for v in walk(t))
    return not shapes and position_free(t)
