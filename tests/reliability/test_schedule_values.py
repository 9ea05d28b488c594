"""A schedule's value is checked at step time against the hyperparameter's declared
range (NaN, inf and out-of-range values are refused), in the core, for every front."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import gradstep
from gradstep._core.elementwise import resolve


def _bad_after(k, value, good=0.1):
    return lambda t: value if t >= k else good


@pytest.mark.parametrize("engine", ["fused", "eager"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -0.1])
def test_a_bad_learning_rate_from_a_schedule_is_refused_and_changes_nothing(engine, value):
    params = [np.linspace(-1, 1, 5)]
    opt = gradstep.Optimizer(params, gradstep.adam(_bad_after(2, value)), engine=engine)
    opt.step([np.ones(5)])
    opt.step([np.ones(5)])
    before = copy.deepcopy((params, opt.state))
    with pytest.raises(ValueError, match="schedule of learning_rate.*at step 2"):
        opt.step([np.ones(5)])
    np.testing.assert_array_equal(params[0], before[0][0])
    assert int(opt.state["scale_by_adam"]["count"]) == int(before[1]["scale_by_adam"]["count"])


def test_a_schedule_given_as_a_step_override_is_checked_too():
    opt = gradstep.Optimizer([np.ones(3)], gradstep.momentum(0.1, momentum=0.9))
    with pytest.raises(ValueError, match=r"schedule of momentum gave momentum=1\.5"):
        opt.step([np.ones(3)], momentum=lambda t: 1.5)


def test_schedules_inside_a_reduction_stage_are_checked():
    clip = gradstep.transforms.clip_by_global_norm(lambda t: float("nan"))
    opt = gradstep.Optimizer([np.ones(3)], gradstep.chain(clip, gradstep.sgd(0.1)))
    with pytest.raises(ValueError, match="schedule of max_norm"):
        opt.step([np.ones(3)])


def test_the_torch_front_refuses_a_bad_scheduled_value():
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    from gradstep.torch import TransformOptimizer

    w = torch.nn.Parameter(torch.ones(3))
    opt = TransformOptimizer([w], gradstep.adam(lambda t: float("nan")))
    w.grad = torch.ones(3)
    with pytest.raises(ValueError, match="schedule of learning_rate"):
        opt.step()
    assert torch.equal(w.detach(), torch.ones(3))


def test_resolve_checks_only_host_numbers():
    class Traced:  # stands for a device or traced value: not checked on the host
        pass

    token = Traced()
    assert resolve({"lr": lambda t: token}, 0, {})["lr"] is token
    assert resolve({"lr": lambda t: np.float32(0.5)}, 0, {})["lr"] == 0.5
    with pytest.raises(ValueError, match="lr=nan"):
        resolve({"lr": lambda t: np.asarray(np.nan)}, 0, {})
