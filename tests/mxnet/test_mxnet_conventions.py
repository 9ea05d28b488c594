"""MXNet's conventions beyond the replayed fixtures: per-parameter step counts, the
NAdam schedule shared across parameters, the gradient-handling stage, SGLD's noise,
and the rules' hand-derived probes (semantics reference, sections 1 and 9)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep.rules.nadam import momentum_schedule
from gradstep.transforms import mxnet

HERE = Path(__file__).parent
SKIPS = json.loads((HERE / "fixtures" / "mxnet_skips.json").read_text())
MANIFEST = json.loads(
    (HERE.parent / "conformance" / "fixtures" / "MANIFEST-mxnet.json").read_text()
)
F32 = dict(rtol=2e-5, atol=2e-6)


def replay_with_skips(case, transform, *, pass_present=True):
    params = [np.array(w, dtype=np.float32) for w in case["params0"]]
    opt = gradstep.Optimizer(params, transform)
    out = []
    for k, grads in enumerate(case["grads"]):
        ctx = {"present": case["present"][k]} if pass_present and "present" in case else {}
        if case.get("lrs") is not None:
            ctx["learning_rate"] = case["lrs"][k]
        opt.step([np.array(g, dtype=np.float32) for g in grads], **ctx)
        out.append([p.copy() for p in params])
    return out


@pytest.mark.parametrize("case", SKIPS, ids=[c["id"] for c in SKIPS])
def test_per_parameter_counts_match_mxnet_when_a_parameter_skips_steps(case):
    make = lambda: gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"])  # noqa: E731
    got = replay_with_skips(case, mxnet.per_parameter(make()))
    for k, (step_got, step_want) in enumerate(zip(got, case["trajectory"])):
        for i, (g, w) in enumerate(zip(step_got, step_want)):
            np.testing.assert_allclose(
                g, np.array(w), **case.get("tolerance", F32), err_msg=f"step {k + 1}, tensor {i}"
            )


def test_the_skip_probe_separates_per_parameter_from_shared_counts():
    case = next(c for c in SKIPS if c["id"] == "mxnet-adam_skips-float32")
    transform = gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"])
    # a shared count with the skipped steps' updates thrown away is not MXNet's
    params = [np.array(w, dtype=np.float32) for w in case["params0"]]
    state = transform.init(params)
    for k, grads in enumerate(case["grads"]):
        g = [np.array(x, dtype=np.float32) for x in grads]
        updates, state = transform.update(g, state, params)
        params = [p + (u if keep else 0) for p, u, keep in zip(params, updates, case["present"][k])]
    want = np.array(case["trajectory"][-1][1])
    assert np.max(np.abs(params[1] - want)) > 1e-4


def test_per_parameter_state_and_present_validation():
    t = mxnet.per_parameter(gradstep.adam(0.1))
    params = {"a": np.zeros(2), "b": np.zeros(3)}
    state = t.init(params)
    grads = {"a": np.ones(2), "b": np.ones(3)}
    updates, state = t.update(grads, state, params, present={"a": True, "b": False})
    assert np.all(updates["b"] == 0) and np.all(updates["a"] < 0)
    assert [int(s["scale_by_adam"]["count"]) for s in state["params"]] == [1, 0]
    with pytest.raises(ValueError, match="present has 1 entries for 2 parameters"):
        t.update(grads, state, params, present=[True])
    with pytest.raises(TypeError):
        mxnet.per_parameter(lambda: None)


# -- NAdam's momentum schedule -------------------------------------------------------


def first_steps(scope, n_params=2):
    params = [np.zeros(1) for _ in range(n_params)]
    t = gradstep.nadam(1.0, schedule_scope=scope)
    updates, state = t.update([np.ones(1)] * n_params, t.init(params), params)
    return [float(u[0]) for u in updates], state


def test_nadam_first_steps_per_parameter_and_shared():
    # semantics 9.4: torch and the first MXNet parameter -1.0564518, the second MXNet
    # parameter -0.7391514
    per_param, _ = first_steps("parameter")
    shared, state = first_steps("shared")
    np.testing.assert_allclose(per_param, [-1.0564518, -1.0564518], rtol=1e-7)
    np.testing.assert_allclose(shared, [-1.0564518, -0.7391514], rtol=1e-7)
    mu1 = momentum_schedule(0.9, 0.004, 1)
    assert math.isclose(float(state["scale_by_nadam"]["m_schedule"]), mu1**2)
    assert math.isclose(mu1, 0.45007347, rel_tol=1e-7)


def test_nadam_shared_product_closed_form():
    """Parameter i (from 0) of P at step t uses M = M_{t-1}^P * mu_t^(i+1)."""
    P, steps = 3, 4
    params = [np.zeros(1) for _ in range(P)]
    t = gradstep.nadam(1.0, schedule_scope="shared")
    state = t.init(params)
    for _ in range(steps):
        _, state = t.update([np.ones(1)] * P, state, params)
    mus = [momentum_schedule(0.9, 0.004, s) for s in range(1, steps + 1)]
    assert math.isclose(
        float(state["scale_by_nadam"]["m_schedule"]), math.prod(mus) ** P, rel_tol=1e-14
    )


def test_nadam_scopes_agree_for_one_parameter():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=5) for _ in range(20)]
    out = {}
    for scope in ("parameter", "shared"):
        w = np.zeros(5)
        opt = gradstep.Optimizer(w, gradstep.nadam(0.01, schedule_scope=scope))
        for g in grads:
            opt.step(g)
        out[scope] = w
    np.testing.assert_allclose(out["parameter"], out["shared"], rtol=1e-13)


def test_nadam_shared_scope_runs_eagerly_and_says_so():
    assert gradstep.Optimizer([np.zeros(2)], gradstep.nadam(schedule_scope="shared")).engine == (
        "eager"
    )
    assert gradstep.Optimizer([np.zeros(2)], gradstep.nadam()).engine == "fused"


def test_nadam_product_cache_is_a_pure_function_of_the_step():
    t = gradstep.rules.scale_by_nadam()
    late = t.scalars(50, {})
    early = t.scalars(2, {})  # going back recomputes
    again = t.scalars(50, {})
    assert late == again and early != late


# -- MXNet's gradient handling -------------------------------------------------------


def test_decay_inside_and_outside_the_clip_probe():
    # semantics 9.2: c = 1, s = 1, g = 0.5, w = 10, wd = 0.1: 1.x clips 1.5 to 1.0,
    # 2.x adds the decay after the clip: 1.5
    w, g = np.array([10.0]), np.array([0.5])
    for inside, want in ((True, -1.0), (False, -1.5)):
        t = gradstep.sgd(1.0, weight_decay=0.1, clip_gradient=1.0, decay_in_clip=inside)
        np.testing.assert_allclose(t.update(g, t.init(w), w)[0], [want])
        t = mxnet.gradient(clip_gradient=1.0, weight_decay=0.1, decay_in_clip=inside)
        np.testing.assert_allclose(t.update(g, t.init(w), w)[0], [-want])


def test_rescale_comes_before_the_clip():
    t = mxnet.gradient(rescale_grad=0.5, clip_gradient=0.3)
    g = np.array([0.5, -0.8, 2.0])
    np.testing.assert_allclose(t.update(g, t.init(g))[0], [0.25, -0.3, 0.3])
    zero = mxnet.gradient(clip_gradient=0.0)
    assert np.all(zero.update(g, zero.init(g))[0] == 0)


def test_rescale_grad_is_overridable_per_step():
    w = np.zeros(2)
    opt = gradstep.Optimizer(w, gradstep.sgd(1.0, rescale_grad=0.5))
    opt.step(np.ones(2), rescale_grad=0.25)
    np.testing.assert_allclose(w, [-0.25, -0.25])


def test_default_options_keep_the_rules_stages():
    names = lambda t: [s.name for s in t.stages]  # noqa: E731
    assert names(gradstep.adam(weight_decay=0.1)) == [
        "weight_decay",
        "scale_by_adam",
        "learning_rate",
    ]
    assert names(gradstep.sgd(0.1, rescale_grad=2.0)) == ["rescale_clip_decay", "learning_rate"]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: gradstep.adam(decay_in_clip=False), "without clip_gradient"),
        (
            lambda: gradstep.adam(clip_gradient=1.0, decay_in_clip=False),
            "without coupled weight_decay",
        ),
        (lambda: gradstep.sgd(0.1, weight_decay=0.1, decay_in_clip=True), "without clip"),
        (lambda: gradstep.adagrad(decoupled_weight_decay=True), "weight_decay=0"),
        (lambda: gradstep.adadelta(decoupled_weight_decay=True), "weight_decay=0"),
        (lambda: gradstep.nadam(decoupled_weight_decay=True), "weight_decay=0"),
        (lambda: gradstep.dcasgd(decay_in_compensation=True), "weight_decay=0"),
        (
            lambda: gradstep.nesterov_momentum(0.1, velocity_decay_weight="updated"),
            "velocity_decay_weight='updated'",
        ),
        (
            lambda: gradstep.nesterov_momentum(
                0.1, weight_decay=0.1, lr_in_buffer=False, velocity_decay_weight="updated"
            ),
            "lr_in_buffer=True",
        ),
        (lambda: gradstep.sgd(0.1, clip_gradient=-1.0), "clip_gradient=-1.0"),
        (lambda: gradstep.rmsprop(clip_weights=0.0), "clip_weights=0.0"),
        (lambda: gradstep.ftml(learning_rate=0.0), "learning_rate=0.0"),
        (lambda: gradstep.sgld(seed=-1), "seed=-1"),
        (lambda: mxnet.clip_weights(0.0), "bound=0.0"),
    ],
)
def test_options_without_effect_or_out_of_range_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_clip_weights_keeps_inner_updates_exact():
    w = np.array([0.1, 0.7, -0.3], np.float32)
    t = gradstep.rmsprop(0.01, clip_weights=0.5)
    state = t.init(w)
    u_clipped, _ = t.update(np.array([1.0, -1.0, 1.0], np.float32), state, w)
    u_plain, _ = gradstep.rmsprop(0.01).update(np.array([1.0, -1.0, 1.0], np.float32), state, w)
    assert u_clipped.dtype == np.float32
    assert u_clipped[0] == u_plain[0] and u_clipped[2] == u_plain[2]
    assert w[1] + u_clipped[1] == np.float32(0.5)


# -- hand-derived first steps ---------------------------------------------------------


def test_ftrl_probe():
    # semantics 9.9: lr 0.1, lamda1 0.01, beta 1, w0 = 0, g = 1 -> -0.0495; wd 0.2 -> -0.0490099
    for wd, want in ((0.0, -0.0495), (0.2, -0.0490099)):
        w = np.zeros(1)
        gradstep.Optimizer(w, gradstep.ftrl(0.1, 0.01, 1.0, weight_decay=wd)).step(np.ones(1))
        np.testing.assert_allclose(w, [want], rtol=1e-6)


def test_ftml_first_step_is_a_sign_step():
    w = np.array([0.3, 0.3, 0.3])
    g = np.array([2.0, -1e-3, 0.0])
    gradstep.Optimizer(w, gradstep.ftml(0.1, epsilon=1e-8)).step(g)
    np.testing.assert_allclose(w, 0.3 - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_dcasgd_momentum_follows_the_documented_math():
    """MXNet 1.9.1's momentum path fails (recorded in the manifest), so the fixtures
    cannot cover it: check ``v <- mu v - lr (g + wd w + k g^2 (w - w_prev))`` by hand."""
    assert "ambiguous" in MANIFEST["mxnet"]["probes"]["dcasgd_momentum"]
    lr, mu, wd, k = 0.1, 0.9, 0.01, 0.5
    rng = np.random.default_rng(3)
    w = rng.normal(size=4)
    ref_w, prev, v = w.copy(), w.copy(), np.zeros(4)
    opt = gradstep.Optimizer(w, gradstep.dcasgd(lr, mu, k, weight_decay=wd))
    for _ in range(6):
        g = np.sin(3 * ref_w)
        v = mu * v - lr * (g + wd * ref_w + k * g * g * (ref_w - prev))
        prev = ref_w.copy()
        ref_w = ref_w + v
        opt.step(g)
        np.testing.assert_allclose(w, ref_w, rtol=1e-13)


def test_signsgd_and_signum_momentum_zero_differ_only_in_where_decay_sits():
    w0, g = np.array([1.0, -1.0]), np.array([-0.05, 0.05])
    a, b = w0.copy(), w0.copy()
    gradstep.Optimizer(a, gradstep.signsgd(0.1, weight_decay=0.5)).step(g)
    gradstep.Optimizer(b, gradstep.signum(0.1, 0.0, weight_decay=0.5)).step(g)
    np.testing.assert_allclose(a, [1.0 + 0.1 - 0.05, -1.0 - 0.1 + 0.05])  # sign(g) + wd w
    np.testing.assert_allclose(b, [0.9, -0.9])  # sign(g + wd w)


# -- SGLD -----------------------------------------------------------------------------


def test_sgld_noise_is_seeded_and_documented():
    lr = 0.04
    w = np.zeros((50, 40), np.float32)
    opt = gradstep.Optimizer([w], gradstep.sgld(lr, seed=5))
    opt.step([np.zeros_like(w)])
    z = np.random.default_rng([5, 0]).standard_normal(w.shape)
    np.testing.assert_array_equal(w, (math.sqrt(lr) * z).astype(np.float32))


def test_sgld_moments_over_many_seeds():
    """With gradient g the step has mean -lr/2 g and variance lr*T; steps add up."""
    lr, g0, n = 0.02, 1.5, 4000
    steps = []
    for seed in range(200):
        w = np.zeros(n)
        opt = gradstep.Optimizer(w, gradstep.sgld(lr, seed=seed))
        opt.step(np.full(n, g0))
        opt.step(np.full(n, g0))
        steps.append(w.copy())
    x = np.concatenate(steps)  # 800k samples of two steps
    se_mean = math.sqrt(2 * lr / x.size)
    assert abs(x.mean() - (-lr * g0)) < 5 * se_mean
    assert abs(x.var() / (2 * lr) - 1) < 5 * math.sqrt(2 / x.size)
    # fourth moment of a normal: kurtosis 3
    kurtosis = np.mean((x - x.mean()) ** 4) / x.var() ** 2
    assert abs(kurtosis - 3) < 0.05
    # independent across steps and elements
    first = np.concatenate([s[:100] for s in steps])
    assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 0.05


def test_sgld_temperature_scales_the_variance():
    w = np.zeros(200_000)
    gradstep.Optimizer(w, gradstep.sgld(0.5, temperature=0.02, seed=1)).step(np.zeros_like(w))
    assert abs(w.std() / math.sqrt(0.01) - 1) < 0.01


def test_mxnet_own_sgld_noise_has_standard_deviation_sqrt_lr():
    # measured by the recording script on MXNet's own generator, lr 0.04
    probe = MANIFEST["mxnet"]["probes"]["sgld_noise_lr0.04"]
    assert abs(probe["std"] - 0.2) < 0.002 and abs(probe["mean"]) < 0.002


def test_sgld_learning_rate_override_moves_drift_and_noise_together():
    a, b = np.zeros(1000), np.zeros(1000)
    gradstep.Optimizer(a, gradstep.sgld(0.5, seed=2)).step(np.ones(1000), learning_rate=0.08)
    gradstep.Optimizer(b, gradstep.sgld(0.08, seed=2)).step(np.ones(1000))
    np.testing.assert_array_equal(a, b)


def test_sgld_without_a_seed_draws_fresh_noise_and_keeps_it_in_the_state():
    t = gradstep.sgld(0.1)
    s1, s2 = t.init([np.zeros(3)]), t.init([np.zeros(3)])
    assert s1["langevin_noise"]["seed"] != s2["langevin_noise"]["seed"]
