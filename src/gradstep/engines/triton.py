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
- **Reductions** (norm clipping; Lasagne's norms over axes, per slice by atomic adds)
  are device passes: float64 partial sums, summed on the device, turned into factors
  by the stage's own factor function bound to torch operations, read by the main pass.
- **Precision**: float32, float16, bfloat16 and float64 tensors; arithmetic in
  float32 (float64 for float64 tensors); state stored in its own dtype, or as 8-bit
  blockwise codes with a float32 scale per block of 256 (dequantised, run and
  requantised in the same kernel, with the numba engine's codes).
- **Fused forms** (:mod:`gradstep._core.fused_form`): shape-dependent transforms
  (AdamP's and SGDP's projection, CAME's factored moments, gradient centralisation
  in Ranger) run as the stages they equal on the shapes their form covers; a step
  with another shape is refused before anything is written. A form's host step
  (Sophia's fold of a Hessian estimate) runs the transform's own torch code on the
  state tensors around the launch (:mod:`gradstep.engines.triton_host`).

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``)
on CPU tensors, which is how the test suite checks them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._core import tree as _tree
from .._core.blockwise8 import BLOCK as Q8_BLOCK
from .._core.blockwise8 import absmax_name
from .._core.combine import mask_flags
from .._core.elementwise import resolve
from .._core.fused_form import refusal
from .._core.namespaces import element_for, namespace_of
from .._core.transform import Transform
from . import triton_codegen
from .kernel_cache import load_kernels
from .plan import (
    Unsupported,
    advance_counts,
    flatten_stages,
    place_scales,
    place_segments,
    place_stages,
    stage_nodes,
    stochastic_rows,
    stream_key_table,
)
from .triton_host import device_writes, write_device_values
from .triton_tables import _Tables

BLOCK = 1024  # elements per block: 4 KB of float32, a 128-bit vector per lane
ITERS = 4  # blocks per chunk
NUM_WARPS = 4


class TritonEngine:
    """Runs one transform over lists of CUDA tensors (CPU tensors when interpreted), in place.

    Raises :class:`~gradstep.engines.plan.NotFusable` at construction when the
    transform has a stage that is not elementwise (or a norm or per-tensor reduction).
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
        self.forms: list = []  # fused forms in place of their transforms: shapes refused
        self.hosts: list = []  # (form, state path): host steps around the launch
        self.stages = flatten_stages(
            transform, per_tensor=True, axis_norms=True, forms=self.forms, hosts=self.hosts
        )
        if block % Q8_BLOCK:  # a chunk's 8-bit codes start a quantisation block
            raise ValueError(f"block must be a multiple of {Q8_BLOCK}, not {block}")
        self.block, self.iters, self.num_warps = block, iters, num_warps
        self.n_rows, self.n_scalars, self.n_factors = place_stages(self.stages)
        # 8-bit slots: a row of block scales each, after every other row
        self.n_rows = place_scales(self.stages, self.n_rows)
        place_segments(self.stages, self.n_rows)  # norms over axes: after the data rows
        self.q8_rows = {
            st.slot_rows[k]: row for st in self.stages for k, row in st.scale_rows.items()
        }
        self.terms = {
            st.index: st.stage.n_terms() for st in self.stages if st.is_per_tensor or st.is_global
        }
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
        self,
        w_leaves: list,
        g_leaves: list,
        params: Any,
        state: dict,
        ctx: dict,
        amp: torch.Tensor | None = None,
    ) -> dict:
        """Update the tensors ``w_leaves`` and the slots of ``state`` in place from
        the gradients ``g_leaves``; return the state with its step counts advanced.

        ``params`` is the parameters' tree, for masks that are functions of it.
        ``amp``: GradScaler's pair for :meth:`launch` (a skipped step still advances
        the counts of ``state``: the caller keeps its own). Raises
        :class:`~gradstep.engines.plan.Unsupported` (changing nothing) for tensors
        it cannot run.
        """
        if not w_leaves:
            return state
        if self.forms:
            why = refusal(self.forms, [w.shape for w in w_leaves], w_leaves[0].element_size())
            if why is not None:
                raise Unsupported(why)
        nodes, counts = stage_nodes(self.stages, state)
        covered, slots = self._selection(nodes, params, len(w_leaves))
        flags = {
            st.index: st.stage.tensor_flags(params, None, len(w_leaves))
            for st in self.stages
            if st.is_per_tensor
        }
        tables = self._checked_tables(w_leaves, slots, covered, flags)
        grads = tables.check_grads(g_leaves)
        writes: list = []
        if self.hosts:  # computed and checked now, written around the launch
            writes, ctx = device_writes(self.hosts, state, params, g_leaves, ctx)
        carried = self.launch(tables, grads, counts, ctx, amp=amp, nodes=nodes, writes=writes)
        for index, values in carried.items():
            nodes[index].update(values)
        advance_counts(self.stages, nodes, counts)
        return state

    def _selection(self, nodes: list[dict], params: Any, n: int) -> tuple[list, list]:
        """Which tensors each stage covers, and for each slot row the slot tensor of
        each parameter (None where a masked stage does not cover it)."""
        covered_by_stage, rows = [], []
        for st, node in zip(self.stages, nodes):
            if st.mask is None:
                covered = [True] * n
            else:
                covered = mask_flags(st.mask, params, None, f"masked {st.stage.name}: mask")
                if len(covered) != n:
                    raise ValueError(f"{st.stage.name}: mask has {len(covered)} leaves, params {n}")
            covered_by_stage.append(covered)
            for slot in st.stage.slots:
                leaves = iter(_tree.leaves(node[slot.name]))
                rows.append([next(leaves) if c else None for c in covered])
        for st, node in zip(self.stages, nodes):  # in the order of place_scales
            for k in st.scale_rows:
                rows.append(list(_tree.leaves(node[absmax_name(st.stage.slots[k].name)])))
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
            if st.is_reduction or st.is_axis_norm:
                continue
            if st.is_global:  # computed on the device from the carried state
                values += [0.0] * st.n_scalars
                continue
            for v in st.stage.scalars(count, ctx).values():
                if isinstance(v, bool) or type(v).__name__ == "bool_":
                    flags.add(len(values))
                values.append(float(v))
        return values, frozenset(flags)

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
            if st.is_reduction or st.is_axis_norm:
                continue
            if st.is_global:  # computed on the device from the carried state
                parts += [torch.zeros((), dtype=dtype, device=count.device)] * st.n_scalars
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
            if st.is_global:
                why = " that carries scalar state between steps" if st.stage.carried else ""
                return (
                    f"the stage {st.stage.name!r} is a global reduction{why}, which "
                    "device-only (captured) steps do not run yet"
                )
            try:
                if st.is_reduction or st.is_axis_norm:
                    resolve(st.stage.hyperparams, count, ctx or {})
                else:
                    self.device_scalars(count, ctx or {}, torch.float32)
            except Exception as error:  # any failure means: needs host values
                return (
                    f"the stage {st.stage.name!r} computes its per-step scalars from host "
                    f"values ({type(error).__name__}: {error})"
                )
        return None

    def launch(
        self,
        tables: _Tables,
        grads: list[int],
        counts: Any,
        ctx: dict,
        on_device: bool = False,
        amp: torch.Tensor | None = None,
        nodes: list[dict] | None = None,
        writes: list | None = None,
    ) -> dict:
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

        ``nodes``: each stage's node of the state tree, where a global reduction stage
        keeps its carried state. Returns the new carried state of each such stage (by
        stage index): 0-d float64 tensors on the device, for the caller to store.

        ``writes``: the host steps' values of this step (:mod:`.triton_host`), copied
        into their slots before or after the passes (kept where ``amp`` skips it).
        """
        skip = None if amp is None else amp[1]
        amp = tables.no_amp if amp is None else amp
        if on_device:
            flags = self._flags(ctx)
            scal = self.device_scalars(counts, ctx, tables.math)
            counts = [counts] * len(self.stages)
        else:
            values, flags = self._scalars(counts, ctx)
            # reusable unless a global reduction's pass writes its scalars into them
            scal = tables.scalars(values or [0.0], not any(st.is_global for st in self.stages))
        module = self._module(tables.row_dtypes, tables.math_name, flags)
        ptrs = tables.ptrs_with_grads(grads)
        tscal = tables.tscal
        write_device_values(writes or [], "before", skip)
        carried = {}
        for st, count in zip(self.stages, counts):
            if st.is_global:
                carried[st.index] = self._global_pass(
                    module, st, tables, ptrs, scal, amp, nodes, count, ctx
                )
            elif st.is_axis_norm:
                self._slice_factors(module, st, tables, ptrs, scal, amp, count, ctx)
            elif st.is_cautious:
                counts = self._sums(module, st, tables, ptrs, scal, amp)[:, 0]
                tscal[:, st.reduction_column] = self._cautious_factors(st, tables, counts)
            elif st.is_reduction:
                sums = (
                    self._sums(module, st, tables, ptrs, scal, amp)[:, 0]
                    if st.stage.per_tensor
                    else self._totals(module, st, tables, ptrs, scal, amp)[0]
                )
                tscal[:, st.reduction_column] = self._factors(st, sums, count, ctx).to(tscal.dtype)
            elif st.is_per_tensor:
                sums = self._sums(module, st, tables, ptrs, scal, amp)
                self._tensor_scalars(st, tables, sums, count, ctx)
        keys = self._stream_keys(tables, counts, on_device)
        self._run(module.step, tables, ptrs, scal, amp, *keys)
        write_device_values(writes or [], "after", skip)
        return carried

    def _stream_keys(self, tables: _Tables, counts: Any, on_device: bool) -> tuple:
        """The stochastic-rounding stream keys of this step, as the step kernel's
        extra argument (none when no row is rounded stochastically)."""
        n_rows = len(tables.row_dtypes)
        keys = None
        if not on_device:
            if tables.__dict__.get("no_stream_keys"):
                return ()  # no row of these tables rounds stochastically (seen once)
            keys = stream_key_table(
                self.stages, tables.row_dtypes, counts, (n_rows, tables.n_tensors)
            )
            tables.no_stream_keys = keys is None
        elif stochastic_rows(self.stages, tables.row_dtypes):
            raise ValueError("stochastic rounding needs host step counts (on_device=False)")
        if keys is None:
            return ()
        return (torch.from_numpy(keys.view(np.int32)).to(tables.device),)

    def _global_pass(self, module, st, tables: _Tables, ptrs, scal, amp, nodes, count, ctx):
        """A global reduction stage, on the device: its ``prepare`` and ``combine``
        bound to torch operations on the carried state (0-d float64 tensors; no state
        node needed without one), its scalars written into the scalar vector around
        the reduction pass. Returns the new carried state."""
        stage = st.stage
        fns = self._factor_fns.get(st.index)
        if fns is None:
            ns = namespace_of(tables.tscal)
            fns = self._factor_fns[st.index] = (
                element_for(stage.prepare, ns),
                element_for(stage.combine, ns),
            )
        prepare, combine = fns
        device = tables.device
        if nodes is None and stage.carried:
            raise ValueError(f"{stage.name}: a global reduction stage needs the state nodes")
        carried = stage.carried_of(nodes[st.index] if stage.carried else {})
        carried = {
            k: torch.as_tensor(v, dtype=torch.float64).to(device) for k, v in carried.items()
        }
        h = stage.step_values(carried, count, ctx)
        prepared = prepare(h, count)
        start = st.scalar_offset
        if prepared:
            scal[start : start + len(prepared)] = _stacked(prepared.values(), scal)
        sums = self._totals(module, st, tables, ptrs, scal, amp)
        new_carried, reduced = combine(tuple(sums[t] for t in range(sums.shape[0])), h, prepared)
        start += len(prepared)
        if reduced:
            scal[start : start + len(reduced)] = _stacked(reduced.values(), scal)
        return {
            k: torch.as_tensor(v, dtype=torch.float64, device=device)
            for k, v in new_carried.items()
        }

    def _run(self, kernel, tables: _Tables, ptrs, scal, amp, *extra) -> None:
        """One launch of ``kernel``: a program per chunk."""
        kernel[(tables.n_chunks,)](
            tables.chunks, ptrs, scal, tables.tscal, tables.tmask, amp, tables.n_tensors,
            tables.n_factor_columns, *extra, *tables.q8_args, BLOCK=self.block,
            ITERS=self.iters, num_warps=self.num_warps, enable_fp_fusion=False,
        )  # fmt: skip

    def _sums(self, module, st, tables: _Tables, ptrs, scal, amp) -> torch.Tensor:
        """The reduction pass of stage ``st``: float64 sums of squares per tensor, one
        column per array the stage reduces (``x`` for a norm stage, each array of its
        ``norms`` for a per-tensor reduction)."""
        terms = self.terms.get(st.index, 1)
        acc = self._chunk_sums(module, st, tables, ptrs, scal, amp)
        sums = torch.zeros((tables.n_tensors, terms), dtype=torch.float64, device=tables.device)
        return sums.index_add_(0, tables.chunk_tensor, acc.view(tables.n_chunks, terms))

    def _chunk_sums(self, module, st, tables: _Tables, ptrs, scal, amp) -> torch.Tensor:
        """The reduction pass of ``st``: each chunk's float64 sums (``terms`` a chunk,
        flat) in a buffer the tables keep (rewritten each step, in stream order)."""
        terms = self.terms.get(st.index, 1)
        acc = tables.buffers.get(st.index)
        if acc is None:
            acc = torch.empty(tables.n_chunks * terms, dtype=torch.float64, device=tables.device)
            tables.buffers[st.index] = acc
        self._run(getattr(module, f"reduce{st.index}"), tables, ptrs, scal, amp, acc)
        return acc

    def _totals(self, module, st, tables: _Tables, ptrs, scal, amp) -> torch.Tensor:
        """The reduction pass of ``st`` summed over all tensors, one total per term (the
        chunks' sums added on the device: a global norm needs no per-tensor sums)."""
        acc = self._chunk_sums(module, st, tables, ptrs, scal, amp)
        return acc.view(tables.n_chunks, self.terms.get(st.index, 1)).sum(dim=0)

    def _slice_factors(self, module, st, tables: _Tables, ptrs, scal, amp, count, ctx) -> None:
        """A norm over axes: the reduction pass sums squares per slice (float64); the
        stage's factor function, bound to torch, turns the norms into factors."""
        sums, factors = tables.segments[st.index]
        sums.zero_()
        self._run(getattr(module, f"reduce{st.index}"), tables, ptrs, scal, amp, sums)
        fn = self._factor_fns.get(st.index)
        if fn is None:
            fn = self._factor_fns[st.index] = element_for(st.stage.factor, namespace_of(sums))
        h = resolve(st.stage.hyperparams, count, ctx)
        factors.copy_(fn(sums.sqrt(), h))

    def _tensor_scalars(self, st, tables: _Tables, sums: torch.Tensor, count: Any, ctx: dict):
        """A per-tensor reduction's scalars, on the device: the stage's own ``combine``
        bound to torch operations, once per group of tensors with the same mask
        flags, written into the stage's columns of the factor table."""
        stage = st.stage
        fn = self._factor_fns.get(st.index)
        if fn is None:
            fn = self._factor_fns[st.index] = element_for(stage.combine, namespace_of(sums))
        h = resolve(stage.hyperparams, count, ctx)
        tscal = tables.tscal
        if stage.sized:  # each tensor's size follows its sums
            sizes = torch.tensor([w.numel() for w in tables.ws], dtype=sums.dtype)
            sums = torch.cat([sums, sizes.to(sums.device)[:, None]], dim=1)
        if stage.totals:  # then their totals over every tensor
            sums = torch.cat([sums, sums.sum(dim=0, keepdim=True).expand_as(sums)], dim=1)
        for flags, idx in tables.flag_groups[st.index]:
            chosen = sums.index_select(0, idx)
            values = fn(tuple(chosen[:, t] for t in range(chosen.shape[1])), flags, h)
            for k, name in enumerate(stage.tensor_scalars):
                value = values[name]
                if not isinstance(value, torch.Tensor):
                    value = torch.full((), float(value), dtype=tscal.dtype, device=tscal.device)
                column = tscal[:, st.reduction_column + k]
                column.index_copy_(0, idx, value.to(tscal.dtype).expand(idx.shape[0]))

    def _cautious_factors(self, st, tables: _Tables, counts: torch.Tensor) -> torch.Tensor:
        """A cautious end's factor per tensor, on the device, from the number of
        elements its mask keeps (in the math dtype, as the eager engine counts)."""
        like = tables.tscal
        sizes = [w.numel() for w in tables.ws]
        factors = st.stage.factors_of_counts(list(counts), sizes, namespace_of(like), like)
        return torch.stack([torch.as_tensor(f, dtype=like.dtype) for f in factors])

    def _factors(self, st, sums: torch.Tensor, count: int, ctx: dict) -> torch.Tensor:
        """Each tensor's factor from the sums of squares, on the device: the stage's
        own factor function with its operations bound to torch."""
        stage = st.stage
        fn = self._factor_fns.get(st.index)
        if fn is None:
            fn = self._factor_fns[st.index] = element_for(stage.factor, namespace_of(sums))
        h = resolve(stage.hyperparams, count, ctx)
        return fn(sums.sqrt(), h)  # per tensor, or the one global total (broadcast)

    def compile_for(
        self, dtype: torch.dtype = torch.float32, arch: int = 90, mixed8: bool = False
    ) -> dict[str, str]:
        """Every kernel's PTX for CUDA capability ``arch``, without a GPU (triton_aot)."""
        from .triton_aot import compile_for

        return compile_for(self, dtype, arch, mixed8)


def _stacked(values: Any, like: torch.Tensor) -> torch.Tensor:
    """Scalars (numbers or 0-d tensors) as one tensor of ``like``'s dtype and device."""
    return torch.stack(
        [torch.as_tensor(v).to(dtype=like.dtype, device=like.device).reshape(()) for v in values]
    )
