"""gradstep.compat.optax as optax code uses it, against real optax: the state it
reads and writes, masks and labels, abstract init, inject_hyperparams, schedules
of array step counts, and the helpers that have no trajectory to record."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="needs optax (a test dependency)")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

PARAMS = {"enc": {"w": jnp.ones((2, 3)), "b": jnp.zeros(2)}, "head": {"w": jnp.arange(3.0)}}


def grads(k: int = 0):
    return jax.tree_util.tree_map(lambda x: jnp.sin(x + k) + 0.1, PARAMS)


def run(tx, steps: int = 2, params=PARAMS, state=None, edit=None):
    """``steps`` jitted updates; ``edit(state)`` may change the state between them."""
    state = tx.init(params) if state is None else state
    update = jax.jit(tx.update)
    for k in range(steps):
        if edit is not None:
            state = edit(state)
        g = jax.tree_util.tree_map(lambda x, k=k: jnp.sin(x + k) + 0.1, params)
        updates, state = update(g, state, params)
    return updates, state


def assert_same(got, want, rtol=1e-6, atol=1e-7):
    """Same tree structure (optax's classes, fields and keys) and values."""
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert jnp.result_type(a) == jnp.result_type(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def both(make):
    """``make(module)`` run through gradstep's compat module and through optax."""
    return run(make(cx)), run(make(optax))


# -- state that optax code reads and writes -------------------------------------------


def test_state_is_optaxs_namedtuples():
    _, state = run(cx.adam(0.1))
    assert isinstance(state, tuple) and isinstance(state[0], optax.ScaleByAdamState)
    assert isinstance(state[1], optax.EmptyState)
    assert state[0].mu["enc"]["w"].shape == (2, 3)
    assert int(optax.tree_utils.tree_get(state, "count")) == 2
    assert int(cx.tree.get(state, "count")) == 2  # optax's own utilities, re-exported


def test_injected_learning_rate_is_found_without_ambiguity():
    """The core's stage named ``learning_rate`` no longer shadows the hyperparameter."""
    tx = cx.inject_hyperparams(cx.sgd)(learning_rate=0.1, momentum=0.9)
    state = tx.init(PARAMS)
    assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(0.1)

    def edit(s):
        return optax.tree_utils.tree_set(s, learning_rate=jnp.asarray(0.01))

    def make(m):
        return m.inject_hyperparams(m.sgd)(learning_rate=0.1, momentum=0.9)

    got = run(make(cx), steps=3, edit=edit)
    want = run(make(optax), steps=3, edit=edit)
    assert_same(got, want)


def test_state_written_by_the_user_is_read_back():
    """Changing a field of the state changes the next step as it does in optax."""

    def edit(state):
        return (state[0]._replace(count=jnp.asarray(100, jnp.int32)), state[1])

    got = run(cx.adam(0.1), steps=2, edit=edit)
    want = run(optax.adam(0.1), steps=2, edit=edit)
    assert_same(got, want)


def test_apply_if_finite_state():
    bad = jax.tree_util.tree_map(lambda x: x * jnp.nan, PARAMS)
    states = []
    for m in (cx, optax):
        tx = m.apply_if_finite(m.adam(0.1), 3)
        _, state = jax.jit(tx.update)(bad, tx.init(PARAMS), PARAMS)
        assert not bool(state.last_finite)
        assert int(state.notfinite_count) == 1 and int(state.total_notfinite) == 1
        states.append(state)
    assert_same(*states)


def test_masks_keep_optaxs_masked_nodes():
    def make(m):
        return m.chain(
            m.masked(m.trace(0.9), {"enc": {"w": True, "b": False}, "head": {"w": True}}),
            m.scale(-0.1),
        )

    got, want = both(make)
    assert isinstance(got[1][0].inner_state.trace["enc"]["b"], optax.MaskedNode)
    assert_same(got, want)


# -- masks and labels as optax takes them ----------------------------------------------

MASKS = {
    "prefix_mask": lambda m: m.masked(m.sgd(0.1, 0.9), {"enc": True, "head": False}),
    "all_false_mask": lambda m: m.masked(m.adam(0.1), {"enc": False, "head": False}),
    "callable_mask": lambda m: m.masked(
        m.adam(0.1), lambda t: jax.tree_util.tree_map(lambda x: x.ndim > 1, t)
    ),
    "prefix_labels": lambda m: m.multi_transform(
        {"a": m.adam(0.1), "b": m.sgd(0.1)}, {"enc": "a", "head": "b"}
    ),
    "callable_labels": lambda m: m.partition(
        {"a": m.adam(0.1), "z": m.set_to_zero()},
        lambda t: jax.tree_util.tree_map(lambda x: "a" if x.ndim > 1 else "z", t),
    ),
    "adamw_prefix_mask": lambda m: m.adamw(
        0.1, weight_decay=0.1, mask={"enc": False, "head": True}
    ),
}


@pytest.mark.parametrize("name", MASKS)
def test_masks_and_labels_as_optax(name):
    assert_same(*both(MASKS[name]))


def test_empty_parameters():
    got = run(cx.adamw(0.1), params={})
    want = run(optax.adamw(0.1), params={})
    assert_same(got, want)


# -- abstract initialisation -------------------------------------------------------------


def _make_planned(m):
    return m.chain(m.clip_by_global_norm(1.0), m.adamw(m.linear_schedule(0.1, 0.0, 10)))


def test_init_takes_abstract_parameters():
    abstract = jax.eval_shape(lambda: PARAMS)
    for m in (cx, optax):
        tx = _make_planned(m)
        assert_same(tx.init(abstract), tx.init(PARAMS))
    planned = jax.eval_shape(_make_planned(cx).init, PARAMS)  # init is traceable
    assert jax.tree_util.tree_structure(planned) == jax.tree_util.tree_structure(
        jax.eval_shape(_make_planned(optax).init, PARAMS)
    )


def test_abstract_init_keeps_shardings():
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("x",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), PARAMS
    )
    state = _make_planned(cx).init(abstract)
    assert state[1][0].mu["enc"]["w"].sharding == sharding
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    plan = jax.tree_util.tree_map(
        lambda x: sharding if x.ndim else replicated,
        jax.eval_shape(_make_planned(cx).init, PARAMS),
    )
    jitted = jax.jit(_make_planned(cx).init, out_shardings=plan)(PARAMS)
    assert jitted[1][0].nu["head"]["w"].sharding == sharding


# -- inject_hyperparams --------------------------------------------------------------------


def test_inject_hyperparams_wraps_optaxs_own_factories():
    got = run(cx.inject_hyperparams(optax.adam)(learning_rate=0.1, b1=0.8))
    want = run(optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b1=0.8))
    assert_same(got, want)


