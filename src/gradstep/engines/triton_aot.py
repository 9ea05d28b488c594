"""Ahead-of-time compilation of the Triton engine's kernels for a CUDA target, without a GPU.

The test suite uses it to check the generated code (``tests/gpu_engine/test_triton_aot.py``:
128-bit vector loads and stores in full chunks, registers, no spills): Triton compiles
for a :class:`~triton.backends.compiler.GPUTarget` on a machine without a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from .._core.blockwise8 import BLOCKWISE8, MIXED_PREFIX
from .triton_tables import STORAGE_DTYPES, math_dtype


def compile_for(
    engine: Any, dtype: torch.dtype = torch.float32, arch: int = 90, mixed8: bool = False
) -> dict[str, str]:
    """The PTX of every kernel of ``engine``'s chain (a
    :class:`~gradstep.engines.triton.TritonEngine`) for CUDA compute capability
    ``arch`` (90: Hopper), compiled without a GPU, for parameters and state of
    ``dtype`` (8-bit slots: codes, or with ``mixed8`` codes or floats per tensor).

    Must run in a process where Triton is not interpreting (``TRITON_INTERPRET``
    unset): the interpreter replaces kernels by Python functions.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    _, flags = engine._scalars([0] * len(engine.stages), {})
    name = STORAGE_DTYPES[dtype]
    math = STORAGE_DTYPES[math_dtype(dtype)]
    rows = [name] * engine.n_rows
    for code_row, scale_row in engine.q8_rows.items():
        rows[code_row] = MIXED_PREFIX + math if mixed8 else BLOCKWISE8
        rows[scale_row] = "float32"
    module = engine._module(tuple(rows), math, flags)
    scalar = {"float32": "*fp32", "float64": "*fp64"}[math]
    signature = {
        "chunks": "*i64", "ptrs": "*i64", "scal": scalar, "tscal": scalar, "tmask": "*u8",
        "amp": scalar, "n_tensors": "i64", "n_factors": "i64",
    }  # fmt: skip
    tables = {"qmap": "*fp32", "qcodes": "*i32"} if engine.q8_rows else {}
    out = {}
    kernels = ["step"] + [
        f"reduce{st.index}"
        for st in engine.stages
        if st.is_reduction or st.is_per_tensor or st.is_global or st.is_axis_norm
    ]
    for kernel_name in kernels:
        sig = dict(signature)
        if kernel_name != "step":
            sig["acc"] = "*fp64"
        sig.update(tables, BLOCK="constexpr", ITERS="constexpr")
        pointers = [i for i, t in enumerate(sig.values()) if t.startswith("*")]
        source = ASTSource(
            getattr(module, kernel_name),
            sig,
            constexprs={"BLOCK": engine.block, "ITERS": engine.iters},
            attrs={(i,): [["tt.divisibility", 16]] for i in pointers},
        )
        compiled = triton.compile(
            source,
            target=GPUTarget("cuda", arch, 32),
            options={"num_warps": engine.num_warps, "enable_fp_fusion": False},
        )
        out[kernel_name] = compiled.asm["ptx"]
    return out
