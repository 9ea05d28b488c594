"""Ranger21's schedule and the arguments its declared ranges do not cover."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.rules.ranger21 import (
    default_warmdown_steps,
    default_warmup_steps,
    scheduled_learning_rate,
    std_normalized,
)


def test_default_schedule_lengths():
    # ceil(2 / (1 - 0.999)) = 2000 steps of warm-up, unless that is over 45% of the run
    assert default_warmup_steps(10000, 0.999) == 2000
    assert default_warmup_steps(1000, 0.999) == 220
    assert default_warmdown_steps(1000) == 280


def test_schedule_warms_up_holds_and_warms_down():
    lr = [scheduled_learning_rate(1.0, t, 4, 3, 10, 0.1) for t in range(1, 11)]
    # warm-up t/4; flat; warm-down from step 7 = 10 - 3 towards 0.1 in 4 parts
    np.testing.assert_allclose(lr[:4], [0.25, 0.5, 0.75, 1.0])
    assert lr[4] == lr[5] == 1.0
    np.testing.assert_allclose(lr[6:], [1.0 - 0.9 * k / 4 for k in (1, 2, 3, 4)])


def test_learning_rate_zero_leaves_the_parameters():
    w = np.array([[1.0, -2.0], [0.5, 3.0]])
    opt = gradstep.Optimizer(w, gradstep.ranger21(0.0, num_iterations=20, weight_decay=0.1))
    for _ in range(7):  # past a Lookahead synchronisation
        opt.step(np.array([[0.3, -0.1], [0.2, 0.4]]))
    np.testing.assert_array_equal(w, [[1.0, -2.0], [0.5, 3.0]])


def test_std_normalized_divides_by_the_unbiased_std():
    g = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(std_normalized(g), g / (np.std(g, ddof=1) + 1e-8))
    two = np.array([1.0, 5.0])  # two elements or fewer pass through
    assert std_normalized(two) is two


@pytest.mark.parametrize("name", ["num_warmup_steps", "num_warmdown_steps"])
@pytest.mark.parametrize("value", [-1, 2.5, "10"])
def test_schedule_lengths_are_validated(name, value):
    with pytest.raises(ValueError, match=f"{name}=.*valid values: None or an integer"):
        gradstep.ranger21(num_iterations=10, **{name: value})


def test_num_iterations_is_required_and_validated():
    with pytest.raises(TypeError, match="num_iterations"):
        gradstep.ranger21()
    with pytest.raises(ValueError, match="num_iterations"):
        gradstep.ranger21(num_iterations=0)
