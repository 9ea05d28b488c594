"""The elementwise stages of SWA, freezing and non-negative parameters on the Triton
engine (under Triton's interpreter) equal the eager torch engine, through
gradstep.torch.TransformOptimizer."""

from __future__ import annotations

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

SIZES = (1, 7, 33)


def _every_other(params):
    return [i % 2 == 0 for i in range(len(params))]


CHAINS = {
    "swa+momentum": lambda: T.parameter_swa(gradstep.momentum(0.05, 0.9), start=2),
    "sgd+nonnegative": lambda: T.chain(gradstep.sgd(0.5), T.keep_params_nonnegative()),
    "adam+freeze": lambda: T.chain(gradstep.adam(1e-2), T.freeze(_every_other)),
}


def run(transform, engine):
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in SIZES]
    opt = gt.TransformOptimizer(params, transform, engine=engine)
    for k in range(3):
        for i, p in enumerate(params):
            g = torch.sin(3 * p.detach() + k) + 0.1 * k
            if i == 2 and k == 1:
                g[0] = float("nan")  # frozen leaves stay put even so
            p.grad = g
        opt.step()
    return [p.detach() for p in params], opt


@pytest.mark.parametrize("name", list(CHAINS))
def test_new_stages_equal_eager(name):
    got, opt = run(CHAINS[name](), "triton")
    want, _ = run(CHAINS[name](), "eager")
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=2e-6, atol=2e-6, equal_nan=True)
    if name == "sgd+nonnegative":
        assert all(bool(((p >= 0) | torch.isnan(p)).all()) for p in got)  # NaN passes, as optax
    if name == "adam+freeze":
        assert not bool(torch.isnan(got[2]).any())
    if name == "swa+momentum":
        averages = [opt.state[p]["average"] for p in opt.param_groups[0]["params"]]
        assert all(not torch.equal(a, p) for a, p in zip(averages, got))
