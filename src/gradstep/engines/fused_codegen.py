"""Code generation for the fused engine: one numba kernel module per chain and dtypes.

The module holds every stage's element function (copied from its source, with the
element operations bound to :mod:`gradstep.engines._scalar_ops`), the main kernel
that runs the whole chain in one pass over a table of chunks, and one reduction
kernel per norm or global-reduction stage. Each row of the pointer table (gradient,
parameter, each slot) has its storage dtype; values are converted when loaded and
rounded when stored, and the arithmetic runs in :func:`math_dtype`. An 8-bit slot
(:mod:`gradstep._core.blockwise8`) has a row of uint8 codes and a row of float32
block scales; the main kernel then walks each chunk block by block, keeping the
block's new slot values in a small buffer until its scale is known. What each kernel
reads, runs and stores is planned in :mod:`~gradstep.engines.kernel_plan`, as for the
Triton engine; this module renders the plan as numba Python.

The chunk loop is numba's parallel ``prange`` when numba may run more than one
thread (:func:`parallel_kernels`); with one thread a parallel loop brings nothing
but compile time (about twice a plain loop's) and a launch through the threading
layer, so the kernels are then plain loops over the same chunks.
"""

from __future__ import annotations

import numpy as np

from .._core.blockwise8 import BLOCK, zero_code
from .._core.xmath import OPERATIONS
from . import kernel_plan as kp
from .element_source import SourceError
from .plan import NotFusable, Stage

#: storage dtypes the kernels read and write
SUPPORTED_DTYPES = tuple(np.dtype(n) for n in ("float32", "float64", "float16")) + ("bfloat16",)
CHUNK = 1 << 16  # elements per parallel work item
# 8-bit slots are quantised in blocks of BLOCK elements within a chunk: chunks start at
# multiples of BLOCK, so a chunk's first block is a tensor's block
assert CHUNK % BLOCK == 0

# how a generated kernel sees each storage dtype: the element type of its views
# (16-bit floats as their uint16 bits) and the bytes per element
VIEW_TYPES = {
    "float32": "np.float32",
    "float64": "np.float64",
    "float16": "np.uint16",
    "bfloat16": "np.uint16",
    "blockwise8": "np.uint8",  # codes; the block scales are a float32 row of their own
}
_SIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "blockwise8": 1}
_HALF = {"float16": "f16", "bfloat16": "bf16"}  # the _scalar_ops helpers of 16-bit bits


class _Rows:
    """Loads and stores of the pointer-table rows, as the plan's row kinds
    (:func:`~gradstep.engines.kernel_plan.row_kinds`) render in numba."""

    def __init__(self, stages: list[Stage], rows: list[str], math: str):
        self.dtypes, self.math = rows, math
        self.kinds = kp.row_kinds(stages, rows, math)

    def quantised(self, st: Stage, slot: int) -> bool:
        """Whether slot number ``slot`` of stage ``st`` is stored as 8-bit codes."""
        return self.kinds[st.slot_rows[slot]] == kp.QUANTISED

    def load(self, row: int, value: str) -> str:
        """``value`` (as row ``row`` stores it) in the math dtype."""
        dtype, math, kind = self.dtypes[row], self.math, self.kinds[row]
        if kind in (kp.HALF, kp.STOCHASTIC):
            value = f"{_HALF[dtype]}_load({value})"
            return value if math == "float32" else f"np.{math}({value})"
        return value if kind == kp.PLAIN else f"np.{math}({value})"

    def store(self, row: int, value: str) -> str:
        """``value`` (in the math dtype) as row ``row`` stores it."""
        dtype, math, kind = self.dtypes[row], self.math, self.kinds[row]
        if kind == kp.STOCHASTIC:  # with the row's stream key and the element's hash
            value = value if math == "float32" else f"np.float32({value})"
            return f"bf16_store_sr({value}, k{row}, hi)"
        if kind == kp.HALF:
            if math != "float32":
                # float64 math, as the eager engine rounds: NumPy's float16 once, ml_dtypes'
                # (and torch's) bfloat16 through float32
                value = f"to_odd32({value})" if dtype == "float16" else f"np.float32({value})"
            return f"{_HALF[dtype]}_store({value})"
        return value if kind == kp.PLAIN else f"np.{dtype}({value})"


def parallel_kernels() -> bool:
    """Whether kernels loop over chunks in parallel: when numba's thread pool has
    more than one thread (``NUMBA_NUM_THREADS``, read when numba starts)."""
    import numba

    return numba.config.NUMBA_NUM_THREADS > 1


def math_dtype(param_dtype: str) -> str:
    """The arithmetic dtype for parameters of ``param_dtype``: float32 or wider."""
    return "float64" if param_dtype == "float64" else "float32"


