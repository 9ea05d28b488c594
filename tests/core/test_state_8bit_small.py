"""``min_8bit_size``: tensors below it keep their 8-bit slots in float32, on every engine
and front, through checkpoints; the option is validated."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradstep
from gradstep._core import blockwise8 as q8

BIG, TINY = 70_000, (3, 7)  # two kernel chunks and a short last block; 21 elements


def _problem(dtype=np.float32, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal(BIG).astype(dtype), rng.standard_normal(TINY).astype(dtype)]
    grads = [[rng.standard_normal(w.shape).astype(dtype) for w in w0] for _ in range(steps)]
    grads[1][0][5] = 0.0
    return w0, grads


def _run(rule, w0, grads, engine):
    ws = [w.copy() for w in w0]
    opt = gradstep.Optimizer(ws, rule, engine=engine)
    for g in grads:
        opt.step(g)
    assert opt.engine == engine
    return ws, opt


@pytest.mark.parametrize("engine", ["fused", "eager"])
def test_a_tiny_tensor_keeps_float32_state_and_a_big_one_8bit(engine):
    w0, grads = _problem()
    ws, opt = _run(gradstep.adamw(0.01, state_dtype="int8"), w0, grads, engine)
    state = opt.state["scale_by_adam"]
    for name in ("mu", "nu"):
        assert state[name][0].dtype == np.uint8 and state[name][0].shape == (BIG,)
        assert state[name][1].dtype == np.float32 and state[name][1].shape == TINY
        assert state[q8.absmax_name(name)][0].shape == (q8.n_blocks(BIG),)
        assert state[q8.absmax_name(name)][1].shape == (0,)  # no block scales
    # the tiny tensor: float32 AdamW exactly; the big one: the 8-bit path exactly
    full, _ = _run(gradstep.adamw(0.01), w0, grads, engine)
    np.testing.assert_array_equal(ws[1], full[1])
    eight, alone = _run(
        gradstep.adamw(0.01, state_dtype="int8", min_8bit_size=0),
        w0[:1],
        [g[:1] for g in grads],
        engine,
    )
    np.testing.assert_array_equal(ws[0], eight[0])
    np.testing.assert_array_equal(state["mu"][0], alone.state["scale_by_adam"]["mu"][0])


def test_the_threshold_is_bitsandbytes_numel_below_min_8bit_size():
    w = [np.zeros(q8.MIN_8BIT_SIZE - 1, np.float32), np.zeros(q8.MIN_8BIT_SIZE, np.float32)]
    state = gradstep.adam(state_dtype="int8").init(w)["scale_by_adam"]
    assert [s.dtype for s in state["mu"]] == [np.float32, np.uint8]
    state = gradstep.adam(state_dtype="int8", min_8bit_size=0).init(w)["scale_by_adam"]
    assert [s.dtype for s in state["mu"]] == [np.uint8, np.uint8]
    state = gradstep.adam(state_dtype="int8", min_8bit_size=10**9).init(w)["scale_by_adam"]
    assert [s.dtype for s in state["nu"]] == [np.float32, np.float32]


@pytest.mark.parametrize(
    "make, dtype",
    [
        # float64 parameters: the tiny tensor's slot in float64 (the math dtype)
        (lambda: gradstep.lion(0.01, state_dtype="int8", min_8bit_size=100), np.float64),
        # bfloat16 parameters: float32 slot (as bitsandbytes), optax's option name
        (
            lambda: gradstep.momentum(0.01, 0.9, accumulator_dtype="int8", min_8bit_size=100),
            "bfloat16",
        ),
        # a reduction pass reading the mixed slots (norm clipping after Adam)
        (lambda: "clipped", np.float32),
    ],
)
def test_mixed_slots_fused_equals_eager_bit_for_bit(make, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")
        from gradstep._core.namespaces import numpy_dtype

        dtype = numpy_dtype("bfloat16")
    w0, grads = _problem(dtype)

    def rule():
        if make() != "clipped":
            return make()
        from gradstep.transforms.clipping import clip_by_global_norm

        adam = gradstep.adam(0.1, state_dtype="int8", min_8bit_size=100)
        return gradstep.chain(adam, clip_by_global_norm(0.5))

    fused, f = _run(rule(), w0, grads, "fused")
    eager, e = _run(rule(), w0, grads, "eager")
    for a, b in zip(fused + gradstep.tree.leaves(f.state), eager + gradstep.tree.leaves(e.state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(
            np.atleast_1d(a).view(np.uint8), np.atleast_1d(b).view(np.uint8)
        )
    small = [s for s in gradstep.tree.leaves(f.state) if s.shape == TINY]
    want = np.float64 if dtype == np.float64 else np.float32
    assert small and all(s.dtype == want for s in small)


@pytest.mark.parametrize("value", [-1, 2.5, "4096", True, math.inf, None])
def test_invalid_min_8bit_size_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=r"min_8bit_size=.*valid values: an integer in \[0, inf\)"):
        gradstep.adamw(state_dtype="int8", min_8bit_size=value)
    with pytest.raises(ValueError, match=f"invalid min_8bit_size={value!r}"):
        gradstep.adamw(state_dtype="int8", min_8bit_size=value)


def test_min_8bit_size_without_8bit_state_is_refused_not_ignored():
    for kwargs in ({}, {"state_dtype": "bfloat16"}, {"state_dtype": {"nu": "float32"}}):
        with pytest.raises(ValueError, match="min_8bit_size=0 without 8-bit state"):
            gradstep.adam(min_8bit_size=0, **kwargs)
        gradstep.adam(min_8bit_size=q8.MIN_8BIT_SIZE, **kwargs)  # the default: fine
    gradstep.adam(mu_dtype="int8", min_8bit_size=0)  # one 8-bit slot is enough


@pytest.mark.parametrize("engine", ["fused", "eager"])
def test_npz_checkpoints_of_mixed_slots_resume_bit_exact(tmp_path, engine):
    w0, grads = _problem(steps=4, seed=5)
    make = lambda: gradstep.adamw(0.01, state_dtype="int8")  # noqa: E731
    whole, whole_opt = _run(make(), w0, grads, engine)
    half, first = _run(make(), w0, grads[:2], engine)
    first.save(tmp_path / "half.npz")
    resumed = gradstep.Optimizer(half, make(), engine=engine)
    resumed.load(tmp_path / "half.npz")
    for g in grads[2:]:
        resumed.step(g)
    for a, b in zip(half, whole):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(gradstep.tree.leaves(resumed.state), gradstep.tree.leaves(whole_opt.state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_checkpoints_move_between_thresholds_tensor_by_tensor():
    w0, grads = _problem(steps=2, seed=6)
    _, mixed = _run(gradstep.adam(0.1, state_dtype="int8"), w0, grads, "eager")
    saved = mixed.state_dict()
    every = gradstep.Optimizer(
        [w.copy() for w in w0], gradstep.adam(0.1, state_dtype="int8", min_8bit_size=0)
    )
    every.load_state_dict(saved)  # the tiny tensor's float32 moments quantised
    state = every.state["scale_by_adam"]
    assert state["mu"][1].dtype == np.uint8 and state["mu_absmax"][1].shape == (1,)
    np.testing.assert_array_equal(state["mu"][0], mixed.state["scale_by_adam"]["mu"][0])
    back = gradstep.Optimizer([w.copy() for w in w0], gradstep.adam(0.1, state_dtype="int8"))
    back.load_state_dict(every.state_dict())  # and dequantised again
    have = back.state["scale_by_adam"]
    assert have["mu"][1].dtype == np.float32 and have["mu_absmax"][1].shape == (0,)
    want = q8.dequantised(state["mu"][1], state["mu_absmax"][1], True)
    np.testing.assert_array_equal(have["mu"][1], want)
    full = gradstep.Optimizer([w.copy() for w in w0], gradstep.adam(0.1))
    full.load_state_dict(saved)  # into float32 state: no scales left
    assert list(full.state["scale_by_adam"]) == ["count", "mu", "nu"]
    np.testing.assert_array_equal(
        full.state["scale_by_adam"]["nu"][1], mixed.state["scale_by_adam"]["nu"][1]
    )


def test_torch_front_keeps_small_tensors_float32_and_resumes_bit_exact():
    torch = pytest.importorskip("torch", reason="the torch front")
    import gradstep.torch as gt

    gen = torch.Generator().manual_seed(0)
    w0 = [torch.randn(5000, generator=gen), torch.randn(*TINY, generator=gen)]
    grads = [[torch.randn(w.shape, generator=gen) for w in w0] for _ in range(4)]

    def run(params, opt, steps):
        for gs in steps:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()

    whole = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = gt.AdamW(whole, lr=0.01, state_dtype="int8", fused=True)
    run(whole, opt, grads)
    big, tiny = (opt.state[p] for p in whole)
    assert big["exp_avg"].dtype == torch.uint8 and big["exp_avg_absmax"].shape == (20,)
    assert tiny["exp_avg"].dtype == torch.float32 and tiny["exp_avg_sq_absmax"].shape == (0,)
    plain = [torch.nn.Parameter(w.clone()) for w in w0]
    run(plain, gt.AdamW(plain, lr=0.01, fused=True), grads)
    assert torch.equal(whole[1], plain[1])  # float32 AdamW on the tiny tensor
    half = [torch.nn.Parameter(w.clone()) for w in w0]
    first = gt.AdamW(half, lr=0.01, state_dtype="int8", fused=True)
    run(half, first, grads[:2])
    again = gt.AdamW(half, lr=0.01, state_dtype="int8", fused=True)
    again.load_state_dict(first.state_dict())
    assert again.state[half[1]]["exp_avg"].dtype == torch.float32
    run(half, again, grads[2:])
    for a, b in zip(half, whole):
        assert torch.equal(a, b)
    # a param group's own threshold, and the option validated like the others
    both = [torch.nn.Parameter(w.clone()) for w in w0]
    grouped = gt.AdamW(
        [{"params": both[:1]}, {"params": both[1:], "min_8bit_size": 0}],
        lr=0.01,
        state_dtype="int8",
    )
    run(both, grouped, grads[:1])
    assert grouped.state[both[1]]["exp_avg"].dtype == torch.uint8
    with pytest.raises(ValueError, match=r"invalid min_8bit_size=-1; valid values: an integer"):
        gt.AdamW(both, lr=0.01, state_dtype="int8", min_8bit_size=-1)


def test_jax_engine_keeps_small_tensors_float32_as_numpy_does():
    jax = pytest.importorskip("jax", reason="the JAX engine")
    import jax.numpy as jnp

    import gradstep.jax

    rng = np.random.default_rng(4)
    w0 = {"big": rng.standard_normal(5000).astype(np.float32), "tiny": np.ones(21, np.float32)}
    g = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in w0.items()}
    opt = gradstep.jax.to_optax(gradstep.adamw(0.01, state_dtype="int8"))
    params = {k: jnp.asarray(v) for k, v in w0.items()}
    state = opt.init(params)
    grads = {k: jnp.asarray(v) for k, v in g.items()}
    _, state = jax.jit(opt.update)(grads, state, params)
    eager = gradstep.Optimizer(
        {k: v.copy() for k, v in w0.items()},
        gradstep.adamw(0.01, state_dtype="int8"),
        engine="eager",
    )
    eager.step(g)
    for name in ("mu", "mu_absmax", "nu", "nu_absmax"):
        for leaf in ("big", "tiny"):
            have = np.asarray(state["scale_by_adam"][name][leaf])
            want = eager.state["scale_by_adam"][name][leaf]
            assert have.dtype == want.dtype and have.shape == want.shape
            np.testing.assert_array_equal(have, want)
    assert state["scale_by_adam"]["mu"]["tiny"].dtype == jnp.float32
