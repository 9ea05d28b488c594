"""reduce_on_plateau against torch's ReduceLROnPlateau (NumPy front and the torch
front) and optax.contrib.reduce_on_plateau (compat, under jax.jit)."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.transforms import chain, reduce_on_plateau

torch = pytest.importorskip("torch", reason="torch's ReduceLROnPlateau is the reference")

# a metric with improvements, plateaus, tiny improvements and a NaN
METRIC = [5.0, 4.0, 4.0, 4.0, 3.9999, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.99, 3.1, 3.1]
METRIC += [3.1, np.nan, 3.1, 2.0, 2.0, 2.0, 2.0, 2.0, 1.9, 2.0, 2.0, 2.0, 2.0, 2.0]

TORCH_CASES = [
    dict(mode="min", factor=0.5, patience=1, threshold=1e-4, threshold_mode="rel"),
    dict(mode="min", factor=0.3, patience=2, threshold=0.05, threshold_mode="abs", cooldown=2),
    dict(mode="max", factor=0.5, patience=0, threshold=0.01, threshold_mode="rel", min_lr=0.1),
]


def torch_trajectory(kwargs, metric, optimizer_cls=None):
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = (optimizer_cls or torch.optim.SGD)([w], lr=0.8)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for value in metric:
        w.grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
        opt.step()
        sched.step(value)
        out.append(w.detach().numpy().copy())
    return np.array(out)


def gradstep_options(kwargs) -> dict:
    rel = kwargs["threshold_mode"] == "rel"
    return dict(
        factor=kwargs["factor"],
        patience=kwargs["patience"],
        rtol=kwargs["threshold"] if rel else 0.0,
        atol=0.0 if rel else kwargs["threshold"],
        cooldown=kwargs.get("cooldown", 0),
        min_scale=kwargs.get("min_lr", 0.0) / 0.8,
        mode=kwargs["mode"],
        takes_effect="next",
    )


@pytest.mark.parametrize("kwargs", TORCH_CASES)
def test_numpy_front_matches_torch_reduce_lr_on_plateau(kwargs):
    metric = METRIC if kwargs["mode"] == "min" else [-v for v in METRIC]
    want = torch_trajectory(kwargs, metric)
    w = np.zeros(2)
    opt = gradstep.Optimizer(
        w, chain(gradstep.sgd(0.8), reduce_on_plateau(**gradstep_options(kwargs)))
    )
    got = []
    for value in metric:
        opt.step(np.array([1.0, -2.0]), value=value)
        got.append(w.copy())
    np.testing.assert_allclose(np.array(got), want, rtol=1e-14, atol=1e-15)
    assert float(opt.state["reduce_on_plateau"]["scale"]) < 1.0  # the case does reduce


def test_torch_front_takes_torch_scheduler():
    import gradstep.torch as gt

    kwargs = TORCH_CASES[1]
    want = torch_trajectory(kwargs, METRIC)
    got = torch_trajectory(kwargs, METRIC, optimizer_cls=gt.SGD)
    np.testing.assert_array_equal(got, want)


def test_transform_optimizer_takes_the_metric_as_a_group_value():
    import gradstep.torch as gt

    kwargs = TORCH_CASES[1]
    want = torch_trajectory(kwargs, METRIC)
    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    t = chain(gradstep.sgd(0.8), reduce_on_plateau(**gradstep_options(kwargs)))
    opt = gt.TransformOptimizer([w], t)
    got = []
    for value in METRIC:
        w.grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
        opt.param_groups[0]["value"] = value
        opt.step()
        got.append(w.detach().numpy().copy())
    np.testing.assert_allclose(np.array(got), want, rtol=1e-14, atol=1e-15)
    assert int(opt.state[w]["step"]) == len(METRIC)


def test_step_without_value_keeps_the_state_and_now_applies_at_once():
    w = np.zeros(1)
    opt = gradstep.Optimizer(w, chain(gradstep.sgd(1.0), reduce_on_plateau(0.5, 0)))
    opt.step(np.ones(1), value=1.0)
    before = {k: np.copy(v) for k, v in opt.state["reduce_on_plateau"].items()}
    opt.step(np.ones(1))
    assert all(np.array_equal(before[k], v) for k, v in opt.state["reduce_on_plateau"].items())
    opt.step(np.ones(1), value=1.0)  # no improvement, patience 0: halved, this step too
    np.testing.assert_array_equal(w, [-2.5])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(factor=1.0), "factor"),
        (dict(patience=-1), "patience"),
        (dict(min_scale=2.0), "min_scale"),
        (dict(mode="best"), "mode"),
        (dict(takes_effect="later"), "takes_effect"),
        (dict(accumulation_size=0), "accumulation_size"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        reduce_on_plateau(**kwargs)


def test_compat_matches_optax_contrib_under_jit():
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    optax = pytest.importorskip("optax", reason="optax is the reference")
    import jax.numpy as jnp

    import gradstep.compat.optax as cx

    kwargs = dict(factor=0.5, patience=2, rtol=1e-3, atol=0.01, cooldown=1, accumulation_size=2)
    metric = jnp.asarray(METRIC + METRIC[::-1], jnp.float32)
    params = {"w": jnp.array([1.0, -1.0], jnp.float32)}
    results = []
    for make in (optax.contrib.reduce_on_plateau, cx.reduce_on_plateau):
        opt = optax.chain(optax.sgd(0.1), make(**kwargs))
        state = opt.init(params)

        @jax.jit
        def step(state, value, opt=opt):
            u, state = opt.update({"w": jnp.array([1.0, 2.0], jnp.float32)}, state, value=value)
            return u["w"], state

        us = []
        for v in metric:
            u, state = step(state, v)
            us.append(np.asarray(u))
        results.append(np.array(us))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)
    assert results[0][-1, 0] > -0.1 * 0.6  # reduced at least once
    with pytest.raises(ValueError, match="patience"):
        cx.reduce_on_plateau(patience=0)
