"""Code generation for the fused engine: one numba kernel module per chain and dtypes.

The module holds every stage's element function (copied from its source, with the
element operations bound to :mod:`gradstep.engines._scalar_ops`), the main kernel
that runs the whole chain in one pass over a table of chunks, and one reduction
kernel per norm, per-tensor or global reduction stage. Each row of the pointer table (gradient,
parameter, each slot) has its storage dtype; values are converted when loaded and
rounded when stored, and the arithmetic runs in :func:`math_dtype`. An 8-bit slot
(:mod:`gradstep._core.blockwise8`) has a row of uint8 codes and a row of float32
block scales; the main kernel then walks each chunk block by block in short loops the
compiler vectorises, keeping the block's slot values in a small buffer until its
new scale is known (:func:`~gradstep.engines.fused_blocks.block_loop`). A row whose tensors below
``min_8bit_size`` keep floats (storage ``"blockwise8|float32"``) gets both loops,
chosen per tensor. What each kernel
reads, runs and stores is planned in :mod:`~gradstep.engines.kernel_plan`, as for the
Triton engine; this module renders the plan as numba Python.

The chunk loop is numba's parallel ``prange`` when numba may run more than one
thread (:func:`parallel_kernels`); with one thread a parallel loop brings nothing
but compile time (about twice a plain loop's) and a launch through the threading
layer, so the kernels are then plain loops over the same chunks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .._core.blockwise8 import BLOCK, BLOCKWISE8
from .._core.xmath import OPERATIONS
from . import fused_lanes as lanes
from . import kernel_plan as kp
from ._gather_tuning import compiler_gathers
from .element_source import SourceError
from .fused_blocks import block_loop
from .plan import NotFusable, Stage

#: storage dtypes the kernels read and write
SUPPORTED_DTYPES = tuple(np.dtype(n) for n in ("float32", "float64", "float16")) + ("bfloat16",)
CHUNK = 1 << 16  # elements per parallel work item
# 8-bit slots are quantised in blocks of BLOCK elements within a chunk: chunks start at
# multiples of BLOCK, so a chunk's first block is a tensor's block
assert CHUNK % BLOCK == 0


def _helpers_fingerprint() -> str:
    """A hash of the modules whose compiled functions the kernels call.

    numba's on-disk cache checks only the generated module's own file, not the
    functions it calls from other modules: without this line in the source (and so in
    the module's name) a changed helper (the cube root, the 8-bit quantiser) would
    keep running its old compiled code from the kernel cache after an upgrade.
    """
    here = Path(__file__).parent
    digest = hashlib.sha256()
    helpers = ("_scalar_ops.py", "_scalar_exp.py", "_half_ops.py")
    for path in [here / name for name in helpers] + [here.parent / "_core" / "blockwise8.py"]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


#: see :func:`_helpers_fingerprint`
HELPERS_FINGERPRINT = _helpers_fingerprint()

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
_HALF = {"float16": "f16", "bfloat16": "bf16"}  # the _half_ops helpers of 16-bit bits


class _Rows:
    """Loads and stores of the pointer-table rows, as the plan's row kinds
    (:func:`~gradstep.engines.kernel_plan.row_kinds`) render in numba.

    ``mode`` says how an element loop reaches the 8-bit slots: ``"codes"`` (their
    codes times their block's scale), ``"block"`` (a loop over one block,
    :func:`~gradstep.engines.fused_blocks.block_loop`: an 8-bit slot's value in
    ``new{stage}_{slot}``, every row read through its block view ``{name}b`` and
    written to its block buffer ``{name}o``) or ``"float"`` (a tensor below
    ``min_8bit_size``: float values of the math dtype in ``a{stage}_{slot}f``)."""

    def __init__(self, stages: list[Stage], rows: list[str], math: str):
        self.dtypes, self.math = rows, math
        self.kinds = kp.row_kinds(stages, rows, math)
        self.n_stages = len(stages)
        self.mode = "codes"
        self.outlined = False  # rendering _outlined_elements' loop
        self.lanes = False  # rendering a reduction kernel in blocks (fused_lanes)

    def quantised(self, st: Stage, slot: int) -> bool:
        """Whether slot number ``slot`` of stage ``st`` may be stored as 8-bit codes."""
        return self.kinds[st.slot_rows[slot]] in (kp.QUANTISED, kp.MIXED8)

    def itemsize(self, row: int) -> int:
        """Bytes per element of row ``row`` (a mixed 8-bit row: of its codes)."""
        return _SIZE[self.dtypes[row].split("|")[0]]

    def view(self, name: str) -> str:
        """The array of the loop's elements for the chunk's view ``name``."""
        return name + "b" if self.mode == "block" else name

    def view_dtype(self, row: int) -> str:
        """The storage name of row ``row``'s elements (a mixed 8-bit row: of its codes)."""
        return self.dtypes[row].split("|")[0]

    def store_view(self, name: str) -> str:
        """The array the loop's elements of the chunk's view ``name`` are stored to."""
        return name + "o" if self.mode == "block" else name

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
        f"# compiled helpers: {HELPERS_FINGERPRINT}",
        "import numpy as np",
        "from numba import carray, njit, prange",
        f"from gradstep.engines._scalar_ops import as_pointer, {ops}",
        "from gradstep.engines._half_ops import bf16_load, bf16_store, f16_load, f16_store",
        "from gradstep.engines._half_ops import to_odd32",
    ]
    access = _Rows(stages, rows, math)
    if kp.STOCHASTIC in access.kinds:
        lines.append("from gradstep.engines._scalar_ops import bf16_store_sr, mix32")
    lines += [
        "",
    ]
    if any(r.startswith(BLOCKWISE8) for r in rows):
        lines[-1:-1] = [
            "from gradstep._core.blockwise8 import MIN_SCALE, dynamic_map, key_codes",
            "from gradstep.engines._scalar_ops import bits_float, magnitude_bits, max_u32, q8_code",
            "from gradstep.engines._scalar_ops import block_buffer, prefetch",
            "from gradstep.engines._scalar_ops import q8_code_of_key, q8_key",
            "KEY0 = np.int32(0)",
            "Q8S = dynamic_map(True)",
            "Q8U = dynamic_map(False)",
            "Q8S_CODES = key_codes(True)",
            "Q8U_CODES = key_codes(False)",
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
    terms = {st.index: global_terms(st) for st in stages if st.is_global or st.is_per_tensor}
    kernels = kp.kernels(stages, terms, fold=True)
    # how each reduction kernel adds its terms (fused_lanes): in blocks where its
    # element loop computes, else in the loop
    computing = lanes.computing(sources)
    blocked = {k.name: lanes.blocked(k, computing) for k in kernels if not k.write}
    if not all(blocked.values()):
        lines += lanes.strict_copies(sources)
    if any(blocked.values()):
        lines += lanes.lane_sums()
    for kernel in kernels:
        in_blocks = blocked.get(kernel.name, False)
        inputs = kp.kernel_inputs(kernel, stages, rows)
        source = _kernel(kernel, inputs, access, loop, in_blocks)
        lines += source if kernel.write or in_blocks else lanes.summing(source)
    return "\n".join(lines) + "\n"


PARALLEL_LOOP = ("@njit(parallel=True, cache=True, error_model='numpy')", "prange")
PLAIN_LOOP = ("@njit(cache=True, error_model='numpy')", "range")


def global_terms(st: Stage) -> int:
    """How many arrays a global reduction stage's ``terms`` (a per-tensor reduction
    stage's ``norms``) returns (cached on the stage's plan entry: counting calls the
    function)."""
    if "n_terms" not in st.__dict__:
        st.__dict__["n_terms"] = st.stage.n_terms()
    return st.__dict__["n_terms"]


def _kernel(
    kernel: kp.Kernel,
    inputs: list[kp.Input],
    access: _Rows,
    loop: tuple[str, str],
    in_blocks: bool = False,
) -> list[str]:
    """``kernel`` as a loop over chunks: ``loop`` is the decorator and the range
    (:data:`PARALLEL_LOOP` or :data:`PLAIN_LOOP`). A reduction kernel, and a step
    kernel with folded global reductions, stores its totals in
    ``acc[chunk * terms + t]`` (``in_blocks``: a reduction kernel walking each chunk
    in blocks, :func:`~gradstep.engines.fused_lanes.in_lanes`); the rows stored with
    stochastic rounding take their stream keys from the extra argument ``keys``."""
    rows, write, terms = access.dtypes, kernel.write, kernel.terms
    sums = not write or bool(kernel.folded)
    stochastic = kp.STOCHASTIC in access.kinds
    args = "chunks, ptrs, scal, tscal, tmask" + (", keys" if stochastic else "")
    args += ", acc" if sums else ""
    decorator, chunk_range = loop
    src = [decorator, f"def {kernel.name}({args}):"]
    views = {d for r in rows for d in r.split("|")}  # a mixed row: codes and floats
    for dtype in sorted(views):
        src.append(f"    z_{dtype} = {VIEW_TYPES[dtype]}(0)")  # element-type witnesses
    src += [f"    {i.name} = scal[{i.position}]" for i in inputs if i.table == "scalar"]
    chunk = "0" if in_blocks else ""  # in blocks: the block's elements are off, n
    src += [
        f"    for c in {chunk_range}(chunks.shape[0]):",
        "        j = chunks[c, 0]",
        f"        off{chunk} = chunks[c, 1]",
        f"        n{chunk} = chunks[c, 2]",
    ]
    if in_blocks:
        src += [f"        total{t} = 0.0" for t in range(terms)]
    first_view_line = len(src)
    src += [
        f"        g = {_view(rows, 0)}",
        f"        w = {_view(rows, 1)}",
    ]
    src += [f"        {i.name} = {_input(i, rows)}" for i in inputs if i.table != "scalar"]
    mixed = [i for i in inputs if i.table == "slot" and access.kinds[i.position] == kp.MIXED8]
    for i in mixed:  # the same row as floats, for the tensors below min_8bit_size
        src.append(f"        {i.name}f = {_view(rows, i.position, rows[i.position].split('|')[1])}")
    if mixed:
        src.append(f"        q8 = tmask[{access.n_stages}, j]")
    if sums and not in_blocks:
        src += [f"        total{t} = 0.0" for t in range(terms)]
    steps = kp.element_steps(kernel.body, write, kernel.folded)
    if not write:
        steps += kp.reduction_steps(kernel)
    access.lanes = in_blocks
    # 8-bit slots: a block's new values go to a small buffer until the block's scale
    # is known, then are quantised and stored
    eight = [s for s in steps if isinstance(s, kp.StoreSlot) and access.quantised(s.stage, s.slot)]
    has_codes = any(k in (kp.QUANTISED, kp.MIXED8) for k in access.kinds)
    body = []
    if eight:
        access.mode = "block"
        apart = not compiler_gathers()
        body = block_loop(steps, eight, access, stochastic and write, _render, apart)
    elif has_codes:
        access.mode = "codes"
        body = _element_loop(steps, access, stochastic and write)
    if mixed:
        access.mode = "float"
        plain = _element_loop(steps, access, stochastic and write)
        src += ["        if q8:"] + ["    " + line for line in body]
        src += ["        else:"] + ["    " + line for line in plain]
    elif has_codes:
        src += body
    elif write and kernel.folded:
        access.mode = "float"
        outlined, call = _outlined_elements(kernel, inputs, steps, access, stochastic)
        src = outlined + src + call
    else:
        access.mode = "float"
        src += _element_loop(steps, access, stochastic and write)
    access.mode, access.lanes = "codes", False
    if in_blocks:
        src[first_view_line:] = lanes.in_lanes(src[first_view_line:], steps, terms, access.math)
    if not write and kernel.target is None:
        src.append("        acc[c] = total0")
    elif sums:
        src += [f"        acc[c * {terms} + {t}] = total{t}" for t in range(terms)]
    return src + [""]


def _outlined_elements(
    kernel: kp.Kernel, inputs: list[kp.Input], steps: list, access: _Rows, hashed: bool
) -> tuple[list[str], list[str]]:
    """A step kernel's element loop with folded sums, as a function of its own (the
    first list: its source) and the chunk loop's lines calling it, then summing.

    Inside the chunk loop numba's parallel loop keeps the element loop from being
    vectorised, and a running float64 sum keeps any loop from it: the function's loop
    writes each term into a chunk buffer ``q`` (in the math dtype, the value the sum
    converts), vectorised, and the chunk loop then adds the buffer up element by
    element, the order the sums had in the one loop (the same totals, bit for bit)."""
    name = f"_{kernel.name}_elements"
    names = [i.name for i in inputs]
    args = ", ".join(["n", "off", "g", "w", *names, "q"])
    access.outlined = True
    loop = _element_loop(steps, access, hashed)
    access.outlined = False
    source = ["@njit(cache=True, error_model='numpy')", f"def {name}({args}):"]
    source += [line[4:] for line in loop] + [""]
    call = [
        f"        q = np.empty(({kernel.terms}, n), np.{access.math})",
        f"        {name}({args})",
        "        for i in range(n):",
    ]
    call += [f"            total{t} += np.float64(q[{t}, i])" for t in range(kernel.terms)]
    return source, call


def _element_loop(steps: list, access: _Rows, hashed: bool) -> list[str]:
    """The loop over a chunk's elements running ``steps`` (``hashed``: with the
    element's hashed index for stochastic rounding)."""
    pad = "            "
    src = ["        for i in range(n):"]
    src += [f"{pad}x = {access.load(0, 'g[i]')}", f"{pad}wi = {access.load(1, 'w[i]')}"]
    if hashed:  # the element's hashed index, shared by every rounded row
        src.append(f"{pad}hi = mix32(np.uint32(off + i))")
    return src + [pad + line for step in steps for line in _render(step, access)]


def _view(rows: list[str], row: int, dtype: str | None = None) -> str:
    """The chunk's elements of row ``row``, as an array of its element type (or of
    ``dtype``; a mixed 8-bit row: its codes)."""
    dtype = dtype or rows[row].split("|")[0]
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
        if access.quantised(step.stage, i) and access.mode == "block":
            # quantised after the block; its magnitude joins the block's largest
            return [f"new{k}_{i} = np.float32(s{k}_{i})"]
        if access.quantised(step.stage, i):  # below min_8bit_size: the math dtype
            return [f"a{k}_{i}f[i] = s{k}_{i}"]
        value = access.store(step.stage.slot_rows[i], f"s{k}_{i}")
        return [f"{access.store_view(f'a{k}_{i}')}[i] = {value}"]
    if isinstance(step, kp.Convert):
        convert = access.store if step.to_storage else access.load
        return [f"{step.name} = {convert(step.row, step.value)}"]
    if isinstance(step, kp.StoreParam):
        value = step.value if step.rounded else access.store(1, step.value)
        return [f"{access.store_view('w')}[i] = {value}"]
    if isinstance(step, kp.IfCovered):
        inner = [line for s in step.steps for line in _render(s, access)]
        return [f"if m{step.stage}:"] + ["    " + line for line in inner]
    if access.lanes:  # added up per block (fused_lanes.in_lanes)
        return [f"lanes[{step.first + t}, i] = {v}" for t, v in enumerate(step.values)]
    if step.how == "positive":
        return [f"total0 += 1.0 if {step.values[0]} > 0 else 0.0"]
    if step.how == "sums" and access.outlined:  # summed by the caller (_outlined_elements)
        return [f"q[{step.first + t}, i] = {v}" for t, v in enumerate(step.values)]
    if step.how == "sums":
        return [f"total{step.first + t} += np.float64({v})" for t, v in enumerate(step.values)]
    return [
        f"total{step.first + t} += np.float64({v}) * np.float64({v})"
        for t, v in enumerate(step.values)
    ]


def _slot_load(st: Stage, slot: int, access: _Rows) -> str:
    """The value of slot number ``slot`` of stage ``st`` at the kernel's element ``i``,
    in the math dtype (an 8-bit slot: its code's map value times its block's scale)."""
    k, math = st.index, access.math
    if access.quantised(st, slot):
        if access.mode == "float":  # below min_8bit_size: the math dtype
            return f"a{k}_{slot}f[i]"
        table = "Q8U" if st.stage.slots[slot].nonnegative else "Q8S"
        value = f"{table}[a{k}_{slot}[i]] * b{k}_{slot}[i // {BLOCK}]"
        if access.mode == "block":
            value = f"new{k}_{slot}"
        return value if math == "float32" else f"np.{math}({value})"
    return access.load(st.slot_rows[slot], f"{access.view(f'a{k}_{slot}')}[i]")
