"""gradstep.compat.lasagne against Lasagne's formulas (hand-derived float64 oracle in
lasagne_reference.py, since Theano cannot be installed), with NumPy shared variables
and torch tensors, in Lasagne's calling idiom."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import gradstep.compat.dandelion as dandelion
import gradstep.compat.lasagne as L

_spec = importlib.util.spec_from_file_location(
    "lasagne_reference", Path(__file__).with_name("lasagne_reference.py")
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

CASES = [
    ("sgd", {"learning_rate": 0.1}),
    ("sgd", {}),
    ("momentum", {"learning_rate": 0.05}),
    ("momentum", {"learning_rate": 0.05, "momentum": 0.5}),
    ("nesterov_momentum", {"learning_rate": 0.05}),
    ("adagrad", {}),
    ("adagrad", {"learning_rate": 0.3, "epsilon": 1e-3}),
    ("rmsprop", {"learning_rate": 0.01}),
    ("adadelta", {}),
    ("adadelta", {"learning_rate": 0.5, "rho": 0.9, "epsilon": 1e-4}),
    ("adam", {}),
    ("adam", {"learning_rate": 0.1, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6}),
    ("adamax", {}),
    ("amsgrad", {"learning_rate": 0.05}),
]


def problem(seed=0):
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    target = [rng.normal(size=(3, 4)), rng.normal(size=5)]

    def grad(w, k):
        g = [1.5 * (x - t) + 0.1 * np.sin(k + x) for x, t in zip(w, target)]
        g[0][:, 0] = 0.0
        return g

    return w0, grad


@pytest.mark.parametrize("rule, kwargs", CASES, ids=[f"{r}-{k}" for r, k in CASES])
def test_numpy_shared_variables_follow_lasagne(rule, kwargs):
    w0, grad = problem()
    params = [L.shared(w, name=f"w{i}") for i, w in enumerate(w0)]
    expected, acc = [w.copy() for w in w0], {}
    for k in range(25):
        grads = grad([p.get_value() for p in params], k)
        updates = getattr(L, rule)(grads, params, **kwargs)
        assert list(updates)[: len(params)] == params  # params first, then accumulators
        L.apply_updates(updates)
        expected = getattr(ref, rule)(expected, grad(expected, k), acc, **kwargs)
        for p, e in zip(params, expected):
            np.testing.assert_allclose(p.get_value(), e, rtol=1e-12, atol=1e-14)


def test_accumulators_are_created_once_and_only_advance_when_applied():
    w = L.shared(np.array([1.0, 2.0]))
    first = L.adam([np.array([0.1, 0.2])], [w])
    second = L.adam([np.array([0.1, 0.2])], [w])  # not applied: same values again
    assert list(first) == list(second)
    for a, b in zip(first.values(), second.values()):
        np.testing.assert_array_equal(a, b)
    assert len(first) == 1 + 3  # w, then mu, nu and the step counter
    L.apply_updates(first)
    third = L.adam([np.array([0.1, 0.2])], [w])
    assert list(third) == list(first)
    assert not np.array_equal(list(third.values())[0], list(first.values())[0])


def test_torch_parameters_and_a_scalar_loss():
    w0, grad = problem(1)
    params = [torch.nn.Parameter(torch.tensor(w)) for w in w0]
    expected, acc = [w.copy() for w in w0], {}
    target = [torch.tensor(1.0), torch.tensor(-1.0)]
    for _ in range(10):
        loss = sum(((p - t) ** 2).sum() for p, t in zip(params, target))
        L.apply_updates(L.adam(loss, params, learning_rate=0.05))
        g = [2 * (e - t.item()) for e, t in zip(expected, target)]
        expected = ref.adam(expected, g, acc, learning_rate=0.05)
    for p, e in zip(params, expected):
        assert isinstance(p, torch.nn.Parameter) and p.dtype == torch.float64
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-12)


def test_apply_momentum_after_any_rule():
    w0, grad = problem(2)
    params = [L.shared(w) for w in w0]
    expected, acc_v = [w.copy() for w in w0], [np.zeros_like(w) for w in w0]
    for k in range(15):
        g = grad([p.get_value() for p in params], k)
        L.apply_updates(L.apply_momentum(L.sgd(g, params, 0.05), params, momentum=0.8))
        for i, e in enumerate(expected):
            x = 0.8 * acc_v[i] + (e - 0.05 * grad(expected, k)[i])
            acc_v[i] = x - e
            expected[i] = x
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.get_value(), e, rtol=1e-12, atol=1e-14)


def test_dandelion_clear_nan_and_defaults():
    w = dandelion.shared(np.array([1.0, 2.0]))
    dandelion.apply_updates(dandelion.sgd([np.array([np.nan, 1.0])], [w], clear_nan=True))
    np.testing.assert_array_equal(w.get_value(), [0.0, 2.0 - 1e-4])  # default lr 1e-4
    w = L.shared(np.array([1.0, 2.0]))
    L.apply_updates(L.adam([np.array([np.nan, 1.0])], [w], clear_nan=True))
    assert w.get_value()[0] == 0.0 and np.isfinite(w.get_value()[1])


def test_norm_constraints_accept_torch_and_shared():
    t = torch.tensor([[3.0], [4.0]])
    out = L.norm_constraint(t, 1.0)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy().ravel(), [0.6, 0.8], rtol=1e-6)
    scaled, norm = L.total_norm_constraint(
        [torch.tensor([3.0]), L.shared(np.array([4.0]))], 1.0, return_norm=True
    )
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose([float(scaled[0][0]), float(scaled[1][0])], [0.6, 0.8], rtol=1e-6)


def test_get_or_compute_grads_checks_its_inputs():
    w = L.shared(np.ones(2))
    with pytest.raises(ValueError, match="1 gradients for 2 parameters"):
        L.get_or_compute_grads([np.ones(2)], [w, w])
    with pytest.raises(ValueError, match="shared variables"):
        L.get_or_compute_grads([np.ones(2)], [np.ones(2)])