def test_inject_hyperparams_keeps_array_dtypes_and_static_args():
    def make(m):
        return m.inject_hyperparams(m.sgd, static_args=("momentum",))(
            learning_rate=jnp.asarray(0.1, jnp.bfloat16), momentum=0.9
        )

    for m in (cx, optax):
        state = make(m).init(PARAMS)
        assert state.hyperparams["learning_rate"].dtype == jnp.bfloat16
        assert set(state.hyperparams) == {"learning_rate"}
    assert_same(*both(make), rtol=1e-2)


def test_inject_refuses_a_schedule_it_would_ignore():
    # initial_scale acts only when the state is made (eps is a per-step hyperparameter)
    with pytest.raises(ValueError, match="initial_scale"):
        cx.inject_hyperparams(cx.rmsprop)(0.1, initial_scale=cx.linear_schedule(0.0, 1.0, 10))


# -- schedules of array step counts ---------------------------------------------------------

SCHEDULES = [
    ("linear_schedule", (1.0, 0.0, 10), {}),
    ("warmup_cosine_decay_schedule", (0.0, 1.0, 3, 10), {"end_value": 2.0, "exponent": 2.0}),
    ("cosine_decay_schedule", (1.0, 10), {"alpha": -0.5}),
    ("exponential_decay", (1.0, 5, 0.5), {"staircase": True, "transition_begin": 3}),
    ("piecewise_constant_schedule", (1.0, {5: 0.5, 10: 3.0}), {}),
]


@pytest.mark.parametrize("name, args, kwargs", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_take_arrays_of_counts(name, args, kwargs):
    counts = np.arange(25)
    got = getattr(cx, name)(*args, **kwargs)(counts)
    want = getattr(optax, name)(*args, **kwargs)(counts)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- transformations and helpers without a trajectory ----------------------------------------


def test_add_decayed_weights_of_no_updates():
    for m in (cx, optax):
        tx = m.add_decayed_weights(0.1)
        updates, _ = tx.update(None, tx.init(PARAMS), PARAMS)
        assert updates is None


def test_stateless_transforms():
    def make(m):
        return m.chain(
            m.stateless(lambda u, p: jax.tree_util.tree_map(lambda g, w: g * w, u, p)),
            m.stateless_with_tree_map(lambda g, w: g - 0.5 * w),
        )

    assert_same(*both(make))


def test_norms():
    tree = grads(3)
    np.testing.assert_allclose(cx.global_norm(tree), optax.global_norm(tree), rtol=1e-6)
    x = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    kwargs = {"min_norm": 1.0, "axis": 1}
    np.testing.assert_allclose(cx.safe_norm(x, **kwargs), optax.safe_norm(x, **kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g_got = jax.grad(lambda v: cx.safe_norm(v, 0.5))(jnp.zeros(3))
        g_want = jax.grad(lambda v: optax.safe_norm(v, 0.5))(jnp.zeros(3))
    np.testing.assert_array_equal(g_got, g_want)


@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_bias_corrected_rms_on_the_numpy_front(engine):
    """The rule's ``bias_correction`` option (recorded through the compat module in
    the fixtures) gives optax's numbers on the NumPy front's engines too."""
    import gradstep
    from gradstep.rules.rmsprop import scale_by_rms

    with jax.enable_x64(True):
        w = np.linspace(-1.0, 1.0, 6)
        opt = gradstep.Optimizer(
            w,
            gradstep.chain(scale_by_rms(0.9, 0.1, bias_correction=True, centered=True)),
            engine=engine,
        )
        tx = optax.scale_by_stddev(eps=0.1, bias_correction=True)
        state, want = tx.init(jnp.asarray(w)), []
        for k in range(4):
            g = np.sin(w * (k + 1)) + 0.1
            u, state = tx.update(jnp.asarray(g), state)
            want = np.asarray(u)
            before = w.copy()
            opt.step(g)
            np.testing.assert_allclose(w - before, want, rtol=1e-9, atol=1e-12)
