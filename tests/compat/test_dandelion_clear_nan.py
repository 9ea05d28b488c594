"""Dandelion's ``clear_nan`` with NaN and infinite gradients, against a NumPy
transcription of Dandelion's update graphs (``do_clear_nan(x) = switch(isnan(x), 0,
x)`` applied to the new state and parameters, never to the gradient): NaN becomes 0,
infinities are kept, an infinite gradient pins Adam's parameter element at 0."""

from __future__ import annotations

import numpy as np
import pytest

from gradstep.compat import dandelion as D

F = np.float32
INF, NAN = np.inf, np.nan


def _clear(x):
    return np.where(np.isnan(x), F(0), x)


def _dandelion_sgd(w, grads):
    lr, out = F(1e-4), []
    for g in grads:
        w = _clear(w - lr * g)
        out.append(w.copy())
    return out


def _dandelion_adam(w, grads):
    lr, b1, b2, eps = F(0.001), F(0.9), F(0.999), F(1e-8)
    m, v, out = np.zeros_like(w), np.zeros_like(w), []
    for t, g in enumerate(grads, 1):
        a = lr * np.sqrt(F(1) - b2 ** F(t)) / (F(1) - b1 ** F(t))
        m_t, v_t = b1 * m + (F(1) - b1) * g, b2 * v + (F(1) - b2) * g**2
        step = a * m_t / (np.sqrt(v_t) + eps)
        m, v, w = _clear(m_t), _clear(v_t), _clear(w - step)
        out.append(w.copy())
    return out


def _dandelion_adadelta(w, grads):
    lr, rho, eps = F(1.0), F(0.95), F(1e-6)
    acc, delta, out = np.zeros_like(w), np.zeros_like(w), []
    for g in grads:
        acc_new = rho * acc + (F(1) - rho) * g**2
        update = g * np.sqrt(delta + eps) / np.sqrt(acc_new + eps)
        w = _clear(w - lr * update)
        delta = _clear(rho * delta + (F(1) - rho) * update**2)
        acc = _clear(acc_new)
        out.append(w.copy())
    return out


GRADS = [
    [INF, 1.0, -INF, NAN],
    [1.0, 1.0, 1.0, 1.0],
    [-INF, 2.0, 1.0, 0.5],  # -inf on an element SGD already took to -inf
    [0.5, NAN, 0.5, 0.5],
    [0.5, 0.5, 0.5, 0.5],
]


@pytest.mark.parametrize(
    ("rule", "reference"),
    [(D.sgd, _dandelion_sgd), (D.adam, _dandelion_adam), (D.adadelta, _dandelion_adadelta)],
    ids=["sgd", "adam", "adadelta"],
)
def test_clear_nan_is_dandelions_for_nan_and_inf(rule, reference):
    w0 = np.array([0.5, -1.0, 2.0, 0.25], F)
    grads = [np.array(g, F) for g in GRADS]
    with np.errstate(all="ignore"):
        expected = reference(w0.copy(), grads)
        p = D.shared(w0.copy())
        for k, (g, want) in enumerate(zip(grads, expected)):
            D.apply_updates(rule([g], [p], clear_nan=True))
            got = p.get_value()
            # NaN, infinities and the pinned zeros exactly where Dandelion has them
            assert not np.isnan(got).any(), f"step {k}: {got}"
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=f"step {k}")
            np.testing.assert_array_equal(got == 0, want == 0, err_msg=f"step {k}")
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=0, err_msg=f"step {k}")


def test_an_infinite_gradient_pins_adams_element_at_zero_as_in_dandelion():
    p = D.shared(np.array([0.5, -1.0], F))
    with np.errstate(all="ignore"):
        D.apply_updates(D.adam([np.array([INF, 1.0], F)], [p], clear_nan=True))
        for _ in range(3):
            D.apply_updates(D.adam([np.array([1.0, 1.0], F)], [p], clear_nan=True))
    assert p.get_value()[0] == 0.0
    assert p.get_value()[1] < -1.0
