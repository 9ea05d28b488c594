"""Lasagne's norm constraints as device passes of the Triton engine, under Triton's
interpreter: the same updates as the eager engine within float32 tolerance."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T
from gradstep.engines.triton import TritonEngine

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

SHAPES = ((7,), (33, 5), (2100,), (3, 4, 5))


def run(transform, engine, steps=3, scale=1.0):
    gen = torch.Generator().manual_seed(11)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    opt = gt.TransformOptimizer(params, transform, engine=engine)
    for k in range(steps):
        for p in params:
            p.grad = scale * (torch.sin(3 * p.detach() + k) + 0.1 * k)
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["outside", "inside"])
@pytest.mark.parametrize(
    "make",
    [
        lambda m: T.constrain_total_norm(m),
        lambda m: gradstep.chain(T.constrain_total_norm(m, epsilon=1e-3), gradstep.adam(1e-2)),
        lambda m: gradstep.chain(gradstep.momentum(0.1, 0.9), T.constrain_total_norm(m)),
    ],
    ids=["alone", "before-adam", "after-momentum"],
)
def test_total_norm_constraint_runs_on_the_triton_engine_as_eager(make, max_norm):
    TritonEngine(make(max_norm))  # compiles: no NotFusable
    got = run(make(max_norm), "triton", scale=10.0)
    want = run(make(max_norm), "eager", scale=10.0)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)


def test_total_norm_constraint_stage_is_lasagnes_function():
    """The stage scales the updates as the array function does (Lasagne's
    ``min(N, m) / (N + epsilon)``, also inside the ball)."""
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    for max_norm in (0.5, 1e3):
        stage = T.constrain_total_norm(max_norm, epsilon=1e-3)
        got, _ = stage.update(grads, stage.init(grads), grads)
        want = gradstep.total_norm_constraint(grads, max_norm, 1e-3)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
