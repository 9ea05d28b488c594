"""The Triton engine: a chain of elementwise stages as ONE GPU kernel launch over all tensors.

The GPU sibling of :mod:`gradstep.engines.fused`. For a chain such as ``clip ->
weight decay -> adam -> learning rate`` over a list of CUDA tensors it launches one
generated Triton kernel (:mod:`gradstep.engines.triton_codegen`) that reads the
gradient, the parameter and each state slot once and writes the parameter and the
slots once, for all tensors of the list: the kernel walks a device table of chunks
``(tensor, offset, length, full)`` and a device table of data pointers (one row per
array role, one column per tensor). The element functions are the very functions
the eager and numba engines run.

- **Tables** are rebuilt only when a data pointer changes; every step the engine
  checks every tensor it will write or read (device, dtype, shape, contiguity and
  address) against the tables, so it never writes through a stale pointer.
- **Scalars** (bias corrections, scheduled rates) are computed on the host from
  the step count and copied to the device asynchronously from pinned memory: a step
  makes no host synchronisation.
- **Reductions** (norm clipping) are device passes: per-chunk float64 partial sums,
  summed per tensor on the device, turned into factors by the stage's own factor
  function bound to torch operations, and read by the main pass.
- **Precision**: float32, float16, bfloat16 and float64 tensors; arithmetic in
  float32 (float64 for float64 tensors); state stored in its own dtype.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``)
on CPU tensors, which is how the test suite checks them.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from .._core import tree as _tree
from .._core.combine import _labels_for
from .._core.elementwise import resolve
from .._core.namespaces import element_for, namespace_of
from .._core.transform import Transform
from . import triton_codegen
from .fused import Unsupported, flatten_stages, load_kernels

STORAGE_DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
BLOCK = 1024  # elements per block: 4 KB of float32, a 128-bit vector per lane
ITERS = 4  # blocks per chunk
NUM_WARPS = 4
ALIGNMENT = 16  # bytes: the width of a vector load


def interpreted() -> bool:
    """Triton runs kernels on CPU tensors through its interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def math_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype element math on tensors of ``dtype`` runs in."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class TritonEngine:
    """Runs one transform over lists of CUDA tensors (CPU tensors when interpreted), in place.

    Raises :class:`~gradstep.engines.fused.NotFusable` at construction when the
    transform has a stage that is not elementwise (or a norm reduction).
    """

    def __init__(
        self,
        transform: Transform,
        *,
        block: int = BLOCK,
        iters: int = ITERS,
        num_warps: int = NUM_WARPS,
    ):
        self.transform = transform
        self.stages = flatten_stages(transform, per_tensor=True)
        self.block, self.iters, self.num_warps = block, iters, num_warps
        row, offset, column = 2, 0, 0
        for st in self.stages:
            st.slot_rows = list(range(row, row + len(st.stage.slots)))
            row += len(st.stage.slots)
            if st.is_reduction:
                st.reduction_column = column
                column += 1
            else:
                st.scalar_offset = offset
                offset += len(st.stage.scalar_names())
            if st.is_per_tensor:
                st.reduction_column = column
                column += len(st.stage.tensor_scalars)
        self.n_rows, self.n_scalars, self.n_factors = row, offset, column
        self.terms = {st.index: _norm_terms(st.stage) for st in self.stages if st.is_per_tensor}
        self._modules: dict[tuple, Any] = {}
        self._tables: _Tables | None = None
        self._factor_fns: dict[int, Any] = {}

    @property
    def chunk(self) -> int:
        return self.block * self.iters

    # -- the generated kernels -----------------------------------------------------

    def source(self, row_dtypes: list[str], math: str, bool_scalars: set[int]) -> str:
        return triton_codegen.generate_source(
            self.stages, row_dtypes, math, bool_scalars, self.terms
        )

    def _module(self, row_dtypes: tuple[str, ...], math: str, bool_scalars: frozenset[int]):
        key = (row_dtypes, math, bool_scalars)
        module = self._modules.get(key)
        if module is None:
            source = self.source(list(row_dtypes), math, set(bool_scalars))
            module = self._modules[key] = load_kernels(source)
        return module

    # -- stepping ------------------------------------------------------------------

    def step_leaves(
        self, w_leaves: list, g_leaves: list, params: Any, state: dict, ctx: dict
    ) -> dict:
        """Update the tensors ``w_leaves`` and the slots of ``state`` in place from
        the gradients ``g_leaves``; return the state with its step counts advanced.

        ``params`` is the parameters' tree, for masks that are functions of it.
        Raises :class:`~gradstep.engines.fused.Unsupported` (changing nothing) for
        tensors it cannot run.
        """
        if not w_leaves:
            return state
        nodes = [_node(state, st.state_path) for st in self.stages]
        counts = [int(node["count"]) if "count" in node else 0 for node in nodes]
        covered, slots = self._selection(nodes, params, len(w_leaves))
        flags = {
            st.index: st.stage.tensor_flags(params, None, len(w_leaves))
            for st in self.stages
            if st.is_per_tensor
        }
        tables = self._checked_tables(w_leaves, slots, covered, flags)
        grads = tables.check_grads(g_leaves)
        self._launch(tables, grads, counts, ctx)
        for st, node, count in zip(self.stages, nodes, counts):
            if st.stage.counted:
                node["count"] = _count_like(node["count"], count + 1)
        return state

    def _selection(self, nodes: list[dict], params: Any, n: int) -> tuple[list, list]:
        """Which tensors each stage covers, and for each slot row the slot tensor of
        each parameter (None where a masked stage does not cover it)."""
        covered_by_stage, rows = [], []
        for st, node in zip(self.stages, nodes):
            if st.mask is None:
                covered = [True] * n
            else:
                covered = [bool(f) for f in _labels_for(st.mask, params, None)]
                if len(covered) != n:
                    raise ValueError(f"{st.stage.name}: mask has {len(covered)} leaves, params {n}")
            covered_by_stage.append(covered)
            for slot in st.stage.slots:
                leaves = iter(_tree.leaves(node[slot.name]))
                rows.append([next(leaves) if c else None for c in covered])
        return covered_by_stage, rows

    def _checked_tables(
        self, ws: list, slots: list[list], covered: list[list], flags: dict | None = None
    ) -> _Tables:
        tables = self._tables
        flags = flags or {}
        if tables is None or not tables.matches(ws, slots, covered) or tables.flags != flags:
            tables = self._tables = _Tables(self, ws, slots, covered, flags)
        return tables

    def _scalars(self, counts: list[int], ctx: dict) -> tuple[list, frozenset[int]]:
        values: list = []
        flags = set()
        for st, count in zip(self.stages, counts):
            if st.is_reduction:
                continue
            for v in st.stage.scalars(count, ctx).values():
                if isinstance(v, bool) or type(v).__name__ == "bool_":
                    flags.add(len(values))
                values.append(float(v))
        return values, frozenset(flags)

    def launch(
        self,
        tables: _Tables,
        grads: list[int],
        counts: Any,
        ctx: dict,
        on_device: bool = False,
        amp: torch.Tensor | None = None,
    ) -> None:
        """Run this step over ``tables`` with the gradients at the addresses ``grads``.

        For a caller that has checked, this step, that the tables still describe
        its tensors and that each gradient is a contiguous tensor of its parameter's
        shape, dtype and device (:meth:`step_leaves` does all of this itself).

        ``on_device``: ``counts`` is one 0-d tensor on the device (the number of
        updates so far) and every scalar is computed from it by torch operations on
        the device, so that the step needs nothing from the host and can be captured
        in a CUDA graph (see :meth:`device_scalars_problem`).

        ``amp``: a 2-element tensor of the math dtype on the device, ``(1 / scale,
        found_inf)`` (see :func:`amp_pair`): gradients are unscaled as they are
        loaded, and a nonzero ``found_inf`` leaves every tensor unchanged.
        """
        self._launch(tables, grads, counts, ctx, on_device, amp)

    def _flags(self, ctx: dict) -> frozenset[int]:
        """Positions of boolean scalars (their type does not depend on the step)."""
        flags = self.__dict__.get("_bool_flags")
        if flags is None:
            flags = self._bool_flags = self._scalars([0] * len(self.stages), ctx)[1]
        return flags

    def device_scalars(self, count: torch.Tensor, ctx: dict, dtype: torch.dtype) -> torch.Tensor:
        """Every stage's scalars as one tensor on ``count``'s device, computed there by
        the stages' own ``prepare`` on a tensor step count."""
        parts = []
        for st in self.stages:
            if st.is_reduction:
                continue
            for v in st.stage.scalars(count, ctx).values():
                if isinstance(v, torch.Tensor):
                    parts.append(v.to(device=count.device, dtype=dtype).reshape(()))
                else:
                    parts.append(torch.full((), float(v), dtype=dtype, device=count.device))
        if not parts:
            return torch.zeros(1, dtype=dtype, device=count.device)
        return torch.stack(parts)

    def device_scalars_problem(self, ctx: dict | None = None) -> str | None:
        """Why this chain's scalars cannot be computed on the device (None: they can).

        Tried with a step count on torch's ``meta`` device, where any attempt to read
        the value on the host (``float()``, ``math`` functions, a branch on it) fails,
        as it would fail during CUDA-graph capture.
        """
        count = torch.zeros((), dtype=torch.float32, device="meta")
        for st in self.stages:
            try:
                if st.is_reduction:
                    resolve(st.stage.hyperparams, count, ctx or {})
                else:
                    self.device_scalars(count, ctx or {}, torch.float32)
            except Exception as error:  # any failure means: needs host values
                return (
                    f"the stage {st.stage.name!r} computes its per-step scalars from host "
                    f"values ({type(error).__name__}: {error})"
                )
        return None

    def _launch(
        self,
        tables: _Tables,
        grads: list[int],
        counts: Any,
        ctx: dict,
        on_device: bool = False,
        amp: torch.Tensor | None = None,
    ) -> None:
        amp = tables.no_amp if amp is None else amp
        if on_device:
            flags = self._flags(ctx)
            scal = self.device_scalars(counts, ctx, tables.math)
            counts = [counts] * len(self.stages)
        else:
            values, flags = self._scalars(counts, ctx)
            scal = tables.to_device(values or [0.0], tables.math)
        module = self._module(tables.row_dtypes, tables.math_name, flags)
        ptrs = tables.ptrs_with_grads(grads)
        tscal = tables.tscal
        for st, count in zip(self.stages, counts):
            if st.is_reduction:
                acc = torch.empty(tables.n_chunks, dtype=torch.float64, device=tables.device)
                kernel = getattr(module, f"reduce{st.index}")
                kernel[(tables.n_chunks,)](
                    tables.chunks, ptrs, scal, tscal, tables.tmask, amp, tables.n_tensors,
                    tables.n_factor_columns, acc, BLOCK=self.block, ITERS=self.iters,
                    num_warps=self.num_warps, enable_fp_fusion=False,
                )  # fmt: skip
                sums = torch.zeros(tables.n_tensors, dtype=torch.float64, device=tables.device)
                sums.index_add_(0, tables.chunk_tensor, acc)
                tscal[:, st.reduction_column] = self._factors(st, sums, count, ctx).to(tscal.dtype)
            elif st.is_per_tensor:
                terms = self.terms[st.index]
                acc = torch.empty(
                    tables.n_chunks * terms, dtype=torch.float64, device=tables.device
                )
                kernel = getattr(module, f"reduce{st.index}")
                kernel[(tables.n_chunks,)](
                    tables.chunks, ptrs, scal, tscal, tables.tmask, amp, tables.n_tensors,
                    tables.n_factor_columns, acc, BLOCK=self.block, ITERS=self.iters,
                    num_warps=self.num_warps, enable_fp_fusion=False,
                )  # fmt: skip
                sums = torch.zeros(
                    (tables.n_tensors, terms), dtype=torch.float64, device=tables.device
                )
                sums.index_add_(0, tables.chunk_tensor, acc.view(tables.n_chunks, terms))
                self._tensor_scalars(st, tables, sums, count, ctx)
        module.step[(tables.n_chunks,)](
            tables.chunks, ptrs, scal, tscal, tables.tmask, amp, tables.n_tensors,
            tables.n_factor_columns, BLOCK=self.block, ITERS=self.iters, num_warps=self.num_warps,
            enable_fp_fusion=False,
        )  # fmt: skip

    def _tensor_scalars(self, st, tables: _Tables, sums: torch.Tensor, count: Any, ctx: dict):
        """A per-tensor reduction's scalars, on the device: the stage's own ``combine``
        bound to torch operations, once per group of tensors with the same mask
        flags, written into the stage's columns of the factor table."""
        stage = st.stage
        fn = self._factor_fns.get(st.index)
        if fn is None:
            combine = getattr(stage.combine, "__wrapped__", stage.combine)
            fn = self._factor_fns[st.index] = element_for(combine, namespace_of(sums))
        h = resolve(stage.hyperparams, count, ctx)
        tscal = tables.tscal
        for flags, idx in tables.flag_groups[st.index]:
            chosen = sums.index_select(0, idx)
            values = fn(tuple(chosen[:, t] for t in range(chosen.shape[1])), flags, h)
            for k, name in enumerate(stage.tensor_scalars):
                value = values[name]
                if not isinstance(value, torch.Tensor):
                    value = torch.full((), float(value), dtype=tscal.dtype, device=tscal.device)
                column = tscal[:, st.reduction_column + k]
                column.index_copy_(0, idx, value.to(tscal.dtype).expand(idx.shape[0]))

    def _factors(self, st, sums: torch.Tensor, count: int, ctx: dict) -> torch.Tensor:
        """Each tensor's factor from the sums of squares, on the device: the stage's
        own factor function with its operations bound to torch."""
        stage = st.stage
        fn = self._factor_fns.get(st.index)
        if fn is None:
            fn = self._factor_fns[st.index] = element_for(stage.factor, namespace_of(sums))
        h = resolve(stage.hyperparams, count, ctx)
        norms = sums.sqrt() if stage.per_tensor else sums.sum().sqrt().expand(sums.shape)
        return fn(norms, h)

    # -- ahead-of-time compilation (no GPU needed) ------------------------------------

    def compile_for(self, dtype: torch.dtype = torch.float32, arch: int = 90) -> dict[str, str]:
        """The PTX of every kernel of this chain for CUDA compute capability ``arch``
        (90: Hopper), compiled without a GPU, for parameters and state of ``dtype``.

        Must run in a process where Triton is not interpreting (``TRITON_INTERPRET``
        unset): the interpreter replaces kernels by Python functions.
        """
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        _, flags = self._scalars([0] * len(self.stages), {})
        name = STORAGE_DTYPES[dtype]
        math = STORAGE_DTYPES[math_dtype(dtype)]
        rows = (name,) * self.n_rows
        module = self._module(rows, math, flags)
        scalar = {"float32": "*fp32", "float64": "*fp64"}[math]
        signature = {
            "chunks": "*i64", "ptrs": "*i64", "scal": scalar, "tscal": scalar, "tmask": "*u8",
            "amp": scalar, "n_tensors": "i64", "n_factors": "i64",
        }  # fmt: skip
        out = {}
        kernels = ["step"] + [
            f"reduce{st.index}" for st in self.stages if st.is_reduction or st.is_per_tensor
        ]
        for kernel_name in kernels:
            sig = dict(signature)
            if kernel_name != "step":
                sig["acc"] = "*fp64"
            sig.update(BLOCK="constexpr", ITERS="constexpr")
            pointers = [i for i, t in enumerate(sig.values()) if t.startswith("*")]
            source = ASTSource(
                getattr(module, kernel_name),
                sig,
                constexprs={"BLOCK": self.block, "ITERS": self.iters},
                attrs={(i,): [["tt.divisibility", 16]] for i in pointers},
            )
            compiled = triton.compile(
                source,
                target=GPUTarget("cuda", arch, 32),
                options={"num_warps": self.num_warps, "enable_fp_fusion": False},
            )
            out[kernel_name] = compiled.asm["ptx"]
        return out


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


