"""Every hyperparameter a step may set acts: over the registry, a step given another
valid value of each name its optimizer lists (``transform.hyperparameters()``) moves
the parameters elsewhere than the optimizer's own value does, or is refused. A name
taken and ignored (coupled MADGRAD's ``weight_decay`` did this) fails here."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.registry import REGISTRY

STEPS = 12

#: names whose other value legitimately leaves these steps unchanged, and why
NO_EFFECT_HERE = {
    ("asgd", "t0"): "averaging starts after t0 steps, far beyond these",
    ("rprop", "min_step_size"): "no step size reaches the bound in these steps",
    ("rprop", "max_step_size"): "no step size reaches the bound in these steps",
    ("cocob", "learning_rate"): "COCOB's bet is invariant to the gradients' scale",
    ("sophia", "gamma"): "no clipped ratio here: the Hessian estimate is not refreshed",
    ("sophia", "epsilon"): "a floor far below the Hessian estimates here",
}
#: names set per step from elsewhere (a mode, the loss, Hessian products)
NOT_NUMBERS = {"train_mode", "value", "hessian", "hvp"}


def _other_value(constraint, current):
    current = 0.5 if not isinstance(current, (int, float)) or isinstance(current, bool) else current
    for value in (
        current * 0.5 if current else 0.3,
        current * 2 if current else 0.7,
        0.3,
        0.7,
        1.5,
    ):
        if value != current and (constraint is None or constraint.contains(value)):
            return value
    return None


def _cases():
    for name in REGISTRY.names():
        spec = REGISTRY[name]
        try:
            names = spec.factory(**spec.test_hyperparams).hyperparameters()
        except (TypeError, ValueError):
            continue
        for hname, constraint in names.items():
            if hname in NOT_NUMBERS:
                continue
            current = spec.test_hyperparams.get(hname, spec.defaults.get(hname))
            value = _other_value(constraint, current)
            if value is not None:
                yield pytest.param(spec, hname, value, id=f"{name}-{hname}")


def _trajectory(spec, **step_values):
    params = {"w": np.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": np.array([0.5, -0.25, 0.1])}
    opt = gradstep.Optimizer(params, spec.factory(**spec.test_hyperparams), engine="eager")
    for k in range(STEPS):
        opt.step({n: np.sin(3.0 * v + k) + 0.05 * v for n, v in params.items()}, **step_values)
    return np.concatenate([v.ravel() for v in params.values()])


@pytest.mark.parametrize(("spec", "name", "value"), list(_cases()))
def test_a_hyperparameter_set_at_a_step_changes_the_step_or_is_refused(spec, name, value):
    try:
        own = _trajectory(spec)
    except (TypeError, ValueError) as err:  # a rule that steps only with more inputs
        pytest.skip(reason=f"{spec.name} does not step on gradients alone here: {err}")
    try:
        given = _trajectory(spec, **{name: value})
    except ValueError as err:
        assert name in str(err)  # refused, naming it: not ignored
        return
    if (spec.name, name) in NO_EFFECT_HERE:
        return
    assert not np.array_equal(given, own), f"{spec.name}: a step's {name}={value} is ignored"
