"""Adaptive gradient clipping's fused form: on tensors that are one unit each
(vectors with layout "torch", squeezed vectors with layout "jax", an axis covering
every axis) the numba engine steps as the eager engine; other tensors run eagerly
(a required fused engine says why), and an invalid axis raises the eager error."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.transforms import adaptive_clip

SHAPES = [(0,), (1,), (7,), (100003,), (40,)]


def make(**options):
    return gradstep.chain(adaptive_clip(0.05, **options), gradstep.adam(0.01))


def data(dtype, shapes=SHAPES, steps=3):
    """Parameters and gradients; every other tensor's gradient small enough that its
    unit is not clipped (the others are)."""
    rng = np.random.default_rng(9)
    params = [rng.normal(size=s).astype(dtype) for s in shapes]
    small = [1.0 if i % 2 else 1e-3 for i in range(len(shapes))]
    grads = [
        [(np.sin(3 * p + k) * s).astype(dtype) for p, s in zip(params, small)] for k in range(steps)
    ]
    return params, grads


def run(make_transform, params, grads, engine=None):
    """The parameters after the steps, and the engine that ran them."""
    params = [p.copy() for p in params]
    options = {} if engine is None else {"engine": engine}
    opt = gradstep.Optimizer(params, make_transform(), **options)
    for g in grads:
        opt.step(g)
    return params, opt.engine


def assert_close(got, want, dtype):
    tol = {"rtol": 2e-6, "atol": 1e-7} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    for a, b in zip(want, got):
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_allclose(b, a, **tol)


def test_the_data_clips_some_units_and_not_others():
    params, (grads, *_) = data(np.float64)
    clipped, _ = adaptive_clip(0.05).update(grads, {}, params)
    changed = [not np.array_equal(c, g) for c, g in zip(clipped, grads)]
    assert changed == [False, True, False, True, False]  # the empty one stays as it is


@pytest.mark.parametrize(
    "options, shapes",
    [
        ({}, SHAPES),
        ({"layout": "torch"}, SHAPES),
        ({}, [(1, 7), (40, 1), (1, 1, 300), (), (1, 0)]),  # squeezed vectors (jax)
        ({"axis": (0, 1)}, [(3, 5), (1, 7), (40, 1), (2, 0)]),
        ({"axis": (-1, 0)}, [(3, 5), (4, 9)]),
        ({"axis": -1}, [(7,), (0,), (300,)]),
    ],
    ids=["jax", "torch", "squeezed", "axis", "negative-axis", "one-axis"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_whole_units_run_fused_as_eager(options, shapes, dtype):
    params, grads = data(dtype, shapes)
    want, engine = run(lambda: make(**options), params, grads, "eager")
    assert engine == "eager"
    got, engine = run(lambda: make(**options), params, grads, "fused")
    assert engine == "fused"
    assert_close(got, want, dtype)
    _, engine = run(lambda: make(**options), params, grads)
    assert engine == "fused"  # the default engine picks it


@pytest.mark.parametrize(
    "options, shapes, default",
    [
        ({"layout": "torch"}, [(7,), (3, 5)], "fused+eager"),  # a matrix: a unit per row
        ({}, [(7,), (3, 5)], "fused+eager"),  # jax: a unit per column
        ({"axis": 1}, [(3, 5)], "eager"),
    ],
    ids=["torch-matrix", "jax-matrix", "one-axis-of-two"],
)
def test_several_units_run_eager(options, shapes, default):
    """The default engine steps a matrix eagerly (beside the vectors it fuses); a
    required fused engine refuses it."""
    params, grads = data(np.float32, shapes)
    want, _ = run(lambda: make(**options), params, grads, "eager")
    got, engine = run(lambda: make(**options), params, grads)
    assert engine == default
    assert_close(got, want, np.float32)
    with pytest.raises(ValueError, match=r"whole tensor only, not on a tensor of shape \(3, 5\)"):
        run(lambda: make(**options), params, grads, "fused")


@pytest.mark.parametrize(
    "axis, shape, error",
    [
        (3, (7,), "out of bounds"),
        ((0, 1), (7,), "out of bounds"),
        (0, (), "out of bounds"),
        ((0, 0), (7,), "duplicate"),
        ((-1, 0), (7,), "duplicate"),
        ((0, 1, 0), (3, 5), "duplicate"),
    ],
)
def test_an_invalid_axis_raises_the_eager_error(axis, shape, error):
    """Not a clip the fused engine would make of it: the eager update's error,
    with the parameters unchanged."""
    params, grads = data(np.float32, [shape], steps=1)
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match=error):
        adaptive_clip(0.05, axis=axis).update(grads[0], {}, params)
    w = [p.copy() for p in params]
    opt = gradstep.Optimizer(w, make(axis=axis))
    with pytest.raises(ValueError, match=error):
        opt.step(grads[0])
    assert opt.engine == "eager"
    for a, b in zip(w, before):
        np.testing.assert_array_equal(a, b)
