"""Mechanic on float16/bfloat16 parameters: only the storage is 16-bit. Its scalar
state is kept in float32 and every step's arithmetic runs in float32 or wider, so
the steps are finite and follow a float32 run (optax's mechanize keeps the scalars
in the parameters' dtype, where epsilon 1e-8 is 0 in float16, and gives NaN), on
the eager and numba engines, the torch front and the JAX front; the fused engine
equals the eager one."""

import ml_dtypes
import numpy as np
import pytest

import gradstep
from gradstep.rules.mechanic import mechanize

SIZES = [(7,), (3, 5), (0,), (300,)]
STEPS = 12
HALF = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
#: float16 parameters against a float32 run from the same start, relative to the
#: largest value: each stored step rounds to 11 significant bits, and Mechanic
#: rescales the whole displacement (rounding included) as its scale grows; measured
#: 1e-2 after 12 steps
FLOAT16_CLOSE = 2e-2


def _start():
    rng = np.random.default_rng(1)
    return [rng.normal(size=s).astype(np.float32) for s in SIZES]


def _grads(params, k, dtype):
    # a pull towards 0.3 with a wobble, computed from the stored values in float32
    return [
        ((p.astype(np.float32) - 0.3) + 0.2 * np.sin(3 * p.astype(np.float32) + k)).astype(dtype)
        for p in params
    ]


def _transform():
    return gradstep.mechanic(s_init=1e-3)


def _run(dtype, engine, transform=_transform, steps=STEPS):
    # the float32 run starts from the 16-bit values, so only the steps differ
    params = [p.astype(HALF.get(dtype, np.float32)).astype(dtype) for p in _start()]
    opt = gradstep.Optimizer(params, transform(), engine=engine)
    for k in range(steps):
        opt.step(_grads(params, k, params[0].dtype))
    assert opt.engine == engine
    return params, opt.state_dict()


def _scale(state: dict) -> float:
    return sum(float(v) for k, v in state.items() if k.rsplit("/")[-1][:1] == "s")


def _loss(params) -> float:
    """The objective whose gradient :func:`_grads` approximates (the pull to 0.3)."""
    return sum(0.5 * float(np.sum((np.asarray(p, np.float64) - 0.3) ** 2)) for p in params)


