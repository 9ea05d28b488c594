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

import atexit
import contextlib
import hashlib
import operator
import os
import shutil
import sys
import tempfile
import threading
import types
from ctypes import addressof as _addressof
from ctypes import c_char
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.combine import Masked, _labels_for
from .._core.elementwise import Elementwise, NormScaled
from .._core.per_tensor import PerTensorReduction
from .._core.transform import Chain, Transform, walk
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

    @property
    def is_per_tensor(self) -> bool:
        """A stage whose element function also takes per-tensor scalars computed
        from sums of squares (LAMB's and LARS's trust ratios)."""
        return isinstance(self.stage, PerTensorReduction)


def flatten_stages(transform: Transform, per_tensor: bool = False) -> list[Stage]:
    """The elementwise stages of ``transform`` in order, or :class:`NotFusable`.

    Chains and one level of masks are compiled; any other transform is not.
    ``per_tensor``: the caller also runs per-tensor reduction stages (the Triton
    engine does; this engine does not)."""
    out: list[Stage] = []
    for visit in walk(transform):
        t = visit.transform
        masks = [p.mask for p in visit.parents if isinstance(p, Masked)]
        if len(masks) > 1:
            raise NotFusable("nested masks")
        mask = masks[0] if masks else None
        if isinstance(t, (Chain, Masked)):
            continue
        if isinstance(t, NormScaled):
            if mask is not None:
                raise NotFusable(f"masked reduction stage {t.name}")
            out.append(Stage(len(out), t, visit.path))
        elif type(t) is Elementwise:
            _check_element_function(t)
            out.append(Stage(len(out), t, visit.path, mask))
        elif per_tensor and type(t) is PerTensorReduction and mask is None:
            _check_element_function(t)
            _check_element_function(t, t.norms)
            out.append(Stage(len(out), t, visit.path))
        else:
            raise NotFusable(f"{type(t).__name__} {t.name!r} is not an elementwise stage")
    return out


def place_stages(stages: list[Stage], first_scalar: int = 0) -> tuple[int, int, int]:
    """Give each stage its rows of the pointer table (rows 0 and 1 are the gradient
    and the parameter), its place in the scalar vector and its columns of the
    per-tensor factor table; return the numbers of rows, scalars and columns."""
    row, offset, column = 2, first_scalar, 0
    for st in stages:
        st.slot_rows = list(range(row, row + len(st.stage.slots)))
        row += len(st.stage.slots)
        if st.is_reduction:
            st.reduction_column = column
            column += 1
            continue
        st.scalar_offset = offset
        offset += len(st.stage.scalar_names())
        if st.is_per_tensor:
            st.reduction_column = column
            column += len(st.stage.tensor_scalars)
    return row, offset, column


def _check_element_function(t: Elementwise, fn: Any = None) -> None:
    fn = t.element if fn is None else fn
    if not hasattr(fn, "__code__"):
        raise NotFusable(f"{t.name!r}: {fn!r} is not a plain function")
    code = fn.__code__
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
    """Import the kernel module for ``source`` (writing its file first if needed).

    The module's file lives in :func:`cache_dir`, named by the hash of its source, so
    compilers that cache next to the source (numba) find their work again in the next
    process. The file is written atomically and compared byte for byte with
    ``source``; an unreadable, truncated or foreign file is replaced. When the cache
    folder cannot be used (read-only, full disk, unusable compiler caches) the module
    is built in a folder private to this process instead (removed at exit); if that
    fails too, :class:`KernelCacheError` names the cache folder.
    """
    name = _module_name(source)
    module = sys.modules.get(name)
    if module is not None and getattr(module, _LOADED, False):
        return module
    with _LOAD_LOCK:  # one thread builds it; the others wait for the whole module
        module = sys.modules.get(name)
        if module is not None and getattr(module, _LOADED, False):
            return module
        try:
            return _import_from(cache_dir(), name, source)
        except Exception as error:  # the shared cache is unusable: build privately
            return _load_privately(name, source, error)


def reload_kernels(source: str, error: BaseException):
    """The kernel module for ``source`` rebuilt in this process's private folder,
    after using the shared copy failed with ``error`` (for example on unreadable
    compiler cache files, which are removed so the next process rebuilds them)."""
    name = _module_name(source)
    with _LOAD_LOCK:
        module = sys.modules.get(name)
        if module is not None and _is_private(module) and getattr(module, _LOADED, False):
            return module
        _remove_compiled(cache_dir(), name)
        return _load_privately(name, source, error)


_LOAD_LOCK = threading.RLock()
_LOADED = "__gradstep_loaded__"  # set once a kernel module has run to its end


class _LaunchError(Exception):
    """Loading, compiling or calling a kernel failed (the cause is attached)."""


