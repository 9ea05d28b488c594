"""The two forms of the 8-bit kernels' block loop (gradstep.engines._gather_tuning):
the lookups inside it where the compiler gathers, in loops of their own elsewhere;
each equals the eager engine bit for bit, whichever this host would choose."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.engines import _gather_tuning as gt
from gradstep.engines import fused, fused_codegen


def _fused_and_eager(make, dtype, steps=3):
    rng = np.random.default_rng(4)
    w0 = [rng.standard_normal(n).astype(dtype) for n in (70_000, 4096 + 300, 7)]
    grads = [[rng.standard_normal(w.size).astype(dtype) for w in w0] for _ in range(steps)]
    out = {}
    for engine in ("fused", "eager"):
        ws = [w.copy() for w in w0]
        opt = gradstep.Optimizer(ws, make(), engine=engine)
        for g in grads:
            opt.step(g)
        assert opt.engine == engine
        out[engine] = [np.asarray(a) for a in ws + gradstep.tree.leaves(opt.state)]
    return out["fused"], out["eager"]


@pytest.mark.parametrize("apart", [False, True], ids=["lookups-in-loop", "lookups-apart"])
@pytest.mark.parametrize(
    ("make", "dtype"),
    [
        (
            lambda: gradstep.chain(
                gradstep.adam(0.01, state_dtype="int8"),
                gradstep.masked(gradstep.momentum(1.0, 0.9), [True, False, True]),
            ),
            "float32",
        ),
        (lambda: gradstep.momentum(0.01, 0.9, accumulator_dtype="int8"), "bfloat16"),
    ],
    ids=["adam+masked-momentum", "momentum-bfloat16"],
)
def test_both_block_loops_equal_eager_bit_for_bit(make, dtype, apart, monkeypatch):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")
        from gradstep._core.namespaces import numpy_dtype

        dtype = numpy_dtype("bfloat16")
    monkeypatch.setattr(fused_codegen, "compiler_gathers", lambda: not apart)
    sources = []
    load = fused.load_kernels
    monkeypatch.setattr(
        fused, "load_kernels", lambda source: load(sources.append(source) or source)
    )
    fused_out, eager = _fused_and_eager(make, dtype)
    eight = [source for source in sources if "q8_code" in source]  # the 8-bit kernels
    assert eight and all(("q8_code_of_key(" in source) == apart for source in eight)
    for a, b in zip(fused_out, eager):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))


def test_the_probe_answers_as_the_kernels_compile(monkeypatch, kernel_assembly):
    # the loop with lookups inside gathers exactly where the probe says the compiler
    # gathers (so the form chosen is the one that vectorises)
    monkeypatch.setattr(fused_codegen, "compiler_gathers", lambda: True)
    sources = []
    load = fused.load_kernels
    monkeypatch.setattr(
        fused, "load_kernels", lambda source: load(sources.append(source) or source)
    )
    _fused_and_eager(lambda: gradstep.adam(0.01, state_dtype="int8"), "float32", steps=1)
    modules = [load(source) for source in sources if "q8_code" in source]
    assert modules
    assembly = "".join(kernel_assembly(module) for module in modules)
    assert bool(gt._GATHER.search(assembly)) == gt.compiler_gathers()
    assert not gt._GATHER.search("_ZN8gradstep7engines14_gather_tuning8_lookups:\n")
