"""The per-block scalings (:mod:`gradstep.transforms.block_scaling`) and layer-wise DoG
(:mod:`gradstep.rules.ldog`) on the NumPy and torch fronts, replaying optax 0.2.8's
recorded trajectories (``fixtures/optax_compat/optax_compat_tail.json``, float64)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep.rules.ldog import scale_by_ldog
from gradstep.transforms import (
    scale,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
)
from gradstep.transforms.block_scaling import normalize_by_update_norm

FIXTURES = Path(__file__).parents[1] / "conformance" / "fixtures" / "optax_compat"
CASES = {c["id"]: c for c in json.loads((FIXTURES / "optax_compat_tail.json").read_text())}

# the optax chains of these cases, as gradstep transforms (NumPy arrays, no JAX)
BUILD = {
    # optax keeps the initial parameters in float32 by default (param_dtype)
    "scale_by_distance_over_gradients": lambda: gradstep.chain(
        scale_by_ldog(1e-4, reference_dtype="float32", global_scale=-1.0)
    ),
    "scale_by_param_block_rms": lambda: gradstep.chain(
        scale_by_param_block_rms(0.01), scale(-0.05)
    ),
    "normalize_by_update_norm": lambda: gradstep.chain(
        normalize_by_update_norm(-0.1, epsilon=1e-4)
    ),
    "scale_by_param_block_norm": lambda: gradstep.chain(
        gradstep.rules.scale_by_adam(epsilon_placement="outside"),
        scale_by_param_block_norm(),
        scale(-0.01),
    ),
}


@pytest.mark.parametrize("name", sorted(BUILD))
def test_numpy_front_replays_optax(name):
    case = CASES[f"optax_compat-{name}-float64"]
    names = sorted(case["params0"])
    params = [np.array(case["params0"][n], dtype=np.float64) for n in names]
    opt = gradstep.Optimizer(params, BUILD[name]())
    for k, grads in enumerate(case["grads"]):
        opt.step([np.asarray(grads[n], np.float64) for n in names])
        for n, p in zip(names, opt.params):
            np.testing.assert_allclose(
                p, case["trajectory"][k][n], rtol=1e-11, atol=1e-13, err_msg=f"{name} {k} {n}"
            )


@pytest.mark.parametrize("name", sorted(BUILD))
def test_torch_front_replays_optax(name):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    from gradstep.torch import TransformOptimizer

    case = CASES[f"optax_compat-{name}-float64"]
    names = sorted(case["params0"])
    params = [
        torch.nn.Parameter(torch.tensor(case["params0"][n], dtype=torch.float64)) for n in names
    ]
    opt = TransformOptimizer(params, BUILD[name]())
    for k, grads in enumerate(case["grads"]):
        for n, p in zip(names, params):
            p.grad = torch.tensor(grads[n], dtype=torch.float64)
        opt.step()
        for n, p in zip(names, params):
            np.testing.assert_allclose(
                p.detach().numpy(), case["trajectory"][k][n], rtol=1e-11, atol=1e-13
            )


def test_ldog_state_is_per_tensor_and_refuses_missing_params():
    t = scale_by_ldog()
    state = t.init([np.ones((2, 3)), np.ones(4)])
    assert [np.shape(x) for x in state["max_dist"]] == [(), ()]
    assert state["p0"][0].dtype == np.float64
    with pytest.raises(ValueError, match="needs the parameters"):
        t.update([np.ones((2, 3)), np.ones(4)], state)
    with pytest.raises(ValueError, match="reference_dtype='int8'"):
        scale_by_ldog(reference_dtype="int8")
