"""Adan's ``skip_first_step`` (adan-pytorch's first step), from hand-derived values."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradstep


def _run(transform, grads, w0):
    w = np.array(w0, dtype=float)
    opt = gradstep.Optimizer(w, transform)
    out = []
    for g in grads:
        opt.step(np.array(g, dtype=float))
        out.append(w.copy())
    return out


@pytest.mark.parametrize("engine_kwargs", [{}, {"weight_decay": 0.1}])
def test_first_step_only_stores_the_gradient(engine_kwargs):
    lr, b1, b2, b3, eps = 0.1, 0.9, 0.8, 0.95, 1e-8
    lam = engine_kwargs.get("weight_decay", 0.0)
    g1, g2 = 0.5, -2.0
    transform = gradstep.adan(lr, b1, b2, b3, eps, skip_first_step=True, **engine_kwargs)
    w1, w2 = (x[0] for x in _run(transform, [[g1], [g2]], [1.0]))
    # step 1: moments stay zero, the step is zero, only the proximal shrink acts
    assert w1 == pytest.approx(1.0 / (1 + lr * lam), rel=1e-15)
    # step 2: the first moment update, with the change g2 - g1, corrected for t = 2
    m, d = (1 - b1) * g2, (1 - b2) * (g2 - g1)
    n = (1 - b3) * (g2 + b2 * (g2 - g1)) ** 2
    u = (m / (1 - b1**2) + b2 * d / (1 - b2**2)) / (math.sqrt(n / (1 - b3**2)) + eps)
    assert w2 == pytest.approx((w1 - lr * u) / (1 + lr * lam), rel=1e-14)


def test_default_steps_from_the_first_gradient():
    (w1,) = _run(gradstep.adan(0.1, epsilon=0.0), [[0.5]], [1.0])
    assert w1[0] == pytest.approx(0.9, rel=1e-15)


def test_skip_first_step_is_validated():
    with pytest.raises(ValueError, match="skip_first_step"):
        gradstep.adan(skip_first_step="yes")
    # the zero first step divides zero by epsilon: one of them must be positive
    with pytest.raises(ValueError, match="skip_first_step"):
        gradstep.adan(epsilon=0.0, skip_first_step=True)
    gradstep.adan(epsilon=0.0, eps_root=1e-12, skip_first_step=True)
