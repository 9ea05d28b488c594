"""The JAX engine and front: jit without retracing, pytrees, vmap, jax.grad loops,
optax interop both ways, per-step overrides, and what cannot be traced."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import NamedTuple

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
jnp = pytest.importorskip("jax.numpy", reason="needs JAX (a test dependency)")

import gradstep  # noqa: E402
from gradstep import schedules as S  # noqa: E402
from gradstep import transforms as T  # noqa: E402
from gradstep.jax import (  # noqa: E402
    JaxEngine,
    NotTraceable,
    apply_updates,
    from_optax,
    to_optax,
)


def _params():
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.2])}


def _grad(params, k):
    return jax.tree_util.tree_map(lambda x: jnp.sin(3 * x + k) + 0.1, params)


def _avals(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


@pytest.mark.parametrize("scalars", ["auto", "host"])
def test_no_retrace_over_ten_steps_with_schedules(scalars):
    """One trace and one compilation for 10 steps: schedules (gradstep's Python one,
    on the host; a traceable one), a traced learning-rate override."""
    traces = []
    opt = to_optax(
        gradstep.chain(
            T.clip_by_global_norm(1.0),
            gradstep.adamw(S.warmup_cosine_decay(0.0, 0.1, 3, 20), weight_decay=0.01),
            gradstep.momentum(lambda count: 1.0 - 0.5 / (1.0 + count), 0.9),
        ),
        scalars=scalars,
    )

    @jax.jit
    def step(params, state, k, lr):
        traces.append(1)
        updates, state = opt.update(_grad(params, k), state, params, learning_rate=lr)
        return apply_updates(params, updates), state

    params = _params()
    state = opt.init(params)
    before = _avals(state)
    for k in range(10):
        params, state = step(params, state, k, jnp.float32(1.0 - 0.05 * k))
    assert len(traces) == 1
    assert step._cache_size() == 1
    assert _avals(state) == before
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(opt.init(params))


def _numpy_run(transform, steps, lrs=None):
    # a dict in JAX's (sorted) key order, so both fronts see the leaves alike
    params = {k: np.asarray(v, np.float32).copy() for k, v in sorted(_params().items())}
    opt = gradstep.Optimizer(params, transform, engine="eager")
    for k in range(steps):
        g = _grad({n: jnp.asarray(v) for n, v in params.items()}, k)
        grads = {n: np.asarray(g[n]) for n in params}
        opt.step(grads, **({} if lrs is None else {"learning_rate": lrs[k]}))
    return [params[k] for k in sorted(params)]


def _jax_run(transform, steps, scalars="auto", lrs=None):
    opt = to_optax(transform, scalars=scalars)
    step = jax.jit(opt.update)
    params = _params()
    state = opt.init(params)
    for k in range(steps):
        extra = {} if lrs is None else {"learning_rate": jnp.float32(lrs[k])}
        updates, state = step(_grad(params, k), state, params, **extra)
        params = apply_updates(params, updates)
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]


CHAINS = {
    "adam": lambda: gradstep.adam(0.05),
    "adam amsgrad clear_nan scheduled": lambda: gradstep.adam(
        S.cosine_decay(0.05, 10), amsgrad=True, clear_nan=True
    ),
    "clip, global norm, centered rmsprop, momentum": lambda: gradstep.chain(
        T.clip(0.5), T.clip_by_global_norm(1.0), gradstep.rmsprop(0.01, centered=True, momentum=0.9)
    ),
    "masked decay, partition": lambda: gradstep.partition(
        {"a": gradstep.adamw(0.05, weight_decay=0.1), "s": gradstep.momentum(0.05, dampening=0.5)},
        lambda p: {k: "a" if k == "w" else "s" for k in p},
    ),
    "skip_nonfinite": lambda: T.skip_nonfinite(gradstep.adamax(0.05), 1),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_host_scalars_match_numpy_and_auto_is_close(name):
    lrs = [0.05 * (1 + k % 3) for k in range(8)] if name == "adam" else None
    want = _numpy_run(CHAINS[name](), 8, lrs)
    host = _jax_run(CHAINS[name](), 8, "host", lrs)
    auto = _jax_run(CHAINS[name](), 8, "auto", lrs)
    for w, h, a in zip(want, host, auto):
        assert h.dtype == a.dtype == np.float32
        np.testing.assert_allclose(h, w, rtol=4e-7, atol=4e-7)
        np.testing.assert_allclose(a, w, rtol=2e-5, atol=2e-6)


class Pair(NamedTuple):
    first: object
    second: object


@jax.tree_util.register_pytree_node_class
class Layer:
    """A registered pytree node that gradstep's own tree module does not know."""

    def __init__(self, kernel, bias):
        self.kernel, self.bias = kernel, bias

    def tree_flatten(self):
        return (self.kernel, self.bias), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def test_pytrees_of_every_kind_keep_their_structure():
    params = {
        "layers": [Layer(jnp.ones((2, 2)), jnp.zeros(2)), Layer(jnp.ones(3), None)],
        "pair": Pair(jnp.array(1.0), (jnp.array([2.0, 3.0]),)),
    }
    opt = to_optax(gradstep.chain(T.clip_by_global_norm(1.0), gradstep.adamw(0.1)))
    state = opt.init(params)
    mu = state["adamw"]["scale_by_adam"]["mu"]
    assert jax.tree_util.tree_structure(mu) == jax.tree_util.tree_structure(params)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, new_state = jax.jit(opt.update)(grads, state, params)
    assert jax.tree_util.tree_structure(updates) == jax.tree_util.tree_structure(params)
    assert _avals(new_state) == _avals(state)
    assert isinstance(updates["layers"][0], Layer) and updates["layers"][1].bias is None
    # the same as flat lists of the leaves
    leaves = jax.tree_util.tree_leaves(params)
    flat = to_optax(gradstep.chain(T.clip_by_global_norm(1.0), gradstep.adamw(0.1)))
    ref, _ = flat.update([jnp.ones_like(x) for x in leaves], flat.init(leaves), leaves)
    for a, b in zip(jax.tree_util.tree_leaves(updates), ref):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_vmap_over_a_batch_of_models():
    """Four models, each with its own parameters, state and step: vmap equals a loop."""
    opt = to_optax(
        gradstep.chain(T.clip_by_global_norm(0.5), gradstep.adam(S.cosine_decay(0.1, 5)))
    )
    batch = jax.tree_util.tree_map(lambda x: jnp.stack([x * (i + 1) for i in range(4)]), _params())
    state = jax.vmap(opt.init)(batch)
    step = jax.jit(jax.vmap(opt.update))
    for k in range(3):
        grads = jax.tree_util.tree_map(lambda x, k=k: jnp.sin(3 * x + k), batch)
        updates, state = step(grads, state, batch)
        batch = apply_updates(batch, updates)
    for i in range(4):
        params = jax.tree_util.tree_map(lambda x, i=i: x * (i + 1), _params())
        s = opt.init(params)
        for k in range(3):
            g = jax.tree_util.tree_map(lambda x, k=k: jnp.sin(3 * x + k), params)
            u, s = opt.update(g, s, params)
            params = apply_updates(params, u)
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(batch)):
            np.testing.assert_allclose(b[i], a, rtol=1e-6, atol=1e-7)
    assert state["adam"]["scale_by_adam"]["count"].shape == (4,)


