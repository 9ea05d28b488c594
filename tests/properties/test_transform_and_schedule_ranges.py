"""Every public transform and schedule factory validates its arguments where it
declares them (``@hyperparams``), as the optimizers do: each argument is declared
or named below with the reason it is not a hyperparameter, each declared range
refuses a value outside it with a ValueError naming the argument, and a value given
at step time is checked against the same declaration."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import gradstep
from gradstep import schedules, transforms
from gradstep._core.validate import declared_ranges

#: arguments that are no hyperparameter (checked where they are used, or by the
#: array functions themselves with ``check``)
NOT_HYPERPARAMETERS = {
    "inner": "a transform",
    "transform": "a transform",
    "transforms": "transforms by label",
    "stages": "transforms",
    "name": "the chain's name",
    "mask": "a tree of booleans or a function of the parameters",
    "freeze_mask": "a tree of booleans or a function of the parameters",
    "labels": "a tree of labels or a function of the parameters",
    "measure": "a measure name or function, checked in the body",
    "measures": "measures by name, checked in the body",
    "policy": "an option name, checked in the body",
    "tensor": "an array function's input",
    "tensors": "an array function's input",
    "grads": "an array function's input",
    "schedules": "schedules, checked in the body",
    "boundaries": "a sequence of counts, checked in the body",
    "values": "a sequence of numbers, checked in the body",
}
#: array functions and wrappers that check their numbers in the body (``check``)
CHECKED_IN_BODY = {
    "norm_constraint",
    "total_norm_constraint",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "skip_large_updates",
    "skip_nonfinite",
}

#: valid values of required arguments
REQUIRED = {
    "inner": lambda: gradstep.sgd(0.1),
    "measure": "update_norm",
    "weight_decay": 0.1,
    "step_size": 2,
    "learning_rate": 0.1,
    "max_delta": 1.0,
    "threshold": 1.0,
    "max_norm": 1.0,
    "l2_norm_clip": 1.0,
    "noise_multiplier": 0.1,
    "decay": 0.9,
    "value": 1.0,
    "init_value": 1.0,
    "peak_value": 1.0,
    "end_value": 0.0,
    "base_value": 0.1,
    "max_value": 1.0,
    "swa_value": 0.1,
    "decay_steps": 20,
    "first_period": 5,
    "transition_steps": 10,
    "decay_rate": 0.5,
    "warmup_steps": 5,
    "stable_steps": 5,
    "power": 1.0,
    "boundaries": [5],
    "values": [0.5],
}


def _factories():
    for module in (transforms, schedules):
        for name in module.__all__:
            factory = getattr(module, name)
            if inspect.isfunction(factory):
                yield pytest.param(factory, id=f"{module.__name__.split('.')[-1]}.{name}")


FACTORIES = list(_factories())


@pytest.mark.parametrize("factory", FACTORIES)
def test_every_argument_is_declared_or_no_hyperparameter(factory):
    declared = declared_ranges(factory)
    for name, parameter in inspect.signature(factory).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if factory.__name__ in CHECKED_IN_BODY or name in NOT_HYPERPARAMETERS:
            continue
        assert name in declared, f"{factory.__name__}({name}=...) is not validated"


def _valid_arguments(factory) -> dict:
    out = {}
    for name, parameter in inspect.signature(factory).parameters.items():
        if parameter.default is inspect.Parameter.empty and parameter.kind not in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        ):
            value = REQUIRED[name]
            out[name] = value() if callable(value) else value
    return out


def _range_cases():
    for case in FACTORIES:
        factory = case.values[0]
        for name, constraint in declared_ranges(factory).items():
            yield pytest.param(factory, name, constraint, id=f"{case.id}-{name}")


@pytest.mark.parametrize("factory, name, constraint", list(_range_cases()))
def test_every_declared_range_rejects_invalid_values(factory, name, constraint):
    arguments = _valid_arguments(factory)
    factory(**arguments)
    bad = constraint.invalid_example()
    with pytest.raises(ValueError) as err:
        factory(**{**arguments, name: bad})
    message = str(err.value)
    assert name in message and repr(bad) in message and constraint.describe() in message


@pytest.mark.parametrize(
    "make",
    [
        lambda v: transforms.add_decayed_weights(v),
        lambda v: transforms.scale(v),
        lambda v: transforms.scale_by_learning_rate(v),
    ],
    ids=["add_decayed_weights", "scale", "scale_by_learning_rate"],
)
@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), "0.1", True, [1.0, 2.0, 3.0], np.ones(3)],
    ids=["nan", "inf", "str", "bool", "list", "array"],
)
def test_scaling_stages_refuse_what_is_no_finite_number(make, value):
    if isinstance(value, float) and value == float("inf") and make(1.0).name != "scale":
        pytest.skip(
            reason="[0, inf) admits inf, as every optimizer's learning_rate and weight_decay"
        )
    with pytest.raises(ValueError, match="invalid"):
        make(value)


def test_negative_values_are_refused_except_for_scale():
    with pytest.raises(ValueError, match=r"invalid weight_decay=-1.0; valid values: a number in"):
        transforms.add_decayed_weights(-1.0)
    with pytest.raises(ValueError, match=r"invalid learning_rate=-1.0; valid values: a number in"):
        transforms.scale_by_learning_rate(-1.0)
    params = {"w": np.array([1.0, -2.0])}
    opt = gradstep.Optimizer(params, transforms.chain(gradstep.sgd(0.5), transforms.scale(-1.0)))
    opt.step({"w": np.array([1.0, 1.0])})
    np.testing.assert_array_equal(params["w"], [1.5, -1.5])  # ascent by flipping


@pytest.mark.parametrize("engine", ["auto", "eager"])
def test_a_step_time_weight_decay_is_checked_against_the_declaration(engine):
    params = {"w": np.array([1.0, -2.0, 3.0])}
    t = transforms.chain(transforms.add_decayed_weights(0.1), gradstep.sgd(0.1))
    opt = gradstep.Optimizer(params, t, engine=engine)
    opt.step({"w": np.ones(3)})
    before = params["w"].copy()
    for bad in (float("nan"), -1.0, "0.1"):
        with pytest.raises(ValueError, match="Optimizer.step: invalid weight_decay="):
            opt.step({"w": np.ones(3)}, weight_decay=bad)
    np.testing.assert_array_equal(params["w"], before)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: schedules.exponential_decay(0.1, 10, 0.5, staircase="no"), "staircase='no'"),
        (lambda: schedules.exponential_decay(0.1, 10, 0.5, staircase=-1.0), "staircase=-1.0"),
        (lambda: schedules.exponential_decay(0.1, 10, 0.5, end_value=float("nan")), "end_value"),
        (lambda: schedules.exponential_decay(0.1, 10, 0.5, end_value="x"), "end_value='x'"),
        (
            lambda: schedules.warmup_exponential_decay(0.0, 0.1, 2, 10, 0.5, end_value=np.nan),
            "end_value=nan",
        ),
        (lambda: schedules.one_cycle(100, 0.1, pct_final="0.5"), "pct_final='0.5'"),
        (lambda: schedules.one_cycle(100, 0.1, pct_final=0.2), "pct_final=0.2"),
        (lambda: schedules.piecewise_constant([10], ["0.1", 0.2]), "values="),
        (lambda: schedules.piecewise_constant([10], [0.1, np.nan]), "values="),
        (lambda: schedules.piecewise_interpolate(1.0, [2.5], [0.1]), "boundaries="),
        (lambda: schedules.join([schedules.constant(1.0), 2.0], [3]), "schedules="),
        (lambda: transforms.constrain_norm(1.0, norm_axes=-1.0), "norm_axes=-1.0"),
        (lambda: transforms.constrain_norm(1.0, norm_axes="0.1"), "norm_axes='0.1'"),
        (lambda: transforms.adaptive_clip(axis=True), "axis=True"),
    ],
)
def test_schedule_and_transform_options_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()


def test_schedules_keep_their_values():
    s = schedules.exponential_decay(1.0, 2, 0.5, staircase=True, end_value=0.3)
    assert [s(t) for t in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.3, 0.3]
    assert schedules.piecewise_constant([2], [np.asarray(1.0), 0.5])(3) == 0.5
