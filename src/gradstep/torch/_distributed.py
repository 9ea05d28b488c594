"""DTensor parameters (FSDP2's ``fully_shard``, tensor parallelism).

Elementwise math on a sharded tensor is the same math on each rank's local shard, so
for chains of elementwise stages the front works on ``to_local()`` views (fused engine
included). Only norms need the other ranks: a :class:`Reducer` all-reduces the local
sums of squares of each tensor over the mesh dimensions it is sharded on, before the
norm becomes a clipping factor or a trust ratio; a global norm then adds the reduced
per-tensor sums, so every rank sees the norms of the unsharded run.

Transforms with other non-elementwise stages run on the full tensors
(:func:`full`, all-gathered), and each rank keeps its own shard of the result
(:func:`local_chunk`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch


@functools.cache
def dtensor_type() -> type | None:
    """``torch.distributed.tensor.DTensor``, or None where it does not exist."""
    if not torch.distributed.is_available():
        return None
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - old torch
        return None
    return DTensor


def is_dtensor(t: Any) -> bool:
    cls = dtensor_type()
    return cls is not None and isinstance(t, cls)


def local(t: Any) -> Any:
    """The local shard of a DTensor (a view: writes reach the DTensor), else ``t``."""
    return t.to_local() if is_dtensor(t) else t


def shard_groups(t: Any) -> tuple:
    """The process groups over which ``t``'s local sums must be added."""
    if not is_dtensor(t):
        return ()
    mesh = t.device_mesh
    groups = []
    for dim, placement in enumerate(t.placements):
        if placement.is_partial():
            raise ValueError(
                "gradstep.torch: a parameter with a Partial placement holds a sum of "
                "shards; redistribute it to Shard or Replicate before the optimizer step"
            )
        if placement.is_shard():
            groups.append(mesh.get_group(dim))
    return tuple(groups)


class Reducer:
    """All-reduces per-tensor sums of squares of sharded tensors.

    ``groups[i]`` are the process groups of tensor ``i`` of the bucket (empty: not
    sharded). A sum reaches the reducer with the tensor it belongs to, never by its
    place in a sequence of calls: from the numba engine, the bucket's whole table in
    its order (:meth:`bucket`); from the transform's own update, with the parameter
    arrays the step handed it (:meth:`identify`), which a masked stage sees only part
    of (:meth:`of`, :meth:`one`).
    """

    def __init__(self, groups: list[tuple], device: torch.device):
        self.groups = groups
        self.device = device
        self.index: dict[int, int] = {}

    def identify(self, leaves: list) -> None:
        """``leaves[i]`` (the array the update is given as parameter ``i``) is tensor
        ``i`` of the bucket."""
        if len(leaves) != len(self.groups):
            raise ValueError(f"{len(leaves)} parameters for a bucket of {len(self.groups)}")
        self.index = {id(leaf): i for i, leaf in enumerate(leaves)}

    def bucket(self, sums: list[float]) -> list[float]:
        """Reduce the sums of every tensor of the bucket, in its order."""
        if len(sums) != len(self.groups):
            raise ValueError(f"{len(sums)} sums for a bucket of {len(self.groups)} tensors")
        return self._reduced(list(range(len(sums))), sums)

    def of(self, leaves: list, sums: list[float]) -> list[float]:
        """Reduce ``sums[k]``, the sum of the parameter ``leaves[k]`` (any of the
        bucket's, in any order)."""
        return self._reduced([self._tensor(leaf) for leaf in leaves], sums)

    def one(self, leaf: Any, sums: tuple) -> tuple:
        """Reduce the sums of the parameter ``leaf`` alone."""
        groups = self.groups[self._tensor(leaf)]
        return tuple(self._all_reduce(list(sums), groups)) if groups else sums

    def _tensor(self, leaf: Any) -> int:
        i = self.index.get(id(leaf))
        if i is None:
            raise ValueError(
                "gradstep.torch: a norm across ranks was asked for an array that is not "
                "one of the step's parameters"
            )
        return i

    def _reduced(self, tensors: list[int], sums: list[float]) -> list[float]:
        """``sums[k]`` (of tensor ``tensors[k]``) added over the tensor's groups (one
        all-reduce per set of groups)."""
        out = [float(s) for s in sums]
        batches: dict[tuple, tuple[tuple, list[int]]] = {}
        for k, i in enumerate(tensors):
            groups = self.groups[i]
            if groups:
                key = tuple(id(g) for g in groups)
                batches.setdefault(key, (groups, []))[1].append(k)
        for groups, ks in batches.values():
            values = self._all_reduce([out[k] for k in ks], groups)
            for k, v in zip(ks, values):
                out[k] = v
        return out

    def _all_reduce(self, values: list[float], groups: tuple) -> list[float]:
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        for group in groups:
            dist.all_reduce(t, group=group)
        return t.tolist()


def full(t: Any) -> Any:
    """The whole tensor of a DTensor (all-gathered), else ``t``."""
    return t.full_tensor() if is_dtensor(t) else t


def local_chunk(whole: torch.Tensor, like: Any) -> torch.Tensor:
    """This rank's shard of ``whole`` laid out as the DTensor ``like`` (no
    communication: every rank holds ``whole``)."""
    from torch.distributed.tensor import DTensor, Replicate

    mesh = like.device_mesh
    replicated = DTensor.from_local(whole, mesh, [Replicate()] * mesh.ndim, run_check=False)
    return replicated.redistribute(mesh, like.placements).to_local()


def distribute_like(whole: torch.Tensor, like: Any) -> Any:
    """A DTensor laid out as ``like`` holding ``whole`` (each rank keeps its shard)."""
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(
        local_chunk(whole, like),
        like.device_mesh,
        like.placements,
        run_check=False,
        shape=like.shape,
        stride=like.stride(),
    )
