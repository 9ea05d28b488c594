"""Clipping, norm constraints, weight decay and the non-finite policies."""

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T


def apply(t, g, p=None):
    p = g if p is None else p
    u, _ = t.update(g, t.init(p), p)
    return u


def test_clip_by_value():
    np.testing.assert_array_equal(apply(T.clip(0.5), np.array([-2.0, 0.1, 3.0])), [-0.5, 0.1, 0.5])


def test_clip_by_global_norm_probe_and_below_threshold():
    u = apply(T.clip_by_global_norm(1.0), [np.array([3.0]), np.array([4.0])])
    np.testing.assert_allclose([u[0][0], u[1][0]], [0.6, 0.8])
    same = apply(T.clip_by_global_norm(10.0), [np.array([3.0]), np.array([4.0])])
    assert same[0][0] == 3.0 and same[1][0] == 4.0
    with np.errstate(invalid="ignore"):
        nan = apply(T.clip_by_global_norm(1.0), [np.array([np.nan]), np.array([4.0])])
    assert np.isnan(nan[1][0])


def test_clip_by_norm_is_per_tensor():
    u = apply(T.clip_by_norm(1.0), [np.array([3.0, 4.0]), np.array([0.1])])
    np.testing.assert_allclose(u[0], [0.6, 0.8])
    assert u[1][0] == 0.1


def test_norm_constraint_lasagne_axes_and_shrink_inside_the_ball():
    w = np.array([[3.0, 0.1], [4.0, 0.0]])  # columns of norm 5 and 0.1
    out = gradstep.norm_constraint(w, 1.0)
    np.testing.assert_allclose(out[:, 0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], [0.1 * 0.1 / (0.1 + 1e-7), 0.0])
    conv = np.ones((2, 3, 2, 2))
    np.testing.assert_allclose(
        np.sqrt((gradstep.norm_constraint(conv, 1.0) ** 2).sum((1, 2, 3))), 1.0, rtol=1e-6
    )
    with pytest.raises(ValueError, match="1 dimensions"):
        gradstep.norm_constraint(np.ones(3), 1.0)
    np.testing.assert_allclose(
        gradstep.norm_constraint(np.array([3.0, 4.0]), 1.0, (0,)), [0.6, 0.8], rtol=1e-6
    )


def test_total_norm_constraint_returns_the_norm_before_scaling():
    scaled, norm = gradstep.total_norm_constraint(
        [np.array([3.0]), np.array([4.0])], 1.0, return_norm=True
    )
    assert norm == 5.0
    np.testing.assert_allclose([scaled[0][0], scaled[1][0]], [0.6, 0.8], rtol=1e-6)
    inside = gradstep.total_norm_constraint([np.array([1.0])], 5.0)
    assert inside[0][0] == pytest.approx(1 / (1 + 1e-7), rel=1e-12)


def test_constraints_as_chain_stages_on_updates_and_params():
    g = np.array([[3.0], [4.0]])
    np.testing.assert_allclose(apply(T.constrain_norm(1.0), g), [[0.6], [0.8]], rtol=1e-6)
    max_norm = gradstep.chain(gradstep.sgd(1.0), T.constrain_norm(1.0, target="params"))
    p = np.array([[3.0], [4.0]])
    gradstep.Optimizer(p, max_norm).step(np.array([[-3.0], [-4.0]]))
    np.testing.assert_allclose(p, [[0.6], [0.8]], rtol=1e-6)
    u = apply(T.constrain_total_norm(1.0), [np.array([3.0]), np.array([4.0])])
    np.testing.assert_allclose([u[0][0], u[1][0]], [0.6, 0.8], rtol=1e-6)


def test_coupled_and_decoupled_decay_by_position():
    p = np.array([2.0])
    coupled = gradstep.adam(0.1, weight_decay=0.5)
    decoupled = gradstep.adamw(0.1, weight_decay=0.5)
    # coupled: g + wd*w = 0 -> Adam sees a zero gradient; decoupled: -lr*wd*w
    assert apply(coupled, np.array([-1.0]), p)[0] == 0.0
    assert apply(decoupled, np.array([0.0]), p)[0] == pytest.approx(-0.1 * 0.5 * 2.0)


def test_dandelion_clear_nan_sets_the_parameter_element_to_zero():
    p = np.array([1.0, 2.0])
    opt = gradstep.Optimizer(p, gradstep.sgd(0.1, clear_nan=True))
    opt.step(np.array([np.nan, 1.0]))
    np.testing.assert_array_equal(p, [0.0, 1.9])
    opt.step(np.array([np.inf, 1.0]))  # infinities are not cleared
    assert p[0] == -np.inf and p[1] == pytest.approx(1.8)


def test_dandelion_clear_nan_in_adam_clears_state_and_pins_inf():
    p = np.array([1.0, 2.0, 3.0])
    opt = gradstep.Optimizer(p, gradstep.adam(0.1, clear_nan=True))
    with np.errstate(invalid="ignore"):
        opt.step(np.array([np.nan, np.inf, 1.0]))
    state = opt.state["scale_by_adam"]
    assert int(state["count"]) == 1
    assert state["mu"][0] == 0.0 and state["nu"][0] == 0.0  # NaN cleared
    assert state["mu"][1] == np.inf and state["nu"][1] == np.inf  # inf kept
    assert p[0] == 0.0 and p[1] == 0.0  # NaN step -> parameter element 0
    assert p[2] == pytest.approx(2.9)
    with np.errstate(invalid="ignore"):
        opt.step(np.array([1.0, 1.0, 1.0]))
    assert p[1] == 0.0  # pinned at 0 by inf/inf
    assert np.all(np.isfinite(p))


def test_clear_nan_leaves_finite_steps_bit_identical():
    grads = [np.array([0.3, -0.7]), np.array([0.1, 0.2])]
    results = []
    for clear in (False, True):
        p = np.array([1.0, 2.0])
        opt = gradstep.Optimizer(p, gradstep.adadelta(clear_nan=clear))
        for g in grads:
            opt.step(g)
        results.append(p)
    np.testing.assert_array_equal(*results)


def test_zero_nonfinite_policy():
    t = T.nonfinite_policy(gradstep.sgd(1.0), "zero")
    u = apply(t, np.array([np.nan, np.inf, 2.0]), np.zeros(3))
    np.testing.assert_array_equal(u, [0.0, 0.0, -2.0])


def test_skip_nonfinite_keeps_state_and_follows_optax_probe():
    t = T.skip_nonfinite(gradstep.sgd(1.0), max_consecutive_errors=2)
    p = np.array([0.0])
    state = t.init(p)
    outs, counts = [], []
    for g in (np.nan, np.nan, np.nan, 1.0):
        u, state = t.update(np.array([g]), state, p)
        outs.append(float(u[0]))
        counts.append(int(state["notfinite_count"]))
    assert outs[:2] == [0.0, 0.0] and np.isnan(outs[2]) and outs[3] == -1.0
    assert counts == [1, 2, 3, 0] and int(state["total_notfinite"]) == 3


def test_skip_policy_freezes_inner_state():
    t = T.nonfinite_policy(gradstep.adam(0.1), "skip")
    p = np.array([1.0])
    state = t.init(p)
    _, state = t.update(np.array([1.0]), state, p)
    before = state["inner"]
    u, state = t.update(np.array([np.nan]), state, p)
    assert u[0] == 0.0 and state["inner"] is before
    with pytest.raises(ValueError, match="policy"):
        T.nonfinite_policy(gradstep.sgd(), "ignore")
