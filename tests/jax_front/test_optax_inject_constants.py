"""``inject_hyperparams`` of the constants gradstep's rules take when built (``eps``,
``eps_root``, Nadam's ``b1``/``b2``, RAdam's ``threshold``) in gradstep.compat.optax
against optax 0.2.8: they are in ``state.hyperparams`` as optax's, and a value
changed between jitted steps changes the step as it does in optax."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.asarray([0.5, -0.25])}

#: factory, its arguments, and the values set in state.hyperparams before step 2
CASES = {
    "adam": ("adam", dict(eps=0.3, eps_root=0.01), dict(eps=0.05, eps_root=0.2)),
    "nadamw": ("nadamw", dict(eps=0.2), dict(b1=0.5, b2=0.9, eps=0.02)),
    "radam": ("radam", dict(b2=0.99, eps=0.1), dict(eps=0.3, threshold=4.5)),
    "rmsprop": ("rmsprop", dict(eps=0.3), dict(eps=0.02)),
    "rmsprop_outside": (
        "rmsprop",
        dict(eps=0.3, eps_in_sqrt=False, centered=True, momentum=0.5),
        dict(eps=0.02),
    ),
    "adagrad": ("adagrad", dict(eps=0.3), dict(eps=2.0)),
    "adadelta": ("adadelta", dict(learning_rate=1.0, eps=0.3), dict(eps=0.01, weight_decay=0.5)),
    "adamaxw": ("adamaxw", dict(eps=0.3), dict(eps=0.05)),
}


def run(module, name, kwargs, changes):
    factory, args, _ = CASES[name]
    steps = 6 if name == "radam" else 4  # RAdam rectifies from rho_t >= 4.5 (step 5) on
    args = {"learning_rate": 0.1, **args, **kwargs}
    tx = module.inject_hyperparams(getattr(module, factory))(**args)
    params, state = PARAMS, tx.init(PARAMS)
    update = jax.jit(tx.update)
    seen = []
    for k in range(steps):
        if k == 2:
            for key, value in changes.items():
                state.hyperparams[key] = jnp.asarray(value, state.hyperparams[key].dtype)
        grads = jax.tree_util.tree_map(lambda x, k=k: jnp.sin(2.0 * x + k), params)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        seen.append(params)
    return seen, state


#: optax's hyperparams that gradstep keeps fixed (they act only at init)
LEFT_OUT = {"initial_scale", "initial_accumulator_value"}


def without_left_out(ours, theirs):
    """optax's state less the hyperparams gradstep leaves out (only those)."""
    seen, state = theirs
    extra = set(state.hyperparams) - set(ours[1].hyperparams)
    assert extra <= LEFT_OUT
    kept = {k: v for k, v in state.hyperparams.items() if k not in extra}
    return seen, state._replace(hyperparams=kept)


def assert_same(got, want, rtol=2e-5, atol=2e-7):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_injected_constants_follow_optax(name):
    changes = CASES[name][2]
    ours = run(cx, name, {}, changes)
    # Nadam's prepare runs on the host in float64, optax's in float32 (the fixtures'
    # tolerance for Nadam in float32)
    tol = dict(rtol=1e-4, atol=1e-5) if name == "nadamw" else {}
    assert_same(ours, without_left_out(ours, run(optax, name, {}, changes)), **tol)
    # the change is not a no-op: without it the trajectory differs
    unchanged = run(cx, name, {}, {})
    assert not np.allclose(np.asarray(ours[0][-1]["w"]), np.asarray(unchanged[0][-1]["w"]))


def test_a_scheduled_eps_follows_optax():
    def go(m):
        tx = m.inject_hyperparams(m.adam)(0.1, eps=m.linear_schedule(0.5, 0.01, 3))
        params, state = PARAMS, tx.init(PARAMS)
        update = jax.jit(tx.update)
        for k in range(4):
            grads = jax.tree_util.tree_map(lambda x, k=k: jnp.cos(x + k), params)
            updates, state = update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params, state.hyperparams

    assert_same(go(cx), go(optax))


def test_a_constant_as_an_override():
    """The same constants are per-step hyperparameters of the compat optimizer: an
    ``update`` keyword (by gradstep's name) changes the step."""
    tx = cx.adam(0.1, eps=0.3)
    grads = jax.tree_util.tree_map(jnp.sin, PARAMS)
    base, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    moved, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, epsilon=jnp.asarray(0.01)))(
        grads, tx.init(PARAMS), PARAMS
    )
    want, _ = optax.adam(0.1, eps=0.01).update(grads, optax.adam(0.1).init(PARAMS), PARAMS)
    assert_same(moved, want)
    assert not np.allclose(np.asarray(base["w"]), np.asarray(moved["w"]))
