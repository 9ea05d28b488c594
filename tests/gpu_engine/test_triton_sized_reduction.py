"""A sized per-tensor reduction (its combine gets the tensor's size: an RMS) on the
Triton engine, under Triton's CPU interpreter: the same steps as the eager engine."""

from __future__ import annotations

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep.rules.adafactor import ClipByBlockRms

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)


def _run(engine: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (0, 1, 7, 2100)]
    clip = ClipByBlockRms(0.5).fused_form().transform
    opt = gt.TransformOptimizer(params, gradstep.chain(clip, gradstep.sgd(0.1)), engine=engine)
    for k in range(3):
        for i, p in enumerate(params):
            p.grad = torch.sin(3 * p.detach() + k) * (1 + i)
        opt.step()
    return [p.detach() for p in params]


def test_the_rms_clip_form_equals_eager_on_triton():
    for got, want in zip(_run("triton"), _run("eager")):
        torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)
