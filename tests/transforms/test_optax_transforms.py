"""The new transforms against optax 0.2.8: each compat name side by side with optax's
under jax.jit (float64), and the gradstep transform on the NumPy front (fused where
it is elementwise) and on torch tensors."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402

SHAPES = {"b": (5,), "w": (4, 3), "mh": (2, 3, 4), "conv": (3, 3, 2, 4), "row": (1, 6)}
MASK = {"b": True, "w": False, "mh": True, "conv": False, "row": False}
STEPS = 4


def tree(seed: int, scale: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: scale * rng.standard_normal(s) for k, s in SHAPES.items()}


PARAMS = tree(0, 0.3)
GRADS = [tree(10 + k, 2.0 if k % 2 else 0.05) for k in range(STEPS)]

# name -> (optax transform, compat transform, gradstep transform, the NumPy front's
# engine: AGC's form covers the tensors that are one unit, the others run eagerly)
CASES = {
    "clip_by_block_rms": (
        lambda: optax.clip_by_block_rms(0.5),
        lambda: cx.clip_by_block_rms(0.5),
        lambda: T.clip_by_block_rms(0.5),
        "eager",
    ),
    "adaptive_grad_clip": (
        lambda: optax.adaptive_grad_clip(0.05, eps=1e-3),
        lambda: cx.adaptive_grad_clip(0.05, eps=1e-3),
        lambda: T.adaptive_clip(0.05, 1e-3),
        "fused+eager",
    ),
    "adaptive_grad_clip_axis": (
        lambda: optax.adaptive_grad_clip(0.2, eps=0.5, axis=-1),
        lambda: cx.adaptive_grad_clip(0.2, eps=0.5, axis=-1),
        lambda: T.adaptive_clip(0.2, 0.5, axis=-1),
        "fused+eager",
    ),
    "keep_params_nonnegative": (
        lambda: optax.chain(optax.sgd(0.5), optax.keep_params_nonnegative()),
        lambda: cx.chain(cx.sgd(0.5), cx.keep_params_nonnegative()),
        lambda: T.chain(gradstep.sgd(0.5), T.keep_params_nonnegative()),
        "fused",
    ),
    "freeze": (
        lambda: optax.chain(optax.adam(0.1), optax.freeze(MASK)),
        lambda: cx.chain(cx.adam(0.1), cx.freeze(MASK)),
        lambda: T.chain(gradstep.REGISTRY["adam"].factory(0.1), T.freeze(MASK)),
        "fused",
    ),
    "freeze_all": (
        lambda: optax.chain(optax.sgd(0.1), optax.freeze(True)),
        lambda: cx.chain(cx.sgd(0.1), cx.freeze(True)),
        None,
        "eager",
    ),
    "selective_transform": (
        lambda: optax.selective_transform(optax.sgd(0.1, 0.9), freeze_mask=MASK),
        lambda: cx.selective_transform(cx.sgd(0.1, 0.9), freeze_mask=MASK),
        lambda: T.selective_transform(gradstep.momentum(0.1, 0.9), freeze_mask=MASK),
        "eager",
    ),
    "set_to_zero": (optax.set_to_zero, cx.set_to_zero, T.set_to_zero, "fused"),
}


def optax_run(opt) -> list[dict]:
    """The parameters after each step of ``opt`` under jit, in float64."""
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(jnp.asarray, PARAMS)
        state = opt.init(params)
        step = jax.jit(opt.update)
        out = []
        for g in GRADS:
            u, state = step(jax.tree_util.tree_map(jnp.asarray, g), state, params)
            params = optax.apply_updates(params, u)
            out.append(jax.tree_util.tree_map(np.asarray, params))
    return out


@functools.cache
def reference(name: str) -> list[dict]:
    return optax_run(CASES[name][0]())


def assert_trajectories(got: list[dict], want: list[dict], name: str) -> None:
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        for key in SHAPES:
            np.testing.assert_allclose(
                a[key], b[key], rtol=1e-12, atol=1e-14, err_msg=f"{name} step {k}: {key}"
            )


@pytest.mark.parametrize("name", sorted(CASES))
def test_compat_matches_optax_under_jit(name):
    assert_trajectories(optax_run(CASES[name][1]()), reference(name), name)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[2] is not None))
def test_gradstep_transform_on_numpy_front_matches_optax(name):
    _, _, make, engine = CASES[name]
    params = {k: v.copy() for k, v in PARAMS.items()}
    opt = gradstep.Optimizer(params, make())
    got = []
    for g in GRADS:
        opt.step(g)
        got.append({k: v.copy() for k, v in params.items()})
    assert opt.engine == engine
    assert_trajectories(got, reference(name), name)


def test_clipping_moves_something():
    """The cases clip: the clipped trajectories differ from plain gradient steps."""
    u, _ = T.adaptive_clip(0.05).update(GRADS[1], {}, PARAMS)
    assert not np.allclose(u["w"], GRADS[1]["w"])
    u, _ = T.clip_by_block_rms(0.5).update(GRADS[1], {})
    assert not np.allclose(u["conv"], GRADS[1]["conv"])


def test_block_transforms_run_on_torch_tensors():
    torch = pytest.importorskip("torch", reason="torch is a test dependency")
    import gradstep.torch  # noqa: F401  (registers torch's namespace)

    as_torch = lambda t: {k: torch.tensor(v, dtype=torch.float32) for k, v in t.items()}  # noqa: E731
    for t in (
        T.adaptive_clip(0.05),
        T.adaptive_clip(0.1, layout="torch"),
        T.clip_by_block_rms(0.5),
    ):
        want, _ = t.update(GRADS[1], {}, PARAMS)
        got, _ = t.update(as_torch(GRADS[1]), {}, as_torch(PARAMS))
        for k in SHAPES:
            assert got[k].dtype == torch.float32
            np.testing.assert_allclose(got[k].numpy(), want[k], rtol=2e-6, atol=1e-7)


def test_adaptive_clip_torch_layout_is_optax_with_leading_units():
    """timm's units (all axes but the first) equal optax's with that axis given."""
    g, w = GRADS[1]["conv"], PARAMS["conv"]
    want = optax.adaptive_grad_clip(0.05, axis=(1, 2, 3)).update(g, None, w)[0]
    got = T.adaptive_clip(0.05, layout="torch").update(g, {}, w)[0]
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-6)


def test_skip_large_updates_matches_optax_multisteps():
    grads = [{"w": np.full(3, v)} for v in (0.1, 3.0, 0.2, np.nan, 0.5, 10.0, 0.1)]
    skip = functools.partial(optax.skip_large_updates, max_squared_norm=1.0)
    ref = optax.MultiSteps(optax.sgd(0.1, 0.9), 1, should_skip_update_fn=skip)
    with jax.enable_x64(True):
        state = ref.init({"w": jnp.zeros(3)})
        ref_step = jax.jit(ref.update)
        want = []
        for g in grads:
            u, state = ref_step(jax.tree_util.tree_map(jnp.asarray, g), state)
            want.append(np.asarray(u["w"]))
        ours = gradstep.jax.to_optax(T.skip_large_updates(gradstep.momentum(0.1, 0.9), 1.0))
        s = ours.init({"w": jnp.zeros(3)})
        step = jax.jit(ours.update)
        jitted = []
        for g in grads:
            u, s = step(jax.tree_util.tree_map(jnp.asarray, g), s)
            jitted.append(np.asarray(u["w"]))
    w = np.zeros(3)
    opt = gradstep.Optimizer(w, T.skip_large_updates(gradstep.momentum(0.1, 0.9), 1.0))
    eager = []
    for g in grads:
        before = w.copy()
        opt.step(g["w"])
        eager.append(w - before)
    np.testing.assert_allclose(np.array(jitted), np.array(want), rtol=1e-12)
    np.testing.assert_allclose(np.array(eager), np.array(want), rtol=1e-12, atol=1e-15)
    assert int(opt.state["total_notfinite"]) == 3
    # the compat name is optax's should_skip_update_fn
    for g in grads[:4]:
        a = cx.skip_large_updates(g, 0, None, 1.0)
        b = optax.skip_large_updates(g, 0, None, 1.0)
        assert bool(a[0]) == bool(b[0])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: T.clip_by_block_rms(0.0), "threshold"),
        (lambda: T.adaptive_clip(-1.0), "clipping"),
        (lambda: T.adaptive_clip(0.1, layout="flax"), "layout"),
        (lambda: T.adaptive_clip(0.1, axis=()), "axis"),
        (lambda: T.skip_large_updates(gradstep.sgd(0.1), 0.0), "max_squared_norm"),
    ],
)
def test_invalid_arguments(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_adaptive_clip_needs_params_and_known_units():
    with pytest.raises(ValueError, match="needs params"):
        T.adaptive_clip(0.1).update({"w": np.ones((2, 2))}, {})
    with pytest.raises(ValueError, match="axis"):
        T.adaptive_clip(0.1).update(np.ones((2,) * 6), {}, np.ones((2,) * 6))
