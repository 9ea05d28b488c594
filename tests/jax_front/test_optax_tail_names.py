"""gradstep.compat.optax's names of optax's further optimizers and transforms beyond
their recorded trajectories (``optax_compat_tail.json``): the hyperparameter checks,
``scale_gradient``'s gradient against optax's, optax's state classes, injected
hyperparameters side by side with optax."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402


def _schedule(count):
    return 0.1


# refused as optax refuses them, or as gradstep cannot compute what optax does there
# (out-of-range numbers optax takes are taken: test_optax_takes_what_optax_takes.py)
BAD = [
    ("novograd", (0.1,), dict(weight_decay=_schedule), "weight_decay=<function"),
    ("sm3", (_schedule,), {}, "learning_rate=<function"),
    ("rprop", (100.0,), {}, r"learning_rate=100\.0.*\[min_step_size, max_step_size\]"),
    ("scale_by_distance_over_gradients", (), dict(param_dtype="int8"), "param_dtype='int8'"),
    ("normalize_by_update_norm", (), dict(scale_factor=0.0), "scale_factor=0"),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_hyperparameters_name_argument_value_and_range(name, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(cx, name)(*args, **kwargs)


def test_optimistic_adam_refuses_schedules_and_warns_as_optax():
    with pytest.raises(ValueError, match="learning_rate=<function"):
        cx.optimistic_adam(_schedule)
    with pytest.warns(DeprecationWarning, match="optimistic_adam_v2"):
        cx.optimistic_adam(0.1)


def test_radam_threshold_4_is_taken_as_optax_takes_it():
    cx.radam(0.1, threshold=4.0)
    cx.scale_by_radam(threshold=4.0)


@pytest.mark.parametrize("scale", [1.0, 0.0, 0.5, -2.0])
def test_scale_gradient_matches_optax(scale):
    x = {"a": jnp.asarray([1.0, -2.0, 3.0]), "b": jnp.asarray(0.5)}

    def loss(fn):
        def f(tree):
            y = fn(tree, scale)
            return jnp.sum(y["a"] ** 3) + jnp.sin(y["b"])

        return f

    for got, want in zip(
        jax.tree_util.tree_leaves(jax.grad(loss(cx.scale_gradient))(x)),
        jax.tree_util.tree_leaves(jax.grad(loss(optax.scale_gradient))(x)),
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    out = cx.scale_gradient(x, scale)
    for got, want in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(x)):
        np.testing.assert_array_equal(got, want)  # the forward pass is the identity


def test_state_classes_are_optax_own():
    for name in [
        "ScaleByBeliefState",
        "ScaleByNovogradState",
        "ScaleByAdanState",
        "ScaleByRpropState",
        "ScaleBySM3State",
        "ScaleByTrustRatioState",
    ]:
        assert getattr(cx, name) is getattr(optax, name), name
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(4)}
    assert isinstance(cx.adabelief(0.1).init(params)[0], optax.ScaleByBeliefState)
    assert isinstance(cx.sm3(0.1).init(params)[0], optax.ScaleBySM3State)
    assert isinstance(cx.adan(0.1).init(params)[0], optax.ScaleByAdanState)


@pytest.mark.parametrize(
    ("factory", "first", "later"),
    [
        ("adabelief", dict(learning_rate=0.05, b1=0.8), dict(learning_rate=0.01, b1=0.5)),
        ("yogi", dict(learning_rate=0.05), dict(learning_rate=0.2)),
        ("adan", dict(learning_rate=0.05, weight_decay=0.1), dict(weight_decay=0.0)),
        ("optimistic_gradient_descent", dict(learning_rate=0.05), dict(alpha=0.5, beta=2.0)),
    ],
)
def test_injected_hyperparameters_follow_optax(factory, first, later):
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=5))}
    mine = cx.inject_hyperparams(getattr(cx, factory))(**first)
    ref = optax.inject_hyperparams(getattr(optax, factory))(**first)
    p_mine, p_ref = params, params
    s_mine, s_ref = mine.init(params), ref.init(params)
    for k in range(8):
        if k == 4:
            for name, value in later.items():
                s_mine.hyperparams[name] = jnp.asarray(value, jnp.float32)
                s_ref.hyperparams[name] = jnp.asarray(value, jnp.float32)
        g = {n: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for n, v in params.items()}
        u_mine, s_mine = jax.jit(mine.update)(g, s_mine, p_mine)
        u_ref, s_ref = jax.jit(ref.update)(g, s_ref, p_ref)
        p_mine = optax.apply_updates(p_mine, u_mine)
        p_ref = optax.apply_updates(p_ref, u_ref)
    for name in params:
        np.testing.assert_allclose(p_mine[name], p_ref[name], rtol=2e-5, atol=2e-6)
