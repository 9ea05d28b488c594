"""The divergence probes of the semantics reference (section 9), each pinned to one
option setting of a gradstep rule."""

import numpy as np
import pytest

import gradstep


def first_step(transform, g, w=0.0):
    p = np.array([w] * len(g)) if np.ndim(g) else np.array(w)
    g = np.asarray(g, dtype=np.float64)
    u, _ = transform.update(g, transform.init(p), p)
    return u


def trajectory(transform, grads, lrs=None, w0=0.0):
    p = np.array([w0])
    opt = gradstep.Optimizer(p, transform)
    out = []
    for k, g in enumerate(grads):
        opt.step(np.array([g], dtype=float), **({} if lrs is None else {"learning_rate": lrs[k]}))
        out.append(float(p[0]))
    return out


G = [1e-3, 1e-6, 1e-9]


@pytest.mark.parametrize(
    "placement, epsilon, expected",
    [
        ("outside", 1e-8, [0.99999, 0.990099, 0.0909091]),
        ("outside_uncorrected", 1e-8, [0.999684, 0.759747, 0.00315231]),
        ("inside_uncorrected", 1e-8, [0.301511, 0.000316228, 3.16228e-7]),
        ("inside", 1e-8, [0.995037, 0.0099995, 1.0e-5]),
    ],
)
def test_adam_epsilon_placement_first_step(placement, epsilon, expected):
    u = first_step(gradstep.adam(1.0, epsilon=epsilon, epsilon_placement=placement), G)
    np.testing.assert_allclose(-u, expected, rtol=2e-5)


def test_keras_epsilon_is_the_uncorrected_form_with_1e_7():
    u = first_step(gradstep.adam(1.0, epsilon=1e-7, epsilon_placement="outside_uncorrected"), G)
    np.testing.assert_allclose(-u, [0.996848, 0.240253, 0.000316128], rtol=2e-5)


def test_momentum_buffer_with_and_without_learning_rate():
    lrs = [1.0, 0.1]
    outside = trajectory(gradstep.momentum(1.0, 0.9, lr_in_buffer=False), [1, 1], lrs)
    inside = trajectory(gradstep.momentum(1.0, 0.9, lr_in_buffer=True), [1, 1], lrs)
    assert outside == pytest.approx([-1.0, -1.19])
    assert inside == pytest.approx([-1.0, -2.0])


def test_torch_dampening_is_not_applied_on_the_first_step():
    p = np.array([1.0, -2.0])
    opt = gradstep.Optimizer(p, gradstep.momentum(0.1, 0.9, dampening=0.5, lr_in_buffer=False))
    opt.step(np.array([1.0, 1.0]))
    np.testing.assert_allclose(p, [0.9, -2.1])
    opt.step(np.array([2.0, -1.0]))
    np.testing.assert_allclose(p, [0.71, -2.14])


@pytest.mark.parametrize(
    "mode, expected", [("raw", [-1.0, -1.7408, -2.3740]), ("corrected", [-1.0, -1.5263, -1.8953])]
)
def test_amsgrad_maximum_before_or_after_bias_correction(mode, expected):
    got = trajectory(gradstep.adam(1.0, amsgrad=mode), [1.0, 0.1, 0.1])
    assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("placement, expected", [("inside", 0.9534626), ("outside", 3.1612780)])
def test_rmsprop_epsilon_placement(placement, expected):
    u = first_step(gradstep.rmsprop(1.0, 0.9, 1e-8, epsilon_placement=placement), [1e-4])
    assert -u[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, -0.9999995),  # Lasagne defaults
        (
            {"learning_rate": 1e-2, "epsilon": 1e-10, "epsilon_placement": "outside"},
            -0.0099999999990,
        ),  # torch defaults
        ({"epsilon": 1e-7, "initial_accumulator_value": 0.1}, -0.95346),  # optax
    ],
)
def test_adagrad_defaults_of_each_library(kwargs, expected):
    assert first_step(gradstep.adagrad(**kwargs), [1.0])[0] == pytest.approx(expected, rel=1e-5)


def test_adadelta_lasagne_defaults_first_step():
    assert first_step(gradstep.adadelta(), [1.0])[0] == pytest.approx(-0.0044721, rel=1e-4)


def test_adamax_zero_gradient_coordinates():
    torch_like = first_step(gradstep.adamax(epsilon_placement="in_max"), [0.0])
    assert torch_like[0] == 0.0
    mxnet_1x = gradstep.adamax(epsilon=0.0)  # MXNet 1.x: no epsilon at all
    with np.errstate(invalid="ignore"):
        assert np.isnan(first_step(mxnet_1x, [0.0])[0])


def test_lasagne_nesterov_form():
    # v <- mu v - lr g; w <- w + mu v_new - lr g
    got = trajectory(gradstep.nesterov_momentum(0.1, 0.9), [1.0, 1.0])
    v1 = -0.1
    w1 = 0.9 * v1 - 0.1
    v2 = 0.9 * v1 - 0.1
    assert got == pytest.approx([w1, w1 + 0.9 * v2 - 0.1])


def test_apply_momentum_follows_any_rule():
    t = gradstep.chain(gradstep.adam(0.1), gradstep.apply_momentum(0.5))
    p = np.array([0.0])
    state = t.init(p)
    u1, state = t.update(np.array([1.0]), state, p)
    u2, state = t.update(np.array([1.0]), state, p)
    assert float(u1[0]) == pytest.approx(-0.1)
    assert float(u2[0]) == pytest.approx(0.5 * -0.1 - 0.1)