def generate_source(
    stages: list[Stage],
    row_dtypes: list[str] | None = None,
    math: str | None = None,
    parallel: bool | None = None,
) -> str:
    """The Python source of the kernel module for ``stages``, whose pointer-table
    rows hold arrays of ``row_dtypes`` (default: all float32), with arithmetic in
    ``math`` (default: :func:`math_dtype` of the parameters'), looping over chunks in
    parallel or not (default: :func:`parallel_kernels`)."""
    n_rows = 2 + sum(len(st.stage.slots) for st in stages)
    rows = list(row_dtypes or ["float32"] * n_rows)
    math = math or math_dtype(rows[1])
    loop = PARALLEL_LOOP if (parallel_kernels() if parallel is None else parallel) else PLAIN_LOOP
    ops = ", ".join(OPERATIONS)
    lines = [
        '"""Generated by gradstep.engines.fused; do not edit."""',
        "import numpy as np",
        "from numba import carray, njit, prange",
        f"from gradstep.engines._scalar_ops import as_pointer, {ops}",
        "from gradstep.engines._scalar_ops import bf16_load, bf16_store, f16_load, f16_store",
        "from gradstep.engines._scalar_ops import to_odd32",
    ]
    access = _Rows(stages, rows, math)
    if kp.STOCHASTIC in access.kinds:
        lines.append("from gradstep.engines._scalar_ops import bf16_store_sr, mix32")
    lines += [
        "",
    ]
    if "blockwise8" in rows:
        lines[-1:-1] = [
            "from gradstep._core.blockwise8 import MIN_SCALE, bucket_codes, dynamic_map",
            "from gradstep.engines._scalar_ops import q8_code",
            "Q8S = dynamic_map(True)",
            "Q8U = dynamic_map(False)",
            "Q8S_START = bucket_codes(True)",
            "Q8U_START = bucket_codes(False)",
            "Q8S_UP = np.append(Q8S, np.float32(np.inf))",
            "Q8U_UP = np.append(Q8U, np.float32(np.inf))",
        ]
    try:
        sources = kp.module_functions(stages)
    except SourceError as err:
        raise NotFusable(str(err)) from None
    for source in sources:
        # inlined into the kernels: one compilation unit per module, not one per stage
        lines.append("@njit(cache=True, error_model='numpy', inline='always')")
        lines.append(source)
        lines.append("")
    terms = {st.index: global_terms(st) for st in stages if st.is_global}
    for kernel in kp.kernels(stages, terms):
        lines += _kernel(kernel, kp.kernel_inputs(kernel, stages, rows), access, loop)
    return "\n".join(lines) + "\n"


PARALLEL_LOOP = ("@njit(parallel=True, cache=True, error_model='numpy')", "prange")
PLAIN_LOOP = ("@njit(cache=True, error_model='numpy')", "range")


def global_terms(st: Stage) -> int:
    """How many arrays a global reduction stage's ``terms`` returns (cached on the
    stage's plan entry: counting calls the function)."""
    if "n_terms" not in st.__dict__:
        st.__dict__["n_terms"] = st.stage.n_terms()
    return st.__dict__["n_terms"]


def _kernel(
    kernel: kp.Kernel, inputs: list[kp.Input], access: _Rows, loop: tuple[str, str]
) -> list[str]:
    """``kernel`` as a loop over chunks: ``loop`` is the decorator and the range
    (:data:`PARALLEL_LOOP` or :data:`PLAIN_LOOP`). A reduction kernel stores its
    totals in ``acc[chunk * terms + t]``; the rows stored with stochastic rounding
    take their stream keys from the extra argument ``keys``."""
    rows, write, terms = access.dtypes, kernel.write, kernel.terms
    stochastic = kp.STOCHASTIC in access.kinds
    args = "chunks, ptrs, scal, tscal, tmask" + (", keys" if stochastic else "")
    args += "" if write else ", acc"
    decorator, chunk_range = loop
    src = [decorator, f"def {kernel.name}({args}):"]
    for dtype in sorted(set(rows)):
        src.append(f"    z_{dtype} = {VIEW_TYPES[dtype]}(0)")  # element-type witnesses
    src += [f"    {i.name} = scal[{i.position}]" for i in inputs if i.table == "scalar"]
    src += [
        f"    for c in {chunk_range}(chunks.shape[0]):",
        "        j = chunks[c, 0]",
        "        off = chunks[c, 1]",
        "        n = chunks[c, 2]",
        f"        g = {_view(rows, 0)}",
        f"        w = {_view(rows, 1)}",
    ]
    src += [f"        {i.name} = {_input(i, rows)}" for i in inputs if i.table != "scalar"]
    if not write:
        src += [f"        total{t} = 0.0" for t in range(terms)]
    steps = kp.element_steps(kernel.body, write)
    # 8-bit slots: a block's new values go to a small buffer until the block's scale
    # is known, then are quantised and stored
    eight = [s for s in steps if isinstance(s, kp.StoreSlot) and access.quantised(s.stage, s.slot)]
    pad = "            " + ("    " if eight else "")
    src += _block_loop(eight) if eight else ["        for i in range(n):"]
    src += [f"{pad}x = {access.load(0, 'g[i]')}", f"{pad}wi = {access.load(1, 'w[i]')}"]
    if write and stochastic:  # the element's hashed index, shared by every rounded row
        src.append(f"{pad}hi = mix32(np.uint32(off + i))")
    if not write:
        steps += kp.reduction_steps(kernel)
    src += [pad + line for step in steps for line in _render(step, access)]
    src += [line for s in eight for line in _quantise(s)]
    if not write and kernel.target is None:
        src.append("        acc[c] = total0")
    elif not write:
        src += [f"        acc[c * {terms} + {t}] = total{t}" for t in range(terms)]
    return src + [""]


