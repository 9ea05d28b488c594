"""gradstep.compat.objax against objax's formulas (hand-derived float64 oracle in
objax_reference.py, since objax cannot be installed), in objax's calling convention."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gradstep.compat import objax

_spec = importlib.util.spec_from_file_location(
    "objax_reference", Path(__file__).with_name("objax_reference.py")
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

TOL = dict(rtol=1e-12, atol=1e-14)


def problem(seed=0, zero_param=False):
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=(3, 4)), rng.normal(size=5), np.zeros(2)]
    if not zero_param:
        w0[2] = rng.normal(size=2)
    target = [rng.normal(size=x.shape) for x in w0]

    def grad(w, k):
        g = [1.5 * (x - t) + 0.1 * np.sin(k + x) for x, t in zip(w, target)]
        g[0][:, 0] = 0.0
        if k % 4 == 3:
            g[1][:] = 0.0  # a whole tensor without gradient: LARS's G = 0 branch
        return g

    return w0, grad


def lrs(k):
    return 0.05 * (1 - k / 40) ** 2  # objax's suggested LARS schedule, and a changing lr


CASES = [
    ("SGD", {}, "sgd", {}, {}),
    ("Momentum", {}, "momentum", {}, {}),
    ("Momentum", {"momentum": 0.5, "nesterov": True}, "momentum",
     {"mu": 0.5, "nesterov": True}, {}),
    ("Momentum", {}, "momentum", {"mu": 0.7}, {"momentum": 0.7}),
    ("Adam", {}, "adam", {}, {}),
    ("Adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-3}, "adam",
     {"beta1": 0.8, "beta2": 0.99, "eps": 1e-3}, {}),
    ("Adam", {}, "adam", {"beta1": 0.5, "beta2": 0.9}, {"beta1": 0.5, "beta2": 0.9}),
    ("Adam", {"eps": 1e-3, "epsilon_placement": "outside"}, "adam",
     {"eps": 1e-3, "documented": True}, {}),
    ("LARS", {}, "lars", {}, {}),
    ("LARS", {"momentum": 0.5, "weight_decay": 1e-2, "tc": 0.1, "eps": 1e-3}, "lars",
     {"mu": 0.5, "wd": 1e-2, "tc": 0.1, "eps": 1e-3}, {}),
]  # fmt: skip


@pytest.mark.parametrize("zero_param", [False, True])
@pytest.mark.parametrize("cls, kwargs, oracle, okwargs, per_call", CASES)
def test_follows_objax_formulas(cls, kwargs, oracle, okwargs, per_call, zero_param):
    w0, grad = problem(zero_param=zero_param)
    params = [w.copy() for w in w0]
    opt = getattr(objax, cls)(params, **kwargs)
    expected, state = [w.copy() for w in w0], {}
    for k in range(30):
        g = grad(params, k)
        opt(lrs(k), g, **per_call)
        expected = getattr(ref, oracle)(expected, g, state, lrs(k), **okwargs)
        for got, want in zip(params, expected):
            np.testing.assert_allclose(got, want, **TOL, err_msg=f"{cls} step {k}")


def test_adam_epsilon_inside_the_root_differs_from_the_documented_formula():
    w = [np.array([1.0])]
    objax.Adam(w)(0.1, [np.array([1e-4])])
    # code: a = 0.1 sqrt(0.001) / 0.1; m = 1e-5, v = 1e-11: step = a m / sqrt(v + 1e-8)
    a = 0.1 * np.sqrt(0.001) / 0.1
    assert w[0][0] == pytest.approx(1.0 - a * 1e-5 / np.sqrt(1e-11 + 1e-8), rel=1e-13)
    d = [np.array([1.0])]
    objax.Adam(d, epsilon_placement="outside")(0.1, [np.array([1e-4])])
    assert d[0][0] == pytest.approx(1.0 - 0.1 * 1e-4 / (1e-4 + 1e-8), rel=1e-13)


@pytest.mark.parametrize("debias", [False, True])
def test_exponential_moving_average(debias):
    w0, grad = problem()
    params = [w.copy() for w in w0]
    opt = objax.Momentum(params)
    ema = objax.ExponentialMovingAverage(params, momentum=0.9, debias=debias)
    state = {}
    for k in range(20):
        opt(0.01, grad(params, k))
        ema()
        want = ref.ema(params, state, 0.9, debias)
    refs, values = ema.refs_and_values()
    assert refs[0] is params[0]
    for got, w in zip(values, want):
        np.testing.assert_allclose(got, w, **TOL)
    before = [p.copy() for p in params]
    seen = ema.replace_vars(lambda: [p.copy() for p in params])()
    for s, w in zip(seen, want):
        np.testing.assert_allclose(s, w, **TOL)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)


def test_float32_stays_float32_and_dict_collections():
    params = {"w": np.ones(3, np.float32), "b": np.zeros(1, np.float32)}
    opt = objax.Adam(params)
    opt(0.1, [np.ones(3), np.ones(1)])
    assert params["w"].dtype == np.float32 and params["w"][0] < 1


def test_refuses_immutable_arrays_and_wrong_gradient_counts():
    with pytest.raises(ValueError, match="NumPy arrays"):
        objax.SGD([[1.0, 2.0]])
    opt = objax.SGD([np.ones(2)])
    with pytest.raises(ValueError, match="as many gradients"):
        opt(0.1, [np.ones(2), np.ones(2)])
