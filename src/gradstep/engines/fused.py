"""The fused engine: a whole chain of elementwise stages as ONE compiled loop.

For a chain such as ``clip -> weight decay -> adam -> learning rate`` the engine
generates one numba kernel that, for every element, reads the gradient, the
parameter and each state slot once, runs every stage's element function in order,
and writes the new slots and the new parameter once: no temporaries, one pass over
memory. The element functions are the very functions the eager engine runs; their
source is copied into the generated module with the element operations bound to
scalar versions (:mod:`gradstep.engines._scalar_ops`), so no stage's math is
written twice.

- **Many tensors per call**: the kernel walks a table of chunks ``(tensor, byte
  offset, length)`` over all tensors, with a parallel loop over chunks; tensors are
  addressed through a table of raw data pointers, so 5000 small tensors cost one
  call, not 5000.
- **Reductions** (norm clipping) run as their own pass: a kernel that recomputes the
  stages before the reduction (they are pure) and sums squares per chunk; the sums
  become scalars of the main pass. A global reduction stage (Prodigy's distance
  estimate) sums its ``terms`` per chunk the same way; its ``combine`` turns the
  totals into the scalars of the main pass and the stage's new scalar state. When
  the main pass takes none of those scalars (D-Adaptation's Adam and AdaGrad: the
  new estimate serves the next step), the main pass sums the terms itself, in the
  same order, and ``combine`` runs after it: one pass over memory. A
  per-tensor reduction stage (LAMB's and LARS's trust ratios, NovoGrad) sums the
  squares of its ``norms`` per chunk; the totals of each tensor become, through the
  stage's own ``combine``, that tensor's scalars of the main pass
  (:mod:`gradstep.engines.fused_passes`).
- **Precision**: each row of the pointer table (gradient, parameter, each slot) has
  its storage dtype, float16, bfloat16, float32 or float64, and the kernel is
  generated for that combination (:mod:`gradstep._core.precision`): values are
  converted once when loaded, the math runs in float32 (float64 for float64
  parameters), and each result is rounded to its storage dtype when stored.
  float16 and bfloat16 travel as uint16 bit patterns converted inside the kernel
  (:mod:`gradstep.engines._scalar_ops`). Every scalar is handed to the kernel in
  the math dtype. An 8-bit blockwise slot (:mod:`gradstep._core.blockwise8`) takes
  two rows, its uint8 codes and its float32 block scales (placed after every other
  row, :func:`~gradstep.engines.plan.place_scales`).
- **Host steps** (:mod:`gradstep.engines.fused_host`): a fused form may carry array
  code run around the launch on the slot arrays (Sophia's fold of its Hessian
  estimate, the code of its own update), computed before anything is written and
  stored once every check has passed.
- **Compile once**: kernels are written to a cache folder as modules named by the
  hash of their source and compiled with numba's on-disk cache, so a second process
  loads them instead of compiling.

The engine updates parameters and slots *in place*; it serves the stateful fronts.
The eager engine (each transform's own ``update``) stays the reference.
"""

from __future__ import annotations

import operator
from ctypes import addressof as _addressof
from ctypes import c_char
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.blockwise8 import BLOCK, BLOCKWISE8, MIXED_PREFIX, absmax_name, is_codes, n_blocks
from .._core.combine import mask_flags
from .._core.fused_form import refusal
from .._core.memory_order import order_free
from .._core.transform import Transform
from . import array_table
from .fused_codegen import CHUNK, VIEW_TYPES, generate_source, math_dtype
from .fused_host import host_writes, write_host_values
from .fused_passes import _LaunchError, reductions
from .fused_passes import step as step_pass
from .kernel_cache import KernelCacheError, cache_dir, load_kernels, reload_kernels
from .plan import (
    Stage,
    Unsupported,
    advance_counts,
    flatten_stages,
    place_scales,
    place_stages,
    stage_nodes,
    stream_key_table,
)

