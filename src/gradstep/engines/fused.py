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
  become scalars of the main pass.
- **Precision**: float32 and float64; every scalar is handed to the kernel in the
  arrays' dtype.
- **Compile once**: kernels are written to a cache folder as modules named by the
  hash of their source and compiled with numba's on-disk cache, so a second process
  loads them instead of compiling.

The engine updates parameters and slots *in place*; it serves the stateful fronts.
The eager engine (each transform's own ``update``) stays the reference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import operator
import os
import sys
import weakref
from ctypes import addressof as _addressof
from ctypes import c_char
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.combine import Masked, _labels_for
from .._core.elementwise import Elementwise, NormScaled
from .._core.transform import Chain, Transform
from .._core.xmath import HELPERS, OPERATIONS
from .element_source import SourceError, element_sources

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
CHUNK = 1 << 16  # elements per parallel work item


class NotFusable(Exception):
    """The transform contains something the fused engine cannot compile."""


class Unsupported(Exception):
    """These arrays cannot be updated by the fused engine (the reason is the message);
    nothing was changed."""


def cache_dir() -> Path:
    """Where generated kernels live: ``$GRADSTEP_CACHE_DIR`` or the user cache."""
    root = os.environ.get("GRADSTEP_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradstep" / "kernels"


# -- the plan: which stages, where their state lives ---------------------------------


@dataclass
class Stage:
    """One elementwise stage of the flattened chain."""

    index: int
    stage: Elementwise
    state_path: tuple[str, ...]
    mask: Any = None  # the Masked wrapper's mask, or None
    slot_rows: list[int] = field(default_factory=list)  # rows of the pointer table
    scalar_offset: int = 0  # position of its scalars in the scalar vector
    reduction_column: int = -1  # column of the per-tensor factor table

    @property
    def is_reduction(self) -> bool:
        return isinstance(self.stage, NormScaled)


def flatten_stages(transform: Transform) -> list[Stage]:
    """The elementwise stages of ``transform`` in order, or :class:`NotFusable`."""
    out: list[Stage] = []
    _collect(transform, (), None, out)
    return out


def _collect(t: Transform, path: tuple, mask: Any, out: list[Stage]) -> None:
    if isinstance(t, Chain):
        for name, stage in zip(t.stage_names, t.stages):
            _collect(stage, path + (name,), mask, out)
    elif isinstance(t, Masked):
        if mask is not None:
            raise NotFusable("nested masks")
        _collect(t.inner, path + ("inner",), t.mask, out)
    elif isinstance(t, NormScaled):
        if mask is not None:
            raise NotFusable(f"masked reduction stage {t.name}")
        out.append(Stage(len(out), t, path))
    elif type(t) is Elementwise:
        _check_element_function(t)
        out.append(Stage(len(out), t, path, mask))
    else:
        raise NotFusable(f"{type(t).__name__} {t.name!r} is not an elementwise stage")


def _check_element_function(t: Elementwise) -> None:
    code = t.element.__code__
    unknown = set(code.co_names) - set(OPERATIONS) - set(HELPERS)
    if unknown or code.co_freevars:
        raise NotFusable(
            f"element function of {t.name!r} uses names other than element operations: "
            f"{sorted(unknown | set(code.co_freevars))}"
        )


# -- code generation ----------------------------------------------------------------


def generate_source(stages: list[Stage]) -> str:
    """The Python source of the kernel module for ``stages``."""
    ops = ", ".join(OPERATIONS)
    lines = [
        '"""Generated by gradstep.engines.fused; do not edit."""',
        "import numpy as np",
        "from numba import carray, njit, prange",
        f"from gradstep.engines._scalar_ops import as_pointer, {ops}",
        "",
    ]
    try:
        sources = element_sources(stages)
    except SourceError as err:
        raise NotFusable(str(err)) from None
    for source in sources:
        lines.append("@njit(cache=True, error_model='numpy')")
        lines.append(source)
        lines.append("")
    lines += _kernel("step", stages, stages, write=True)
    for st in stages:
        if st.is_reduction:
            lines += _kernel(f"reduce{st.index}", stages[: st.index], stages, write=False)
    return "\n".join(lines) + "\n"


def _kernel(name: str, body: list[Stage], all_stages: list[Stage], write: bool) -> list[str]:
    """A parallel loop over chunks running ``body``.

    ``write``: store slots and ``w + u``; else accumulate ``sum(u**2)`` per chunk.
    """
    args = "chunks, ptrs, scal, tscal, tmask" + ("" if write else ", acc")
    src = ["@njit(parallel=True, cache=True, error_model='numpy')", f"def {name}({args}):"]
    src.append("    z = scal[0]")  # dtype witness
    for st in body:
        for k in range(len(st.stage.scalar_names()) if not st.is_reduction else 0):
            src.append(f"    c{st.index}_{k} = scal[{st.scalar_offset + k}]")
    src += [
        "    for c in prange(chunks.shape[0]):",
        "        j = chunks[c, 0]",
        "        off = chunks[c, 1]",
        "        n = chunks[c, 2]",
        "        g = carray(as_pointer(ptrs[0, j] + off, z), (n,))",
        "        w = carray(as_pointer(ptrs[1, j] + off, z), (n,))",
    ]
    for st in body:
        for k, row in enumerate(st.slot_rows):
            view = f"carray(as_pointer(ptrs[{row}, j] + off, z), (n,))"
            src.append(f"        a{st.index}_{k} = {view}")
        if st.mask is not None:
            src.append(f"        m{st.index} = tmask[{st.index}, j]")
        if st.is_reduction:
            src.append(f"        f{st.index} = tscal[j, {st.reduction_column}]")
    if not write:
        src.append("        total = 0.0")
    src += ["        for i in range(n):", "            x = g[i]", "            wi = w[i]"]
    for st in body:
        src += ["            " + line for line in _stage_lines(st, write)]
    if write:
        for st in body:
            if st.mask is None:
                for k in range(len(st.slot_rows)):
                    src.append(f"            a{st.index}_{k}[i] = s{st.index}_{k}")
        src.append("            w[i] = wi + x")
    else:
        src.append("            total += np.float64(x) * np.float64(x)")
        src.append("        acc[c] = total")
    return src + [""]


def _stage_lines(st: Stage, write: bool) -> list[str]:
    e = st.stage
    k = st.index
    slots = [f"s{k}_{i}" for i in range(len(e.slots))]
    if st.is_reduction:
        return [f"x = _e{k}(x, f{k})"]
    args = ["x"] + (["wi"] if e.uses_params else []) + slots
    args += [f"c{k}_{i}" for i in range(len(e.scalar_names()))]
    target = ", ".join(["x"] + slots)
    lines = [f"s{k}_{i} = a{k}_{i}[i]" for i in range(len(slots))]
    lines.append(f"{target} = _e{k}({', '.join(args)})")
    if e.clear_nan_slots:
        lines += [f"{s} = nan_to_zero({s})" for s in slots]
    if st.mask is None:
        return lines
    # a masked stage reads and writes its slots only for the tensors it covers
    body = lines + ([f"a{k}_{i}[i] = s{k}_{i}" for i in range(len(slots))] if write else [])
    return [f"if m{k}:"] + ["    " + line for line in body]


def load_kernels(source: str):
    """Import (writing it first if needed) the kernel module for ``source``."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    name = f"gradstep_kernel_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- running ------------------------------------------------------------------------


class FusedEngine:
    """Runs one transform over a fixed parameter list, in place.

    Raises :class:`NotFusable` at construction when the transform has a stage that
    is not elementwise (or a norm reduction).
    """

    def __init__(self, transform: Transform):
        self.transform = transform
        self.stages = flatten_stages(transform)
        row = 2
        offset = 1  # scal[0] is the dtype witness
        column = 0
        for st in self.stages:
            st.slot_rows = list(range(row, row + len(st.stage.slots)))
            row += len(st.stage.slots)
            if st.is_reduction:
                st.reduction_column = column
                column += 1
            else:
                st.scalar_offset = offset
                offset += len(st.stage.scalar_names())
        self.n_rows = row
        self.n_scalars = offset
        self.n_factors = column
        self.source = generate_source(self.stages)
        self._kernels = None
        self._layout_cache: dict | None = None

    @property
    def kernels(self):
        if self._kernels is None:
            self._kernels = load_kernels(self.source)
        return self._kernels

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
        the tree, for masks that are functions of it."""
        if not w_leaves:
            return state
        layout = self._layout(w_leaves, params)
        g_pointers = _grad_pointers(g_leaves, layout)
        nodes = [_node(state, st.state_path) for st in self.stages]
        counts = [int(node["count"]) if "count" in node else 0 for node in nodes]
        self._slot_pointers(layout, nodes)
        layout["ptrs"][0] = g_pointers
        self._run(layout, counts, ctx)
        for st, node, count in zip(self.stages, nodes, counts):
            if st.stage.counted:
                node["count"] = np.asarray(count + 1, dtype=np.int64)
        return state

    def _selection(self, st: Stage, params: Any, n: int) -> list[int | None]:
        """For each tensor, its index among the stage's slot leaves (None: not covered)."""
        if st.mask is None:
            return list(range(n))
        flags = _labels_for(st.mask, params, None)
        out, k = [], 0
        for flag in flags:
            out.append(k if flag else None)
            k += bool(flag)
        return out

    def _run(self, layout: dict, counts: list[int], ctx: dict) -> None:
        dtype = layout["dtype"]
        n_tensors = len(layout["w"])
        ptrs, chunks, tmask = layout["ptrs"], layout["chunks"], layout["tmask"]
        scal = np.zeros(self.n_scalars, dtype)
        tscal = np.zeros((n_tensors, max(self.n_factors, 1)), dtype)
        for st, count in zip(self.stages, counts):
            if not st.is_reduction:
                values = list(st.stage.scalars(count, ctx).values())
                scal[st.scalar_offset : st.scalar_offset + len(values)] = values
        for st, count in zip(self.stages, counts):
            if st.is_reduction:
                acc = np.zeros(len(chunks), np.float64)
                getattr(self.kernels, f"reduce{st.index}")(chunks, ptrs, scal, tscal, tmask, acc)
                sums = np.bincount(chunks[:, 0], weights=acc, minlength=n_tensors)
                tscal[:, st.reduction_column] = st.stage.factors(list(sums), count, ctx)
        self.kernels.step(chunks, ptrs, scal, tscal, tmask)

    def _layout(self, ws: list, params: Any) -> dict:
        """Chunk table, parameter pointers and masks, rebuilt when the parameters
        change."""
        layout = self._layout_cache
        if layout is not None and _same_objects(layout["w"], ws):
            return layout
        dtype = ws[0].dtype
        for w in ws:
            if not isinstance(w, np.ndarray) or w.dtype != dtype:
                raise Unsupported("parameters of mixed types or dtypes")
            if dtype not in SUPPORTED_DTYPES:
                raise Unsupported(f"dtype {dtype} (the fused engine runs float32 and float64)")
            if not (w.flags.c_contiguous and w.flags.aligned and w.flags.writeable):
                raise Unsupported("non-contiguous or read-only parameters")
        rows = []
        for j, w in enumerate(ws):
            for start in range(0, w.size, CHUNK):
                rows.append((j, start * dtype.itemsize, min(CHUNK, w.size - start)))
        layout = {
            "w": list(ws),
            "dtype": dtype,
            "shapes": [w.shape for w in ws],
            "chunks": np.array(rows, np.int64).reshape(-1, 3),
            "ptrs": np.zeros((self.n_rows, len(ws)), np.int64),
            "slots": None,
            "grads": None,
            "selected": [self._selection(st, params, len(ws)) for st in self.stages],
            "tmask": np.ones((len(self.stages), len(ws)), np.uint8),
        }
        for st, sel in zip(self.stages, layout["selected"]):
            layout["tmask"][st.index] = [k is not None for k in sel]
        layout["ptrs"][1] = [_address(w) for w in ws]
        self._layout_cache = layout
        return layout

    def _slot_pointers(self, layout, nodes) -> None:
        """Pointers to the slot arrays, refreshed when the state's containers change
        (the engine updates slots in place, so they normally stay the same)."""
        containers = [
            node[slot.name] for st, node in zip(self.stages, nodes) for slot in st.stage.slots
        ]
        if layout["slots"] is not None and _same_objects(layout["slots"], containers):
            return
        arrays = []
        for st, node, sel in zip(self.stages, nodes, layout["selected"]):
            for slot in st.stage.slots:
                leaves = _tree.leaves(node[slot.name])
                arrays.append([None if k is None else leaves[k] for k in sel])
        flat = [a for row in arrays for a in row]
        dtype = layout["dtype"]
        for a in flat:
            if a is not None and not (
                isinstance(a, np.ndarray)
                and a.dtype == dtype
                and a.flags.c_contiguous
                and a.flags.writeable
            ):
                raise Unsupported("state slots of another dtype, or not contiguous")
        for r, row in enumerate(arrays):
            layout["ptrs"][2 + r] = [0 if a is None else _address(a) for a in row]
        layout["slots"] = containers


_from_buffer = c_char.from_buffer


def _node(state: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        state = state[key]
    return state


def _same_objects(a: list, b: list) -> bool:
    return len(a) == len(b) and all(map(operator.is_, a, b))


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _grad_pointers(grads: list, layout: dict) -> np.ndarray:
    """Data pointers of the gradients, each checked against its parameter.

    Reused when the gradients are the same objects as last step (remembered through
    weak references, so old gradients are not kept alive).
    """
    cached = layout["grads"]
    if cached is not None:
        refs, pointers = cached
        if len(refs) == len(grads) and all(r() is g for r, g in zip(refs, grads)):
            return pointers
    dtype, shapes = layout["dtype"], layout["shapes"]
    fits = len(grads) == len(shapes) and all(
        type(g) is np.ndarray and g.dtype is dtype and g.shape == s for g, s in zip(grads, shapes)
    )
    try:
        if not fits:
            raise ValueError
        # a writable C-contiguous buffer of at least one byte: the fast path
        out = np.array([_addressof(_from_buffer(g)) for g in grads], np.int64)
    except (TypeError, ValueError):
        out = np.array([_checked_pointer(i, g, layout) for i, g in enumerate(grads)], np.int64)
    layout["grads"] = ([weakref.ref(g) for g in grads], out)
    return out


def _checked_pointer(i: int, g: Any, layout: dict) -> int:
    """The data pointer of gradient ``i``, or the reason it cannot be used."""
    if not isinstance(g, np.ndarray):
        raise Unsupported(f"gradients of type {type(g).__name__}")
    if g.shape != layout["shapes"][i]:
        raise ValueError(f"gradient {i} has shape {g.shape}, its parameter {layout['shapes'][i]}")
    if g.dtype != layout["dtype"] or not g.flags.c_contiguous:
        raise Unsupported(
            f"gradient {i} is not a contiguous array of its parameter's dtype "
            f"{layout['dtype']} (it is {g.dtype})"
        )
    return _address(g)
