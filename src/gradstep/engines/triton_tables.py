"""The Triton engine's device tables: chunks, data pointers, masks and factors of a tensor list."""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch

from .._core.axis_norm import MAX_RUNS
from .._core.blockwise8 import BLOCKWISE8, MIXED_PREFIX, bucket_codes, dynamic_map, n_blocks
from .plan import Unsupported
from .scalar_ring import ScalarRing

STORAGE_DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
ALIGNMENT = 16  # bytes: the width of a vector load


def interpreted() -> bool:
    """Triton runs kernels on CPU tensors through its interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype element math on tensors of ``dtype`` runs in."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _aligned(t: torch.Tensor) -> bool:
    return t.data_ptr() % ALIGNMENT == 0


class _Tables:
    """The device tables of one list of tensors: chunks, pointers, masks, factors.

    Built from the parameters and slots; ``matches`` tells, cheaply, whether they
    still describe the same memory (same objects, same data pointers, shapes and
    dtypes), so a replaced or reallocated tensor rebuilds them.
    """

    def __init__(
        self,
        engine: Any,
        ws: list,
        slots: list[list],
        covered: list[list],
        flags: dict | None = None,
    ):
        w0 = ws[0]
        if not isinstance(w0, torch.Tensor):
            raise Unsupported(f"parameters of type {type(w0).__name__}")
        self.device = w0.device
        self.dtype = w0.dtype
        if self.dtype not in STORAGE_DTYPES:
            raise Unsupported(f"dtype {self.dtype} (the Triton engine runs floating tensors)")
        if self.device.type != "cuda" and not interpreted():
            raise Unsupported(f"tensors on {self.device} (the Triton engine runs CUDA tensors)")
        for i, w in enumerate(ws):
            _check_tensor(f"parameter {i}", w, self.device, self.dtype, w.shape, write=True)
        self.math = math_dtype(self.dtype)
        # 8-bit slots (code row -> block-scale row, as pointer-table rows)
        eight = getattr(engine, "q8_rows", {})
        self.quantised: list[int] | None = None  # per tensor: its 8-bit slots hold codes
        named: dict[int, str] = {}
        for code_row, scale_row in eight.items():
            named[code_row], named[scale_row] = self._blockwise8(
                ws, slots[code_row - 2], slots[scale_row - 2]
            )
        slot_dtypes = []
        for r, row in enumerate(slots):
            if r + 2 in named:
                slot_dtypes.append(named[r + 2])
                continue
            dtypes = {a.dtype for a in row if a is not None}
            if len(dtypes) > 1:
                raise Unsupported(f"slot row {r} mixes dtypes {sorted(map(str, dtypes))}")
            dtype = dtypes.pop() if dtypes else self.dtype
            if dtype not in STORAGE_DTYPES:
                raise Unsupported(f"state of dtype {dtype}")
            for i, a in enumerate(row):
                if a is not None:
                    _check_tensor(f"state slot {r} of parameter {i}", a, self.device, dtype,
                                  ws[i].shape, write=True)  # fmt: skip
            slot_dtypes.append(STORAGE_DTYPES[dtype])
        self.ws = list(ws)
        self.slots = [list(row) for row in slots]
        self.math_name = STORAGE_DTYPES[self.math]
        self.row_dtypes = (STORAGE_DTYPES[self.dtype],) * 2 + tuple(slot_dtypes)
        self.n_tensors = len(ws)
        self.w_ptrs = [w.data_ptr() for w in ws]
        self.slot_ptrs = [[0 if a is None else a.data_ptr() for a in row] for row in slots]
        aligned = [
            _aligned(w) and all(row[i] is None or _aligned(row[i]) for row in slots)
            for i, w in enumerate(ws)
        ]
        chunk = engine.chunk
        rows, owner = [], []
        for j, w in enumerate(ws):
            n = w.numel()
            for start in range(0, n, chunk):
                length = min(chunk, n - start)
                rows.append((j, start, length, int(aligned[j] and length == chunk)))
                owner.append(j)
        self.n_chunks = len(rows)
        self.chunks = self.to_device(rows, torch.int64).reshape(-1, 4)
        self.chunk_tensor = self.to_device(owner, torch.int64)
        pointer_rows = [[0] * len(ws), self.w_ptrs] + self.slot_ptrs
        pointer_rows += self._segment_rows(engine, ws)
        self._host_ptrs = pointer_rows
        self.ptrs = self.to_device(pointer_rows, torch.int64)
        self.g_ptrs: list[int] | None = None
        self._graph_sources: list[torch.Tensor] = []
        self.g_refs: list | None = None
        self.covered = covered
        # per-tensor reductions: the tensors of each combination of mask flags
        self.flags = flags or {}
        self.flag_groups: dict[int, list] = {}
        for index, per_tensor in self.flags.items():
            groups: dict[tuple, list[int]] = {}
            for i, f in enumerate(per_tensor):
                groups.setdefault(tuple(sorted(f.items())), []).append(i)
            self.flag_groups[index] = [
                (dict(key), self.to_device(members, torch.int64)) for key, members in groups.items()
            ]
        masks = [[int(c) for c in row] for row in covered]
        if self.quantised is not None:  # after the stages' rows: which tensors hold codes
            masks.append([int(q) for q in self.quantised])
        self.tmask = self.to_device(masks or [[1]], torch.uint8)
        # the kernels of rows holding codes take the 8-bit tables (all floats: none)
        codes = any(name.startswith(BLOCKWISE8) for name in named.values())
        self.q8_args = q8_tables(self.device) if codes else ()
        self.n_factor_columns = max(engine.n_factors, 1)
        self.no_amp = self.to_device([1.0, 0.0], self.math)
        self._last_scalars: tuple | None = None  # see scalars
        self._ring: ScalarRing | None = None  # see scalars
        self.buffers: dict[int, torch.Tensor] = {}  # reduction passes' sums, by stage
        self.tscal = torch.zeros(
            (len(ws), self.n_factor_columns), dtype=self.math, device=self.device
        )

    def _segment_rows(self, engine: Any, ws: list) -> list[list[int]]:
        """The pointer-table rows of each norm over axes (``Stage.segment_row`` on):
        the addresses of each tensor's slices' float64 sums and factors, then its
        runs (:meth:`~gradstep._core.axis_norm.AxisNormScaled.runs`); their buffers
        in ``self.segments`` (by stage index)."""
        self.segments: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        rows: list[list[int]] = []
        for st in getattr(engine, "stages", ()):
            if not st.is_axis_norm:
                continue
            described = []
            for i, w in enumerate(ws):
                st.stage.axes(w.dim())  # a ValueError for axes the tensor lacks
                try:
                    described.append(st.stage.runs(w.shape))
                except ValueError as error:
                    raise Unsupported(f"parameter {i}: {error}") from None
            starts = np.cumsum([0] + [n for _, n in described]).tolist()
            total = max(starts[-1], 1)
            sums = torch.zeros(total, dtype=torch.float64, device=self.device)
            factors = torch.zeros(total, dtype=self.math, device=self.device)
            self.segments[st.index] = (sums, factors)
            size = factors.element_size()
            stage_rows = [
                [sums.data_ptr() + 8 * start for start in starts[:-1]],
                [factors.data_ptr() + size * start for start in starts[:-1]],
            ]
            for r in range(3 * MAX_RUNS):
                run, part = divmod(r, 3)
                unused = (1, 1, 0)[part]  # a missing run adds 0
                stage_rows.append(
                    [runs[run][part] if run < len(runs) else unused for runs, _ in described]
                )
            rows += stage_rows
        return rows

    def _blockwise8(self, ws: list, codes: list, scales: list) -> tuple[str, str]:
        """Check an 8-bit slot's rows: each tensor's uint8 codes, shaped like its
        parameter, and float32 block scales (``ceil(size / 256)``), or, below
        ``min_8bit_size``, its values in the math dtype and an empty scale tensor;
        every 8-bit slot of a tensor must agree (the kernels test one flag per tensor).
        Returns the storage names of the two rows."""
        flags = [isinstance(a, torch.Tensor) and a.dtype == torch.uint8 for a in codes]
        if self.quantised is not None and flags != self.quantised:
            raise Unsupported("8-bit slots of one tensor stored as codes and as floats")
        self.quantised = flags
        for j, (w, a, b, q) in enumerate(zip(ws, codes, scales, flags)):
            what = f"8-bit state of parameter {j}"
            _check_tensor(what, a, self.device, torch.uint8 if q else self.math, w.shape, True)
            size = n_blocks(w.numel()) if q else 0
            _check_tensor(f"{what} (block scales)", b, self.device, torch.float32, (size,), True)
        math = STORAGE_DTYPES[self.math]
        kind = BLOCKWISE8 if all(flags) else MIXED_PREFIX + math if any(flags) else math
        return kind, "float32"

    def to_device(self, values: list, dtype: torch.dtype) -> torch.Tensor:
        """``values`` as a tensor on the device, copied without a host synchronisation
        (pinned memory, asynchronous copy) on CUDA."""
        if self.device.type != "cuda":
            return torch.tensor(values, dtype=dtype, device=self.device)
        host = torch.tensor(values, dtype=dtype, pin_memory=True)
        return host.to(self.device, non_blocking=True)

    def scalars(self, values: list, reusable: bool) -> torch.Tensor:
        """A step's scalars on the device. ``reusable`` (no pass writes into them): the
        last step's tensor again where the values are the same (a constant learning
        rate, no bias correction), so such a step copies nothing to the device."""
        key = tuple(map(float.hex, values))  # bit for bit: 0.0 is not -0.0
        last = self._last_scalars
        if reusable and last is not None and last[0] == key:
            return last[1]
        ring = self._ring
        if ring is None or ring.host_rows.shape[1] != len(values):
            ring = self._ring = ScalarRing(len(values), self.math, self.device)
        scal = ring.put(values)
        self._last_scalars = (key, scal) if reusable else None
        return scal

    def matches(self, ws: list, slots: list[list], covered: list[list]) -> bool:
        """The same parameters and slots at the same addresses as when built."""
        if len(ws) != self.n_tensors or len(slots) != len(self.slots) or covered != self.covered:
            return False
        for a, b in zip(ws, self.ws):
            if a is not b:
                return False
        if [w.data_ptr() for w in ws] != self.w_ptrs:
            return False
        for row, old, ptrs in zip(slots, self.slots, self.slot_ptrs):
            for a, b in zip(row, old):
                if a is not b:
                    return False
            if [0 if a is None else a.data_ptr() for a in row] != ptrs:
                return False
        return all(w.is_contiguous() for w in ws) and all(
            a is None or a.is_contiguous() for row in slots for a in row
        )

    def check_grads(self, grads: list) -> list[int]:
        """The gradients' data pointers, each gradient checked against its parameter."""
        if len(grads) != self.n_tensors:
            raise ValueError(f"{len(grads)} gradients for {self.n_tensors} parameters")
        for i, (g, w) in enumerate(zip(grads, self.ws)):
            _check_tensor(f"gradient {i}", g, self.device, self.dtype, w.shape, write=False)
        return [g.data_ptr() for g in grads]

    def ptrs_with_grads(self, g_ptrs: list[int]) -> torch.Tensor:
        """The pointer table with this step's gradient row (copied only when the
        gradients moved).

        During CUDA-graph capture the row is copied from a pinned host buffer kept
        for as long as the tables live (each replay copies from it again); once a
        graph has been captured, the host no longer knows which row the device
        holds, so every later step copies its own.
        """
        capturing = self.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        if capturing:
            host = torch.tensor(g_ptrs, dtype=torch.int64, pin_memory=True)
            self._graph_sources.append(host)
            self.ptrs[0].copy_(host, non_blocking=True)
            self.g_ptrs = None
        elif g_ptrs != self.g_ptrs or self._graph_sources:
            self.ptrs[0].copy_(self.to_device(g_ptrs, torch.int64), non_blocking=True)
            self.g_ptrs = g_ptrs
        return self.ptrs


