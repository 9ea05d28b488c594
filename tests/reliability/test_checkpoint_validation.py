"""``Optimizer.load_state_dict`` / ``load`` refuse what would break or corrupt the next
steps, naming the key, and a refused load changes nothing."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import gradstep


def _trained(rule=None):
    params = {"w": np.linspace(-1, 1, 4)}
    opt = gradstep.Optimizer(params, rule or gradstep.adam(0.1))
    opt.hyperparams["learning_rate"] = 0.05
    for k in range(2):
        opt.step({"w": np.cos(params["w"] + k)})
    return opt


def _assert_unchanged(opt, before):
    state, hyper = before
    for a, b in zip(gradstep.tree.leaves(opt.state), gradstep.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    assert opt.hyperparams == hyper


def _refused(opt, sd, match):
    before = copy.deepcopy((opt.state, opt.hyperparams))
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)
    _assert_unchanged(opt, before)


def test_unknown_hyperparameter_names_are_refused():
    opt = _trained()
    sd = opt.state_dict()
    sd["hyperparams/learnig_rate"] = np.asarray(0.1)
    _refused(opt, sd, "unknown hyperparameter 'learnig_rate'")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_overrides_are_refused(value):
    opt = _trained()
    sd = opt.state_dict()
    sd["hyperparams/learning_rate"] = np.asarray(value)
    _refused(opt, sd, "hyperparams/learning_rate")


def test_out_of_range_overrides_are_refused():
    opt = _trained()
    sd = opt.state_dict()
    sd["hyperparams/beta1"] = np.asarray(1.5)
    _refused(opt, sd, r"invalid beta1=1\.5")


def test_a_negative_count_is_refused():
    opt = _trained()
    sd = opt.state_dict()
    sd["state/scale_by_adam/count"] = np.asarray(-3, np.int64)
    _refused(opt, sd, "state/scale_by_adam/count")


@pytest.mark.parametrize(
    "rule, key",
    [
        (lambda: gradstep.adam(0.1), "state/scale_by_adam/nu/w"),
        (lambda: gradstep.adam(0.1, amsgrad=True), "state/scale_by_adam/nu_max/w"),
        (lambda: gradstep.rmsprop(0.1), "nu/w"),
        (lambda: gradstep.adagrad(0.1), "sum_sq/w"),
        (lambda: gradstep.adadelta(), "nu_delta/w"),
    ],
)
def test_negative_second_moments_are_refused(rule, key):
    opt = _trained(rule())
    sd = opt.state_dict()
    full = next(k for k in sd if k.endswith(key))
    sd[full] = sd[full].copy()
    sd[full][1] = -1e-3
    _refused(opt, sd, full)
    sd[full][1] = -np.inf
    _refused(opt, sd, full)
    sd[full][1] = np.nan  # what a NaN gradient makes: a real run's checkpoint resumes
    opt.load_state_dict(sd)


def test_first_moments_may_be_negative():
    opt = _trained()
    sd = opt.state_dict()
    sd["state/scale_by_adam/mu/w"] = -np.abs(sd["state/scale_by_adam/mu/w"])
    opt.load_state_dict(sd)
    loaded = opt.state["scale_by_adam"]["mu"]["w"]
    np.testing.assert_array_equal(loaded, sd["state/scale_by_adam/mu/w"])


def test_load_from_a_file_is_validated_too(tmp_path):
    opt = _trained()
    sd = opt.state_dict()
    sd["hyperparams/momentum"] = np.asarray(0.9)
    np.savez(tmp_path / "bad.npz", **sd)
    before = copy.deepcopy((opt.state, opt.hyperparams))
    with pytest.raises(ValueError, match="unknown hyperparameter 'momentum'"):
        opt.load(tmp_path / "bad.npz")
    _assert_unchanged(opt, before)
    opt.step({"w": np.ones(4)})  # still usable


def test_a_valid_checkpoint_still_resumes_bit_exactly():
    opt = _trained()
    sd = opt.state_dict()
    other = gradstep.Optimizer({"w": opt.params["w"].copy()}, gradstep.adam(0.1))
    other.load_state_dict(sd)
    for k in range(3):
        opt.step({"w": np.sin(opt.params["w"] + k)})
        other.step({"w": np.sin(other.params["w"] + k)})
    np.testing.assert_array_equal(opt.params["w"], other.params["w"])