class KernelCacheError(Exception):
    """Neither the kernel cache nor a private folder could build a kernel module."""


def _module_name(source: str) -> str:
    return f"gradstep_kernel_{hashlib.sha256(source.encode()).hexdigest()[:20]}"


def _load_privately(name: str, source: str, first: BaseException):
    try:
        return _import_from(_private_dir(), name, source)
    except Exception as error:
        if isinstance(error, OSError) or isinstance(first, OSError):
            raise KernelCacheError(
                f"the kernel cache {cache_dir()} cannot be used ({first}) and no private "
                f"folder could replace it ({error})"
            ) from error
        raise  # the same failure outside the cache: a real error, not the cache's


def _import_from(folder: Path, name: str, source: str):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    data = source.encode()
    try:
        current = path.read_bytes()
    except OSError:
        current = None
    if current != data:
        _write_atomically(path, data)
    # the module runs the source we hold (a file changed under us cannot inject
    # code); its functions name the real file, which compilers read and key on
    code = compile(source, str(path), "exec")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        if sys.modules.get(name) is module:
            del sys.modules[name]
        raise
    setattr(module, _LOADED, True)
    return module


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so
    readers see the old file or the new one, never a part; nothing is left behind
    on failure."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_compiled(folder: Path, name: str) -> None:
    """Remove compiler cache files of module ``name`` (best effort)."""
    with contextlib.suppress(OSError):
        for f in (folder / "__pycache__").glob(f"{name}.*"):
            with contextlib.suppress(OSError):
                f.unlink()


_PRIVATE_DIR: list[Path] = []


def _private_dir() -> Path:
    if not _PRIVATE_DIR:
        path = Path(tempfile.mkdtemp(prefix="gradstep-kernels-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _PRIVATE_DIR.append(path)
    return _PRIVATE_DIR[0]


def _is_private(module) -> bool:
    return bool(_PRIVATE_DIR) and Path(module.__file__).parent == _PRIVATE_DIR[0]


# -- launching: numba's workqueue threading layer is not thread-safe ------------------

_LAUNCH_LOCK = threading.Lock()
_THREADSAFE_LAYER: list[bool] = []  # known after the first parallel launch


def _launch(kernel, *args) -> None:
    """Call a parallel kernel; serialised across threads unless numba's threading
    layer is known to be thread-safe (tbb, omp): concurrent launches on the
    ``workqueue`` layer abort the process."""
    if _THREADSAFE_LAYER and _THREADSAFE_LAYER[0]:
        kernel(*args)
        return
    with _LAUNCH_LOCK:
        kernel(*args)
        if not _THREADSAFE_LAYER:
            import numba

            try:
                _THREADSAFE_LAYER.append(numba.threading_layer() in ("tbb", "omp"))
            except ValueError:  # no parallel region ran yet
                pass


# -- running ------------------------------------------------------------------------


class FusedEngine:
    """Runs one transform over a fixed parameter list, in place.

    Raises :class:`NotFusable` at construction when the transform has a stage that
    is not elementwise (or a norm reduction).
    """

    def __init__(self, transform: Transform):
        self.transform = transform
        self.stages = flatten_stages(transform)
        # scal[0] is the dtype witness
        self.n_rows, self.n_scalars, self.n_factors = place_stages(self.stages, first_scalar=1)
        self.source = generate_source(self.stages)
        self._kernels = None
        self._layout_cache: dict | None = None
        self._broken: str | None = None  # why kernels cannot be built here

    @property
    def kernels(self):
        if self._kernels is None:
            self._kernels = load_kernels(self.source)
        return self._kernels

    def __getstate__(self) -> dict:
        # compiled modules and raw pointers belong to this process and these arrays:
        # a copy rebuilds them lazily for its own arrays
        state = dict(self.__dict__)
        state["_kernels"] = None
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
        ptrs[1] = _pointers(w_leaves, layout, "parameter")
        ptrs[0] = _pointers(g_leaves, layout, "gradient")
        nodes = [_node(state, st.state_path) for st in self.stages]
        counts = [int(node["count"]) if "count" in node else 0 for node in nodes]
        self._slot_pointers(layout, nodes)
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
        scal = np.zeros(self.n_scalars, dtype)
        tscal = np.zeros((n_tensors, max(self.n_factors, 1)), dtype)
        for st, count in zip(self.stages, counts):
            if not st.is_reduction:
                values = list(st.stage.scalars(count, ctx).values())
                scal[st.scalar_offset : st.scalar_offset + len(values)] = values
        try:
            self._launch_all(layout, counts, ctx, scal, tscal)
        except _LaunchError as error:
            # compiled kernels fail only while loading or compiling, before they touch
            # memory: rebuild the module away from the shared cache, once
            try:
                self._kernels = reload_kernels(self.source, error.__cause__)
                self._launch_all(layout, counts, ctx, scal, tscal)
            except (KernelCacheError, _LaunchError) as failure:
                cause = failure.__cause__ if isinstance(failure, _LaunchError) else failure
                if not isinstance(cause, (KernelCacheError, OSError)):
                    raise cause from None  # not the cache's fault: a real error
                self._broken = f"the kernel cache {cache_dir()} is unusable: {cause}"
                raise Unsupported(self._broken) from None

    def _launch_all(self, layout, counts, ctx, scal, tscal) -> None:
        try:
            kernels = self.kernels
        except Exception as error:
            raise _LaunchError from error
        ptrs, chunks, tmask = layout["ptrs"], layout["chunks"], layout["tmask"]
        n_tensors = len(layout["w"])
        for st, count in zip(self.stages, counts):
            if st.is_reduction:
                acc = np.zeros(len(chunks), np.float64)
                reduce = getattr(kernels, f"reduce{st.index}")
                try:
                    _launch(reduce, chunks, ptrs, scal, tscal, tmask, acc)
                except Exception as error:
                    raise _LaunchError from error
                sums = np.bincount(chunks[:, 0], weights=acc, minlength=n_tensors)
                tscal[:, st.reduction_column] = st.stage.factors(list(sums), count, ctx)
        try:
            _launch(kernels.step, chunks, ptrs, scal, tscal, tmask)
        except Exception as error:
            raise _LaunchError from error

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
            if dtype not in SUPPORTED_DTYPES:
                raise Unsupported(f"dtype {dtype} (the fused engine runs float32 and float64)")
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
            "selected": [self._selection(st, params, len(ws)) for st in self.stages],
            "tmask": np.ones((len(self.stages), len(ws)), np.uint8),
        }
        for st, sel in zip(self.stages, layout["selected"]):
            layout["tmask"][st.index] = [k is not None for k in sel]
        self._layout_cache = layout
        return layout

    def _slot_pointers(self, layout, nodes) -> None:
        """Pointers to the slot arrays as they are now (a slot replaced in the state
        is picked up; one that does not fit its parameter is refused)."""
        row = 2
        for st, node, sel in zip(self.stages, nodes, layout["selected"]):
            for slot in st.stage.slots:
                leaves = _tree.leaves(node[slot.name])
                if st.mask is None:
                    arrays, shapes = leaves, layout["shapes"]
                    if len(arrays) != len(shapes):
                        raise ValueError(
                            f"state slot {'/'.join(st.state_path + (slot.name,))} has "
                            f"{len(arrays)} arrays for {len(shapes)} parameters"
                        )
                    layout["ptrs"][row] = _pointers(arrays, layout, "state slot", slot.name)
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
                                j, leaves[k], layout, "state slot", slot.name
                            )
                    layout["ptrs"][row] = pointers
                row += 1