def test_jax_grad_training_loop_converges():
    target = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([1.0, -1.0])}

    def loss(p):
        return sum(jnp.sum((p[k] - target[k]) ** 2) for k in p)

    opt = to_optax(gradstep.adam(0.1))

    @jax.jit
    def train(params, state):
        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return apply_updates(params, updates), state

    params = _params()
    state = opt.init(params)
    for _ in range(500):
        params, state = train(params, state)
    assert float(loss(params)) < 1e-6


def test_inside_optax_chain_equals_optax():
    optax = pytest.importorskip("optax", reason="needs optax (a test dependency)")
    ours = optax.chain(optax.clip_by_global_norm(1.0), to_optax(gradstep.adam(0.05)))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05))
    p1 = p2 = _params()
    s1, s2 = ours.init(p1), theirs.init(p2)
    for k in range(10):
        u1, s1 = jax.jit(ours.update)(_grad(p1, k), s1, p1)
        u2, s2 = jax.jit(theirs.update)(_grad(p2, k), s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-7)


def test_optax_transform_as_a_gradstep_stage():
    optax = pytest.importorskip("optax", reason="needs optax (a test dependency)")
    mixed = gradstep.chain(from_optax(optax.clip(0.3), "clip"), gradstep.momentum(0.1, 0.9))
    pure = gradstep.chain(T.clip(0.3), gradstep.momentum(0.1, 0.9))
    got = _jax_run(mixed, 5)
    want = _jax_run(pure, 5)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    # round trips
    wrapped, original = to_optax(from_optax(optax.sgd(0.1))), optax.sgd(0.1)
    params = _params()
    grads = _grad(params, 0)
    got, _ = jax.jit(wrapped.update)(grads, wrapped.init(params), params)
    want, _ = original.update(grads, original.init(params), params)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(a, b)
    t = gradstep.sgd(0.1)
    assert from_optax(to_optax(t)) is t
    # the eager engine runs it too, on JAX arrays
    params = jax.tree_util.tree_leaves(_params())
    updates, _ = mixed.update([jnp.ones_like(x) for x in params], mixed.init(params), params)
    np.testing.assert_allclose(updates[0], np.full((2,), -0.03), rtol=1e-6)


