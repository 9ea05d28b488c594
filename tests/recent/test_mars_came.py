"""MARS and CAME beyond the generic registry tests: MARS's per-tensor clipping, its
refusal of AdamW-only options in the Lion form, state precision (MARS's slots take a
storage dtype, CAME's factors refuse one), CAME's factoring of the last two axes, and
pytorch-optimizer's default MARS (AdamW on tensors of rank < 2) as a partition.

Both are registry entries: the generic conformance, property, cross-backend, wrapper
and torch-class tests cover them against pytorch-optimizer and came-pytorch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep

SPLIT = json.loads((Path(__file__).parent / "fixtures" / "mars_default_split.json").read_text())
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}


def test_mars_clips_the_correction_of_each_tensor_on_its_own():
    # gamma = 0: the correction is the gradient; the Lion form steps by sign(m), with
    # m = 0.25 c1 + 0.5 c2 after two steps, so the sign shows the clipped sizes
    t = gradstep.mars(1.0, beta1=0.5, gamma=0.0, variant="lion")
    params = [np.zeros(2), np.zeros(1)]
    state = t.init(params)
    _, state = t.update([np.array([10.0, 0.0]), np.array([0.9])], state, params)
    updates, _ = t.update([np.array([-3.0, 0.0]), np.array([-0.4])], state, params)
    # first tensor clipped to norm 1 on both steps: m = 0.25 - 0.5 < 0 (unclipped: > 0);
    # second never clipped: m = 0.225 - 0.2 > 0 (clipped with the first's norm: < 0)
    np.testing.assert_array_equal(updates[0], [1.0, 0.0])
    np.testing.assert_array_equal(updates[1], [-1.0])


@pytest.mark.parametrize(
    ("name", "value"),
    [("beta2", 0.9), ("epsilon", 1e-6), ("eps_root", 1e-15), ("epsilon_placement", "outside")],
)
def test_mars_lion_refuses_the_second_moment_options(name, value):
    if name == "epsilon_placement":
        value = "outside_uncorrected"
    with pytest.raises(ValueError, match=f"mars: invalid {name}=.* with variant='lion'"):
        gradstep.mars(variant="lion", **{name: value})


def test_mars_stores_its_slots_in_the_state_dtype():
    params = [np.ones((3, 4), np.float32), np.ones(5, np.float32)]
    opt = gradstep.Optimizer(params, gradstep.mars(0.1, state_dtype="bfloat16"))
    opt.step([np.full((3, 4), 0.1, np.float32), np.full(5, -0.2, np.float32)])
    slots = opt.state["scale_by_mars"]
    for name in ("prev_grad", "mu", "nu"):
        assert [str(x.dtype) for x in slots[name]] == ["bfloat16", "bfloat16"], name
    assert all(p.dtype == np.float32 for p in params)


def test_came_refuses_a_state_dtype():
    with pytest.raises(ValueError, match="came: invalid state_dtype='bfloat16'.*elementwise"):
        gradstep.came(state_dtype="bfloat16")


def test_came_factors_the_last_two_axes():
    # without the RMS clipping (over the whole tensor) a rank-3 tensor steps as its
    # matrices would each on their own; the factors have one row and one column each
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 3, 4))
    slices = [w[0].copy(), w[1].copy()]
    opt = gradstep.Optimizer([w], gradstep.came(0.01, clipping_threshold=None))
    opt_slices = gradstep.Optimizer(slices, gradstep.came(0.01, clipping_threshold=None))
    for _ in range(3):
        g = rng.normal(size=(2, 3, 4))
        opt.step([g])
        opt_slices.step([g[0], g[1]])
    np.testing.assert_allclose(w, np.stack(slices), rtol=1e-13, atol=1e-15)
    moments = opt.state["scale_by_factored_second_moment"]
    assert moments["v_row"][0].shape == (2, 3, 1) and moments["v_col"][0].shape == (2, 1, 4)
    assert moments["v"][0].shape == (0,)


def test_came_runs_16_bit_parameters_in_float32():
    # epsilon1 = 1e-30 is 0 in float16: 16-bit arithmetic would divide 0 by 0 where a
    # gradient is 0; the steps, computed in float32, match a float32 run to float16
    rng = np.random.default_rng(1)
    start = rng.normal(size=(3, 4))
    half, single = start.astype(np.float16), start.astype(np.float32)
    opts = [gradstep.Optimizer(w, gradstep.came(0.01)) for w in (half, single)]
    for _ in range(3):
        g = rng.normal(size=(3, 4))
        g[:, 0] = 0.0
        for opt, w in zip(opts, (half, single)):
            opt.step(g.astype(w.dtype))
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, single, rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(half[:, 0], start[:, 0].astype(np.float16))


def _default_split(case: dict) -> gradstep.Transform:
    """pytorch-optimizer's default MARS: MARS on matrices, AdamW on the rest."""
    return gradstep.partition(
        {
            "mars": gradstep.mars(**case["mars_kwargs"]),
            "adamw": gradstep.adamw(**case["adamw_kwargs"]),
        },
        lambda params: ["mars" if np.ndim(p) >= 2 else "adamw" for p in params],
    )


@pytest.mark.parametrize("case", SPLIT, ids=[c["id"] for c in SPLIT])
def test_pytorch_optimizer_default_mars_is_a_partition(case):
    dtype = np.dtype(case["dtype"])
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    opt = gradstep.Optimizer(params, _default_split(case))
    for k, (grads, want) in enumerate(zip(case["grads"], case["trajectory"])):
        opt.step([np.array(g, dtype=dtype) for g in grads])
        for i, (got, w) in enumerate(zip(params, want)):
            np.testing.assert_allclose(
                got, np.array(w), **TOLERANCE[case["dtype"]], err_msg=f"step {k + 1}, tensor {i}"
            )