def _norm_terms(stage: Any) -> int:
    """How many arrays a per-tensor reduction's ``norms`` returns (evaluated once on
    one-element NumPy arrays)."""
    import numpy as np

    one = np.ones(1)
    arrays = [one] * (1 + stage.uses_params + len(stage.slots))
    scalars = [1.0] * len(stage.scalar_names())
    result = element_for(stage.norms, namespace_of(one))(*arrays, *scalars)
    return len(result) if isinstance(result, tuple) else 1


def _node(state: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        state = state[key]
    return state


def _count_like(old: Any, value: int) -> Any:
    if isinstance(old, torch.Tensor):
        return torch.tensor(value, dtype=old.dtype, device=old.device)
    import numpy as np

    return np.asarray(value, dtype=np.int64)


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
        engine: TritonEngine,
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
        slot_dtypes = []
        for r, row in enumerate(slots):
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
        self.math = math_dtype(self.dtype)
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
        self.tmask = self.to_device(masks or [[1]], torch.uint8)
        self.n_factor_columns = max(engine.n_factors, 1)
        self.no_amp = self.to_device([1.0, 0.0], self.math)
        self.tscal = torch.zeros(
            (len(ws), self.n_factor_columns), dtype=self.math, device=self.device
        )

    def to_device(self, values: list, dtype: torch.dtype) -> torch.Tensor:
        """``values`` as a tensor on the device, copied without a host synchronisation
        (pinned memory, asynchronous copy) on CUDA."""
        if self.device.type != "cuda":
            return torch.tensor(values, dtype=dtype, device=self.device)
        host = torch.tensor(values, dtype=dtype, pin_memory=True)
        return host.to(self.device, non_blocking=True)

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


def source_digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:20]
