"""A hyperparameter given as a 0-d array (NumPy's, JAX's, torch's) is the number it
holds, as optax and torch.optim take it: every registered factory, step-time values,
the optax-compatible factories; anything else an array can be is refused."""

from __future__ import annotations

import inspect
import numbers

import numpy as np
import pytest

import gradstep

SPECS = [s for s in gradstep.REGISTRY if "needs_closure" not in s.capabilities]


def _numbers_as_arrays(spec) -> dict:
    """The factory's test arguments, every number among them and among the defaults
    of its declared hyperparameters given as a 0-d array."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(spec.factory).parameters.items()
        if name in getattr(spec.factory, "declared_ranges", {})
    }
    values = {**defaults, **spec.test_hyperparams}
    return {k: np.asarray(v) if _real(v) else v for k, v in values.items()}


def _f32(v: float) -> float:
    return float(np.float32(v))


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _trajectory(transform, spec, steps=3, **ctx):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    opt = gradstep.Optimizer(params, transform, engine="eager")
    for _ in range(steps):
        grads = {k: 0.5 * v + 0.1 for k, v in params.items()}
        value = {"value": float(sum(np.sum(v * v) for v in params.values()))}
        opt.step(grads, **(value if "needs_value" in spec.capabilities else {}), **ctx)
    return params


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_every_factory_takes_0d_arrays_as_their_numbers(spec):
    arrays = _numbers_as_arrays(spec)
    assert any(isinstance(v, np.ndarray) for v in arrays.values())
    expected = _trajectory(spec.factory(**spec.test_hyperparams), spec)
    got = _trajectory(spec.factory(**arrays), spec)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_a_float64_array_does_not_change_the_dtype_of_float32_steps():
    params = {"w": np.ones(3, np.float32)}
    opt = gradstep.Optimizer(params, gradstep.adam(np.asarray(1e-2)), engine="eager")
    opt.step({"w": np.ones(3, np.float32)})
    assert params["w"].dtype == np.float32
    np.testing.assert_allclose(params["w"], 0.99, rtol=1e-6)


def test_jax_and_torch_scalars_are_numbers_too():
    jnp = pytest.importorskip("jax.numpy", reason="JAX is a test dependency")
    torch = pytest.importorskip("torch", reason="torch is a test dependency")
    spec = gradstep.REGISTRY["adam"]
    # the numbers the float32 arrays hold
    expected = _trajectory(gradstep.adam(_f32(1e-2), beta1=_f32(0.8)), spec)
    for lr, b1 in ((jnp.asarray(1e-2), jnp.asarray(0.8)), (torch.tensor(1e-2), torch.tensor(0.8))):
        got = _trajectory(gradstep.adam(lr, beta1=b1), spec)
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    "value",
    [np.asarray(True), np.asarray([1e-3]), np.asarray(1e-3 + 0j), np.asarray(-1e-3)],
    ids=["bool", "1-d", "complex", "negative"],
)
def test_arrays_that_are_no_valid_number_are_refused(value):
    with pytest.raises(ValueError, match=r"adam: invalid learning_rate=.*valid values: a number"):
        gradstep.adam(value)


def test_step_time_values_may_be_0d_arrays():
    spec = gradstep.REGISTRY["adam"]
    expected = _trajectory(gradstep.adam(), spec, learning_rate=0.05)
    got = _trajectory(gradstep.adam(), spec, learning_rate=np.asarray(0.05))
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    params = {"w": np.ones(3)}
    opt = gradstep.Optimizer(params, gradstep.adam())
    with pytest.raises(ValueError, match="Optimizer.step: invalid learning_rate"):
        opt.step({"w": np.ones(3)}, learning_rate=np.asarray(-1.0))
    np.testing.assert_array_equal(params["w"], 1.0)


def test_optax_compat_factories_take_jax_scalars():
    jax = pytest.importorskip("jax", reason="JAX is a test dependency")
    optax = pytest.importorskip("optax", reason="optax is a test dependency")
    from gradstep.compat import optax as compat

    params = {"w": jax.numpy.linspace(-1.0, 1.0, 6)}
    grads = {"w": jax.numpy.linspace(0.5, -0.2, 6)}

    def steps(tx):
        state, p = tx.init(params), params
        for _ in range(3):
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        return np.asarray(p["w"])

    expected = steps(compat.adamw(1e-2, b1=0.8, weight_decay=1e-3))
    arrays = jax.numpy.asarray
    got = steps(compat.adamw(arrays(1e-2), b1=arrays(0.8), weight_decay=arrays(1e-3)))
    np.testing.assert_array_equal(got, expected)
    # optax's own inject_hyperparams makes the optimizer again at every step, from
    # 0-d arrays in the parameters' dtype: eagerly, the trajectory of those numbers
    injected = steps(optax.inject_hyperparams(compat.adamw)(1e-2, b1=0.8, weight_decay=1e-3))
    numbers = dict(b1=0.8, b2=0.999, eps=1e-8, weight_decay=1e-3)  # defaults too
    expected = steps(compat.adamw(_f32(1e-2), **{k: _f32(v) for k, v in numbers.items()}))
    np.testing.assert_array_equal(injected, expected)


def test_a_traced_value_is_refused_with_what_to_do_instead():
    jax = pytest.importorskip("jax", reason="JAX is a test dependency")
    optax = pytest.importorskip("optax", reason="optax is a test dependency")
    from gradstep.compat import optax as compat

    params = {"w": jax.numpy.ones(3)}
    tx = optax.inject_hyperparams(compat.adam)(learning_rate=1e-2)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"traced.*gradstep\.compat\.optax\.inject_hyperparams"):
        jax.jit(tx.update)(params, state, params)
    ours = compat.inject_hyperparams(compat.adam)(learning_rate=1e-2)
    updates, _ = jax.jit(ours.update)(params, ours.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), -1e-2, rtol=1e-5)
