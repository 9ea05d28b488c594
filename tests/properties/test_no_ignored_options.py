"""No option of a registered optimizer is accepted and ignored: a weight-decay option
with no weight decay a step could set, ``state_dtype`` on a rule that keeps no
state, ``rounding_seed`` without stochastic rounding and ``kahan_summation`` on a
rule that steps with a closure are refused (driven by the registry)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import gradstep
from gradstep._core.precision import WEIGHT_DECAY_OPTIONS
from gradstep._core.transform import walk
from gradstep._core.validate import OneOf, declared_ranges

SPECS = list(gradstep.REGISTRY)


def _other_values(spec, option):
    """The valid values of ``option`` other than its default."""
    default = inspect.signature(spec.factory).parameters[option].default
    constraint = declared_ranges(spec.factory).get(option)
    assert isinstance(constraint, OneOf), (spec.name, option)
    return [c for c in constraint.choices if c != default]


def _weight_decay_cases():
    for spec in SPECS:
        parameters = inspect.signature(spec.factory).parameters
        if "weight_decay" not in parameters:
            continue
        for option in WEIGHT_DECAY_OPTIONS:
            if option in parameters:
                for value in _other_values(spec, option):
                    yield pytest.param(spec, option, value, id=f"{spec.name}-{option}={value}")


def _sets_weight_decay(transform) -> bool:
    return any(
        "weight_decay" in (getattr(v.transform, "hyperparams", None) or {}) for v in walk(transform)
    )


def _trajectory(transform, **ctx):
    params = {"w": np.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": np.array([0.5, -0.25])}
    opt = gradstep.Optimizer(params, transform, engine="eager")
    for i in range(3):
        opt.step({k: 0.3 * v + 0.1 * (i + 1) for k, v in params.items()}, **ctx)
    return np.concatenate([v.ravel() for v in params.values()])


@pytest.mark.parametrize("spec, option, value", list(_weight_decay_cases()))
def test_a_weight_decay_option_without_weight_decay_is_refused_or_has_an_effect(
    spec, option, value
):
    kwargs = {**spec.test_hyperparams, "weight_decay": 0.0}
    try:
        given = spec.factory(**kwargs, **{option: value})
    except ValueError as err:
        message = str(err)
        assert f"invalid {option}={value!r}" in message and "weight_decay > 0" in message
        return
    # accepted: a step's weight_decay reaches a stage, and the option places it
    assert _sets_weight_decay(given), f"{spec.name}({option}={value!r}) is ignored"
    default = spec.factory(**kwargs)
    try:
        without = _trajectory(default, weight_decay=0.1)
    except ValueError as err:  # without the option no stage takes a step's weight_decay
        assert "unknown hyperparameter 'weight_decay'" in str(err)
        return
    np.testing.assert_raises(
        AssertionError,
        np.testing.assert_array_equal,
        _trajectory(given, weight_decay=0.1),
        without,
    )


def test_a_step_weight_decay_of_decoupled_novograd_is_decoupled_only():
    expected = _trajectory(gradstep.novograd(0.1, weight_decay=0.1, decoupled_weight_decay=True))
    overridden = gradstep.novograd(0.1, weight_decay=0.01, decoupled_weight_decay=True)
    np.testing.assert_allclose(_trajectory(overridden, weight_decay=0.1), expected, rtol=1e-12)


STATELESS = [s for s in SPECS if s.name in ("sgd", "signsgd", "fromage", "noisy_sgd", "sgld")]


@pytest.mark.parametrize("spec", STATELESS, ids=[s.name for s in STATELESS])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8", "float16"])
def test_state_dtype_of_a_rule_without_state_is_refused(spec, state_dtype):
    with pytest.raises(ValueError, match=f"invalid state_dtype='{state_dtype}'.*keeps no state"):
        spec.factory(**spec.test_hyperparams, state_dtype=state_dtype)


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_an_accepted_state_dtype_stores_some_state_in_it(spec):
    kwargs = {**spec.test_hyperparams, "state_dtype": "float16"}
    try:
        transform = spec.factory(**kwargs)
    except ValueError as err:
        assert "state_dtype" in str(err)
        return
    state = transform.init({"w": np.ones((3, 4)), "b": np.ones(3)})
    dtypes = {np.asarray(leaf).dtype for leaf in gradstep.tree.leaves(state)}
    assert np.dtype(np.float16) in dtypes, spec.name


def test_rounding_seed_without_stochastic_rounding_is_refused():
    message = r"adam: invalid rounding_seed=123 without stochastic_rounding=True"
    with pytest.raises(ValueError, match=message):
        gradstep.adam(0.01, rounding_seed=123)
    with pytest.raises(ValueError, match=message):
        gradstep.adam(0.01, state_dtype="bfloat16", rounding_seed=123)
    gradstep.adam(0.01, state_dtype="bfloat16", stochastic_rounding=True, rounding_seed=123)


CLOSURE_SPECS = [s for s in SPECS if hasattr(s.factory(**s.test_hyperparams), "step_with_closure")]


@pytest.mark.parametrize("spec", CLOSURE_SPECS, ids=[s.name for s in CLOSURE_SPECS])
def test_kahan_summation_of_a_rule_stepping_with_a_closure_is_refused(spec):
    assert {"lbfgs", "sam"} <= {s.name for s in CLOSURE_SPECS}
    with pytest.raises(ValueError, match=r"invalid kahan_summation=True .*steps with a closure"):
        spec.factory(**spec.test_hyperparams, kahan_summation=True)


def test_madgrad_s_weight_decay_set_at_a_step_reaches_the_decay_or_is_refused():
    """Coupled MADGRAD decays in a stage of its own: its direction stage named
    weight_decay too and took a step's value without using it."""

    def run(make, **over):
        w = {"w": np.linspace(-1.0, 1.0, 4)}
        opt = gradstep.Optimizer(w, make())
        for k in range(3):
            opt.step({"w": np.sin(w["w"] + k)}, **over)
        return w["w"]

    with pytest.raises(ValueError, match="unknown hyperparameter 'weight_decay'"):
        run(lambda: gradstep.madgrad(0.01), weight_decay=0.5)
    for decoupled in (False, True):
        stepped = run(
            lambda d=decoupled: gradstep.madgrad(0.01, weight_decay=0.1, decoupled_weight_decay=d),
            weight_decay=0.5,
        )
        built = run(
            lambda d=decoupled: gradstep.madgrad(0.01, weight_decay=0.5, decoupled_weight_decay=d)
        )
        np.testing.assert_array_equal(stepped, built)
