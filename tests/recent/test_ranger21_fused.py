"""Ranger21 on the numba engine: on vectors its fused forms (AGC, the normalisation, the
step as a per-tensor reduction with totals) compute what its own update computes; a
list with a matrix, and 16-bit parameters, run on its own update. (The Triton engine:
tests/gpu_engine/test_triton_fused_forms.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine
from gradstep.engines.plan import Unsupported

SHAPES = [(0,), (1,), (2,), (7,), (100003,)]
SETTINGS = {
    "defaults": {},
    "plain": {"softplus": False, "normalize_gradients": False, "weight_decay": 0.0},
    "small-beta1-no-warmup": {"num_warmup_steps": 0, "beta1": 0.5, "weight_decay": 0.1},
    "no-schedule": {"use_schedule": False, "norm_loss_factor": 0.01, "agc_clipping": 1.0},
}


def _rule(kwargs):
    # warm-down from step 21: the run below crosses it
    return gradstep.ranger21(0.05, num_iterations=30, **kwargs)


def _run(kwargs, dtype, engine, shapes=SHAPES, steps=25):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=s).astype(dtype) for s in shapes]
    opt = gradstep.Optimizer(params, _rule(kwargs), engine=engine)
    for k in range(steps):
        grads = [
            (np.sin(3 * p + k) * (1 + i) + 0.1 * k).astype(dtype) for i, p in enumerate(params)
        ]
        opt.step(grads)
    return params, opt


def _assert_close(want, got, dtype):
    # relative to each tensor's scale: the fused sums add in another order, so each
    # step's divisors and decay differ in their last bits, over 25 steps
    tolerance = 32 * np.finfo(dtype).eps
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and a.shape == b.shape
        scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-30)
        assert float(np.max(np.abs(a - b), initial=0.0)) <= tolerance * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_vectors_run_fused_and_equal_the_eager_update(setting, dtype):
    want, eager = _run(SETTINGS[setting], dtype, "eager")
    got, fused = _run(SETTINGS[setting], dtype, "fused")
    assert fused.engine == "fused"
    _assert_close(want, got, dtype)
    _assert_close(
        [eager.state_dict()[k] for k in sorted(eager.state_dict())],
        [fused.state_dict()[k] for k in sorted(fused.state_dict())],
        dtype,
    )


def test_the_default_engine_is_the_fused_one_on_vectors():
    _, opt = _run({}, np.float32, "auto", steps=2)
    assert opt.engine == "fused"


def test_a_run_resumed_from_a_checkpoint_repeats_the_uninterrupted_one():
    full, _ = _run({}, np.float32, "fused", steps=12)
    _, first = _run({}, np.float32, "fused", steps=5)
    checkpoint = first.state_dict()
    params = [p.copy() for p in first.params]
    opt = gradstep.Optimizer(params, _rule({}), engine="fused")
    opt.load_state_dict(checkpoint)
    for k in range(5, 12):
        grads = [
            (np.sin(3 * p + k) * (1 + i) + 0.1 * k).astype(np.float32) for i, p in enumerate(params)
        ]
        opt.step(grads)
    for a, b in zip(full, params):
        np.testing.assert_array_equal(a, b)


def test_a_matrix_runs_on_the_rules_own_update():
    shapes = [(7,), (3, 5)]
    want, _ = _run({}, np.float32, "eager", shapes=shapes, steps=6)
    got, opt = _run({}, np.float32, "auto", shapes=shapes, steps=6)
    assert opt.engine == "eager"
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    engine = FusedEngine(_rule({}))
    params = [np.ones(7, np.float32), np.ones((3, 5), np.float32)]
    state = _rule({}).init(params)
    with pytest.raises(Unsupported, match=r"not on a tensor of shape \(3, 5\)"):
        engine.step(params, [np.ones_like(p) for p in params], state, {})
    assert all((p == 1).all() for p in params)


def test_16bit_parameters_run_on_the_rules_own_update():
    engine = FusedEngine(_rule({}))
    params = [np.ones(7, np.float16)]
    with pytest.raises(Unsupported, match="32- and 64-bit parameters only"):
        engine.step(params, [np.ones_like(params[0])], _rule({}).init(params), {})
    assert (params[0] == 1).all()