def test_overrides_are_checked_when_static_and_ignored_when_unknown():
    opt = to_optax(gradstep.adam(0.1))
    params = _params()
    state = opt.init(params)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.update(_grad(params, 0), state, params, learning_rate=-1.0)
    # optax's extra args such as value= are ignored, as in optax.chain
    u1, _ = opt.update(_grad(params, 0), state, params, value=jnp.float32(3.0))
    u2, _ = opt.update(_grad(params, 0), state, params, learning_rate=0.1)
    for a, b in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2)):
        np.testing.assert_array_equal(a, b)


def test_decay_needs_params():
    opt = to_optax(gradstep.adamw(0.1))
    with pytest.raises(ValueError, match="needs params"):
        opt.update(_grad(_params(), 0), opt.init(_params()))


def test_what_cannot_be_traced_says_so():
    opt = to_optax(T.accumulate(gradstep.sgd(0.1)))
    params = _params()
    state = opt.init(params)
    with pytest.raises(NotTraceable, match="Accumulate"):
        jax.jit(opt.update)(_grad(params, 0), state, params)
    with pytest.raises(ValueError, match="scalars"):
        JaxEngine(gradstep.sgd(0.1), scalars="fast")


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_low_precision_dtypes_are_kept(dtype):
    opt = to_optax(gradstep.adam(0.01))
    params = jax.tree_util.tree_map(lambda x: x.astype(dtype), _params())
    state = opt.init(params)
    updates, state = jax.jit(opt.update)(_grad(params, 0), state, params)
    for x in jax.tree_util.tree_leaves(updates) + jax.tree_util.tree_leaves(
        state["scale_by_adam"]["mu"]
    ):
        assert x.dtype == jnp.dtype(dtype)


def test_float64_under_x64():
    with jax.enable_x64(True):
        opt = to_optax(gradstep.adam(0.01))
        params = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), _params())
        state = opt.init(params)
        updates, state = jax.jit(opt.update)(_grad(params, 0), state, params)
        assert all(x.dtype == jnp.float64 for x in jax.tree_util.tree_leaves(updates))
        assert state["scale_by_adam"]["count"].dtype == jnp.int32


def test_importing_gradstep_does_not_import_jax():
    code = (
        "import sys, gradstep, gradstep.transforms, gradstep.schedules, gradstep.compat\n"
        "assert 'jax' not in sys.modules and 'optax' not in sys.modules, 'jax imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradstep.chain(T.constrain_norm(1.0, norm_axes=(0,)), gradstep.sgd(0.1)),
        lambda: gradstep.chain(T.constrain_total_norm(1.0), gradstep.sgd(0.1)),
        lambda: gradstep.chain(
            gradstep.sgd(0.5), T.constrain_norm(0.3, norm_axes=(0,), target="params")
        ),
        lambda: gradstep.chain(gradstep.sgd(0.5), T.constrain_total_norm(0.3, target="params")),
    ],
    ids=["constrain_norm", "constrain_total_norm", "constrain_norm_params", "total_norm_params"],
)
def test_norm_constraints_run_in_the_graph_as_numpy(make):
    """Lasagne's norm constraints are written against the array namespace: they trace
    under ``jax.jit`` (no host round trip, even where ``fallback="host"`` allows one)
    and the trajectory is the NumPy front's."""
    want = _numpy_run(make(), 5)
    opt = to_optax(make(), fallback="host")
    step = jax.jit(opt.update)
    params = _params()
    state = opt.init(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the host fallback's warning
        for k in range(5):
            updates, state = step(_grad(params, k), state, params)
            params = apply_updates(params, updates)
    got = [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert step._cache_size() == 1


def test_norm_constraint_functions_on_jax_arrays_are_jax_arrays():
    x = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
    out = jax.jit(lambda a: gradstep.norm_constraint(a, 0.5))(x)
    assert isinstance(out, jax.Array) and out.dtype == x.dtype
    np.testing.assert_allclose(out, gradstep.norm_constraint(np.asarray(x), 0.5), rtol=1e-6)
    scaled, norm = jax.jit(
        lambda a, b: gradstep.total_norm_constraint([a, b], 0.5, return_norm=True)
    )(x, x[0])
    want, want_norm = gradstep.total_norm_constraint(
        [np.asarray(x), np.asarray(x[0])], 0.5, return_norm=True
    )
    assert float(norm) == pytest.approx(float(want_norm), rel=1e-6)
    for a, b in zip(scaled, want):
        assert isinstance(a, jax.Array)
        np.testing.assert_allclose(a, b, rtol=1e-6)