@functools.cache
def q8_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8-bit kernels' tables on ``device`` (:data:`~gradstep.engines.triton_codegen.Q8_ARGS`):
    the dynamic maps, signed then unsigned (float32), and the quantiser's bucket
    tables, signed then unsigned (int32), from :mod:`gradstep._core.blockwise8`."""
    qmap = np.concatenate([dynamic_map(True), dynamic_map(False)])
    qcodes = np.concatenate([bucket_codes(True), bucket_codes(False)])
    return (
        torch.from_numpy(qmap.copy()).to(device),
        torch.from_numpy(qcodes.copy()).to(device),
    )


def _check_tensor(what: str, t: Any, device, dtype, shape, write: bool) -> None:
    if not isinstance(t, torch.Tensor):
        raise Unsupported(f"{what} is a {type(t).__name__}, not a tensor")
    if t.device != device or t.dtype != dtype:
        raise Unsupported(f"{what} is {t.dtype} on {t.device}, expected {dtype} on {device}")
    if t.shape != shape:
        raise ValueError(f"{what} has shape {tuple(t.shape)}, its parameter {tuple(shape)}")
    if t.layout != torch.strided or not t.is_contiguous():
        raise Unsupported(f"{what} is not a contiguous dense tensor")
    if (
        write and t.requires_grad and torch.is_grad_enabled()
    ):  # pragma: no cover - guarded by fronts
        raise Unsupported(f"{what} requires grad; step under torch.no_grad()")


def amp_pair(grad_scale: Any, found_inf: Any, like: torch.Tensor) -> torch.Tensor:
    """GradScaler's ``grad_scale`` and ``found_inf`` (tensors on the device, or None)
    as the kernels' ``(1 / scale, found_inf)`` pair, computed on the device."""
    dtype = math_dtype(like.dtype)
    inv = (
        torch.ones((), dtype=dtype, device=like.device)
        if grad_scale is None
        else grad_scale.to(device=like.device, dtype=torch.float64).reciprocal().to(dtype)
    )
    found = (
        torch.zeros((), dtype=dtype, device=like.device)
        if found_inf is None
        else found_inf.to(device=like.device, dtype=dtype)
    )
    return torch.stack([inv.reshape(()), found.reshape(())])
