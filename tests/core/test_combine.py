"""chain, masked, partition, hyperparameter context and apply_updates."""

import numpy as np
import pytest

import gradstep
from gradstep import transforms


def params():
    return {"w": np.array([1.0, -2.0]), "b": np.array([0.5])}


def grads():
    return {"w": np.array([0.1, 0.2]), "b": np.array([-0.3])}


def test_chain_names_its_stages_and_deduplicates():
    t = gradstep.chain(transforms.scale(2.0), transforms.scale(3.0), gradstep.adam(0.1))
    state = t.init(params())
    assert list(state) == ["scale", "scale_1", "adam"]
    assert set(state["adam"]["scale_by_adam"]) == {"count", "mu", "nu"}
    u, _ = gradstep.chain(transforms.scale(2.0), transforms.scale(3.0)).update(
        grads(), {"scale": {}, "scale_1": {}}
    )
    np.testing.assert_allclose(u["w"], [0.6, 1.2])


def test_chain_rejects_non_transforms():
    with pytest.raises(TypeError, match="expected transforms"):
        gradstep.chain(gradstep.sgd(), lambda g: g)


def test_masked_applies_inner_only_where_selected():
    t = gradstep.masked(gradstep.adam(0.1), {"w": True, "b": False})
    state = t.init(params())
    assert np.shape(state["inner"]["scale_by_adam"]["mu"][0]) == (2,)
    assert len(state["inner"]["scale_by_adam"]["mu"]) == 1
    u, _ = t.update(grads(), state, params())
    np.testing.assert_array_equal(u["b"], grads()["b"])  # passed through
    np.testing.assert_allclose(u["w"], [-0.1, -0.1])


def test_masked_accepts_a_function_of_the_params():
    decay = transforms.add_decayed_weights(0.5, mask=lambda p: {k: k == "w" for k in p})
    u, _ = decay.update(grads(), decay.init(params()), params())
    np.testing.assert_allclose(u["w"], [0.6, -0.8])
    np.testing.assert_array_equal(u["b"], [-0.3])


def test_partition_gives_each_group_its_hyperparameters():
    labels = {"w": "fast", "b": "slow"}
    t = gradstep.partition({"fast": gradstep.sgd(1.0), "slow": gradstep.sgd(0.1)}, labels)
    state = t.init(params())
    assert set(state) == {"fast", "slow"}
    u, _ = t.update(grads(), state, params())
    np.testing.assert_allclose(u["w"], [-0.1, -0.2])
    np.testing.assert_allclose(u["b"], [0.03])


def test_partition_reports_unknown_labels_and_skips_none():
    t = gradstep.partition({"a": gradstep.sgd(1.0)}, {"w": "a", "b": "zzz"})
    with pytest.raises(ValueError, match="label 'zzz' has no transform"):
        t.init(params())
    t = gradstep.partition({"a": gradstep.sgd(1.0)}, {"w": "a", "b": None})
    u, _ = t.update(grads(), t.init(params()), params())
    np.testing.assert_array_equal(u["b"], grads()["b"])


def test_context_overrides_a_hyperparameter_for_one_step():
    t = gradstep.sgd(0.1)
    s = t.init(params())
    u, _ = t.update(grads(), s, params(), learning_rate=1.0)
    np.testing.assert_allclose(u["w"], [-0.1, -0.2])
    u, _ = t.update(grads(), s, params())
    np.testing.assert_allclose(u["w"], [-0.01, -0.02])


def test_any_schedulable_hyperparameter_takes_a_schedule():
    sched = gradstep.schedules.piecewise_constant([1], [0.0, 0.5])
    t = gradstep.adamw(0.1, weight_decay=sched)
    p = params()
    state = t.init(p)
    u0, state = t.update({"w": np.zeros(2), "b": np.zeros(1)}, state, p)
    np.testing.assert_array_equal(u0["w"], [0.0, 0.0])  # decay 0 on the first step
    u1, state = t.update({"w": np.zeros(2), "b": np.zeros(1)}, state, p)
    np.testing.assert_allclose(u1["w"], -0.1 * 0.5 * p["w"])


def test_learning_rate_schedule_is_evaluated_at_the_count_before_the_update():
    t = gradstep.sgd(gradstep.schedules.linear_warmup(1.0, 2))
    p = np.array([0.0])
    state = t.init(p)
    steps = []
    for _ in range(4):
        u, state = t.update(np.array([1.0]), state, p)
        steps.append(float(u[0]))
    assert steps == [0.0, -0.5, -1.0, -1.0]


def test_apply_updates_keeps_parameter_dtype():
    p = {"w": np.ones(2, np.float32)}
    out = gradstep.apply_updates(p, {"w": np.array([0.5, 0.25])})
    assert out["w"].dtype == np.float32
    np.testing.assert_array_equal(out["w"], [1.5, 1.25])


def test_a_slot_that_keeps_the_parameter_does_not_alias_it():
    def remember(g, w, previous):
        return g, w

    t = gradstep.Elementwise(
        "remember", remember, slots=(gradstep.Slot("previous"),), uses_params=True
    )
    p = np.array([1.0, 2.0])
    opt = gradstep.Optimizer(p, t, engine="eager")
    opt.step(np.array([0.5, 0.5]))
    np.testing.assert_array_equal(opt.state["previous"], [1.0, 2.0])
    assert opt.state["previous"] is not p