def _assert_follows(got, want, dtype):
    """Finite; float16: close to the float32 run. bfloat16 keeps 8 significant bits:
    a step below half a unit of the parameter is lost (as for every rule without a
    float32 master copy), so its path is not close to float32's after a few
    steps; it must still descend a fair share of the way float32 does (measured:
    47% in 12 steps; NaN before the fix)."""
    for g in got:
        assert np.all(np.isfinite(np.asarray(g, np.float64)))
    start = [p.astype(HALF[dtype]) for p in _start()]
    assert _loss(start) - _loss(got) > 0.25 * (_loss(start) - _loss(want))
    if dtype == "float16":
        scale = max(float(np.max(np.abs(w), initial=0.0)) for w in want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(
                np.asarray(g, np.float64), w, rtol=0, atol=FLOAT16_CLOSE * scale
            )


@pytest.mark.parametrize("dtype", list(HALF))
def test_eager_steps_are_finite_and_follow_a_float32_run(dtype):
    half, half_state = _run(dtype, "eager")
    wide, wide_state = _run("float32", "eager")
    assert all(p.dtype == HALF[dtype] for p in half)  # the storage stays 16-bit
    _assert_follows(half, wide, dtype)
    # the scalar state is float32 (one place decides it: the core's initial_scalars)
    scalars = {k: v for k, v in half_state.items() if k.rsplit("/")[-1][0] in "rmvs"}
    assert scalars and all(np.asarray(v).dtype == np.float32 for v in scalars.values())
    # the learned scale grew, as in float32
    start = gradstep.Optimizer(_start(), _transform()).state_dict()
    assert _scale(wide_state) > 1.5 * _scale(start)
    assert _scale(half_state) > 1.5 * _scale(start)
    if dtype == "float16":
        assert _scale(half_state) == pytest.approx(_scale(wide_state), rel=0.05)


@pytest.mark.parametrize("dtype", list(HALF))
def test_a_functional_update_gives_updates_in_the_gradients_dtype(dtype):
    params = [p.astype(HALF[dtype]) for p in _start()]
    t = _transform()
    state = t.init(params)
    updates, state = t.update(_grads(params, 0, HALF[dtype]), state, params)
    assert all(u.dtype == HALF[dtype] and np.all(np.isfinite(u)) for u in updates)
    assert np.asarray(state["s1"]).dtype == np.float32


CHAINS = {
    "mechanic": _transform,
    "mechanize(sgd), no decay": lambda: mechanize(
        gradstep.sgd(0.5), s_init=1e-3, weight_decay=0.0, num_betas=3
    ),
}


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("dtype", list(HALF))
def test_numba_engine_equals_eager(dtype, name):
    (pe, se), (pf, sf) = (_run(dtype, e, CHAINS[name]) for e in ("eager", "fused"))
    # the same float32 element math; the sums in another order and the scalar
    # recursion in float64 (the eager engine: float32): a stored value may round to
    # the neighbouring 16-bit number
    ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7}[dtype]
    for a, b in zip(pf, pe):
        assert a.dtype == b.dtype == HALF[dtype]
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        np.testing.assert_allclose(a, b, rtol=ulp, atol=ulp * 1e-3)
    assert se.keys() == sf.keys()
    for key in se:
        if np.asarray(se[key]).ndim == 0 and key.rsplit("/")[-1][0] in "rmvs":
            assert np.asarray(sf[key]).dtype == np.float32, key
            np.testing.assert_allclose(float(sf[key]), float(se[key]), rtol=1e-4, err_msg=key)


# -- the torch front ------------------------------------------------------------------


def _torch_run(dtype, engine):
    torch = pytest.importorskip("torch", reason="the torch front needs torch")
    import gradstep.torch as gt

    tdtype = getattr(torch, dtype)
    start = [torch.from_numpy(p) for p in _start()]
    params = [torch.nn.Parameter(p.to(tdtype)) for p in start]
    opt = gt.TransformOptimizer(params, _transform(), engine=engine)
    for k in range(STEPS):
        for p in params:
            x = p.detach().float()
            p.grad = ((x - 0.3) + 0.2 * torch.sin(3 * x + k)).to(tdtype)
        opt.step()
    return [p.detach().float().numpy() for p in params], float(opt.state[params[0]]["s1"])


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize("dtype", list(HALF))
def test_torch_front_follows_a_float32_run(dtype, engine):
    half, s_half = _torch_run(dtype, engine)
    wide, s_wide = _torch_run("float32", "eager")
    _assert_follows(half, wide, dtype)
    if dtype == "float16":
        assert s_half == pytest.approx(s_wide, rel=0.05)


# -- the JAX front ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(HALF))
def test_jax_front_follows_a_float32_run(dtype):
    jax = pytest.importorskip("jax", reason="the JAX front needs JAX")
    import jax.numpy as jnp

    from gradstep.jax import to_optax

    def run(name):
        opt = to_optax(_transform())
        params = [jnp.asarray(p).astype(name) for p in _start()]
        state = opt.init(params)
        update = jax.jit(opt.update)
        for k in range(STEPS):
            x = [p.astype(jnp.float32) for p in params]
            grads = [((v - 0.3) + 0.2 * jnp.sin(3 * v + k)).astype(name) for v in x]
            updates, state = update(grads, state, params)
            params = [
                (p.astype(jnp.float32) + u.astype(jnp.float32)).astype(name)
                for p, u in zip(params, updates)
            ]
        return [np.asarray(p.astype(jnp.float32)) for p in params], state

    half, state = run(dtype)
    wide, _ = run("float32")
    _assert_follows(half, wide, dtype)
    assert state["s1"].dtype == jnp.float32