# -- running ------------------------------------------------------------------------


class FusedEngine:
    """Runs one transform over a fixed parameter list, in place.

    Raises :class:`NotFusable` at construction when the transform has a stage that
    is not elementwise (or a norm, per-tensor or global reduction).
    """

    def __init__(self, transform: Transform):
        self.transform = transform
        self.forms: list = []  # fused forms in place of their transforms: shapes refused
        self.hosts: list = []  # (form, state path): host steps around the launch
        self.stages = flatten_stages(transform, per_tensor=True, forms=self.forms, hosts=self.hosts)
        # scal[0] is the dtype witness
        self.n_rows, self.n_scalars, self.n_factors = place_stages(self.stages, first_scalar=1)
        self.n_rows = place_scales(self.stages, self.n_rows)
        # the kernels of float32 arrays; other storage dtypes get their own
        self._float32_rows = ("float32",) * self.n_rows
        for st in self.stages:
            for k in st.scale_rows:  # 8-bit codes, whatever the parameters' dtype
                row = st.slot_rows[k]
                self._float32_rows = (
                    self._float32_rows[:row] + ("blockwise8",) + self._float32_rows[row + 1 :]
                )
        self.source = generate_source(self.stages, list(self._float32_rows))
        self._sources: dict[tuple[str, ...], str] = {self._float32_rows: self.source}
        self._modules: dict[tuple[str, ...], Any] = {}
        self._layout_cache: dict | None = None
        self._broken: str | None = None  # why kernels cannot be built here
        # parameters laid out in another order (Fortran, transposed views) run as the
        # flat block of their memory, their gradients and slots laid out alike
        self._order_free = not self.forms and order_free(transform)

    def refusal(self, shapes: list[tuple[int, ...]], dtype: Any = None) -> str | None:
        """Why tensors of ``shapes`` (and of ``dtype``) cannot be stepped here (a fused
        form that does not cover one of them), or None."""
        itemsize = None if dtype is None else np.dtype(dtype).itemsize
        return refusal(self.forms, shapes, itemsize)

    @property
    def kernels(self):
        """The kernels of float32 parameters, gradients and state."""
        return self.kernels_for(self._float32_rows)

    def source_for(self, rows: tuple[str, ...]) -> str:
        """The kernel module's source for pointer-table rows of the storage dtypes
        ``rows`` (gradient, parameter, each slot)."""
        source = self._sources.get(rows)
        if source is None:
            source = self._sources[rows] = generate_source(self.stages, list(rows))
        return source

    def kernels_for(self, rows: tuple[str, ...]):
        module = self._modules.get(rows)
        if module is None:
            module = self._modules[rows] = load_kernels(self.source_for(rows))
        return module

    def __getstate__(self) -> dict:
        # compiled modules and raw pointers belong to this process and these arrays:
        # a copy rebuilds them lazily for its own arrays
        state = dict(self.__dict__)
        state["_modules"] = {}
        state["_layout_cache"] = None
        return state

    def step(self, params: Any, grads: Any, state: dict, ctx: dict) -> dict:
        """Update ``params`` and the slots of ``state`` in place; return the state with
        its step counts advanced. Raises :class:`Unsupported` (changing nothing) for
        arrays it cannot run."""
        w_leaves, td = _tree.flatten(params)
        return self.step_leaves(w_leaves, _tree.leaves_like(td, grads), params, state, ctx)

    def step_leaves(
        self, w_leaves: list, g_leaves: list, params: Any, state: dict, ctx: dict
    ) -> dict:
        """:meth:`step` on already flattened parameters and gradients; ``params`` is
        the tree, for masks that are functions of it.

        Every array the kernel reads or writes (parameters, gradients, each state slot)
        is checked this step, before anything is written: its type, dtype, shape,
        contiguity, writeability, and its current address goes into the pointer table.
        """
        if self._broken is not None:
            raise Unsupported(self._broken)
        if not w_leaves:
            return state
        layout = self._layout(w_leaves, params)
        ptrs = layout["ptrs"]
        ptrs[1] = _pointers(w_leaves, layout, "parameter", dtype=layout["dtype"])
        ptrs[0] = _pointers(g_leaves, layout, "gradient")  # of its parameter's dtype
        nodes, counts = stage_nodes(self.stages, state)
        self._slot_pointers(layout, nodes)
        writes: list = []
        if self.hosts:  # computed and checked now, written around the launch
            writes, ctx = host_writes(self.hosts, state, params, g_leaves, ctx)
        carried = self._run(layout, nodes, counts, ctx, writes)
        for st, values in carried.items():
            node = nodes[st]
            node.update({k: np.asarray(v, np.asarray(node[k]).dtype) for k, v in values.items()})
        advance_counts(self.stages, nodes, counts)
        return state

    def _selection(self, st: Stage, params: Any, n: int) -> list[int | None]:
        """For each tensor, its index among the stage's slot leaves (None: not covered)."""
        if st.mask is None:
            return list(range(n))
        flags = mask_flags(st.mask, params, None, f"masked {st.stage.name}: mask")
        out, k = [], 0
        for flag in flags:
            out.append(k if flag else None)
            k += flag
        return out

    def _run(self, layout: dict, nodes: list[dict], counts: list[int], ctx: dict, writes) -> dict:
        """Launch the passes (with the host steps' ``writes`` around them); return the
        new carried state of each global reduction stage (by stage index), for the
        caller to store once the step is done."""
        dtype = np.dtype(math_dtype(layout["rows"][1]))
        n_tensors = len(layout["w"])
        scal = np.zeros(self.n_scalars, dtype)
        tscal = np.zeros((n_tensors, max(self.n_factors, 1)), dtype)
        steps = {}  # global reduction stages: (h, prepare scalars) of this step
        for st, node, count in zip(self.stages, nodes, counts):
            if st.is_global:
                carried = {k: np.float64(v) for k, v in st.stage.carried_of(node).items()}
                steps[st.index] = st.stage.step_scalars(carried, count, ctx)
                values = list(steps[st.index][1].values())
            elif not st.is_reduction:
                values = list(st.stage.scalars(count, ctx).values())
            else:
                continue
            scal[st.scalar_offset : st.scalar_offset + len(values)] = values
        try:
            return self._launch_all(layout, counts, ctx, scal, tscal, steps, writes)
        except _LaunchError as error:
            # compiled kernels fail only while loading or compiling, before they touch
            # memory: rebuild the module away from the shared cache, once
            try:
                rows = tuple(layout["rows"])
                self._modules[rows] = reload_kernels(self.source_for(rows), error.__cause__)
                return self._launch_all(layout, counts, ctx, scal, tscal, steps, writes)
            except (KernelCacheError, _LaunchError) as failure:
                cause = failure.__cause__ if isinstance(failure, _LaunchError) else failure
                if not isinstance(cause, (KernelCacheError, OSError)):
                    raise cause from None  # not the cache's fault: a real error
                self._broken = f"the kernel cache {cache_dir()} is unusable: {cause}"
                raise Unsupported(self._broken) from None

    def _launch_all(self, layout, counts, ctx, scal, tscal, steps, writes) -> dict:
        ptrs, tmask = layout["ptrs"], layout["tmask"]
        keys = stream_key_table(self.stages, layout["rows"], counts, ptrs.shape)
        try:
            kernels = self.kernels_for(tuple(layout["rows"]))
        except Exception as error:
            raise _LaunchError from error
        # the kernels are loaded: nothing can refuse the step any more (a retry after a
        # failed launch writes the same values again)
        write_host_values(writes, "before")
        tmask = (tmask, keys) if keys is not None else (tmask,)
        carried = reductions(self.stages, kernels, layout, counts, ctx, scal, tscal, steps, tmask)
        carried.update(step_pass(self.stages, kernels, layout, scal, tscal, steps, tmask))
        write_host_values(writes, "after")
        return carried

    def _layout(self, ws: list, params: Any) -> dict:
        """Chunk table and masks, rebuilt when the parameters change (the layout holds
        them, so they stay alive; their addresses are checked every step)."""
        layout = self._layout_cache
        if layout is not None and _same_objects(layout["w"], ws):
            return layout
        dtype = ws[0].dtype
        for w in ws:
            if not isinstance(w, np.ndarray) or w.dtype != dtype:
                raise Unsupported("parameters of mixed types or dtypes")
        why = self.refusal([w.shape for w in ws], dtype) if self.forms else None
        if why is not None:
            raise Unsupported(why)
        name = _storage_name(dtype)
        rows = []
        for j, w in enumerate(ws):
            for start in range(0, w.size, CHUNK):
                rows.append((j, start, min(CHUNK, w.size - start)))
        layout = {
            "w": list(ws),
            "dtype": dtype,
            # each row's storage dtype (slots: set every step; 8-bit block scales: float32)
            "rows": [name] * self.n_rows,
            "shapes": [w.shape for w in ws],
            "order_free": self._order_free,
            # whether this step's parameters are all in C order (set by their checks)
            "c_order": True,
            "table": array_table.ShapeTable([w.shape for w in ws]),
            "chunks": np.array(rows, np.int64).reshape(-1, 3),
            "ptrs": np.zeros((self.n_rows, len(ws)), np.int64),
            "selected": [self._selection(st, params, len(ws)) for st in self.stages],
            # per-tensor reduction stages: each tensor's mask flags
            "flags": {
                st.index: st.stage.tensor_flags(params, None, len(ws))
                for st in self.stages
                if st.is_per_tensor
            },
            # a row per stage: whether its mask covers each tensor; then whether each
            # tensor's 8-bit slots hold codes (below min_8bit_size: float values)
            "tmask": np.ones((len(self.stages) + 1, len(ws)), np.uint8),
        }
        for st, sel in zip(self.stages, layout["selected"]):
            layout["tmask"][st.index] = [k is not None for k in sel]
        self._layout_cache = layout
        return layout

    def _slot_pointers(self, layout, nodes) -> None:
        """Pointers to the slot arrays as they are now (a slot replaced in the state
        is picked up; one that does not fit its parameter is refused)."""
        row = 2
        quantised = None  # per tensor, shared by every 8-bit slot
        for st, node, sel in zip(self.stages, nodes, layout["selected"]):
            for k, slot in enumerate(st.stage.slots):
                if k in st.scale_rows:
                    quantised = _blockwise8_pointers(st, k, node, layout, quantised)
                    row += 1
                    continue
                leaves = _tree.leaves(node[slot.name])
                dtype = _row_dtype(leaves, f"state slot {slot.name}") if leaves else layout["dtype"]
                layout["rows"][row] = _storage_name(dtype)
                if st.mask is None:
                    arrays, shapes = leaves, layout["shapes"]
                    if len(arrays) != len(shapes):
                        raise ValueError(
                            f"state slot {'/'.join(st.state_path + (slot.name,))} has "
                            f"{len(arrays)} arrays for {len(shapes)} parameters"
                        )
                    layout["ptrs"][row] = _pointers(
                        arrays, layout, "state slot", slot.name, dtype=dtype
                    )
                else:
                    covered = [k for k in sel if k is not None]
                    if len(leaves) != len(covered):
                        raise ValueError(
                            f"state slot {'/'.join(st.state_path + (slot.name,))} has "
                            f"{len(leaves)} arrays for {len(covered)} parameters"
                        )
                    pointers = [0] * len(sel)
                    for j, k in enumerate(sel):
                        if k is not None:
                            pointers[j] = _checked_pointer(
                                j, leaves[k], layout, "state slot", slot.name, dtype=dtype
                            )
                    layout["ptrs"][row] = pointers
                row += 1


