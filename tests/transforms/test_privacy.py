"""Per-example clipping and DP aggregation against optax 0.2.8 (noise-free values
exactly; the noise by its distribution), on NumPy, under jax.jit and on torch."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

RNG = np.random.default_rng(3)
BATCH = 6
PER_EXAMPLE = [RNG.standard_normal((BATCH, 3, 2)), RNG.standard_normal((BATCH, 4))]
PER_EXAMPLE[0][2] = 0.0  # an example with zero gradient (a zero norm: never clipped)
PER_EXAMPLE[1][2] = 0.0
PER_EXAMPLE[0][4] *= 1e-3  # one inside the ball


def as_jax(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


@pytest.mark.parametrize("clip", [0.0, 0.7, 1.5, np.inf])
def test_per_example_global_norm_clip_matches_optax(clip):
    with jax.enable_x64(True):
        want, want_n = optax.per_example_global_norm_clip(as_jax(PER_EXAMPLE), clip)
        got_jax, got_jax_n = jax.jit(lambda g: cx.per_example_global_norm_clip(g, clip))(
            as_jax(PER_EXAMPLE)
        )
    got, got_n = T.per_example_global_norm_clip(PER_EXAMPLE, clip)
    for a, b, c in zip(got, got_jax, want):
        np.testing.assert_allclose(a, np.asarray(c), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(b), np.asarray(c), rtol=1e-12, atol=1e-15)
    assert int(got_n) == int(got_jax_n) == int(want_n)


@pytest.mark.parametrize("uniform", [True, False])
def test_per_example_layer_norm_clip_matches_optax(uniform):
    with jax.enable_x64(True):
        want, want_n = optax.per_example_layer_norm_clip(as_jax(PER_EXAMPLE), 1.2, uniform)
    got, got_n = cx.per_example_layer_norm_clip(PER_EXAMPLE, 1.2, uniform)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12, atol=1e-15)
    assert [int(n) for n in got_n] == [int(n) for n in want_n]
    assert sum(int(n) for n in got_n) > 0


def test_aggregate_without_noise_matches_optax_under_jit():
    params = [jnp.zeros((3, 2)), jnp.zeros(4)]
    outs = []
    with jax.enable_x64(True):
        for make in (
            optax.contrib.differentially_private_aggregate,
            cx.differentially_private_aggregate,
        ):
            opt = make(0.8, 0.0, 7)
            state = opt.init(params)
            step = jax.jit(opt.update)
            us = []
            for k in range(2):
                u, state = step(as_jax([g * (k + 1) for g in PER_EXAMPLE]), state)
                us.append([np.asarray(x) for x in u])
            outs.append(us)
    for ours, theirs in zip(outs[1], outs[0]):
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_aggregate_noise_has_the_dp_sgd_distribution_on_every_library():
    torch = pytest.importorskip("torch", reason="torch is a test dependency")
    import gradstep.torch  # noqa: F401  (registers torch's namespace)

    per_example = {"w": np.zeros((4, 20000))}
    t = T.differentially_private_aggregate(2.0, 0.5, seed=11)
    state = t.init({"w": np.zeros(20000)})
    u_np, state1 = t.update(per_example, state)
    u_again, _ = t.update(per_example, state)  # same key: same noise
    np.testing.assert_array_equal(u_np["w"], u_again["w"])
    assert not np.array_equal(t.update(per_example, state1)[0]["w"], u_np["w"])
    u_torch, _ = t.update({"w": torch.zeros(4, 20000, dtype=torch.float32)}, state)
    with jax.enable_x64(False):
        opt = cx.differentially_private_aggregate(2.0, 0.5, key=11)
        u_jax, _ = jax.jit(opt.update)(
            {"w": jnp.zeros((4, 20000))}, opt.init({"w": jnp.zeros(20000)})
        )
    assert u_torch["w"].dtype == torch.float32 and u_jax["w"].dtype == jnp.float32
    for noise in (u_np["w"], u_torch["w"].numpy(), np.asarray(u_jax["w"])):
        # (sum + N(0, (sigma C)^2)) / B with zero gradients: std sigma * C / B = 0.25
        assert abs(np.std(noise) - 0.25) < 0.01 and abs(np.mean(noise)) < 0.01


def test_aggregate_in_a_chain_on_the_functional_api():
    t = T.chain(T.differentially_private_aggregate(1.0, 0.0), gradstep.sgd(1.0))
    state = t.init([np.zeros((3, 2)), np.zeros(4)])
    u, state = t.update(PER_EXAMPLE, state)
    sums, _ = T.per_example_global_norm_clip(PER_EXAMPLE, 1.0)
    for a, s in zip(u, sums):
        np.testing.assert_allclose(a, -s / BATCH, rtol=1e-14)
    assert int(state["differentially_private_aggregate"]["count"]) == 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: T.per_example_global_norm_clip(PER_EXAMPLE, -1.0), "l2_norm_clip"),
        (lambda: T.per_example_global_norm_clip([np.ones((2, 3)), np.ones((3,))], 1.0), "batch"),
        (lambda: T.differentially_private_aggregate(1.0, -0.5), "noise_multiplier"),
        (lambda: T.differentially_private_aggregate(1.0, 0.5, seed=-1), "seed"),
        (lambda: cx.differentially_private_aggregate(1.0, 0.5, "seven"), "key"),  # no key
    ],
)
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
