"""MXNet 1.x LBSGD: warm-up multipliers, gradient accumulation, momentum kept between
macro-batches, begin_epoch, the 'lars' multiplier, and the engines."""

import math
import warnings

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine
from gradstep.rules.lbsgd import warmup_multiplier


@pytest.mark.parametrize(
    "strategy, n, want",
    [
        # B = 5, N_w = 16 (hand-evaluated from MXNet's _get_lbmult)
        ("linear", 4, 1 + 4 * 4 / 16),
        ("power2", 4, 1 + 4 * 16 / 256),
        ("sqrt", 4, 1 + 4 * math.sqrt(4 / 16)),
        ("linear", 16, 5.0),  # n >= N_w: B
        ("sqrt", 40, 5.0),
    ],
)
def test_warmup_multiplier(strategy, n, want):
    assert warmup_multiplier(strategy, n, 16, 5) == pytest.approx(want, rel=1e-15)


def test_warmup_shorter_than_two_calls_gives_one_until_done():
    assert warmup_multiplier("linear", 0, 1, 8) == 1.0
    assert warmup_multiplier("linear", 1, 1, 8) == 8.0
    assert warmup_multiplier("power2", 0, 0, 8) == 8.0  # no warm-up at all


def run(transform, grads, w0=1.0, **ctx):
    w = np.array([w0, -w0])
    opt = gradstep.Optimizer(w, transform)
    out = []
    for g in grads:
        opt.step(np.array([g, g]), **ctx)
        out.append(w[0])
    return out, opt


def test_accumulates_batch_scale_calls_then_steps_with_the_mean():
    # B = 3, no warm-up: M = 3; lr 0.1, the mean of 1, 2, 6 is 3
    t = gradstep.lbsgd(0.1, batch_scale=3, warmup_epochs=0)
    path, opt = run(t, [1.0, 2.0, 6.0, 1.0])
    assert path[:2] == [1.0, 1.0]
    assert path[2] == pytest.approx(1.0 - 0.1 * 3 * 3.0, rel=1e-15)
    assert path[3] == path[2]
    np.testing.assert_array_equal(opt.state["lbsgd"]["accumulated"], [1.0, 1.0])


def test_momentum_is_untouched_between_macro_batches():
    t = gradstep.lbsgd(0.1, momentum=0.5, batch_scale=2, warmup_epochs=0)
    w = np.array([1.0])
    opt = gradstep.Optimizer(w, t)
    opt.step(np.array([2.0]))
    opt.step(np.array([4.0]))  # mean 3, lr 0.2: v = -0.6
    v = opt.state["lbsgd"]["velocity"].copy()
    np.testing.assert_allclose(v, [-0.6], rtol=1e-15)
    opt.step(np.array([1.0]))  # accumulates only: v and w stay
    np.testing.assert_array_equal(opt.state["lbsgd"]["velocity"], v)
    np.testing.assert_allclose(w, [0.4], rtol=1e-15)
    opt.step(np.array([1.0]))  # v = 0.5 * -0.6 - 0.2 * 1
    np.testing.assert_allclose(w, [0.4 - 0.5], rtol=1e-14)


def test_weight_decay_and_warmup_multiplier_on_the_real_update():
    # N_w = 2 * 4 = 8, B = 2, linear: call 2 has M = 1 + 1 * 2/8 = 1.25
    t = gradstep.lbsgd(0.1, weight_decay=0.5, batch_scale=2, warmup_epochs=2, updates_per_epoch=4)
    path, _ = run(t, [1.0, 3.0])
    assert path[1] == pytest.approx(1.0 - 0.1 * 1.25 * (2.0 + 0.5 * 1.0), rel=1e-15)


def test_begin_epoch_offsets_the_call_count():
    # begin_epoch 1, 3 updates per epoch: calls are n = 4, 5, 6, ...; B = 2 steps on
    # n = 4 (the first call: a macro-batch of one gradient, still divided by 2), 6, ...
    t = gradstep.lbsgd(1.0, batch_scale=2, warmup_epochs=0, updates_per_epoch=3, begin_epoch=1)
    path, _ = run(t, [4.0, 1.0, 1.0])
    assert path[0] == pytest.approx(1.0 - 2 * 4.0 / 2, rel=1e-15)
    assert path[1] == path[0]
    assert path[2] == pytest.approx(path[0] - 2 * 1.0, rel=1e-15)


def test_learning_rate_schedule_is_read_at_the_count_before_the_call():
    # MXNet reads the rate before counting: calls see schedule(0), schedule(1), ...
    lrs = gradstep.schedules.piecewise_constant([1], [0.5, 0.1])
    path, _ = run(gradstep.lbsgd(lrs, warmup_epochs=0), [1.0, 1.0])
    assert path == pytest.approx([0.5, 0.4], rel=1e-15)


def test_lars_multiplier_and_its_clip():
    # ||w||^2 = 2, ||g_bar||^2 = 2 * 0.25, wd 0.5: sqrt(2 / (0.5 + 1)) = 1.1547...
    t = gradstep.lbsgd(0.1, weight_decay=0.5, warmup_strategy="lars")
    path, _ = run(t, [0.5])
    m = math.sqrt(2 / (0.5 + 0.5 * 2))
    assert path[0] == pytest.approx(1.0 - 0.1 * m * (0.5 + 0.5), rel=1e-15)
    # a zero weight: sqrt(0) clipped to 0.01; a zero gradient: sqrt(1/1e-18) clipped to 100
    path, _ = run(gradstep.lbsgd(1.0, warmup_strategy="lars"), [2.0], w0=0.0)
    assert path[0] == pytest.approx(-0.01 * 2.0, rel=1e-15)
    path, _ = run(gradstep.lbsgd(1.0, weight_decay=0.0, warmup_strategy="lars"), [0.0])
    assert path[0] == 1.0


@pytest.mark.parametrize("strategy", ["linear", "power2", "sqrt"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_warmup_strategies_run_fused_like_eager(strategy, dtype):
    def make():
        return gradstep.lbsgd(
            0.05,
            momentum=0.9,
            weight_decay=0.01,
            warmup_strategy=strategy,
            warmup_epochs=2,
            updates_per_epoch=3,
            batch_scale=3,
        )

    results = []
    for engine in ("eager", "fused"):
        rng = np.random.default_rng(0)
        params = [rng.normal(size=s).astype(dtype) for s in [(7,), (3, 5), (100003,)]]
        opt = gradstep.Optimizer(params, make(), engine=engine)
        assert opt.engine == engine
        for k in range(10):
            opt.step([np.sin(p + k).astype(dtype) for p in params])
        results.append((params, opt.state_dict()))
    (pe, se), (pf, sf) = results
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in list(zip(pe, pf)) + [(se[k], sf[k]) for k in se]:
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * 1e-2)


def test_lars_strategy_runs_on_the_fused_engine():
    t = gradstep.lbsgd(0.1, warmup_strategy="lars")
    assert any(st.is_per_tensor for st in FusedEngine(t).stages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gradstep.Optimizer([np.zeros(3)], t).engine == "fused"