_UINT8 = np.dtype(np.uint8)


def _blockwise8_pointers(
    st: Stage, k: int, node: dict, layout: dict, quantised: list[bool] | None
) -> list[bool]:
    """The rows of the 8-bit slot ``k`` of stage ``st``: for each tensor its uint8
    codes, shaped like the parameter, and its float32 block scales
    (``ceil(size / BLOCK)``), or, for a tensor below ``min_8bit_size``, its values in
    the math dtype and an empty scale array. Returns which tensors hold codes: every
    8-bit slot of the step must agree with ``quantised`` (the first one's), as
    the kernels test one flag per tensor."""
    slot = st.stage.slots[k]
    codes = _tree.leaves(node[slot.name])
    scales = _tree.leaves(node[absmax_name(slot.name)])
    row, n = st.slot_rows[k], len(layout["shapes"])
    for what, arrays in ((slot.name, codes), (absmax_name(slot.name), scales)):
        if len(arrays) != n:
            raise ValueError(f"state entry {what} has {len(arrays)} arrays for {n} parameters")
    flags = [is_codes(c) for c in codes]
    if quantised is not None and flags != quantised:
        raise Unsupported("8-bit slots of one tensor stored as codes and as floats")
    math = math_dtype(layout["rows"][1])
    kind = BLOCKWISE8 if all(flags) else MIXED_PREFIX + math if any(flags) else math
    layout["rows"][row], layout["rows"][st.scale_rows[k]] = kind, "float32"
    layout["tmask"][-1] = flags
    dtypes = [_UINT8 if q else np.dtype(math) for q in flags]
    if len(set(dtypes)) <= 1:  # one dtype: the fast checks
        layout["ptrs"][row] = _pointers(codes, layout, "state slot", slot.name, dtypes[0])
    else:
        layout["ptrs"][row] = [
            _checked_pointer(j, c, layout, "state slot", slot.name, dtype=d)
            for j, (c, d) in enumerate(zip(codes, dtypes))
        ]
    pointers = []
    for j, (a, w, q) in enumerate(zip(scales, layout["w"], flags)):
        label = f"state entry {absmax_name(slot.name)} {j}"
        if not isinstance(a, np.ndarray):
            raise Unsupported(f"{label} of type {type(a).__name__}")
        size = n_blocks(w.size) if q else 0
        if a.shape != (size,) or a.dtype != np.float32:
            raise ValueError(
                f"{label} has shape {a.shape} and dtype {a.dtype}; expected "
                f"({size},) and float32 (a scale per {BLOCK} elements of 8-bit codes)"
            )
        if not (a.flags.writeable and a.flags.c_contiguous and a.flags.aligned):
            raise Unsupported(f"{label} is not a writable contiguous array")
        pointers.append(_address(a) if q else 0)
    layout["ptrs"][st.scale_rows[k]] = pointers
    return flags


