"""gradstep.compat.optax.contrib against optax 0.2.8, side by side under jax.jit, for
what the recorded fixtures cannot hold: updates that take the loss (``value=``,
``obj_fn=``) or per-example gradients, functions of the state, matrices-only Muon,
complex parameters; and the names refused."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402
from gradstep.compat.optax import contrib  # noqa: E402

STEPS = 12
TOL = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}
CURVATURE = {
    "w": np.linspace(0.5, 2.0, 12).reshape(3, 4),
    "b": np.linspace(1.0, 3.0, 5),
    "v": np.linspace(0.2, 1.6, 8).reshape(4, 2),
}


def _params(dtype, matrices_only=False):
    rng = np.random.default_rng(3)
    shapes = {"w": (3, 4), "v": (4, 2)} if matrices_only else {"w": (3, 4), "b": (5,)}
    return {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in shapes.items()}


def _loss(params):
    """A separable quadratic: its Hessian is diagonal, so Hutchinson's estimate
    z * Hz is exact whatever the probes z."""
    return sum(0.5 * jnp.sum(CURVATURE[k] * (p - 0.3) ** 2) for k, p in params.items())


def _run(opt, params, steps=STEPS, extra=lambda p, k: {}, grads=None):
    grad = jax.grad(_loss) if grads is None else grads
    state = opt.init(params)

    @jax.jit
    def step(params, state, k):
        updates, state = opt.update(grad(params), state, params, **extra(params, k))
        return optax.apply_updates(params, updates), state

    out = []
    for k in range(steps):
        params, state = step(params, state, k)
        out.append(jax.tree_util.tree_map(np.asarray, params))
    return out, state


def _assert_same(got, want, dtype):
    for k, (g, w) in enumerate(zip(got, want)):
        for name in w:
            np.testing.assert_allclose(g[name], w[name], **TOL[dtype], err_msg=f"step {k}, {name}")


def _assert_same_state(got, want, dtype):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **TOL[dtype])


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    with jax.enable_x64(request.param == "float64"):
        yield request.param


def test_reduce_on_plateau_in_a_chain_with_the_loss(dtype):
    def make(m):
        return m.chain(m.sgd(0.2), m.contrib.reduce_on_plateau(0.5, 2, cooldown=1))

    values = [3.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9]
    extra = lambda p, k: {"value": jnp.asarray(values, dtype)[k]}  # noqa: E731
    want, want_state = _run(make(optax), _params(dtype), extra=extra)
    got, got_state = _run(make(cx), _params(dtype), extra=extra)
    _assert_same(got, want, dtype)
    _assert_same_state(got_state, want_state, dtype)
    assert float(got_state[1].scale) < 1.0  # reduced


def _per_example(params):
    """Per-example gradients (a batch of 3) of the quadratic at ``params``."""
    g = jax.grad(_loss)(params)
    return {k: jnp.stack([g[k], 0.1 * g[k], -2.0 * g[k]]) for k in g}


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_dpsgd_without_noise(dtype, momentum):
    want, want_state = _run(
        optax.contrib.dpsgd(0.1, 1.5, 0.0, seed=0, momentum=momentum, nesterov=True),
        _params(dtype),
        grads=_per_example,
    )
    got, got_state = _run(
        contrib.dpsgd(0.1, 1.5, 0.0, seed=0, momentum=momentum, nesterov=True),
        _params(dtype),
        grads=_per_example,
    )
    _assert_same(got, want, dtype)
    # optax's rng_key is a JAX key, gradstep's [seed, count]: the same NamedTuples
    assert type(got_state[0]) is type(want_state[0])
    np.testing.assert_array_equal(got_state[0].rng_key, [0, STEPS])
    _assert_same_state(got_state[1:], want_state[1:], dtype)


def test_differentially_private_aggregate_without_noise(dtype):
    key = jax.random.key(4)
    want, _ = _run(
        optax.chain(optax.contrib.differentially_private_aggregate(0.5, 0.0, key), optax.sgd(0.1)),
        _params(dtype),
        grads=_per_example,
    )
    got, _ = _run(
        cx.chain(contrib.differentially_private_aggregate(0.5, 0.0, 4), cx.sgd(0.1)),
        _params(dtype),
        grads=_per_example,
    )
    _assert_same(got, want, dtype)


@pytest.mark.parametrize("nesterov", [True, False])
def test_scale_by_muon_on_matrices(dtype, nesterov):
    def make(m):
        dims = {"w": m.contrib.MuonDimensionNumbers(), "v": m.contrib.MuonDimensionNumbers()}
        muon = m.contrib.scale_by_muon(beta=0.9, nesterov=nesterov, weight_dimension_numbers=dims)
        return m.chain(muon, m.scale(-0.05))

    want, want_state = _run(make(optax), _params(dtype, matrices_only=True))
    got, got_state = _run(make(cx), _params(dtype, matrices_only=True))
    _assert_same(got, want, dtype)
    _assert_same_state(got_state, want_state, dtype)
    assert isinstance(got_state[0], optax.contrib.MuonState)


def test_muon_dimension_numbers_default_only():
    assert contrib.MuonDimensionNumbers() == optax.contrib.MuonDimensionNumbers()
    contrib.muon(0.1, muon_weight_dimension_numbers=None)
    with pytest.raises(ValueError, match="dimension numbers"):
        contrib.muon(0.1, muon_weight_dimension_numbers=contrib.MuonDimensionNumbers(1, 0))


def test_schedule_free_eval_params(dtype):
    def make(m):
        return m.contrib.schedule_free_adamw(0.05, b1=0.8)

    want, want_state = _run(make(optax), _params(dtype))
    got, got_state = _run(make(cx), _params(dtype))
    _assert_same(got, want, dtype)
    x_want = optax.contrib.schedule_free_eval_params(want_state, want[-1])
    x_got = jax.jit(contrib.schedule_free_eval_params)(got_state, got[-1])
    for name in x_want:
        np.testing.assert_allclose(x_got[name], x_want[name], **TOL[dtype])
    with pytest.raises(ValueError, match="ScheduleFreeState"):
        contrib.schedule_free_eval_params(cx.adam(0.1).init(_params(dtype)), got[-1])


def test_schedule_free_state_at_init_is_optax(dtype):
    params = _params(dtype)
    want = optax.contrib.schedule_free_sgd(0.1).init(params)
    got = contrib.schedule_free_sgd(0.1).init(params)
    _assert_same_state(got, want, dtype)


@pytest.mark.parametrize("interval", [1, 4])
def test_sophia_with_hutchinson_on_a_diagonal_hessian(dtype, interval):
    """Hutchinson's estimate of a diagonal Hessian is exact: optax's probes and
    gradstep's give the same steps."""

    def make(m):
        return m.contrib.sophia(0.05, gamma=0.05, update_interval=interval, weight_decay=0.01)

    extra = lambda p, k: {"obj_fn": _loss}  # noqa: E731
    want, want_state = _run(make(optax), _params(dtype), extra=extra)
    got, got_state = _run(make(cx), _params(dtype), extra=extra)
    _assert_same(got, want, dtype)
    _assert_same_state(got_state[0].nu, want_state[0].nu, dtype)
    assert type(got_state[0].hessian_fn_state).__name__ == "HutchinsonState"
    # one probe draw per refresh step
    assert int(got_state[0].hessian_fn_state.key[1]) == -(-STEPS // interval)


def test_hutchinson_estimate_is_exact_on_a_diagonal_hessian(dtype):
    params = _params(dtype)
    estimator = contrib.hutchinson_estimator_diag_hessian(random_seed=7)
    state = estimator.init(params)
    estimate, state = jax.jit(estimator.update, static_argnames="obj_fn")(
        params, state, params, obj_fn=_loss
    )
    for name in params:
        np.testing.assert_allclose(estimate[name], CURVATURE[name], **TOL[dtype])
    with pytest.raises(ValueError, match="random_seed"):
        contrib.hutchinson_estimator_diag_hessian(jax.random.key(0))


def test_split_real_and_imaginary_complex_params(dtype):
    cdtype = jnp.complex128 if dtype == "float64" else jnp.complex64
    params = {"z": jnp.asarray([1.0 + 2.0j, -0.5 + 0.1j, 0.3 - 1.0j], cdtype)}

    def grad(p):
        return {"z": 2.0 * (p["z"] - (0.2 - 0.4j))}

    def make(m):
        return m.contrib.split_real_and_imaginary(m.adam(0.05))

    want, want_state = _run(make(optax), params, grads=grad)
    got, got_state = _run(make(cx), params, grads=grad)
    _assert_same(got, want, dtype)
    _assert_same_state(got_state, want_state, dtype)


def test_sam_refuses_what_gradstep_does_not_offer():
    ascent = cx.chain(contrib.normalize(), cx.sgd(0.05))
    contrib.sam(cx.sgd(0.1), ascent)
    with pytest.raises(ValueError, match="sync_period"):
        contrib.sam(cx.sgd(0.1), ascent, sync_period=3)
    with pytest.raises(ValueError, match="batch_axis_name"):
        contrib.sam(cx.sgd(0.1), ascent, batch_axis_name="batch")
    with pytest.raises(ValueError, match="adv_optimizer"):
        contrib.sam(cx.sgd(0.1), cx.sgd(0.05))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: contrib.adopt(0.1, clip_value_fn=lambda x: x**0.5), "clip_value_fn"),
        (lambda: contrib.ademamix(0.1, mu_dtype=jnp.bfloat16), "mu_dtype"),
        (lambda: contrib.muon(0.1, ns_coeffs="dion"), "ns_coeffs"),
        (lambda: contrib.muon(0.1, adaptive=True), "adaptive"),
        (lambda: contrib.muon(0.1, weight_decay_mask={"w": True}), "weight_decay_mask"),
        (lambda: contrib.muon(0.1, preconditioning="aol"), "preconditioning"),
        (lambda: contrib.prodigy(betas=(0.0, 0.99)), "betas"),
        (lambda: contrib.madgrad(0.0), "learning_rate"),
        (lambda: contrib.dog(mask={"w": True}), "mask"),
        (lambda: contrib.dog(init_step=("far", 1.0)), "init_step"),
        (lambda: contrib.sophia(0.1, verbose=True), "verbose"),
        (lambda: contrib.sophia(0.1, gamma=0.0), "gamma"),
        (lambda: contrib.sophia(0.1, clip_threshold=-1.0), "clip_threshold"),
        (lambda: contrib.schedule_free_sgd(0.0), "learning_rate"),
        (lambda: contrib.schedule_free_sgd(0.1, state_dtype=jnp.bfloat16), "state_dtype"),
        (lambda: contrib.dadapt_adamw(betas=(0.9, 1.5)), "betas"),
    ],
)
def test_options_gradstep_does_not_offer_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", sorted(contrib.NOT_PROVIDED))
def test_names_without_a_rule_raise_attribute_error(name):
    assert hasattr(optax.contrib, name)
    with pytest.raises(AttributeError, match="does not provide"):
        getattr(contrib, name)
    assert name in contrib.__doc__


