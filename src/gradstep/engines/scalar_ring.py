"""Per-step scalars staged through a ring of pinned host rows into device rows, without allocating.

A step whose scalars change (Adam's bias corrections) hands them to its kernel as a
small device array. Made fresh each step (a pinned tensor, then an asynchronous copy
into a new device tensor) that costs two allocations and tens of microseconds of
host time, as much as the rest of a one-tensor step. The ring keeps ``ROWS`` rows of
pinned host memory and as many device rows: a step writes its values into the next
host row through a NumPy view, queues one asynchronous copy into the matching device
row, and hands the kernel that row.

Why it is safe: a host row is written again only ``ROWS`` steps later. The ring is
two halves; after the last copy out of a half an event is recorded, and before the
host writes into that half again it waits for the event (already passed unless the
host runs a whole half ahead of the device: the wait is then back-pressure, not a
synchronisation of the stream). A device row is overwritten only by a copy queued
on the same stream after every kernel that read it; a step on another stream than
the last first waits for the last one's work (rare: a stream switch between steps).
On a CPU device (Triton's interpreter) rows are plain memory and copies immediate.
"""

from __future__ import annotations

from typing import Any

import torch

#: rows in a ring (two halves)
ROWS = 64


class ScalarRing:
    """Rows of ``n`` scalars of ``dtype`` on ``device`` (see the module docstring)."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device):
        self.cuda = device.type == "cuda"
        self.host = torch.empty((ROWS, n), dtype=dtype, pin_memory=self.cuda)
        self.host_rows = self.host.numpy()
        self.device_table = torch.empty((ROWS, n), dtype=dtype, device=device)
        self.device_rows = list(self.device_table.unbind(0))
        self.sources = list(self.host.unbind(0))
        self.next = 0
        self.done: list[Any] = [None, None]  # each half's event after its last copy
        self.stream: Any = None  # the stream of the last copy (CUDA)

    def put(self, values: list) -> torch.Tensor:
        """The device row holding ``values`` (``n`` numbers) this step."""
        if self.cuda:
            stream = torch.cuda.current_stream()
            if stream != self.stream:
                if self.stream is not None:  # the events cover the last stream only
                    self.stream.synchronize()
                self.stream = stream
        i = self.next
        half, at = divmod(i, ROWS // 2)
        if at == 0 and self.done[half] is not None:
            self.done[half].synchronize()  # the copies out of this half have run
            self.done[half] = None
        self.host_rows[i] = values
        row = self.device_rows[i]
        row.copy_(self.sources[i], non_blocking=self.cuda)
        if self.cuda and at == ROWS // 2 - 1:
            event = torch.cuda.Event()
            event.record()
            self.done[half] = event
        self.next = (i + 1) % ROWS
        return row
