"""objax's LARS, checked against HAND-DERIVED float64 values.

objax cannot be installed here, so there is no recorded trajectory. Its LARS
(``google/objax:objax/optimizer/lars.py``, semantics reference section 4) computes,
per tensor, with ``P = ||w||`` and ``G = ||g||``::

    r = tc * P / (G + wd * P + eps)
    local_lr = lr * max(P == 0 or G == 0, r)
    m = momentum * m + local_lr * (g + wd * w)
    w = w - m

with defaults momentum 0.9, wd 1e-4, tc 1e-3, eps 1e-5, and the learning rate passed
on every call; its documentation prescribes ``lr = lr0 * (1 - t/T)**2``. The values
below are that arithmetic written out by hand (literals evaluated in float64), and a
direct transcription of those four lines that shares no code with gradstep.
"""

import math

import numpy as np
import pytest

import gradstep
from gradstep.schedules import polynomial_decay


def one_step(w, g, lr=1.0, **kwargs):
    """Parameters after one gradstep LARS step on a single tensor."""
    w = [np.array(w, dtype=np.float64)]
    gradstep.Optimizer(w, gradstep.lars(lr, **kwargs)).step([np.array(g, dtype=np.float64)])
    return w[0]


def test_first_step_by_hand():
    # w = [3, 4], g = [0, 0.5], lr 0.1, objax's defaults
    r = 1e-3 * 5.0 / (0.5 + 1e-4 * 5.0 + 1e-5)
    assert r == pytest.approx(0.009989810393398735, rel=1e-15)
    m1 = [0.1 * r * (0.0 + 1e-4 * 3.0), 0.1 * r * (0.5 + 1e-4 * 4.0)]
    want = [3.0 - m1[0], 4.0 - m1[1]]  # [2.9999997003056884, 3.999500109887914]
    got = one_step([3.0, 4.0], [0.0, 0.5], lr=0.1)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_allclose(got, [2.9999997003056884, 3.999500109887914], rtol=1e-15)


@pytest.mark.parametrize(
    "form, epsilon, probe",
    [
        # semantics reference 9.10: w = [3, 4], g = [0, 0.5], wd 0.01, tc 1e-3
        ("objax", 1e-5, 0.00909074),  # 0.005 / (0.5 + 0.05 + 1e-5)
        ("mxnet", 0.0, 0.00909091),  # 0.005 / (0.5 + 0.05)
        ("optax", 0.0, 0.00924500),  # 0.005 / ||[0.03, 0.54]||
    ],
)
def test_trust_ratio_denominator_probe(form, epsilon, probe):
    w0, g = np.array([3.0, 4.0]), np.array([0.0, 0.5])
    w1 = one_step(w0, g, momentum=0.0, weight_decay=0.01, epsilon=epsilon, form=form)
    ratio = (w0 - w1) / (g + 0.01 * w0)
    np.testing.assert_allclose(ratio, probe, rtol=1e-6)


def test_zero_gradient_multiplier_exceeds_one_in_objax_form():
    # ||g|| = 0, ||w|| = 5, defaults: max(1, 1e-3*5 / (1e-4*5 + 1e-5)) = 9.8039...
    multiplier = max(1.0, 1e-3 * 5.0 / (1e-4 * 5.0 + 1e-5))
    assert multiplier == pytest.approx(9.80392156862745, rel=1e-14)
    w0 = np.array([3.0, 4.0])
    w1 = one_step(w0, [0.0, 0.0], momentum=0.0)
    np.testing.assert_allclose(w0 - w1, multiplier * 1e-4 * w0, rtol=1e-11)
    # MXNet uses 1 instead; optax's update g + wd w is not zero, so its ratio is
    # tc ||w|| / (||wd w|| + eps), here the same number as objax's
    w1 = one_step(w0, [0.0, 0.0], momentum=0.0, form="mxnet")
    np.testing.assert_allclose(w0 - w1, 1e-4 * w0, rtol=1e-11)
    w1 = one_step(w0, [0.0, 0.0], momentum=0.0, form="optax")
    np.testing.assert_allclose(w0 - w1, 1e-3 * 5.0 / (1e-4 * 5.0 + 1e-5) * 1e-4 * w0, rtol=1e-11)