def test_every_optax_contrib_name_is_provided_or_refused():
    optax_names = {n for n in dir(optax.contrib) if not n.startswith("_")}
    assert optax_names == set(contrib.__all__) | set(contrib.NOT_PROVIDED)
    assert cx.contrib is contrib
    for name in contrib.__all__:
        if name.endswith("State") and name != "NormalizeState":
            assert getattr(contrib, name) is getattr(optax.contrib, name), name


def test_sophia_with_optax_estimator_takes_its_draws(dtype):
    """optax's own Hutchinson estimator given to gradstep's Sophia: the same probes,
    so the same steps on a loss whose Hessian is not diagonal."""

    def coupled(params):
        return _loss(params) + 0.3 * sum(jnp.sum(p) for p in params.values()) ** 2

    def make(m):
        estimator = optax.contrib.hutchinson_estimator_diag_hessian(jax.random.key(5))
        return m.contrib.sophia(0.05, gamma=0.5, update_interval=2, hessian_diagonal_fn=estimator)

    extra = lambda p, k: {"obj_fn": coupled}  # noqa: E731
    want, want_state = _run(make(optax), _params(dtype), extra=extra, grads=jax.grad(coupled))
    got, got_state = _run(make(cx), _params(dtype), extra=extra, grads=jax.grad(coupled))
    _assert_same(got, want, dtype)
    _assert_same_state(got_state[0].nu, want_state[0].nu, dtype)