def _block_loop(eight: list[kp.StoreSlot]) -> list[str]:
    """The element loop as a loop over blocks (of the 8-bit slots ``eight``) and
    their elements."""
    lines = [f"        buf{s.stage.index}_{s.slot} = np.empty({BLOCK}, np.float32)" for s in eight]
    lines += [f"        for blk in range((n + {BLOCK - 1}) // {BLOCK}):"]
    lines += [f"            top{s.stage.index}_{s.slot} = np.float32(0)" for s in eight]
    return lines + [
        f"            start = blk * {BLOCK}",
        f"            stop = min(start + {BLOCK}, n)",
        "            for i in range(start, stop):",
    ]


def _quantise(s: kp.StoreSlot) -> list[str]:
    """After a block's elements: the block's scale of an 8-bit slot, and its codes."""
    k, i = s.stage.index, s.slot
    signed = not s.stage.stage.slots[i].nonnegative
    table = "Q8S" if signed else "Q8U"
    scale = f"b{k}_{i}[blk]"
    return [
        f"            {scale} = np.maximum(top{k}_{i}, MIN_SCALE)",
        "            for i in range(start, stop):",
        f"                a{k}_{i}[i] = q8_code("
        f"buf{k}_{i}[i - start] / {scale}, {table}_UP, {table}_START, {zero_code(signed)})",
    ]


def _view(rows: list[str], row: int) -> str:
    """The chunk's elements of row ``row``, as an array of its element type."""
    dtype = rows[row]
    return f"carray(as_pointer(ptrs[{row}, j] + off * {_SIZE[dtype]}, z_{dtype}), (n,))"


def _input(i: kp.Input, rows: list[str]) -> str:
    if i.table == "key":
        return f"keys[{i.position}, j]"
    if i.table == "slot":
        return _view(rows, i.position)
    if i.table == "scales":  # the chunk's block scales: chunks start at multiples of BLOCK
        return (
            f"carray(as_pointer(ptrs[{i.position}, j] + (off // {BLOCK})"
            f" * 4, z_float32), ((n + {BLOCK - 1}) // {BLOCK},))"
        )
    if i.table == "mask":
        return f"tmask[{i.position}, j]"
    return f"tscal[j, {i.position}]"


def _render(step, access: _Rows) -> list[str]:
    """The numba lines of one step of :func:`~gradstep.engines.kernel_plan.element_steps`."""
    if isinstance(step, kp.Let):
        return [f"{step.name} = {step.value}"]
    if isinstance(step, kp.LoadSlot):
        return [f"s{step.stage.index}_{step.slot} = {_slot_load(step.stage, step.slot, access)}"]
    if isinstance(step, kp.StoreSlot):
        k, i = step.stage.index, step.slot
        if access.quantised(step.stage, i):  # to the block's buffer, quantised after it
            v, top = f"np.float32(s{k}_{i})", f"top{k}_{i}"
            return [f"buf{k}_{i}[i - start] = {v}", f"{top} = np.maximum({top}, abs({v}))"]
        return [f"a{k}_{i}[i] = {access.store(step.stage.slot_rows[i], f's{k}_{i}')}"]
    if isinstance(step, kp.Convert):
        convert = access.store if step.to_storage else access.load
        return [f"{step.name} = {convert(step.row, step.value)}"]
    if isinstance(step, kp.StoreParam):
        return [f"w[i] = {step.value if step.rounded else access.store(1, step.value)}"]
    if isinstance(step, kp.IfCovered):
        inner = [line for s in step.steps for line in _render(s, access)]
        return [f"if m{step.stage}:"] + ["    " + line for line in inner]
    if step.how == "positive":
        return [f"total0 += 1.0 if {step.values[0]} > 0 else 0.0"]
    if step.how == "sums":
        return [f"total{t} += np.float64({v})" for t, v in enumerate(step.values)]
    return [f"total{t} += np.float64({v}) * np.float64({v})" for t, v in enumerate(step.values)]


def _slot_load(st: Stage, slot: int, access: _Rows) -> str:
    """The value of slot number ``slot`` of stage ``st`` at the kernel's element ``i``,
    in the math dtype (an 8-bit slot: its code's map value times its block's scale)."""
    k, math = st.index, access.math
    if access.quantised(st, slot):
        table = "Q8U" if st.stage.slots[slot].nonnegative else "Q8S"
        value = f"{table}[a{k}_{slot}[i]] * b{k}_{slot}[i // {BLOCK}]"
        return value if math == "float32" else f"np.{math}({value})"
    return access.load(st.slot_rows[slot], f"a{k}_{slot}[i]")
