"""Hyperparameters that are JAX tracers (an optimizer made inside ``jax.grad``,
``jax.vmap`` or ``jax.jit``) in gradstep.compat.optax.

``inject_hyperparams`` keeps them in its state, so derivatives and batches flow
through them as in optax. A factory called directly with one is refused with a
message naming the way that works: taking the tracer's value would build the
optimizer from a constant and give a derivative of 0 without a word.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

PARAMS = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray([0.25])}


def _loss(params):
    return jnp.sum(params["w"] ** 2) + jnp.sum((params["b"] - 1.0) ** 2)


def _trained_loss(make, lr, steps=3):
    tx = make(lr)
    params, state = PARAMS, tx.init(PARAMS)
    for _ in range(steps):
        updates, state = tx.update(jax.grad(_loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    return _loss(params)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_the_derivative_through_an_injected_learning_rate_matches_optax(name):
    ours = jax.grad(lambda lr: _trained_loss(cx.inject_hyperparams(getattr(cx, name)), lr))
    theirs = jax.grad(lambda lr: _trained_loss(optax.inject_hyperparams(getattr(optax, name)), lr))
    np.testing.assert_allclose(ours(0.01), theirs(0.01), rtol=1e-5)
    assert abs(float(theirs(0.01))) > 1e-3  # a derivative worth comparing


def test_vmap_and_jit_over_an_injected_learning_rate_match_optax():
    rates = jnp.asarray([0.01, 0.1, 0.3])

    def run(m):
        return jax.jit(jax.vmap(lambda lr: _trained_loss(m.inject_hyperparams(m.adam), lr)))(rates)

    np.testing.assert_allclose(run(cx), run(optax), rtol=1e-5)


def test_a_traced_value_of_a_fixed_argument_is_refused_by_name():
    def trained(start):
        make = lambda lr: cx.inject_hyperparams(cx.adagrad)(lr, initial_accumulator_value=start)  # noqa: E731
        return _trained_loss(make, 0.1)

    with pytest.raises(ValueError, match=r"\['initial_accumulator_value'\].*traced array"):
        jax.grad(trained)(0.1)


def test_a_traced_epsilon_is_differentiated_as_in_optax():
    def run(m):
        return jax.grad(
            lambda e: _trained_loss(lambda lr: m.inject_hyperparams(m.adam)(lr, eps=e), 0.1)
        )(1e-2)

    np.testing.assert_allclose(run(cx), run(optax), rtol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_factory_called_with_a_tracer_is_refused_not_differentiated_as_zero(name):
    make = getattr(cx, name)
    with pytest.raises(ValueError, match="traced array.*inject_hyperparams"):
        jax.grad(lambda lr: _trained_loss(make, lr))(0.01)
    with pytest.raises(ValueError, match="traced array"):
        jax.vmap(lambda lr: _trained_loss(make, lr))(jnp.asarray([0.01, 0.1]))
