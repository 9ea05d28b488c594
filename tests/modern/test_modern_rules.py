"""RAdam, Lion, Adafactor and Muon: the behaviour the conformance fixtures do not pin
(option semantics, edge cases, structure), from hand-derived values."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

import gradstep
from gradstep import tree

RADAM = importlib.import_module("gradstep.rules.radam")
ADAFACTOR = importlib.import_module("gradstep.rules.adafactor")
MUON = importlib.import_module("gradstep.rules.muon")


def steps(transform, grads, w0):
    w = np.array(w0, dtype=float)
    opt = gradstep.Optimizer(w, transform)
    out = []
    for g in grads:
        opt.step(np.array(g, dtype=float))
        out.append(w.copy())
    return out


# -- RAdam -------------------------------------------------------------------------------


def test_radam_starts_with_five_momentum_steps():
    traj = steps(gradstep.radam(1.0), [[1.0]] * 6, [0.0])
    np.testing.assert_allclose(np.ravel(traj[:5]), [-1, -2, -3, -4, -5], rtol=1e-15)
    rho6, r6 = RADAM.rectification(0.999, 6)
    assert rho6 > 5 > RADAM.rectification(0.999, 5)[0]
    # m-hat = 1, sqrt(v) = sqrt(1 - 0.999^6): the torch step is r6 / (1 + eps/sqrt(v))
    v = 1 - 0.999**6
    assert traj[5][0] == pytest.approx(-5 - r6 * math.sqrt(v) / (math.sqrt(v) + 1e-8), rel=1e-14)


def test_radam_threshold_rules_differ_exactly_at_the_threshold():
    rho6 = RADAM.rectification(0.999, 6)[0]
    common = dict(learning_rate=1.0, threshold=rho6, epsilon=0.0)
    strict = steps(gradstep.radam(**common, threshold_rule="greater"), [[2.0]] * 6, [0.0])
    inclusive = steps(gradstep.radam(**common, threshold_rule="greater_equal"), [[2.0]] * 6, [0.0])
    assert strict[5][0] == pytest.approx(-12.0)  # still a momentum step: m-hat = 2
    r6 = RADAM.rectification(0.999, 6)[1]
    assert inclusive[5][0] == pytest.approx(-10.0 - r6)  # rectified: sign-like unit step


def test_radam_epsilon_placements():
    """With |g| = epsilon the placements differ by the bias correction of the root."""
    g = [[1e-6]] * 7
    torch_like = steps(gradstep.radam(1.0, epsilon=1e-6), g, [0.0])
    optax_like = steps(gradstep.radam(1.0, epsilon=1e-6, epsilon_placement="outside"), g, [0.0])
    r7 = RADAM.rectification(0.999, 7)[1]
    root_bc = math.sqrt(1 - 0.999**7)
    # m-hat = 1e-6, sqrt(v) = root_bc * 1e-6, sqrt(v-hat) = 1e-6
    expected_torch = -r7 * 1e-6 * root_bc / (root_bc * 1e-6 + 1e-6)
    expected_optax = -r7 * 1e-6 / (1e-6 + 1e-6)
    assert torch_like[6][0] - torch_like[5][0] == pytest.approx(expected_torch, rel=1e-9)
    assert optax_like[6][0] - optax_like[5][0] == pytest.approx(expected_optax, rel=1e-9)


def test_radam_threshold_must_keep_the_rectification_real():
    with pytest.raises(ValueError, match="threshold=3.9.*square root of a negative"):
        gradstep.radam(threshold=3.9)
    # from 4 on it is real (optax accepts 4; at rho_t = 4 exactly the factor is 0)
    gradstep.radam(threshold=4)
    assert RADAM.rectification(0.999, 5)[1] > 0


# -- Lion --------------------------------------------------------------------------------


def test_lion_steps_by_the_sign_and_updates_momentum_with_beta2():
    transform = gradstep.lion(0.1, beta1=0.5, beta2=0.25)
    w = np.array([0.0, 0.0, 0.0])
    opt = gradstep.Optimizer(w, transform)
    opt.step(np.array([1.0, -1.0, 0.0]))
    np.testing.assert_array_equal(w, [-0.1, 0.1, 0.0])
    np.testing.assert_allclose(opt.state["scale_by_lion"]["mu"], [0.75, -0.75, 0.0])
    # c = 0.5 * 0.75 + 0.5 * (-1) < 0: the new gradient wins over the momentum
    opt.step(np.array([-1.0, 1.0, 0.0]))
    np.testing.assert_allclose(w, [0.0, 0.0, 0.0], atol=1e-15)


def test_lion_refined_mode_keeps_small_values():
    w = steps(gradstep.lion(1.0, beta1=0.0, mode="refined"), [[0.25, -3.0]], [0.0, 0.0])[0]
    np.testing.assert_array_equal(w, [-0.25, 1.0])


def test_lion_mask_needs_a_decay():
    with pytest.raises(ValueError, match="mask"):
        gradstep.lion(mask=[True])


# -- Adafactor -----------------------------------------------------------------------------


def test_factored_axes():
    fa = ADAFACTOR.factored_axes
    assert fa((5,), "last_two", 0) is None
    assert fa((3, 4), "last_two", 0) == (0, 1)
    assert fa((2, 3, 4), "last_two", 0) == (1, 2)
    assert fa((4, 2, 3), "largest_two", 0) == (2, 0)
    assert fa((4, 2, 3), "largest_two", 4) is None
    assert fa((200, 300), "largest_two", 128) == (0, 1)
    assert fa((3, 4), "none", 0) is None


def test_adafactor_stores_row_and_column_factors_only():
    params = {"w": np.zeros((6, 5)), "k": np.zeros((2, 3, 4)), "b": np.zeros(5)}
    state = gradstep.adafactor().init(params)["scale_by_factored_rms"]
    assert state["v_row"]["w"].shape == (6, 1) and state["v_col"]["w"].shape == (1, 5)
    assert state["v_row"]["k"].shape == (2, 3, 1) and state["v_col"]["k"].shape == (2, 1, 4)
    assert state["v"]["w"].size == 0 and state["v"]["b"].shape == (5,)
    assert state["v_row"]["b"].size == 0


@pytest.mark.parametrize("placement", ["clamp", "add"])
def test_adafactor_factors_a_rank_one_square_exactly(placement):
    """For g = a b^T the factored estimate of g^2 is exact on the first step, so the
    scaled direction is sign(g) (unit RMS: no clipping)."""
    a, b = np.array([1.0, -2.0, 0.5]), np.array([3.0, 1.0, -1.0, 2.0])
    g = np.outer(a, b)
    w = np.ones((3, 4))
    eps = 0.0 if placement == "add" else None
    transform = gradstep.adafactor(
        0.1,
        relative_step=False,
        multiply_by_parameter_scale=False,
        epsilon1=eps,
        epsilon1_placement=placement,
    )
    gradstep.Optimizer(w, transform).step(g)
    np.testing.assert_allclose(w, 1.0 - 0.1 * np.sign(g), rtol=1e-14)


def test_adafactor_epsilon1_defaults_to_the_dtype_epsilon():
    g = np.zeros((2, 2))
    g[0, 0] = 1.0
    for dtype in (np.float32, np.float64):
        transform = gradstep.adafactor(1.0, relative_step=False, clipping_threshold=None)
        w = np.zeros((2, 2), dtype)
        gradstep.Optimizer(w, transform).step(g.astype(dtype))
        # row factors (0.5, 0) and column factors (0.5, 0), mean row 0.25: estimate 1 at
        # (0, 0), scaled by the parameter-scale floor 1e-3
        assert w.dtype == dtype
        assert w[0, 0] == pytest.approx(-1e-3, rel=1e-6)
        assert np.all(w.ravel()[1:] == 0)


def test_adafactor_relative_step_caps_the_learning_rate():
    g = np.ones(4)
    capped = steps(gradstep.adafactor(0.9), [g] * 4, np.full(4, 2.0))
    diffs = np.diff([np.full(4, 2.0)] + capped, axis=0)[:, 0]
    scales = [2.0, capped[0][0], capped[1][0], capped[2][0]]
    expected = [-min(0.9, 1 / math.sqrt(t)) * s for t, s in zip(range(1, 5), scales)]
    np.testing.assert_allclose(diffs, expected, rtol=1e-14)


def test_adafactor_options_without_effect_are_refused():
    with pytest.raises(ValueError, match="epsilon2"):
        gradstep.adafactor(epsilon2=0.1, multiply_by_parameter_scale=False)
    with pytest.raises(ValueError, match="weight_decay_scale"):
        gradstep.adafactor(weight_decay_scale="none")
    with pytest.raises(ValueError, match="min_dim_size_to_factor"):
        gradstep.adafactor(factored="none", min_dim_size_to_factor=128)
    with pytest.raises(ValueError, match="mask"):
        gradstep.adafactor(mask=[True])


def test_adafactor_uses_sublinear_memory_for_matrices():
    params = [np.zeros((300, 200))]
    state = gradstep.adafactor().init(params)["scale_by_factored_rms"]
    assert sum(np.size(x) for x in tree.leaves(state)) == 300 + 200 + 1


# -- Muon --------------------------------------------------------------------------------


def test_newton_schulz_orthogonalises_roughly():
    rng = np.random.default_rng(0)
    for shape in ((5, 3), (3, 5), (4, 4)):
        m = rng.normal(size=shape)
        o = MUON.newton_schulz(m)
        s = np.linalg.svd(o, compute_uv=False)
        assert np.all((s > 0.5) & (s < 1.3)), s
        # same singular vectors as the polar factor: o^T m is symmetric positive
        sym = o.T @ m if shape[0] >= shape[1] else m @ o.T
        np.testing.assert_allclose(sym, sym.T, atol=1e-10)


def test_newton_schulz_commutes_with_transposition_and_keeps_float32():
    m = np.random.default_rng(1).normal(size=(3, 6))
    np.testing.assert_allclose(MUON.newton_schulz(m.T), MUON.newton_schulz(m).T, rtol=1e-14)
    assert MUON.newton_schulz(m.astype(np.float32)).dtype == np.float32


def test_muon_shape_scales():
    assert MUON.shape_scale((8, 2), "width_out_in", 0.2) == 2.0
    assert MUON.shape_scale((2, 8), "width_out_in", 0.2) == 1.0
    assert MUON.shape_scale((2, 8), "width_in_out", 0.2) == 2.0
    assert MUON.shape_scale((4, 9), "rms", 0.2) == pytest.approx(0.6)
    assert MUON.shape_scale((4, 9), "none", 0.2) == 1.0


def test_muon_sends_other_parameters_to_the_fallback():
    rng = np.random.default_rng(2)
    params = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "s": np.array(0.5)}
    ref = {"b": params["b"].copy(), "s": params["s"].copy()}
    opt = gradstep.Optimizer(params, gradstep.muon(0.01))
    ref_opt = gradstep.Optimizer(ref, gradstep.adamw(0.01, weight_decay=0.0))
    for k in range(3):
        grads = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "s": np.array(0.1 * k)}
        opt.step(grads)
        ref_opt.step({"b": grads["b"], "s": grads["s"]})
    np.testing.assert_array_equal(params["b"], ref["b"])
    np.testing.assert_array_equal(params["s"], ref["s"])


def test_muon_fallback_choices():
    params = [np.ones((2, 3)), np.ones(3)]
    with pytest.raises(ValueError, match="not a matrix"):
        gradstep.Optimizer(params, gradstep.muon(fallback="none"))
    opt = gradstep.Optimizer(params, gradstep.muon(0.1, fallback=gradstep.sgd(1.0)))
    opt.step([np.zeros((2, 3)), np.full(3, 0.5)])
    np.testing.assert_array_equal(params[1], np.full(3, 0.5))
    with pytest.raises(ValueError, match="fallback"):
        gradstep.muon(fallback="adam")


def test_muon_matrix_step_is_the_scaled_polar_factor_plus_decay():
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(6, 3))
    g = rng.normal(size=(6, 3))
    w = w0.copy()
    gradstep.Optimizer(w, gradstep.muon(0.1, weight_decay=0.5, nesterov=False)).step(g)
    o = MUON.newton_schulz(0.05 * g)
    np.testing.assert_allclose(w, w0 - 0.1 * (math.sqrt(2.0) * o + 0.5 * w0), rtol=1e-13)


def test_muon_rms_scale_needs_the_rms_update_scale():
    with pytest.raises(ValueError, match="rms_scale"):
        gradstep.muon(rms_scale=0.3)
    assert isinstance(gradstep.muon(update_scale="rms", rms_scale=0.3), gradstep.Transform)


@pytest.mark.parametrize("shape", [(3, 4), (5,)], ids=["factored", "full"])
def test_adafactor_on_float16_keeps_epsilon1_and_stays_finite(shape):
    # optax's and Keras' setting: epsilon1 = 1e-30 added to g**2 is 0 in float16; the
    # stage's math must run in float32, as an element function's does, or a zero
    # gradient divides 0 by 0
    placement = "add"
    w16 = np.ones(shape, np.float16)
    w32 = np.ones(shape, np.float32)
    rule = dict(learning_rate=0.01, epsilon1=1e-30, epsilon1_placement=placement)
    grads = [np.zeros(shape), np.full(shape, 0.5), np.full(shape, -0.25)]
    o16 = gradstep.Optimizer(w16, gradstep.adafactor(**rule))
    o32 = gradstep.Optimizer(w32, gradstep.adafactor(**rule))
    for g in grads:
        o16.step(g.astype(np.float16))
        o32.step(g.astype(np.float32))
    assert np.isfinite(w16).all()
    np.testing.assert_array_equal(w16, w32.astype(np.float16))
    assert o16.state["scale_by_factored_rms"]["v_row"].dtype == np.float16
