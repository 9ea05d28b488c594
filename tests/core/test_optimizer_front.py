"""The stateful NumPy front."""

import warnings

import numpy as np
import pytest

import gradstep


def test_step_updates_the_callers_arrays_in_place():
    w = np.array([1.0, 2.0])
    params = {"w": w}
    gradstep.Optimizer(params, gradstep.sgd(0.5)).step({"w": np.array([1.0, -1.0])})
    assert params["w"] is w
    np.testing.assert_array_equal(w, [0.5, 2.5])


def test_rejects_what_cannot_be_updated_in_place():
    with pytest.raises(TypeError, match="floating-point numpy array"):
        gradstep.Optimizer([1.0], gradstep.sgd())
    with pytest.raises(TypeError, match="floating-point"):
        gradstep.Optimizer(np.arange(3), gradstep.sgd())
    ro = np.ones(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        gradstep.Optimizer(ro, gradstep.sgd())
    with pytest.raises(TypeError, match="expected a transform"):
        gradstep.Optimizer(np.ones(2), "adam")


def test_state_dict_names_read_like_the_math():
    params = {"layer": {"weight": np.ones((2, 2)), "bias": np.zeros(2)}}
    opt = gradstep.Optimizer(params, gradstep.adam())
    keys = set(opt.state_dict())
    assert "state/scale_by_adam/mu/layer/weight" in keys
    assert "state/scale_by_adam/count" in keys


def test_sticky_hyperparameters_are_used_and_saved(tmp_path):
    p = np.array([0.0])
    opt = gradstep.Optimizer(p, gradstep.sgd(1.0))
    opt.hyperparams["learning_rate"] = 0.25
    opt.step(np.array([1.0]))
    assert p[0] == -0.25
    opt.save(tmp_path / "s.npz")
    other = gradstep.Optimizer(np.array([0.0]), gradstep.sgd(1.0))
    other.load(tmp_path / "s.npz")
    assert other.hyperparams == {"learning_rate": 0.25}


def test_load_state_dict_rejects_a_state_of_another_optimizer():
    opt = gradstep.Optimizer(np.ones(2), gradstep.adam())
    sgd_state = gradstep.Optimizer(np.ones(2), gradstep.momentum(0.1)).state_dict()
    with pytest.raises(ValueError, match="missing"):
        opt.load_state_dict(sgd_state)
    wrong_shape = gradstep.Optimizer(np.ones(3), gradstep.adam()).state_dict()
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(wrong_shape)


def test_grads_must_match_the_params():
    opt = gradstep.Optimizer([np.ones(2), np.ones(1)], gradstep.sgd())
    with pytest.raises(ValueError, match="structures differ"):
        opt.step([np.ones(2)])


def test_step_overrides_are_checked_by_name_and_range():
    opt = gradstep.Optimizer(np.zeros(2), gradstep.adam())
    assert set(opt.transform.hyperparameters()) == {"learning_rate", "beta1", "beta2"}
    with pytest.raises(ValueError, match="unknown hyperparameter 'learnig_rate'"):
        opt.step(np.ones(2), learnig_rate=0.1)
    with pytest.raises(ValueError, match=r"invalid learning_rate=-1.0.*\[0, inf\)"):
        opt.step(np.ones(2), learning_rate=-1.0)
    with pytest.raises(ValueError, match="beta1"):
        opt.step(np.ones(2), beta1=1.0)
    opt.hyperparams["momentum"] = 0.5
    with pytest.raises(ValueError, match="unknown hyperparameter 'momentum'"):
        opt.step(np.ones(2))


def test_step_takes_a_closure_for_closure_driven_optimizers():
    target = np.array([1.0, -2.0])
    p = np.zeros(2)
    opt = gradstep.Optimizer(p, gradstep.lbfgs(line_search_fn="strong_wolfe"))

    def closure():
        return float(np.sum((p - target) ** 2)), 2 * (p - target)

    first_loss = opt.step(closure=closure)
    assert first_loss == pytest.approx(5.0)
    np.testing.assert_allclose(p, target, atol=1e-8)
    with pytest.raises(ValueError, match="not both"):
        opt.step(np.ones(2), closure=closure)
    with pytest.raises(TypeError, match="does not step with a closure"):
        gradstep.Optimizer(np.zeros(2), gradstep.adam()).step(closure=closure)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scalar", [0.5, np.float64(0.5), np.float32(0.5), np.float16(0.5), 1])
def test_scalar_gradients_of_0d_parameters_run_fused_without_a_warning(scalar, dtype):
    # a NumPy scalar is a number as a Python float is: no "unsupported gradient"
    # fallback for it, on the fused engine as on the eager one
    for engine in ("fused", "eager"):
        w = np.array(2.0, dtype)
        opt = gradstep.Optimizer([w], gradstep.sgd(0.1), engine=engine)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            opt.step([scalar])
        assert w.dtype == dtype
        assert w == dtype(2.0) - dtype(0.1) * dtype(scalar)


def test_a_parameter_array_of_another_dtype_is_refused_naming_the_dtype():
    with pytest.raises(TypeError, match="parameter 0 .* got an array of int64"):
        gradstep.Optimizer([np.arange(3, dtype=np.int64)], gradstep.sgd(0.1))
