"""gradstep.compat.optax's names of optax's tail (``mechanize``, ``noisy_sgd``,
``add_noise``, ``polyak_sgd``, ``scale_by_polyak``) against optax 0.2.8, called side
by side on the same inputs under ``jax.jit``; and the noise of ``noisy_sgd``, which
each library draws itself, compared by its variance per step."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep  # noqa: E402
import gradstep.compat.optax as cx  # noqa: E402

STEPS = 12


def _problem():
    rng = np.random.default_rng(7)
    params = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=5)}
    target = {k: rng.normal(size=v.shape) for k, v in params.items()}
    return params, target


def _run(opt, dtype, takes_value=False):
    """``STEPS`` jitted updates on a quadratic; the parameters after each and the
    final state."""
    params, target = _problem()
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    state = opt.init(params)
    update = jax.jit(opt.update)
    out = []
    for _ in range(STEPS):
        diff = {k: params[k] - jnp.asarray(target[k], dtype) for k in params}
        grads = diff
        extra = {}
        if takes_value:
            extra["value"] = sum(0.5 * jnp.sum(d * d) for d in diff.values())
        updates, state = update(grads, state, params, **extra)
        params = optax.apply_updates(params, updates)
        out.append({k: np.asarray(v) for k, v in params.items()})
    return out, state


CASES = {
    "mechanize": (
        lambda m: m.contrib.mechanize(m.adam(0.1), weight_decay=0.05, num_betas=4),
        lambda: cx.mechanize(cx.adam(0.1), weight_decay=0.05, num_betas=4),
        False,
    ),
    "polyak_sgd": (
        lambda m: m.polyak_sgd(max_learning_rate=0.7, scaling=0.5, eps=1e-4),
        lambda: cx.polyak_sgd(max_learning_rate=0.7, scaling=0.5, eps=1e-4),
        True,
    ),
    "scale_by_polyak": (
        lambda m: m.chain(m.sgd(1.0), m.scale_by_polyak(f_min=0.1, variant="sps+")),
        lambda: cx.chain(cx.sgd(1.0), cx.scale_by_polyak(f_min=0.1, variant="sps+")),
        True,
    ),
    # without noise (each library draws its own); the state's structure is optax's
    "noisy_sgd": (
        lambda m: m.noisy_sgd(0.1, eta=0.0, key=0),
        lambda: cx.noisy_sgd(0.1, eta=0.0, key=0),
        False,
    ),
    "add_noise": (
        lambda m: m.chain(m.add_noise(0.0, 0.55, key=0), m.sgd(0.2)),
        lambda: cx.chain(cx.add_noise(0.0, 0.55, key=0), cx.sgd(0.2)),
        False,
    ),
}


#: run in one dtype only: the noise cases' trajectories are SGD's (and compiling the
#: noise is slow); Mechanic's float32 trajectories are replayed from fixtures
NOISE = {"noisy_sgd", "add_noise"}
ONE_DTYPE = {"noisy_sgd": "float32", "add_noise": "float32", "mechanize": "float64"}
RUNS = [
    (name, dtype)
    for name in sorted(CASES)
    for dtype in ("float64", "float32")
    if ONE_DTYPE.get(name, dtype) == dtype
]


@pytest.mark.parametrize(("name", "dtype"), RUNS, ids=[f"{n}-{d}" for n, d in RUNS])
def test_matches_optax_side_by_side(name, dtype):
    reference, ours, takes_value = CASES[name]
    tol = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}[dtype]
    with jax.enable_x64(dtype == "float64"):
        want, want_state = _run(reference(optax), dtype, takes_value)
        got, got_state = _run(ours(), dtype, takes_value)
    for k, (a, b) in enumerate(zip(got, want)):
        for leaf in b:
            np.testing.assert_allclose(a[leaf], b[leaf], **tol, err_msg=f"step {k + 1} {leaf}")
    # optax's state structure (class and field names); the noise key is gradstep's
    # integer seed where optax keeps a key array
    structure = jax.tree_util.tree_structure
    if name in NOISE:
        assert type(jax.tree_util.tree_leaves(got_state, is_leaf=_is_noise)[0]).__name__ == (
            "AddNoiseState"
        )
        return
    assert structure(got_state) == structure(want_state)
    for a, b in zip(jax.tree_util.tree_leaves(got_state), jax.tree_util.tree_leaves(want_state)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), **tol)


def _is_noise(x):
    return type(x).__name__ == "AddNoiseState"


def test_polyak_needs_the_value():
    opt = cx.polyak_sgd()
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="value="):
        opt.update(params, opt.init(params), params)


@pytest.mark.parametrize(
    "make", [cx.noisy_sgd, lambda lr, key: cx.chain(cx.add_noise(0.01, 0.55, key))]
)
def test_a_jax_key_array_seeds_the_noise_as_an_integer_does(make):
    """optax takes a key array; so does gradstep: the same key, the same noise (its
    own draws), a typed key and the raw PRNGKey of the same bits alike."""
    params = {"w": jnp.ones(64)}

    def first_update(key):
        tx = make(0.1, key=key)
        return np.asarray(tx.update({"w": jnp.zeros(64)}, tx.init(params), params)[0]["w"])

    same = first_update(jax.random.key(0))
    np.testing.assert_array_equal(same, first_update(jax.random.key(0)))
    np.testing.assert_array_equal(same, first_update(jax.random.PRNGKey(0)))
    assert not np.array_equal(same, first_update(jax.random.key(1)))
    assert np.std(same) > 0
    with pytest.raises(ValueError, match="key=.*a JAX key array with a value"):
        jax.jit(lambda k: make(0.1, key=k).init(params))(jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        cx.noisy_sgd(0.1, key="zero")


def _noise_std_per_step(draw_updates, lr, steps):
    """The standard deviation of each step's update over many elements, divided by
    the learning rate: the noise's standard deviation (zero gradients)."""
    return [float(np.std(u)) / lr for u in draw_updates(steps)]


@pytest.mark.parametrize("eta, gamma", [(0.3, 0.55), (1.0, 1.0)])
def test_noise_variance_per_step_is_optax(eta, gamma):
    """With zero gradients the update is ``-lr * sigma_t xi``: its standard deviation
    per step is optax's (``sqrt(eta / t**gamma)``), within sampling error."""
    lr, steps, size = 0.1, 6, 40_000
    zeros = {"w": jnp.zeros(size)}

    def optax_updates(n):
        opt = optax.noisy_sgd(lr, eta=eta, gamma=gamma, key=0)
        state, out = opt.init(zeros), []
        for _ in range(n):
            updates, state = opt.update(zeros, state, zeros)
            out.append(np.asarray(updates["w"]))
        return out

    def numpy_updates(n):
        t = gradstep.noisy_sgd(lr, eta=eta, gamma=gamma, seed=0)
        params = [np.zeros(size)]
        state, out = t.init(params), []
        for _ in range(n):
            updates, state = t.update([np.zeros(size)], state, params)
            out.append(updates[0])
        return out

    want = _noise_std_per_step(optax_updates, lr, steps)
    got = _noise_std_per_step(numpy_updates, lr, steps)
    formula = [np.sqrt(eta / t**gamma) for t in range(1, steps + 1)]
    # 40000 samples: the standard deviation is within 2% of the truth
    np.testing.assert_allclose(want, formula, rtol=0.02)
    np.testing.assert_allclose(got, formula, rtol=0.02)
