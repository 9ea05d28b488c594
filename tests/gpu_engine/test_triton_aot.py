"""Every generated Triton kernel compiles for a Hopper GPU (sm_90) on this CPU machine,
and its full-chunk branch moves memory in 128-bit vectors (8-bit codes: 64-bit).

The compilation runs in a subprocess: this test session interprets Triton kernels
(``TRITON_INTERPRET=1``), and an interpreted kernel cannot be compiled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton.backends.nvidia", reason="Triton's CUDA backend is not installed")

SCRIPT = textwrap.dedent(
    """
    import json, re, sys
    import torch
    import gradstep
    from gradstep import transforms as T
    from gradstep.engines.triton import TritonEngine

    cases = {}
    for spec in gradstep.REGISTRY:
        if "elementwise" in spec.capabilities:
            cases[spec.name] = (spec.factory(**spec.test_hyperparams), torch.float32)
    cases["clip+adamw"] = (
        gradstep.chain(T.clip_by_global_norm(1.0), gradstep.adamw(1e-3)), torch.float32)
    cases["adamw-bfloat16"] = (gradstep.adamw(1e-3), torch.bfloat16)
    cases["lamb"] = (gradstep.lamb(1e-3), torch.float32)  # a per-tensor reduction pass
    cases["prodigy"] = (gradstep.prodigy(), torch.float32)  # a global reduction pass
    # isfinite and finite_or_zero read a module-level constant of _triton_ops
    cases["zero-policy+adam"] = (T.nonfinite_policy(gradstep.adam(1e-3), "zero"), torch.float32)
    cases["adam-float16"] = (gradstep.adam(1e-3), torch.float16)
    # 8-bit blockwise state: every tensor's codes, or codes and floats per tensor
    # (min_8bit_size), and a reduction pass reading the codes
    eight = gradstep.adamw(1e-3, state_dtype="int8")
    cases["adamw-int8"] = (eight, torch.float32)
    cases["adamw-int8-mixed"] = (eight, torch.float32, True)
    cases["adam-int8-bfloat16"] = (gradstep.adam(1e-3, state_dtype="int8"), torch.bfloat16)
    cases["adam-int8+clip"] = (
        gradstep.chain(gradstep.adam(1e-3, state_dtype="int8"), T.clip_by_global_norm(1.0)),
        torch.float32,
    )
    # Lasagne's norm constraint over axes: slices' sums by atomic adds, factors gathered
    cases["constrain_norm+adam"] = (
        gradstep.chain(T.constrain_norm(1.0), gradstep.adam(1e-3)), torch.float32)
    out = {}
    for name, (transform, dtype, *mixed8) in cases.items():
        ptx = TritonEngine(transform).compile_for(dtype, arch=90, mixed8=bool(mixed8))
        out[name] = {
            kernel: {
                "target": ".target sm_90" in text,
                "vector_loads": len(re.findall(r"ld\\.global(?:\\.\\w+)*\\.v4\\.b32", text)),
                "vector_stores": len(re.findall(r"st\\.global(?:\\.\\w+)*\\.v4\\.b32", text)),
                "v2_loads": len(re.findall(r"ld\\.global(?:\\.\\w+)*\\.v2\\.b32", text)),
                "v2_stores": len(re.findall(r"st\\.global(?:\\.\\w+)*\\.v2\\.b32", text)),
                "div_rn": "div.rn.f32" in text,
                "local": ".local" in text,
                "atomic_f64": bool(re.search(r"(atom|red)\\.global(?:\\.\\w+)*\\.add\\.f64", text)),
            }
            for kernel, text in ptx.items()
        }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_kernel_compiles_for_sm90(compiled):
    assert len(compiled) >= 15
    for name, kernels in compiled.items():
        assert "step" in kernels, name
        for kernel, facts in kernels.items():
            assert facts["target"], (name, kernel)


def test_full_chunks_use_128_bit_vector_loads_and_stores(compiled):
    for name, kernels in compiled.items():
        step = kernels["step"]
        # at least the gradient and the parameter are loaded as vectors, and the
        # parameter stored as vectors
        assert step["vector_loads"] >= 2, (name, step)
        assert step["vector_stores"] >= 1, (name, step)
    assert compiled["clip+adamw"]["reduce0"]["vector_loads"] >= 1
    assert any(k.startswith("reduce") for k in compiled["lamb"])


def test_8bit_kernels_compile_with_vector_codes_and_the_quantisers_exact_division(compiled):
    """The 8-bit step kernel loads and stores each thread's codes as 64-bit vectors
    (the two moments: two of each in the full-chunk branch), divides by the block
    scale correctly rounded (``div.rn``, as the numba kernels' IEEE division, so the
    codes are the same), and keeps the tile in registers (no local memory)."""
    for name in ("adamw-int8", "adamw-int8-mixed", "adam-int8-bfloat16", "adam-int8+clip"):
        step = compiled[name]["step"]
        assert step["v2_loads"] >= 2 and step["v2_stores"] >= 2, (name, step)
        assert step["div_rn"] and not step["local"], (name, step)
    (reduce,) = [v for k, v in compiled["adam-int8+clip"].items() if k.startswith("reduce")]
    assert reduce["target"] and reduce["v2_loads"] >= 2, reduce


def test_norm_constraint_over_axes_compiles_with_float64_atomic_sums(compiled):
    """Lasagne's per-unit norm constraint: the reduction pass adds each element's
    square to its slice's float64 sum with an atomic add; the step kernel gathers
    the factors and still moves the tensors as 128-bit vectors."""
    kernels = compiled["constrain_norm+adam"]
    assert kernels["reduce0"]["atomic_f64"] and not kernels["reduce0"]["local"], kernels
    assert kernels["step"]["vector_loads"] >= 2 and kernels["step"]["vector_stores"] >= 1