_from_buffer = c_char.from_buffer


def _node(state: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        state = state[key]
    return state


def _same_objects(a: list, b: list) -> bool:
    return len(a) == len(b) and all(map(operator.is_, a, b))


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _pointers(arrays: list, layout: dict, what: str, slot: str = "") -> list[int]:
    """Data pointers of ``arrays``, the ``j``-th checked to be a writable C-contiguous
    array of the layout's dtype and the ``j``-th parameter's shape."""
    dtype, shapes = layout["dtype"], layout["shapes"]
    if len(arrays) != len(shapes):
        raise ValueError(f"{len(arrays)} {what}s for {len(shapes)} parameters")
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
    return [_checked_pointer(j, a, layout, what, slot) for j, a in enumerate(arrays)]


_shape = operator.attrgetter("shape")
_dtype = operator.attrgetter("dtype")
_NDARRAY = {np.ndarray}


def _checked_pointer(j: int, a: Any, layout: dict, what: str = "gradient", slot: str = "") -> int:
    """The data pointer of array ``j``, or the reason it cannot be used."""
    label = f"{what} {slot + ' ' if slot else ''}{j}"
    if not isinstance(a, np.ndarray):
        raise Unsupported(f"{label} of type {type(a).__name__}")
    if a.shape != layout["shapes"][j]:
        raise ValueError(f"{label} has shape {a.shape}, its parameter {layout['shapes'][j]}")
    if a.dtype != layout["dtype"]:
        raise Unsupported(f"{label} has dtype {a.dtype}, its parameter {layout['dtype']}")
    if what != "gradient" and not a.flags.writeable:
        raise Unsupported(f"{label} is read-only")
    if not (a.flags.c_contiguous and a.flags.aligned):
        raise Unsupported(f"{label} is not a contiguous array")
    return _address(a)
