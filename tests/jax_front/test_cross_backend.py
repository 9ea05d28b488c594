"""Every registered rule gives the same 20-step trajectory on NumPy (eager and
fused), torch and JAX (jit): one algorithm, three backends (see cross_backend.py
and the table in docs/jax.md).

No rule is exempt on torch or JAX: each runs there natively (torch operations,
``jax.jit`` without host callbacks). The fused engine compiles chains of elementwise
stages; a rule with another kind of stage runs eager, which the fused engine itself
must say (the test asks it, instead of keeping a list).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax", reason="needs JAX (a test dependency)")
pytest.importorskip("torch", reason="needs torch (a test dependency)")

_spec = importlib.util.spec_from_file_location(
    "cross_backend", Path(__file__).with_name("cross_backend.py")
)
cb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cb)

CASES = cb.cases()


def test_every_registered_rule_takes_part():
    names = {case.spec.name for case in CASES}
    assert names == {spec.name for spec in cb.gradstep.REGISTRY}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_trajectory_on_every_backend(case, dtype):
    from gradstep.engines.fused import FusedEngine
    from gradstep.engines.plan import NotFusable

    result = cb.compare(case, dtype)
    assert "jax fallback=host" not in result, f"{case.name} needs a host callback: {result}"
    for backend, value in result.items():
        if backend == "numpy fused" and isinstance(value, str):
            assert value.startswith("eager only"), value
            try:
                FusedEngine(case.make())
            except NotFusable:
                continue
            # compiled, but a fused form (vectors only) refuses the case's matrices
            assert "runs fused on" in value and "not on a tensor of shape" in value, value
            continue
        assert isinstance(value, float), f"{case.name} on {backend}: {value}"
        assert value <= case.tolerance(dtype), f"{case.name} on {backend}: {value:.2e}"


def _stochastic_cases():
    return [c for c in CASES if not c.label and "stochastic" in c.spec.capabilities]


#: per stochastic rule: settings with stationary noise, and the variance of the noise
#: each step adds to a parameter, as a function of the learning rate
NOISE_ON = {
    "sgld": ({"temperature": 1.0}, lambda lr: lr),
    # gamma = 0: the variance eta does not decay; the noise is scaled by lr
    "noisy_sgd": ({"eta": 1.0, "gamma": 0.0}, lambda lr: lr**2),
    # the noise probes the preconditioner and adds nothing to the step: no variance
    "psgd_kron": ({}, None),
}


def _noisy(case, seed: int):
    """The case's factory with its own (noisy) test settings and ``seed``."""
    kwargs = {**case.spec.test_hyperparams, **NOISE_ON[case.spec.name][0], "seed": seed}
    return lambda: case.spec.factory(**kwargs)


@pytest.mark.parametrize("case", _stochastic_cases(), ids=lambda c: c.name)
def test_noise_is_reproducible_and_right_on_every_backend(case):
    """Each library draws its own numbers from the state's key: the same seed gives
    the same trajectory, another seed another one, and the noise has the variance
    the rule states (SGLD: ``learning_rate * temperature``)."""
    lr = case.spec.test_hyperparams["learning_rate"]
    variance_of = NOISE_ON[case.spec.name][1]
    runs = {
        "numpy": lambda make: cb.run_numpy(make, "float64", "eager"),
        "torch": lambda make: cb.run_torch(make, "float64"),
        "jax": lambda make: cb.run_jax(make, "float64", "auto"),
    }
    for backend, run in runs.items():
        first, again, other = run(_noisy(case, 1)), run(_noisy(case, 1)), run(_noisy(case, 2))
        assert cb.error(again, first) == 0.0, backend
        assert cb.error(other, first) > 1e-3, backend
        if variance_of is None:
            continue
        variance = variance_of(lr)
        # the gradients are fixed and there is no decay, so the drift is the same in
        # both runs and the difference is the accumulated noise; its increments are
        # what each step draws, of the rule's variance
        drift_free = run(lambda: case.spec.factory(**{**case.spec.test_hyperparams, "seed": 1}))
        noise = [
            np.concatenate([(a - b).ravel() for a, b in zip(step_a, step_b)])
            for step_a, step_b in zip(first, drift_free)
        ]
        increments = np.concatenate([noise[0]] + [b - a for a, b in zip(noise, noise[1:])])
        assert abs(np.std(increments) / np.sqrt(variance) - 1.0) < 0.1, backend
