"""Shampoo settings the reference cannot record, and its behaviour on bad input."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep


def _inverse_root(matrix: np.ndarray, root: int) -> np.ndarray:
    u, s, vh = np.linalg.svd(matrix)
    return (u * s ** (-1.0 / root)) @ vh


def test_summed_statistics_are_the_papers_algorithm():
    """beta2 = 1 (pytorch_optimizer refuses it) is Gupta et al.'s Algorithm 1:
    L = eps I + sum G G^T, R = eps I + sum G^T G, W -= lr L^(-1/4) G R^(-1/4)."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 5))
    want = w.copy()
    eps, lr = 1e-2, 0.1
    left, right = eps * np.eye(3), eps * np.eye(5)
    opt = gradstep.Optimizer(
        w,
        gradstep.shampoo(
            lr, beta1=0.0, beta2=1.0, epsilon=eps, graft="none", start_preconditioning_step=1
        ),
    )
    for _ in range(4):
        g = rng.normal(size=(3, 5))
        left, right = left + g @ g.T, right + g.T @ g
        want -= lr * _inverse_root(left, 4) @ g @ _inverse_root(right, 4)
        opt.step(g)
        np.testing.assert_allclose(w, want, rtol=1e-12, atol=1e-14)


def test_a_nan_gradient_propagates_instead_of_stopping_the_eigensolver():
    w = np.ones((2, 3))
    opt = gradstep.Optimizer(w, gradstep.shampoo(0.1, start_preconditioning_step=1))
    g = np.ones((2, 3))
    g[0, 1] = np.nan
    opt.step(g)
    assert np.isnan(w).all()


def test_coupled_decay_without_the_parameters_is_an_error():
    transform = gradstep.shampoo(0.1, weight_decay=0.1)
    state = transform.init([np.ones((2, 2))])
    with pytest.raises(ValueError, match="weight_decay"):
        transform.update([np.ones((2, 2))], state)


def test_sixteen_bit_parameters_step_in_float32():
    """Eigensolvers take no float16: the matrices are kept in float32, the
    parameters and their slots in float16, near the float32 run."""
    rng = np.random.default_rng(4)
    grads = [rng.normal(size=(3, 4)).astype(np.float16) for _ in range(4)]
    runs = {}
    for dtype in (np.float16, np.float32):
        w = np.ones((3, 4), dtype)
        opt = gradstep.Optimizer(w, gradstep.shampoo(0.1, start_preconditioning_step=2))
        for g in grads:
            opt.step(g.astype(dtype))
        runs[dtype] = w
        state = opt.state["scale_by_shampoo"]
        assert state["statistics"].dtype == np.float32
        assert state["mu"].dtype == w.dtype == dtype
    np.testing.assert_allclose(runs[np.float16], runs[np.float32], rtol=1e-2, atol=1e-2)
