"""The fused kernels' conversion helpers (16-bit loads and stores, stochastic
rounding's hash) are compiled once and inlined by LLVM, not by numba: the kernels'
machine code calls none of them, so their element loops still vectorise."""

from __future__ import annotations

import re

import numpy as np
import pytest

import gradstep
from gradstep.engines import fused

pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")

from gradstep._core.namespaces import numpy_dtype  # noqa: E402

#: a compiled function of gradstep's helper modules, by its mangled name: a helper left
#: out of line is loaded by address (``movabsq $_ZN8gradstep7engines9_half_ops...``)
#: and its body listed beside the kernel's
_HELPER = re.compile(r"_ZN8gradstep7engines\d+_(scalar|half)_ops")


@pytest.mark.parametrize(
    ("dtype", "options"),
    [
        ("float16", {}),
        ("bfloat16", {"stochastic_rounding": True}),
        ("float64", {"state_dtype": "float16"}),  # float64 math rounded to odd first
    ],
    ids=["float16", "bfloat16-stochastic", "float64-float16-state"],
)
def test_kernels_call_no_helper(dtype, options, monkeypatch, kernel_assembly):
    sources = []
    load = fused.load_kernels
    monkeypatch.setattr(
        fused, "load_kernels", lambda source: load(sources.append(source) or source)
    )
    dtype = numpy_dtype(dtype)
    params = [np.linspace(-1.0, 1.0, 300).astype(dtype)]
    opt = gradstep.Optimizer(params, gradstep.adamw(0.01, **options), engine="fused")
    opt.step([(params[0] * 0.5).astype(dtype)])
    assert opt.engine == "fused"
    modules = [load(source) for source in sources if "_store" in source]
    assert modules
    assembly = "".join(kernel_assembly(module) for module in modules)
    assert not _HELPER.search(assembly)
