"""Transforms whose state keeps counts (a step count per parameter, integer counters)
step through ``TransformOptimizer`` as through the NumPy front, and their state
survives a ``state_dict`` round trip: the resumed run follows the uninterrupted one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T
from gradstep.transforms import mxnet

SHAPES = [(3, 4), (5,)]
STEPS = 6


def _adam():
    return gradstep.adam(0.1)


# each keeps an integer count or counter in its state
COUNTED = {
    "per_parameter": lambda: mxnet.per_parameter(_adam()),
    "per_parameter_chained": lambda: gradstep.chain(
        mxnet.gradient(clip_gradient=1.0), mxnet.per_parameter(gradstep.nadam(0.1))
    ),
    "per_parameter_uncounted": lambda: mxnet.per_parameter(gradstep.momentum(0.1, 0.9)),
    # integer counters of their own in each parameter's state
    "per_parameter_accumulate": lambda: mxnet.per_parameter(T.accumulate(_adam(), 2)),
    "per_parameter_skip_nonfinite": lambda: mxnet.per_parameter(T.skip_nonfinite(_adam())),
    "accumulate": lambda: T.accumulate(_adam(), 2),
    "skip_nonfinite": lambda: T.skip_nonfinite(_adam()),
    "lookahead": lambda: T.lookahead(_adam(), sync_period=2),
    "reduce_on_plateau": lambda: gradstep.chain(_adam(), T.reduce_on_plateau()),
    "monitor_ema": lambda: gradstep.chain(
        _adam(), T.monitor({"ema": T.measure_with_ema("update_norm", 0.9)})
    ),
}


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(STEPS)]
    return w0, grads


def _numpy_run(make, w0, grads) -> list[np.ndarray]:
    w = [a.copy() for a in w0]
    opt = gradstep.Optimizer(w, make())
    for g in grads:
        opt.step([a.copy() for a in g])
    return w


def _torch_steps(opt, params, grads) -> None:
    for g in grads:
        for p, a in zip(params, g):
            p.grad = torch.from_numpy(a.copy())
        opt.step()


@pytest.mark.parametrize("name", list(COUNTED))
def test_torch_front_follows_the_numpy_front(name):
    w0, grads = _data()
    params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in w0]
    opt = gt.TransformOptimizer(params, COUNTED[name]())
    _torch_steps(opt, params, grads)
    for p, want in zip(params, _numpy_run(COUNTED[name], w0, grads)):
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(COUNTED))
def test_state_dict_round_trip_resumes_the_run(name):
    w0, grads = _data(1)
    params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in w0]
    opt = gt.TransformOptimizer(params, COUNTED[name]())
    _torch_steps(opt, params, grads[:3])
    saved = copy.deepcopy(opt.state_dict())  # torch's state dict holds the live tensors
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in params]
    other = gt.TransformOptimizer(resumed, COUNTED[name]())
    other.load_state_dict(saved)
    _torch_steps(opt, params, grads[3:])
    _torch_steps(other, resumed, grads[3:])
    for p, q in zip(params, resumed):
        assert torch.equal(p, q)
    want = _numpy_run(COUNTED[name], w0, grads)
    for q, w in zip(resumed, want):
        np.testing.assert_allclose(q.detach().numpy(), w, rtol=1e-5, atol=1e-6)


def test_a_per_parameter_count_is_torchs_step():
    """per_parameter's count is each parameter's ``step``, kept as torch keeps it (a
    float tensor), advanced once per step of that parameter."""
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2))
    opt = gt.TransformOptimizer([a, b], mxnet.per_parameter(_adam()))
    for i in range(3):
        a.grad = torch.ones(3)
        b.grad = torch.ones(2) if i == 0 else None  # b takes one step only
        opt.step()
    steps = [opt.state[p]["step"] for p in (a, b)]
    assert all(s.dtype == torch.float32 and s.dim() == 0 for s in steps)
    assert [float(s) for s in steps] == [3.0, 1.0]
