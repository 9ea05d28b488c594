"""How the 8-bit kernels' lookups vectorise (gradstep.engines._gather_tuning): both
forms of the block loop (lookups inside it where the compiler gathers, in loops of
their own elsewhere) equal the eager engine bit for bit; the attributes that allow
gathers on AMD Zen are added only there, and a kernel compiled with them gathers."""

from __future__ import annotations

import re
import sys

import llvmlite.binding as llvm
import numpy as np
import pytest

import gradstep
from gradstep.engines import _gather_tuning as gt
from gradstep.engines import fused, fused_codegen

AVX2 = "+avx,+avx2,+fma,+sse4.2"


@pytest.mark.parametrize("cpu", ["znver1", "znver2", "znver3"])
def test_zen_hosts_with_avx2_get_gathers(cpu):
    attributes = gt.gather_attributes(cpu, AVX2, user_target=False)
    assert f'"target-cpu"="{cpu}"' in attributes
    assert f'"target-features"="{AVX2},+fast-gather,-prefer-no-gather"' in attributes


@pytest.mark.parametrize(
    ("cpu", "features", "user_target"),
    [
        ("skylake", AVX2, False),  # Intel: slow gathers under the microcode fix
        ("neoverse-v1", "+neon,+sve", False),  # no x86 gathers at all
        ("znver3", "+avx,-avx2", False),  # no AVX2 (a virtual machine may hide it)
        ("znver3", AVX2, True),  # NUMBA_CPU_NAME / NUMBA_CPU_FEATURES chosen by the user
    ],
)
def test_other_hosts_and_user_targets_are_left_alone(cpu, features, user_target):
    assert gt.gather_attributes(cpu, features, user_target) == ()


def _kernel_assembly(make) -> str:
    """The assembly of the 8-bit kernel modules compiled by ``make``'s first step."""
    before = set(sys.modules)
    ws = [np.ones(5000, np.float32)]
    gradstep.Optimizer(ws, make(), engine="fused").step([np.ones(5000, np.float32)])
    texts = []
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        if name.startswith("gradstep_kernel") and "q8_code" in open(module.__file__).read():
            texts += module.step.inspect_asm().values()
    assert texts, "no 8-bit kernel was compiled"
    return "\n".join(texts)


def test_a_kernel_with_gathers_allowed_gathers_and_equals_eager(tmp_path, monkeypatch):
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    if not re.match(r"x86|i\d86|amd64", llvm.get_process_triple()) or "+avx2" not in features:
        pytest.skip(reason="x86 gathers need an AVX2 host")
    forced = gt.gather_attributes("znver3", features, user_target=False)
    forced = (f'"target-cpu"="{cpu}"', forced[1])  # the host's tuning, gathers allowed
    monkeypatch.setattr(gt, "host_gather_attributes", lambda: forced)
    monkeypatch.setenv("GRADSTEP_CACHE_DIR", str(tmp_path))  # compiled afresh, here

    def make():
        return gradstep.adam(0.01, state_dtype="int8", min_8bit_size=0)

    assert "gather" in _kernel_assembly(make)
    rng = np.random.default_rng(3)
    w0 = [rng.standard_normal(n).astype(np.float32) for n in (70_000, 300, 7)]
    grads = [[rng.standard_normal(w.size).astype(np.float32) for w in w0] for _ in range(3)]
    out = {}
    for engine in ("fused", "eager"):
        ws = [w.copy() for w in w0]
        opt = gradstep.Optimizer(ws, make(), engine=engine)
        for g in grads:
            opt.step(g)
        out[engine] = ws + gradstep.tree.leaves(opt.state)
    for a, b in zip(out["fused"], out["eager"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


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


def test_the_probe_answers_as_the_compiler_does():
    # on x86 the answer is in the assembly; elsewhere it is False (no x86 gathers)
    assert gt.compiler_gathers() in (True, False)
    text = "\tvgatherdps\t%ymm9, (%rcx,%ymm7,4), %ymm8\n"
    assert gt._GATHER.search(text)
    assert not gt._GATHER.search("_ZN8gradstep7engines14_gather_tuning8_lookups:\n")
