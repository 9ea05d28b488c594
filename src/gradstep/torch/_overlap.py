"""Which parameters of one step share memory (the same tensor twice in a list, or
overlapping views of one tensor), and in what rounds to step them so that every
occurrence is stepped after the previous one, as torch.optim's loop steps them."""

from __future__ import annotations

import torch

from . import _distributed as _dist


def extent(t: torch.Tensor) -> tuple:
    """``(device, first byte, end byte)`` of the memory ``t`` can address."""
    if _dist.is_dtensor(t):
        t = _dist.local(t)
    start = t.data_ptr()
    if t.numel() == 0:
        return (str(t.device), start, start)
    span = 1 + sum((n - 1) * abs(st) for n, st in zip(t.shape, t.stride()))
    return (str(t.device), start, start + span * t.element_size())


def rounds(entries: list) -> list[list]:
    """``entries`` (``(parameter, gradient)``) in rounds that can be stepped at once:
    one round unless a tensor appears twice or two parameters share memory; then each
    goes into the round after the last one holding a parameter it overlaps, so that
    overlapping parameters are stepped in the order of the list."""
    if len(entries) < 2:
        return [entries]
    extents = [extent(p.detach()) for p, _ in entries]
    overlap = len({id(p) for p, _ in entries}) < len(entries)
    if not overlap:  # a sweep over the starts, keeping the furthest end per device
        end: dict[str, int] = {}
        for device, start, stop in sorted(extents):
            if start < stop and start < end.get(device, start):
                overlap = True
                break
            end[device] = max(end.get(device, stop), stop)
    if not overlap:
        return [entries]
    level: list[int] = []
    for i, (p, _) in enumerate(entries):
        device, start, stop = extents[i]
        clash = [
            level[j]
            for j in range(i)
            if entries[j][0] is p
            or (device == extents[j][0] and start < extents[j][2] and extents[j][1] < stop)
        ]
        level.append(max(clash) + 1 if clash else 0)
    rounds: list[list] = [[] for _ in range(max(level) + 1)]
    for i, entry in enumerate(entries):
        rounds[level[i]].append(entry)
    return rounds
