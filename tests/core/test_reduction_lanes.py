"""The numba engine's reduction kernels add in vector lanes, with exact terms."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine
from gradstep.engines.fused_lanes import LANES
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


def _decorators(source: str) -> dict[str, str]:
    """Each generated function's decorator, by function name."""
    lines = source.splitlines()
    return {
        line[4:].split("(")[0]: lines[i - 1]
        for i, line in enumerate(lines)
        if line.startswith("def ")
    }


def test_only_lane_sums_and_in_loop_reductions_reassociate_with_exact_terms():
    engine = FusedEngine(gradstep.chain(clip_by_global_norm(1.0), gradstep.lamb(1e-3)))
    kernels = _kernels(engine.source)
    assert sorted(kernels) == ["reduce0", "reduce2", "step"]
    assert "fastmath" not in kernels["step"][0]
    # the clip's sum of squares only loads the gradient: added in the loop, which
    # reassociates (and would call strict copies of the element functions)
    assert "fastmath={'reassoc'}" in kernels["reduce0"][0]
    assert "total0 += np.float64(x) * np.float64(x)" in "\n".join(kernels["reduce0"])
    # LAMB's trust ratio sums its Adam direction: a strict kernel computing its
    # terms into a block's buffer, which a reassociating helper adds up
    decorator, body = kernels["reduce2"][0], "\n".join(kernels["reduce2"][1:])
    assert "fastmath" not in decorator
    assert f"for start in range(0, n0, {LANES}):" in body
    assert "lanes[0, i] = q0" in body and "lanes[1, i] = q1" in body
    assert "total0 += lanes_squares(lanes[0], n)" in body
    calls = {w for w in body.replace("(", " ").split() if w.startswith(("_e", "_n"))}
    assert calls and not any(c.endswith("_strict") for c in calls), calls
    # each function says its fast-math flags (numba would give it its caller's):
    # the lane sums reassociate, the strict copies do not
    for name, decorator in _decorators(engine.source).items():
        if name.startswith("lanes_"):
            assert "fastmath={'reassoc'}" in decorator, name
        elif name.endswith("_strict"):
            assert decorator == "@njit(cache=True, error_model='numpy', fastmath=False)"


def test_reductions_computing_their_terms_add_them_in_blocks():
    """Rules whose reduction pass computes (a cautious count recomputing the
    direction, StableAdamW's RMS) sum per block; one that only loads its terms
    (Fromage's norms of the gradient and the parameters) sums in the loop."""
    for name, blocked in [
        ("cautious_adamw", True),
        ("cautious_lion", True),
        ("stable_adamw", True),
        ("fromage", False),
    ]:
        source = FusedEngine(gradstep.REGISTRY[name].factory()).source
        assert ("lanes = np.empty(" in source) == blocked, name
        assert ("fastmath={'reassoc'})\ndef reduce" in source) != blocked, name


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


#: tensors across blocks and chunks (65536 elements), ends inside a block, and short
SIZES = [(70001,), (LANES + 1,), (LANES,), (3, 5), (1,)]


def _steps(transform, engine, dtype=np.float32, n=3):
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(s).astype(dtype) for s in SIZES]
    opt = gradstep.Optimizer(params, transform, engine=engine)
    for _ in range(n):
        opt.step([rng.standard_normal(s).astype(dtype) for s in SIZES])
    assert opt.engine == engine
    return params


@pytest.mark.parametrize("rule", ["cautious_adamw", "cautious_lion"])
def test_counts_in_blocks_are_the_eager_counts(rule):
    make = gradstep.REGISTRY[rule].factory
    for a, b in zip(_steps(make(), "eager"), _steps(make(), "fused")):
        np.testing.assert_array_equal(b, a)


def test_sums_in_blocks_of_8bit_slots_agree_with_eager():
    """LAMB on 8-bit state: each block's views of the codes and their block scales."""
    make = lambda: gradstep.lamb(1e-2, state_dtype="blockwise8")  # noqa: E731
    for a, b in zip(_steps(make(), "eager"), _steps(make(), "fused")):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
