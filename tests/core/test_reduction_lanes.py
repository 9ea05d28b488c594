"""The numba engine's reduction kernels add in vector lanes, with exact terms."""

from __future__ import annotations

import numpy as np

import gradstep
from gradstep.engines.fused import FusedEngine
from gradstep.transforms import clip_by_global_norm, scale


def _kernels(source: str) -> dict[str, list[str]]:
    """Each kernel's decorator and body lines, by kernel name."""
    lines = source.splitlines()
    out: dict[str, list[str]] = {}
    for i, line in enumerate(lines):
        if line.startswith(("def step", "def reduce")):
            name = line.split("(")[0][4:]
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j] and not lines[j][0].isspace()),
                len(lines),
            )
            out[name] = [lines[i - 1]] + lines[i + 1 : end]
    return out


def test_only_reduction_kernels_reassociate_and_they_call_strict_copies():
    engine = FusedEngine(gradstep.chain(clip_by_global_norm(1.0), gradstep.lamb(1e-3)))
    kernels = _kernels(engine.source)
    reduce = [k for k in kernels if k.startswith("reduce")]
    assert len(reduce) == 2 and "step" in kernels
    assert "fastmath" not in kernels["step"][0]
    calls = []
    for name in reduce:
        decorator, body = kernels[name][0], "\n".join(kernels[name][1:])
        assert "fastmath={'reassoc'}" in decorator
        calls += [w for w in body.replace("(", " ").split() if w.startswith(("_e", "_n"))]
    # LAMB's trust ratio sums its Adam direction: the element functions, strict
    assert calls and all(c.endswith("_strict") for c in calls), calls
    # the strict copies are compiled apart: not inlined by numba, no fast-math (said
    # explicitly: numba would compile them with the calling kernel's flags)
    for line in engine.source.splitlines():
        if line.startswith("def _") and "_strict(" in line:
            decorator = engine.source.splitlines()[engine.source.splitlines().index(line) - 1]
            assert decorator == "@njit(cache=True, error_model='numpy', fastmath=False)"


def test_lane_sums_keep_the_clipped_step_within_float32_rounding_of_eager():
    rng = np.random.default_rng(0)
    shapes = [(100_003,), (7,), (300, 17)]
    grads = [rng.standard_normal(s).astype(np.float32) * 3 for s in shapes]
    out = {}
    for engine in ("eager", "fused"):
        params = [np.ones(s, np.float32) for s in shapes]
        opt = gradstep.Optimizer(
            params, gradstep.chain(clip_by_global_norm(1.0), gradstep.sgd(0.5)), engine=engine
        )
        for _ in range(3):
            opt.step(grads)
        out[engine] = params
    for a, b in zip(out["eager"], out["fused"]):
        np.testing.assert_allclose(b, a, rtol=2e-7, atol=1e-7)


def test_strict_copies_keep_their_terms_unreassociated():
    """numba compiles a called function with its caller's fast-math flags unless it
    sets its own: a strict copy called from a reassociating reduction kernel then
    let LLVM regroup its products, ``(x * 1e20) * 1e20`` as ``x * inf``, and the clip
    saw an infinite norm (a zero step) where the eager engine sees 1e10."""
    out = {}
    for engine in ("eager", "fused"):
        params = [np.ones(1000, np.float32)]
        transform = gradstep.chain(
            scale(1e20), scale(1e20), clip_by_global_norm(1.0), gradstep.sgd(1.0)
        )
        opt = gradstep.Optimizer(params, transform, engine=engine)
        opt.step([np.full(1000, 1e-30, np.float32)])
        assert opt.engine == engine
        out[engine] = params[0]
    assert out["eager"][0] < 0.99  # the clipped step moved the parameters
    np.testing.assert_allclose(out["fused"], out["eager"], rtol=1e-6)
