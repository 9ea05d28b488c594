"""constrain_total_norm(target="params") on the Triton engine, under Triton's
interpreter: a reduction pass sums the squares of the new parameters, the step pass
writes them scaled; the eager engine's parameters within float32 tolerance."""

from __future__ import annotations

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T
from gradstep.engines.triton import TritonEngine

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

#: odd sizes: a scalar-like vector, a tail chunk, a tensor over two chunks, an empty one
SHAPES = ((7,), (33, 5), (1,), (4100,), (3, 4, 5), (0, 4))

# (the rule before the constraint, max_norm, epsilon): the joint norm of the new
# parameters outside the ball (scaled to max_norm) and inside (shrunk by n / (n + eps))
CASES = {
    "sgd-outside": (lambda: gradstep.sgd(0.5), 3.0, 1e-7),
    "adam-outside-eps": (lambda: gradstep.adam(0.1), 5.0, 1e-3),
    "momentum-inside": (lambda: gradstep.momentum(0.1, 0.9), 1e4, 1e-7),
}


def make(case):
    rule, max_norm, epsilon = CASES[case]
    return gradstep.chain(rule(), T.constrain_total_norm(max_norm, epsilon, target="params"))


def run(transform, engine, shapes=SHAPES, steps=3, dtype=torch.float32, start=None):
    gen = torch.Generator().manual_seed(17)
    params = [
        torch.nn.Parameter(torch.randn(s, generator=gen).to(start or dtype).to(dtype))
        for s in shapes
    ]
    opt = gt.TransformOptimizer(params, transform, engine=engine)
    for k in range(steps):
        for i, p in enumerate(params):
            p.grad = ((i + 1) * torch.sin(3 * p.detach().float() + k) + 0.1 * k).to(dtype)
        opt.step()
    return [p.detach() for p in params]


def joint_norm(params) -> float:
    return float(sum(p.double().pow(2).sum() for p in params).sqrt())


@pytest.mark.parametrize("case", list(CASES))
def test_total_norm_of_the_new_parameters_runs_on_the_triton_engine_as_eager(case):
    _, max_norm, _ = CASES[case]
    stages = [st for st in TritonEngine(make(case)).stages if st.is_reduction]
    assert [(st.stage.name, st.stage.of_params) for st in stages] == [
        ("constrain_total_norm", True)
    ]
    got = run(make(case), "triton")
    want = run(make(case), "eager")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)
    assert joint_norm(got) <= max_norm * (1 + 1e-6)
    if max_norm < 100:  # outside the ball: scaled onto it (n / (n + epsilon) inside)
        assert joint_norm(got) == pytest.approx(max_norm, rel=1e-3)


def test_the_step_runs_the_reduction_pass_on_the_triton_engine(monkeypatch):
    """Not the eager update: the Triton engine's reduction pass of the stage runs at
    every step (engine="triton" refused the transform before it ran fused)."""
    passes = []
    sums = TritonEngine._chunk_sums  # the reduction pass, per chunk

    def spy(self, module, st, *args):
        passes.append((st.stage.name, getattr(st.stage, "of_params", None)))
        return sums(self, module, st, *args)

    monkeypatch.setattr(TritonEngine, "_chunk_sums", spy)
    run(make("sgd-outside"), "triton", steps=2)
    assert passes == [("constrain_total_norm", True)] * 2


def test_total_norm_of_the_new_parameters_in_float64_and_bfloat16():
    """float64 against eager float64; bfloat16 (its math in float32 on both engines)
    against eager float32 from the same start, within bfloat16's rounding."""
    for dtype, eager, tol in (
        (torch.float64, torch.float64, 1e-12),
        (torch.bfloat16, torch.float32, 3e-2),
    ):
        got = run(make("adam-outside-eps"), "triton", dtype=dtype)
        want = run(make("adam-outside-eps"), "eager", dtype=eager, start=dtype)
        for a, b in zip(got, want):
            assert a.dtype == dtype
            torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)
        assert joint_norm(got) == pytest.approx(5.0, rel=max(tol, 1e-3))


def test_bfloat16_parameters_as_the_eager_engine_on_bfloat16():
    """bfloat16 on both engines: the same float32 math, each new parameter rounded
    once (the interpreter's rounding may differ from eager's by a unit)."""
    got = run(make("sgd-outside"), "triton", dtype=torch.bfloat16)
    want = run(make("sgd-outside"), "eager", dtype=torch.bfloat16)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == torch.bfloat16
        torch.testing.assert_close(a.double(), b.double(), rtol=2**-7, atol=2**-7)
