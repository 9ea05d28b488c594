"""The fused engine's parallel chunk loop equals its plain one, bit for bit.

The test workers run numba with one thread each, where the engine generates plain
loops over the chunks (:func:`gradstep.engines.fused_codegen.parallel_kernels`):
this test forces ``prange`` kernels for one rule of every stage kind the kernels
have (elementwise slots, a norm reduction, a global reduction, per-tensor reductions,
a cautious mask, a masked stage, 8-bit blocks, stochastically rounded bfloat16) on
tensors of several chunks, and compares them with the plain kernels' results.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the fused engine needs numba")
ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 storage needs ml_dtypes")

import gradstep  # noqa: E402
import gradstep.transforms  # noqa: E402
from gradstep._core import tree  # noqa: E402
from gradstep.engines import fused, fused_codegen  # noqa: E402
from gradstep.engines.fused_codegen import CHUNK  # noqa: E402

BF16 = ml_dtypes.bfloat16
SHAPES = [(2 * CHUNK + 123,), (7, 5), (CHUNK + 1,)]

SETTINGS = {
    "adam": (lambda: gradstep.adam(0.01), np.float32),
    "global_norm_clip": (
        lambda: gradstep.chain(gradstep.transforms.clip_by_global_norm(0.5), gradstep.adam(0.01)),
        np.float32,
    ),
    "prodigy": (lambda: gradstep.prodigy(), np.float64),
    # per-tensor reductions: trust ratios (two norms), NovoGrad's squared norm
    "lamb": (lambda: gradstep.lamb(0.01, weight_decay=0.01), np.float32),
    "novograd": (lambda: gradstep.novograd(0.01), np.float64),
    "cautious_adamw": (lambda: gradstep.cautious_adamw(0.01), np.float32),
    "masked": (
        lambda: gradstep.chain(
            gradstep.masked(gradstep.transforms.add_decayed_weights(0.1), [True, False, True]),
            gradstep.momentum(0.1),
        ),
        np.float32,
    ),
    "blockwise8": (lambda: gradstep.adamw(0.01, state_dtype="blockwise8"), np.float32),
    "stochastic_bf16": (
        lambda: gradstep.adamw(0.01, stochastic_rounding=True, kahan_summation=False),
        BF16,
    ),
}


def run(make, dtype, parallel: bool, monkeypatch) -> tuple[list, list]:
    monkeypatch.setattr(fused_codegen, "parallel_kernels", lambda: parallel)
    rng = np.random.default_rng(0)
    params = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    opt = gradstep.Optimizer(params, make(), engine="fused")
    for _ in range(3):
        opt.step([rng.normal(size=s).astype(dtype) for s in SHAPES])
    return params, tree.leaves(opt.state)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_parallel_loop_equals_plain_loop(name, monkeypatch):
    make, dtype = SETTINGS[name]
    plain = run(make, dtype, False, monkeypatch)
    parallel = run(make, dtype, True, monkeypatch)
    for a, b in zip(tree.leaves(plain), tree.leaves(parallel)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(
            np.atleast_1d(a).view(np.uint8), np.atleast_1d(b).view(np.uint8)
        )


def test_the_kernels_differ_only_in_their_loop():
    stages = fused.flatten_stages(gradstep.adam(0.01))
    plain = fused_codegen.generate_source(stages, parallel=False)
    parallel = fused_codegen.generate_source(stages, parallel=True)
    assert "prange(" in parallel and "parallel=True" in parallel
    assert "prange(" not in plain and "parallel=True" not in plain
    assert plain.replace("range(", "").replace(", error_model", "") == parallel.replace(
        "prange(", ""
    ).replace("range(", "").replace("parallel=True, ", "").replace(", error_model", "")