_from_buffer = c_char.from_buffer


def _same_objects(a: list, b: list) -> bool:
    return len(a) == len(b) and all(map(operator.is_, a, b))


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


_NAMES: dict = {}  # dtype -> its name (dtype.name is slow, and asked every step)


def _storage_name(dtype: np.dtype) -> str:
    """The storage dtype's name of arrays of ``dtype``, or :class:`Unsupported`."""
    name = _NAMES.get(dtype)
    if name is None:
        name = _NAMES[dtype] = dtype.name
    if name not in VIEW_TYPES or (name == "bfloat16" and dtype.itemsize != 2):
        raise Unsupported(
            f"dtype {dtype} (the fused engine runs float32, float64, float16 and bfloat16)"
        )
    return name


def _row_dtype(arrays: list, what: str) -> np.dtype:
    """The dtype every array of one pointer-table row must have: the first one's."""
    first = arrays[0]
    if not isinstance(first, np.ndarray):
        raise Unsupported(f"{what} 0 of type {type(first).__name__}")
    return first.dtype


def _pointers(
    arrays: list, layout: dict, what: str, slot: str = "", dtype: Any = None
) -> list[int]:
    """Data pointers of ``arrays``, the ``j``-th checked to be a writable C-contiguous
    array of ``dtype`` (default: the parameters') and the ``j``-th parameter's shape."""
    shapes = layout["shapes"]
    dtype = layout["dtype"] if dtype is None else dtype
    if len(arrays) != len(shapes):
        raise ValueError(f"{len(arrays)} {what}s for {len(shapes)} parameters")
    parameters = what == "parameter"
    if not (parameters or layout["c_order"]):  # each array laid out as its parameter
        return [_checked_pointer(j, a, layout, what, slot, dtype) for j, a in enumerate(arrays)]
    layout["c_order"] = True  # the parameters' row: the fast checks are of C order
    checked = array_table.pointers(arrays, layout["table"], dtype, writable=what != "gradient")
    if checked is not None:
        return checked
    try:
        # the fast path, all loops in C: a writable C-contiguous buffer of at least one
        # byte each (from_buffer), exactly ndarrays of the dtype and the shapes
        pointers = list(map(_addressof, map(_from_buffer, arrays)))
        if (
            list(map(_shape, arrays)) == shapes
            and set(map(type, arrays)) == _NDARRAY
            and set(map(_dtype, arrays)) == {dtype}
        ):
            return pointers
    except (TypeError, ValueError, BufferError):
        pass
    if parameters:
        layout["c_order"] = all(isinstance(w, np.ndarray) and w.flags.c_contiguous for w in arrays)
    return [_checked_pointer(j, a, layout, what, slot, dtype) for j, a in enumerate(arrays)]


