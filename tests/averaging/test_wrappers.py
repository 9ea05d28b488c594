"""Lookahead and gradient accumulation (their references are replayed in
``test_references.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import transforms, tree
from gradstep.transforms.accumulation import Accumulate
from gradstep.transforms.lookahead import Lookahead


def _grads(n, shape=(4,), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for _ in range(n)]


def _trajectory(transform, grads, w0=None, engine="auto", **ctx):
    w = np.ones_like(grads[0]) if w0 is None else w0.copy()
    opt = gradstep.Optimizer(w, transform, engine=engine)
    out = []
    for g in grads:
        opt.step(g, **ctx)
        out.append(w.copy())
    return np.array(out), opt


# -- lookahead ---------------------------------------------------------------------


def test_lookahead_with_full_slow_steps_every_step_is_the_inner_optimizer():
    grads = _grads(8)
    plain, _ = _trajectory(gradstep.adam(0.1), grads)
    wrapped, _ = _trajectory(transforms.lookahead(gradstep.adam(0.1), 1, 1.0), grads)
    np.testing.assert_allclose(wrapped, plain, rtol=1e-14, atol=1e-15)


def test_lookahead_synchronises_every_k_steps():
    grads = _grads(6)
    fast, _ = _trajectory(gradstep.sgd(0.1), grads)
    got, opt = _trajectory(transforms.lookahead(gradstep.sgd(0.1), 3, 0.5), grads)
    np.testing.assert_allclose(got[:2], fast[:2], rtol=1e-15)
    # step 3: halfway between the start (the slow weights) and where SGD got to
    np.testing.assert_allclose(got[2], 0.5 * (1.0 + fast[2]), rtol=1e-14)
    slow = opt.transform.slow_params(opt.state, opt.params)
    np.testing.assert_allclose(slow, got[5], rtol=1e-14)
    # alpha = 0: the fast weights go back to the start at each synchronisation
    back, _ = _trajectory(transforms.lookahead(gradstep.sgd(0.1), 3, 0.0), grads)
    np.testing.assert_allclose(back[[2, 5]], np.ones((2, 4)), rtol=1e-15)


def test_lookahead_is_fused_with_its_inner_optimizer_and_exposes_it():
    inner = gradstep.momentum(0.05, 0.9)
    t = transforms.lookahead(inner, 4, 0.6)
    assert isinstance(t, Lookahead) and t.inner is inner and t.children()[0] is inner
    grads = _grads(10)
    eager, _ = _trajectory(t, grads, engine="eager")
    fused, opt = _trajectory(t, grads, engine="fused")
    assert opt.engine == "fused"
    np.testing.assert_allclose(fused, eager, rtol=1e-14, atol=1e-15)
    # the inner optimizer's hyperparameters stay reachable by name
    _trajectory(t, grads[:2], learning_rate=0.01)


def test_lookahead_slow_weights_start_at_the_first_step():
    w = np.zeros(2)
    opt = gradstep.Optimizer(w, transforms.lookahead(gradstep.sgd(1.0), 2, 0.5))
    np.testing.assert_array_equal(opt.transform.slow_params(opt.state, opt.params), w)
    w[:] = 4.0  # loaded after the optimizer was made
    opt.step(np.array([-1.0, -1.0]))
    opt.step(np.array([-1.0, -1.0]))
    np.testing.assert_array_equal(w, [5.0, 5.0])  # halfway from 4 to 6


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"sync_period": 0}, "sync_period"),
        ({"sync_period": 1.5}, "sync_period"),
        ({"slow_step_size": 1.5}, "slow_step_size"),
    ],
)
def test_lookahead_rejects_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"invalid {name}="):
        transforms.lookahead(gradstep.sgd(0.1), **kwargs)


# -- accumulation --------------------------------------------------------------------


def test_accumulate_one_is_the_inner_optimizer():
    grads = _grads(5)
    plain, _ = _trajectory(gradstep.adam(0.1), grads)
    acc, opt = _trajectory(transforms.accumulate(gradstep.adam(0.1), 1), grads)
    np.testing.assert_array_equal(acc, plain)
    assert opt.engine == "eager"


@pytest.mark.parametrize("reduce, factor", [("mean", 1 / 3), ("sum", 1.0)])
def test_accumulate_steps_once_per_window_on_the_mean_or_sum(reduce, factor):
    grads = _grads(9)
    got, opt = _trajectory(transforms.accumulate(gradstep.adam(0.1), 3, reduce), grads)
    combined = [factor * sum(grads[i : i + 3]) for i in (0, 3, 6)]
    want, _ = _trajectory(gradstep.adam(0.1), combined)
    np.testing.assert_allclose(got[[2, 5, 8]], want, rtol=1e-13)
    np.testing.assert_array_equal(got[0], np.ones(4))
    np.testing.assert_array_equal(got[1], np.ones(4))
    np.testing.assert_array_equal(got[3], got[2])
    state = opt.state
    assert int(state["inner"]["scale_by_adam"]["count"]) == 3  # counts optimizer steps
    assert int(state["gradient_step"]) == 3 and int(state["mini_step"]) == 0


def test_skipped_mini_steps_touch_no_state():
    t = transforms.accumulate(gradstep.adam(0.1), 2)
    params = [np.ones(3)]
    state = t.init(params)
    _, state = t.update([np.array([1.0, 2.0, 3.0])], state, params)
    for bad in (np.nan, np.inf, -np.inf):
        updates, new = t.update([np.array([1.0, bad, 3.0])], state, params)
        np.testing.assert_array_equal(updates[0], np.zeros(3))
        assert int(new["total_notfinite"]) == int(state["total_notfinite"]) + 1
        for path, a, b in zip(tree.leaf_paths(new), tree.leaves(new), tree.leaves(state)):
            if path != "total_notfinite":
                np.testing.assert_array_equal(a, b)
        state = new
    updates, state = t.update([np.array([3.0, 2.0, 1.0])], state, params)
    assert np.all(updates[0] != 0) and int(state["total_notfinite"]) == 3

    # without skipping, the NaN reaches the accumulator and the step
    t = transforms.accumulate(gradstep.sgd(1.0), 2, skip_nonfinite=False)
    state = t.init(params)
    _, state = t.update([np.array([np.nan, 0.0, 0.0])], state, params)
    updates, _ = t.update([np.ones(3)], state, params)
    assert np.isnan(updates[0][0]) and np.all(np.isfinite(updates[0][1:]))


def test_accumulate_window_can_follow_a_schedule():
    t = transforms.accumulate(gradstep.sgd(1.0), lambda step: 1 if step == 0 else 2, "sum")
    got, _ = _trajectory(t, [np.ones(1)] * 5, w0=np.zeros(1))
    np.testing.assert_array_equal(got[:, 0], [-1.0, -1.0, -3.0, -3.0, -5.0])
    bad = transforms.accumulate(gradstep.sgd(1.0), lambda step: 0)
    with pytest.raises(ValueError, match="invalid every_k=0"):
        bad.update([np.ones(1)], bad.init([np.zeros(1)]), [np.zeros(1)])


def test_accumulate_passes_step_hyperparameters_to_the_inner_optimizer():
    t = transforms.accumulate(gradstep.sgd(1.0), 2)
    assert isinstance(t, Accumulate) and "learning_rate" in t.hyperparameters()
    got, _ = _trajectory(t, [np.ones(1)] * 2, w0=np.zeros(1), learning_rate=0.5)
    np.testing.assert_array_equal(got[:, 0], [0.0, -0.5])


def test_accumulate_is_pure_and_keeps_float32():
    t = transforms.accumulate(gradstep.adam(0.1), 2)
    params = [np.ones(3, np.float32)]
    state = t.init(params)
    g = [np.full(3, 0.5, np.float32)]
    first = t.update(g, state, params)
    second = t.update(g, state, params)
    for a, b in zip(tree.leaves(first), tree.leaves(second)):
        np.testing.assert_array_equal(a, b)
    updates, state = t.update(g, first[1], params)
    assert updates[0].dtype == np.float32
    assert all(np.asarray(x).dtype == np.float32 for x in tree.leaves(state["acc"]))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"every_k": 0}, "every_k"),
        ({"reduce": "max"}, "reduce"),
        ({"skip_nonfinite": 1}, "skip_nonfinite"),
    ],
)
def test_accumulate_rejects_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"invalid {name}="):
        transforms.accumulate(gradstep.sgd(0.1), **kwargs)
    with pytest.raises(TypeError):
        transforms.accumulate(None)
