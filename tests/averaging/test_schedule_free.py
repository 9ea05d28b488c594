"""Schedule-free SGD and AdamW: the math, the modes and checkpoints in either mode."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import modes, tree
from gradstep.rules.schedule_free import AveragingWeights

RULES = [gradstep.schedule_free_sgd, gradstep.schedule_free_adamw]


def _explicit(rule: str, grads, w0, lr, beta, wd=0.0, warmup=0, r=0.0, power=2.0, b2=0.999):
    """The paper's three sequences with x, y and z all stored (schedulefree's
    ``*Reference`` classes), in float64: an independent check of the rewrite that
    keeps only y and z."""
    x = np.array(w0, dtype=float)
    z = x.copy()
    v = np.zeros_like(x)
    lr_max, weight_sum = -1.0, 0.0
    ys = []
    for k, g in enumerate(grads):
        y = (1 - beta) * z + beta * x
        gamma = lr * min(1.0, (k + 1) / warmup) if warmup else lr
        lr_max = max(lr_max, gamma)
        weight = (k + 1) ** r * lr_max**power
        weight_sum += weight
        c = weight / weight_sum
        if rule == "sgd":
            d = g + wd * y
        else:
            v = b2 * v + (1 - b2) * g * g
            d = g / (np.sqrt(v / (1 - b2 ** (k + 1))) + 1e-8) + wd * y
        z = z - gamma * d
        x = (1 - c) * x + c * z
        ys.append((1 - beta) * z + beta * x)
    return np.array(ys), x, z


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize(
    "rule, kwargs",
    [
        ("sgd", dict(lr=0.3, beta=0.9)),
        ("sgd", dict(lr=0.5, beta=0.7, wd=0.05, warmup=4, r=1.0, power=1.0)),
        ("adamw", dict(lr=0.05, beta=0.9)),
        ("adamw", dict(lr=0.1, beta=0.5, wd=0.1, warmup=3, r=0.5, power=0.0, b2=0.99)),
    ],
)
def test_matches_the_explicit_three_sequence_form(rule, kwargs, engine):
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(12, 4))
    ys, x, z = _explicit(rule, grads, np.ones(4), **kwargs)
    names = {"lr": "learning_rate", "wd": "weight_decay", "warmup": "warmup_steps"}
    names.update(power="weight_lr_power", b2="beta2")
    names["beta"] = "momentum" if rule == "sgd" else "beta1"
    factory = gradstep.schedule_free_sgd if rule == "sgd" else gradstep.schedule_free_adamw
    w = np.ones(4)
    opt = gradstep.Optimizer(
        w, factory(**{names.get(k, k): v for k, v in kwargs.items()}), engine=engine
    )
    for k, g in enumerate(grads):
        opt.step(g)
        np.testing.assert_allclose(w, ys[k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(opt.state[opt.transform.stage_names[0]]["z"], z, rtol=1e-12)
    with modes.evaluating(opt):
        np.testing.assert_allclose(w, x, rtol=1e-12, atol=1e-14)


def test_semantics_probe_values():
    # semantics reference sec. 7.2: lr 0.1, grads 1, -0.5, 2, 0.3 from 1.0
    w = np.array([1.0])
    opt = gradstep.Optimizer(w, gradstep.schedule_free_sgd(0.1))
    for g in (1.0, -0.5, 2.0, 0.3):
        opt.step(np.array([g]))
    np.testing.assert_allclose(w, [0.819], rtol=1e-14)
    np.testing.assert_allclose(opt.state["schedule_free_sgd"]["z"], [0.72], rtol=1e-14)
    modes.set_mode(opt, "eval")
    np.testing.assert_allclose(w, [0.83], rtol=1e-14)


@pytest.mark.parametrize("rule", RULES)
def test_set_mode_round_trip_and_idempotence(rule):
    rng = np.random.default_rng(2)
    params = [rng.normal(size=(2, 3)), rng.normal(size=3)]
    opt = gradstep.Optimizer(params, rule(0.05))
    assert modes.get_mode(opt) == "train"
    modes.set_mode(opt, "eval")  # before the first step: no z yet, nothing moves
    np.testing.assert_array_equal(params[1], opt.params[1])
    modes.set_mode(opt, "train")
    for _ in range(5):
        opt.step([rng.normal(size=p.shape) for p in params])
    y = [p.copy() for p in params]
    x = modes.schedule_free_eval_params(opt.transform, opt.state, params)
    modes.set_mode(opt, "eval")
    modes.set_mode(opt, "eval")  # idempotent, as the package's .eval()
    assert modes.get_mode(opt) == "eval"
    for a, b in zip(params, x):
        np.testing.assert_array_equal(a, b)
    back = modes.schedule_free_train_params(opt.transform, opt.state, params)
    modes.set_mode(opt, "train")
    modes.set_mode(opt, "train")
    for a, b, c in zip(params, y, back):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
    assert "train_mode" not in opt.hyperparams


@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_a_step_in_eval_mode_raises_and_changes_nothing(engine):
    w = np.array([1.0, 2.0])
    opt = gradstep.Optimizer(w, gradstep.schedule_free_adamw(0.1), engine=engine)
    opt.step(np.array([0.5, -0.5]))
    modes.set_mode(opt, "eval")
    before, state = w.copy(), tree.tree_map(np.copy, opt.state)
    with pytest.raises(ValueError, match="evaluation mode"):
        opt.step(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(w, before)
    for a, b in zip(tree.leaves(opt.state), tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    t = opt.transform
    with pytest.raises(ValueError, match="evaluation mode"):
        t.update(np.ones(2), opt.state, w, train_mode=False)  # the state's own structure


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_checkpoint_taken_in_either_mode_restores(rule, mode, tmp_path):
    rng = np.random.default_rng(3)
    grads = [[rng.normal(size=(3, 2)), rng.normal(size=2)] for _ in range(10)]
    params = [np.ones((3, 2)), np.zeros(2)]

    # uninterrupted run: 5 steps, switch to `mode` and back (as for an evaluation), 5 steps
    opt = gradstep.Optimizer(params, rule(0.1, warmup_steps=3))
    for g in grads[:5]:
        opt.step(g)
    modes.set_mode(opt, mode)
    saved_params = [p.copy() for p in params]  # what a checkpoint stores: x or y
    opt.save(tmp_path / "ckpt.npz")
    modes.set_mode(opt, "train")
    for g in grads[5:]:
        opt.step(g)

    restored_params = [p.copy() for p in saved_params]
    resumed = gradstep.Optimizer(restored_params, rule(0.1, warmup_steps=3))
    resumed.load(tmp_path / "ckpt.npz")
    assert modes.get_mode(resumed) == mode
    modes.set_mode(resumed, "train")
    for g in grads[5:]:
        resumed.step(g)
    for a, b in zip(params, restored_params):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_cannot_change_per_step_but_can_be_a_schedule():
    w = np.array([1.0])
    opt = gradstep.Optimizer(w, gradstep.schedule_free_sgd(0.1))
    opt.step(np.array([1.0]), learning_rate=0.1)  # the configured value is accepted
    with pytest.raises(ValueError, match="learning_rate=0.2"):
        opt.step(np.array([1.0]), learning_rate=0.2)
    with pytest.raises(ValueError, match="momentum=0.5"):
        opt.step(np.array([1.0]), momentum=0.5)
    opt.step(np.array([1.0]), weight_decay=0.01)  # per-step decay is fine

    lrs = [0.1, 0.1, 0.05, 0.2]
    scheduled = np.array([1.0])
    constant = np.array([1.0])
    a = gradstep.Optimizer(scheduled, gradstep.schedule_free_sgd(lambda k: lrs[k]))
    b = gradstep.Optimizer(constant, gradstep.schedule_free_sgd(0.1))
    for _ in range(2):
        a.step(np.array([1.0]))
        b.step(np.array([1.0]))
    np.testing.assert_array_equal(scheduled, constant)
    a.step(np.array([1.0]), learning_rate=0.05)  # the schedule's own value: accepted
    b.step(np.array([1.0]))
    assert scheduled[0] != constant[0]


def test_averaging_weights_do_not_depend_on_the_order_of_queries():
    def make():
        return AveragingWeights(lambda k: 0.1 + 0.01 * np.sin(k), 50, 0.5, 2.0)

    sequential = make()
    expected = [sequential.at(k) for k in range(3000)]
    jumping = make()
    for k in (2999, 5, 1024, 2048, 2047, 0, 1500, 2999):
        assert jumping.at(k) == expected[k]
    # c_k of a constant learning rate without warm-up is 1/(k+1)
    constant = AveragingWeights(0.3, 0, 0.0, 2.0)
    np.testing.assert_allclose([constant.at(k)[1] for k in range(5)], 1 / np.arange(1, 6))
    assert AveragingWeights(0.0, 0, 0.0, 2.0).at(0) == (0.0, 0.0)  # weight sum 0: c = 0


@pytest.mark.parametrize("rule", RULES)
def test_z_is_taken_from_the_parameters_at_the_first_step(rule):
    w = np.array([1.0, 2.0])
    opt = gradstep.Optimizer(w, rule(0.1))
    w[:] = [5.0, -5.0]  # e.g. weights loaded after the optimizer was made
    other = np.array([5.0, -5.0])
    fresh = gradstep.Optimizer(other, rule(0.1))
    for g in ([0.1, 0.2], [0.3, -0.1]):
        opt.step(np.array(g))
        fresh.step(np.array(g))
    np.testing.assert_array_equal(w, other)


def test_partitioned_parameters_switch_only_the_schedule_free_leaves():
    params = {"a": np.ones(3), "b": np.ones(2)}
    t = gradstep.partition(
        {"sf": gradstep.schedule_free_sgd(0.1), "plain": gradstep.sgd(0.1)},
        {"a": "sf", "b": "plain"},
    )
    opt = gradstep.Optimizer(params, t)
    for g in (1.0, -0.5, 2.0):
        opt.step({"a": np.full(3, g), "b": np.full(2, g)})
    b = params["b"].copy()
    x = modes.schedule_free_eval_params(t, opt.state, params)
    modes.set_mode(opt, "eval")
    np.testing.assert_array_equal(params["a"], x["a"])
    assert not np.array_equal(params["a"], modes.schedule_free_train_params(t, opt.state, x)["a"])
    np.testing.assert_array_equal(params["b"], b)


def test_set_mode_needs_a_schedule_free_stage():
    opt = gradstep.Optimizer(np.zeros(2), gradstep.adam(0.1))
    with pytest.raises(ValueError, match="no schedule-free stage"):
        modes.set_mode(opt, "eval")
    with pytest.raises(ValueError, match="no evaluation weights"):
        with modes.evaluating(opt):
            pass
    opt = gradstep.Optimizer(np.zeros(2), gradstep.schedule_free_sgd())
    with pytest.raises(ValueError, match="invalid mode="):
        modes.set_mode(opt, "test")


def test_float32_stays_float32_through_the_modes():
    w = np.ones(3, np.float32)
    opt = gradstep.Optimizer(w, gradstep.schedule_free_adamw(0.1))
    opt.step(np.ones(3, np.float32))
    opt.step(np.full(3, -0.5, np.float32))
    x = modes.schedule_free_eval_params(opt.transform, opt.state, w)
    assert x.dtype == np.float32
    modes.set_mode(opt, "eval")
    assert w.dtype == np.float32