_shape = operator.attrgetter("shape")
_dtype = operator.attrgetter("dtype")
_NDARRAY = {np.ndarray}


def _checked_pointer(
    j: int, a: Any, layout: dict, what: str = "gradient", slot: str = "", dtype: Any = None
) -> int:
    """The data pointer of array ``j``, or the reason it cannot be used."""
    label = f"{what} {slot + ' ' if slot else ''}{j}"
    dtype = layout["dtype"] if dtype is None else dtype
    if not isinstance(a, np.ndarray):
        raise Unsupported(f"{label} of type {type(a).__name__}")
    if a.shape != layout["shapes"][j]:
        raise ValueError(f"{label} has shape {a.shape}, its parameter {layout['shapes'][j]}")
    if a.dtype != dtype:
        others = "its parameter" if dtype == layout["dtype"] else "the other arrays of its slot"
        raise Unsupported(f"{label} has dtype {a.dtype}, {others} {dtype}")
    if what != "gradient" and not a.flags.writeable:
        raise Unsupported(f"{label} is read-only")
    w = layout["w"][j]
    if w.flags.c_contiguous or not layout["order_free"]:
        laid_out = a.flags.c_contiguous
    else:  # a parameter in another order of its axes: everything laid out as it
        laid_out = _laid_out_as(a, w)
    if not (laid_out and a.flags.aligned):
        raise Unsupported(f"{label} is not a contiguous array")
    return _address(a)


def _laid_out_as(a: np.ndarray, w: np.ndarray) -> bool:
    """``a`` has the strides of the parameter ``w`` (in elements: a slot may be stored
    in another dtype), which fills one block of memory in some order of its axes
    (Fortran order, a transposed view): the kernels walk both as the same flat
    block, element for element."""
    if [s // a.itemsize for s in a.strides] != [s // w.itemsize for s in w.strides]:
        return False
    if any(s % a.itemsize for s in a.strides):
        return False
    order = np.argsort(w.strides, kind="stable")[::-1]
    return bool(w.transpose(order).flags.c_contiguous)
