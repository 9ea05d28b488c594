"""Whether a transform's step may be split into calls over parts of the parameters."""

from __future__ import annotations

from .axis_norm import AxisNormScaled
from .combine import Masked, Partition
from .elementwise import Elementwise, NormScaled
from .per_tensor import PerTensorReduction
from .transform import Chain, Transform, walk


def separable(t: Transform) -> bool:
    """Every stage of ``t`` computes each tensor's update from that tensor alone
    (elementwise math, per-tensor norms and reductions that do not see every
    tensor's totals, transforms declared
    :attr:`~gradstep._core.transform.Transform.tensorwise`, masks and partitions of
    them), so a step split into calls over parts of the parameters is the same step.
    Anything else (global norms and reductions, skips judged over every gradient,
    accumulation's window, transforms of their own) may couple the tensors: its step
    is one call. The fronts split a step on this test: the torch front into engine
    buckets, the NumPy front into the tensors fused forms cover and the others."""
    for visit in walk(t):
        node = visit.transform
        if type(node) in (Chain, Masked, Partition, Elementwise):
            continue
        if type(node) is PerTensorReduction and not node.totals:  # totals couple them
            continue
        if type(node) is NormScaled and node.per_tensor:
            continue
        if isinstance(node, AxisNormScaled) or node.tensorwise:  # within each tensor
            continue
        return False
    return True