def test_sam_opaque_mode(dtype):
    def make(m):
        ascent = m.chain(m.contrib.normalize(), m.sgd(0.1))
        return m.contrib.sam(m.adam(0.05), ascent, opaque_mode=True)

    grad = jax.grad(_loss)
    extra = lambda p, k: {"grad_fn": lambda w, i: grad(w)}  # noqa: E731
    want, want_state = _run(make(optax), _params(dtype), extra=extra)
    got, got_state = _run(make(cx), _params(dtype), extra=extra)
    _assert_same(got, want, dtype)
    _assert_same_state(got_state, want_state, dtype)


@pytest.mark.parametrize("name", ["ademamix", "simplified_ademamix"])
def test_injected_betas_change_the_step_as_optax(dtype, name):
    def run(m):
        opt = m.inject_hyperparams(getattr(m.contrib, name))(learning_rate=0.01, b1=0.8)
        params = _params(dtype)
        state = opt.init(params)
        update = jax.jit(opt.update)
        out = []
        for k in range(8):
            if k == 4:
                state.hyperparams["b1"] = jnp.asarray(0.5, dtype)
                state.hyperparams["b2"] = jnp.asarray(0.9, dtype)
            updates, state = update(jax.grad(_loss)(params), state, params)
            params = optax.apply_updates(params, updates)
            out.append(jax.tree_util.tree_map(np.asarray, params))
        return out, state

    (want, _), (got, got_state) = run(optax), run(cx)
    _assert_same(got, want, dtype)
    assert {"b1", "b2", "learning_rate"} <= set(got_state.hyperparams)
