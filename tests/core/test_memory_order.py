"""Parameters laid out in memory in another order of their axes (Fortran order, a
transposed view) step on the fused engine as their flat block of memory when the rule
is elementwise and the gradients and slots are laid out alike; rules whose values
depend on each element's shape or position step them eagerly. Either way the
trajectory is the one of the same values in C order."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradstep
from gradstep._core.memory_order import order_free


def _fortran(a):
    return np.asfortranarray(a)


def _transposed(a):
    return np.ascontiguousarray(np.swapaxes(a, 0, -1)).swapaxes(0, -1)


def _run(transform, layout, steps=4, dtype=np.float64):
    rng = np.random.default_rng(0)
    base = {"w": rng.normal(size=(6, 5, 4)).astype(dtype), "b": rng.normal(size=5).astype(dtype)}
    params = {k: layout(v.copy()) for k, v in base.items()}
    opt = gradstep.Optimizer(params, transform)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(steps):
            grads = {n: layout((0.3 * v - 0.1 * k).astype(dtype)) for n, v in params.items()}
            opt.step(grads)
    return params, opt, caught


ELEMENTWISE = {
    "adam": lambda: gradstep.adam(0.05),
    "lion": lambda: gradstep.lion(0.01),
    "momentum": lambda: gradstep.momentum(0.05, 0.9),
    "lamb": lambda: gradstep.lamb(0.05),  # a per-tensor norm: a sum in memory order
    "adamw-bfloat16-state": lambda: gradstep.adamw(0.05, state_dtype="bfloat16"),
}


@pytest.mark.parametrize("layout", [_fortran, _transposed], ids=["fortran", "transposed"])
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_rules_step_other_orders_fused(name, layout):
    ours, opt, caught = _run(ELEMENTWISE[name](), layout)
    assert opt._ran == "fused" and not caught
    assert not ours["w"].flags.c_contiguous and ours["w"].strides == layout(ours["w"]).strides
    reference, ref_opt, _ = _run(ELEMENTWISE[name](), np.ascontiguousarray)
    assert ref_opt._ran == "fused"
    for key in reference:
        np.testing.assert_allclose(ours[key], reference[key], rtol=1e-13, atol=0)


POSITIONAL = {
    "8-bit state": lambda: gradstep.adam(0.05, state_dtype="int8", min_8bit_size=0),
    "stochastic rounding": lambda: gradstep.adam(
        0.05, state_dtype="bfloat16", stochastic_rounding=True
    ),
    "per-row blocks (Adam-mini)": lambda: gradstep.adam_mini(0.05, partition="rows"),
}


@pytest.mark.parametrize("name", list(POSITIONAL))
def test_rules_reading_shapes_or_positions_step_the_logical_order(name):
    assert not order_free(POSITIONAL[name]())
    ours, opt, _ = _run(POSITIONAL[name](), _fortran, dtype=np.float32)
    reference, _, _ = _run(POSITIONAL[name](), np.ascontiguousarray, dtype=np.float32)
    for key in reference:
        np.testing.assert_array_equal(ours[key], reference[key])
    assert opt._ran != "fused" or not ours["w"].flags.f_contiguous


def test_gradients_in_another_layout_than_the_parameters_step_eagerly_and_alike():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 5))
    params = {"w": _fortran(base.copy())}
    reference = {"w": base.copy()}
    opt, ref = (
        gradstep.Optimizer(params, gradstep.adam(0.05)),
        gradstep.Optimizer(reference, gradstep.adam(0.05)),
    )
    with pytest.warns(RuntimeWarning, match="not a contiguous array"):
        opt.step({"w": np.ascontiguousarray(base)})  # C order, the parameter Fortran's
    ref.step({"w": base})
    np.testing.assert_array_equal(params["w"], reference["w"])


def test_a_strided_view_is_refused_by_the_fused_engine():
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(6, 10))[:, ::2]}
    with pytest.warns(RuntimeWarning, match="not a contiguous array"):
        gradstep.Optimizer(params, gradstep.adam(0.05)).step({"w": np.ones((6, 5))})


@pytest.mark.parametrize(
    "saved, loaded",
    [(_fortran, np.ascontiguousarray), (np.ascontiguousarray, _fortran)],
    ids=["fortran-to-c", "c-to-fortran"],
)
def test_a_checkpoint_resumes_fused_in_the_other_memory_order(saved, loaded):
    base = np.random.default_rng(0).normal(size=(6, 5))
    params = {"w": saved(base.copy())}
    opt = gradstep.Optimizer(params, gradstep.adam(0.05))
    opt.step({"w": saved(0.3 * base)})
    checkpoint, after_one = opt.state_dict(), params["w"].copy()
    opt.step({"w": saved(0.2 * base)})
    resumed = {"w": loaded(after_one)}
    resumed_opt = gradstep.Optimizer(resumed, gradstep.adam(0.05))
    resumed_opt.load_state_dict(checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice of an eager step
        resumed_opt.step({"w": loaded(0.2 * base)})
    assert resumed_opt._ran == "fused"
    np.testing.assert_array_equal(resumed["w"], params["w"])
