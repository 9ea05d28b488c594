"""Per-tensor reductions with ``sum_kinds`` and ``totals`` on the Triton engine
(under its CPU interpreter): the same steps as the eager engine, one launch over
the group, tensors of odd sizes and two groups of mask flags included; and LBSGD's
'lars' multiplier (its combine on columns of tensors) as on the eager engine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep.engines.triton import TritonEngine

_spec = importlib.util.spec_from_file_location(
    "totals_stage", Path(__file__).parents[1] / "core" / "totals_stage.py"
)
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)


def _triton_steps(make, params, grads):
    tensors = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    opt = gt.TransformOptimizer(tensors, make(), engine="triton")
    for step in grads:
        for p, g in zip(tensors, step):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    return [p.detach().numpy() for p in tensors]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_totals_stage_steps_as_eager(dtype, watch):
    launches = watch(TritonEngine, "launch")
    params, grads = toy.data(dtype, shapes=[(0,), (1,), (7,), (2100,), (3, 5)])
    want = toy.eager_steps(toy.chain(), params, grads)
    got = _triton_steps(toy.chain, params, grads)
    assert len(launches) == len(grads)  # one launch per step, over every tensor
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, **toy.tolerance(dtype))


def _lbsgd():
    return gradstep.lbsgd(0.1, momentum=0.5, warmup_strategy="lars")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbsgd_lars_multiplier_on_several_tensors(dtype, watch):
    launches = watch(TritonEngine, "launch")
    rng = np.random.default_rng(4)
    params = [rng.normal(size=n).astype(dtype) for n in (5, 1, 300, 17)]
    grads = [[np.sin(3 * p + k).astype(dtype) + 0.1 for p in params] for k in range(3)]
    want = toy.eager_steps(_lbsgd(), params, grads)
    got = _triton_steps(_lbsgd, params, grads)
    assert len(launches) == len(grads)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, **toy.tolerance(dtype))