def test_zero_parameter_norm_gives_the_plain_step():
    # P = 0: r = 0, so local_lr = lr * max(1, 0) = lr
    w1 = one_step([0.0, 0.0], [1.0, -2.0], lr=0.1)
    np.testing.assert_allclose(w1, [-0.1, 0.2], rtol=1e-15)


def test_both_norms_zero_with_zero_epsilon_is_objax_nan():
    # objax divides 0 by 0 here; gradstep's objax form reproduces it (other forms: 1)
    with np.errstate(invalid="ignore"):
        w1 = one_step([0.0, 0.0], [0.0, 0.0], momentum=0.0, epsilon=0.0)
    assert np.all(np.isnan(w1))
    assert np.all(one_step([0.0, 0.0], [0.0, 0.0], momentum=0.0, epsilon=0.0, form="mxnet") == 0)


def objax_lars(ws, grads, ms, lr, momentum=0.9, wd=1e-4, tc=1e-3, eps=1e-5):
    """objax's four lines, transcribed (float64, per tensor)."""
    new_w, new_m = [], []
    for w, g, m in zip(ws, grads, ms):
        p_norm, g_norm = math.sqrt(float(np.sum(w * w))), math.sqrt(float(np.sum(g * g)))
        r = tc * p_norm / (g_norm + wd * p_norm + eps)
        local_lr = lr * max(float(p_norm == 0 or g_norm == 0), r)
        m = momentum * m + local_lr * (g + wd * w)
        new_w.append(w - m)
        new_m.append(m)
    return new_w, new_m


def test_trajectory_with_the_documented_polynomial_decay():
    """Twelve steps on two tensors (one starting at 0, one with zero gradients on two
    steps), lr0 (1 - t/T)^2 with T = 10 (so the rate reaches 0 and stays there)."""
    rng = np.random.default_rng(7)
    target = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    ws = [rng.normal(size=(3, 4)), np.zeros(5)]
    ms = [np.zeros_like(w) for w in ws]
    params = [w.copy() for w in ws]
    lr0, total = 2.0, 10
    opt = gradstep.Optimizer(
        params,
        gradstep.lars(polynomial_decay(lr0, 0.0, 2, total), trust_coefficient=0.05),
    )
    for t in range(12):
        grads = [w - c for w, c in zip(params, target)]
        if t in (4, 5):
            grads[1] = np.zeros(5)
        lr = lr0 * (1 - min(t, total) / total) ** 2  # objax's caller passes this
        ws, ms = objax_lars(ws, [g.copy() for g in grads], ms, lr, tc=0.05)
        opt.step(grads)
        for got, want in zip(params, ws):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    # the buffer holds -m (gradstep keeps the signed step), and the schedule hit zero
    np.testing.assert_allclose(opt.state["momentum"]["velocity"][0], -ms[0], rtol=1e-13)
    assert polynomial_decay(lr0, 0.0, 2, total)(total) == 0.0


def test_learning_rate_per_call_like_objax():
    """objax takes lr on every call: the same as a per-step override in gradstep."""
    rng = np.random.default_rng(3)
    ws = [rng.normal(size=4), rng.normal(size=(2, 2))]
    ms = [np.zeros_like(w) for w in ws]
    params = [w.copy() for w in ws]
    opt = gradstep.Optimizer(params, gradstep.lars(0.0, momentum=0.8, weight_decay=0.01))
    for lr in (0.5, 0.1, 0.3):
        grads = [np.sin(p) for p in params]
        ws, ms = objax_lars(ws, grads, ms, lr, momentum=0.8, wd=0.01)
        opt.step(grads, learning_rate=lr)
    for got, want in zip(params, ws):
        np.testing.assert_allclose(got, want, rtol=1e-13)
