"""8-bit blockwise state (gradstep._core.blockwise8, ``state_dtype="blockwise8"``):
the map and quantiser, the eager engine as reference, the numba kernel equal to it
bit for bit, checkpoints, refusals, and the recorded bitsandbytes/torchao
trajectories."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep._core import blockwise8 as q8
from gradstep._core.precision import slot_dtypes

ROOT = Path(__file__).resolve().parents[1] / "conformance"
_spec = importlib.util.spec_from_file_location(
    "record_blockwise8_fixtures", ROOT / "record_blockwise8_fixtures.py"
)
recorder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recorder)
FIXTURES = json.loads((ROOT / "fixtures" / "precision" / "blockwise8.json").read_text())


def _values(rng, n, signed=True):
    x = rng.standard_normal(n) * np.exp(rng.uniform(-12, 3, n))
    return (x if signed else np.abs(x)).astype(np.float32)


def test_the_map_is_the_dynamic_map_of_the_paper():
    for signed in (True, False):
        table = q8.dynamic_map(signed)
        assert table.dtype == np.float32 and table.size == 256
        assert np.all(np.diff(table) > 0) and table[-1] == 1.0
        assert table[q8.zero_code(signed)] == 0.0
        # 7 decades, each with twice the values of the one below it
        assert (table > 0).sum() == (128 if signed else 255)
        assert np.isclose(table[table > 0].min(), 0.55e-6 if signed else 0.325e-6)


def test_state_is_codes_plus_one_scale_per_block_and_starts_at_zero():
    w = [np.ones((3, 300), np.float32), np.ones(5, np.float32)]
    state = gradstep.adamw(0.1, state_dtype="int8", min_8bit_size=0).init(w)["scale_by_adam"]
    assert slot_dtypes(gradstep.adamw(state_dtype="int8")) == {
        "mu": "blockwise8",
        "nu": "blockwise8",
    }
    assert [c.dtype for c in state["mu"]] == [np.uint8, np.uint8]
    assert [c.shape for c in state["nu"]] == [(3, 300), (5,)]
    assert [a.shape for a in state["mu_absmax"]] == [(4,), (1,)]  # ceil(900 / 256)
    assert all(a.dtype == np.float32 for a in state["nu_absmax"])
    assert np.all(state["mu"][0] == 127) and np.all(state["nu"][0] == 0)  # exact zeros


def test_round_trip_error_is_within_half_a_code_of_the_block_scale():
    rng = np.random.default_rng(0)
    for signed in (True, False):
        x = _values(rng, 1000, signed)
        codes, absmax = q8.quantised(x, signed)
        back = q8.dequantised(codes, absmax, signed)
        table = q8.dynamic_map(signed)
        blocks = np.pad(x, (0, 24)).reshape(-1, 256)
        np.testing.assert_array_equal(absmax, np.abs(blocks).max(axis=1))
        # each value is at its code or a neighbour's nearest; nonzero values stay nonzero
        scale = np.repeat(absmax, 256)[:1000]
        gap = np.diff(table).max()
        assert np.all(np.abs(back - x) <= scale * gap / 2 * 1.0001)
        assert np.all((back != 0) == (x != 0)) and np.all(np.sign(back) == np.sign(x))


def test_the_parameter_update_uses_the_new_moments_before_quantisation():
    """From a zero state, step 1 of 8-bit Adam is float32 Adam's step exactly."""
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal(700).astype(np.float32)
    g = _values(rng, 700)
    out = []
    for state_dtype in (None, "blockwise8"):
        w = w0.copy()
        gradstep.Optimizer(w, gradstep.adam(0.01, state_dtype=state_dtype), engine="eager").step(g)
        out.append(w)
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize(
    "make, dtype",
    [
        # two chunks of the kernel (65536 elements), a short last block, a small tensor
        (lambda: gradstep.adamw(0.01, state_dtype="blockwise8"), np.float32),
        # float64 parameters: float64 math, the new moments rounded to float32 first
        (lambda: gradstep.lion(0.01, state_dtype="int8"), np.float64),
        # bfloat16 parameters and gradients (uint16 bits in the kernel), optax's name
        (lambda: gradstep.momentum(0.01, 0.9, accumulator_dtype="int8"), "bfloat16"),
        # a float32 slot beside the 8-bit ones, in a stage masked off the small tensor
        # (whose row it never touches there)
        (
            lambda: gradstep.chain(
                gradstep.adam(0.01, state_dtype="int8", min_8bit_size=0),
                gradstep.masked(gradstep.momentum(1.0, 0.9), [True, False]),
            ),
            np.float32,
        ),
    ],
)
def test_fused_engine_equals_eager_bit_for_bit(make, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")
        from gradstep._core.namespaces import numpy_dtype

        dtype = numpy_dtype("bfloat16")
    rng = np.random.default_rng(2)
    w0 = [rng.standard_normal(70_000).astype(dtype), rng.standard_normal((3, 7)).astype(dtype)]
    grads = [[_values(rng, w.size).reshape(w.shape).astype(dtype) for w in w0] for _ in range(3)]
    grads[1][0][5] = 0.0  # an exact zero among nonzero values
    out = {}
    for engine in ("fused", "eager"):
        ws = [w.copy() for w in w0]
        opt = gradstep.Optimizer(ws, make(), engine=engine)
        for g in grads:
            opt.step(g)
        assert opt.engine == engine
        out[engine] = (ws, gradstep.tree.leaves(opt.state))
    for a, b in zip(out["fused"][0], out["eager"][0]):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    for a, b in zip(out["fused"][1], out["eager"][1]):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_a_nonfinite_gradient_poisons_its_block_alike_in_both_engines():
    rng = np.random.default_rng(9)
    w0 = rng.standard_normal(1000).astype(np.float32)
    g = _values(rng, 1000)
    g[300], g[700] = np.nan, np.inf
    out = {}
    for engine in ("fused", "eager"):
        w = w0.copy()
        rule = gradstep.adamw(0.01, state_dtype="blockwise8", min_8bit_size=0)
        opt = gradstep.Optimizer(w, rule, engine=engine)
        with np.errstate(invalid="ignore", over="ignore"):
            opt.step(g)
            opt.step(np.ones(1000, np.float32))
        out[engine] = [w] + gradstep.tree.leaves(opt.state)
    for a, b in zip(out["fused"], out["eager"]):
        np.testing.assert_array_equal(a, b)  # NaN where NaN
    scales = opt.state["scale_by_adam"]["nu_absmax"]
    assert np.isnan(scales[1]) and np.isnan(scales[2]) and np.isfinite(scales[[0, 3]]).all()


def test_a_reduction_pass_reads_the_8bit_slots():
    """A norm clip after Adam: the reduction kernel recomputes Adam from its 8-bit
    moments (loads only), then the main pass stores them."""
    from gradstep.transforms.clipping import clip_by_global_norm

    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(1000).astype(np.float32)
    grads = [_values(rng, 1000) for _ in range(3)]
    out = {}
    for engine in ("fused", "eager"):
        w = w0.copy()
        chain = gradstep.chain(
            gradstep.adam(0.1, state_dtype="blockwise8", min_8bit_size=0),
            clip_by_global_norm(0.5),
        )
        opt = gradstep.Optimizer(w, chain, engine=engine)
        for g in grads:
            opt.step(g)
        out[engine] = w
    np.testing.assert_array_equal(out["fused"], out["eager"])


def test_torch_and_jax_arrays_quantise_as_numpy_does():
    torch = pytest.importorskip("torch", reason="the torch namespace")
    import gradstep.torch  # noqa: F401  (registers the torch namespace)

    rng = np.random.default_rng(4)
    x = _values(rng, 600)
    codes, absmax = q8.quantised(x, True)
    t_codes, t_absmax = q8.quantised(torch.from_numpy(x), True)
    np.testing.assert_array_equal(t_codes.numpy(), codes)
    np.testing.assert_array_equal(t_absmax.numpy(), absmax)
    back = q8.dequantised(t_codes, t_absmax, True)
    np.testing.assert_array_equal(back.numpy(), q8.dequantised(codes, absmax, True))
    jnp = pytest.importorskip("jax.numpy", reason="the JAX namespace")
    import gradstep.jax  # noqa: F401  (registers the JAX namespace)

    j_codes, j_absmax = q8.quantised(jnp.asarray(x), True)
    np.testing.assert_array_equal(np.asarray(j_codes), codes)
    np.testing.assert_array_equal(np.asarray(j_absmax), absmax)
    # the JAX engine under jit keeps the same codes and scales
    jax = pytest.importorskip("jax", reason="the JAX engine")
    opt = gradstep.jax.to_optax(gradstep.adamw(0.01, state_dtype="int8", min_8bit_size=0))
    w0 = rng.standard_normal(600).astype(np.float32)
    state = opt.init({"w": jnp.asarray(w0)})
    _, state = jax.jit(opt.update)({"w": jnp.asarray(x)}, state, {"w": jnp.asarray(w0)})
    w = w0.copy()
    rule = gradstep.adamw(0.01, state_dtype="int8", min_8bit_size=0)
    eager = gradstep.Optimizer({"w": w}, rule, engine="eager")
    eager.step({"w": x})
    for name in ("mu", "mu_absmax", "nu", "nu_absmax"):
        have = np.asarray(state["scale_by_adam"][name]["w"])
        np.testing.assert_array_equal(have, eager.state["scale_by_adam"][name]["w"])


def test_npz_checkpoints_hold_codes_and_scales_and_resume_bit_exact(tmp_path):
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal(600).astype(np.float32)
    grads = [_values(rng, 600) for _ in range(4)]
    # the kernel of the fused test above (compiled once)
    make = lambda: gradstep.adamw(0.01, state_dtype="blockwise8", min_8bit_size=0)  # noqa: E731
    w = w0.copy()
    whole = gradstep.Optimizer(w, make())
    for g in grads:
        whole.step(g)
    w_half = w0.copy()
    first = gradstep.Optimizer(w_half, make())
    for g in grads[:2]:
        first.step(g)
    first.save(tmp_path / "half.npz")
    saved = first.state_dict()
    assert saved["state/scale_by_adam/mu"].dtype == np.uint8
    assert saved["state/scale_by_adam/nu_absmax"].shape == (3,)
    resumed = gradstep.Optimizer(w_half, make())
    resumed.load(tmp_path / "half.npz")
    for g in grads[2:]:
        resumed.step(g)
    np.testing.assert_array_equal(w_half, w)
    for a, b in zip(gradstep.tree.leaves(resumed.state), gradstep.tree.leaves(whole.state)):
        np.testing.assert_array_equal(a, b)


def test_torch_state_dict_resumes_bit_exact():
    torch = pytest.importorskip("torch", reason="the torch front")
    import gradstep.torch as gt

    gen = torch.Generator().manual_seed(0)
    w0 = [torch.randn(600, generator=gen), torch.randn(3, 7, generator=gen)]
    grads = [[torch.randn(w.shape, generator=gen) for w in w0] for _ in range(4)]

    def run(params, opt, steps):
        for gs in steps:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()

    whole = [torch.nn.Parameter(w.clone()) for w in w0]
    eight = {"state_dtype": "int8", "min_8bit_size": 0}
    run(whole, gt.AdamW(whole, lr=0.01, fused=True, **eight), grads)
    half = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = gt.AdamW(half, lr=0.01, fused=True, **eight)
    run(half, opt, grads[:2])
    saved = opt.state_dict()
    entry = saved["state"][0]
    assert entry["exp_avg"].dtype == torch.uint8 and entry["exp_avg_absmax"].shape == (3,)
    again = gt.AdamW(half, lr=0.01, fused=True, **eight)
    again.load_state_dict(saved)
    run(half, again, grads[2:])
    for a, b in zip(half, whole):
        assert torch.equal(a, b)
    # (float values are quantised: tests/torch_front/test_torch_8bit_checkpoints.py)
    bad = {**saved, "state": {**saved["state"], 0: {**entry, "exp_avg": entry["exp_avg"].int()}}}
    with pytest.raises(ValueError, match="torch.int32; its 8-bit codes must be torch.uint8"):
        gt.AdamW(half, lr=0.01, **eight).load_state_dict(bad)


@pytest.mark.parametrize(
    "call, message",
    [
        # not elementwise slots: refused, not ignored
        (lambda: gradstep.adafactor(state_dtype="int8"), "keeps state outside"),
        (lambda: gradstep.prodigy(state_dtype="blockwise8"), "keeps state outside"),
        (lambda: gradstep.adam(state_dtype="int4"), "invalid state_dtype='int4'"),
    ],
)
def test_rules_that_cannot_hold_8bit_state_refuse_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_optax_compat_refuses_8bit_state_it_could_not_map():
    pytest.importorskip("jax", reason="gradstep.compat.optax runs on JAX")
    import gradstep.compat.optax as optax

    with pytest.raises(ValueError, match="invalid mu_dtype='int8'"):
        optax.adam(1e-3, mu_dtype="int8")


def test_a_slot_copied_from_the_parameter_refuses_8bit():
    from gradstep._core.elementwise import Elementwise, Slot
    from gradstep._core.precision import with_state_dtype

    stage = Elementwise("keep", lambda g, prev: (g, prev), slots=(Slot("prev", "params"),))
    with pytest.raises(ValueError, match="copy of the parameter"):
        with_state_dtype(stage, "blockwise8")


def test_bytes_per_parameter():
    w = [np.zeros(4096 * 64, np.float32)]
    for state_dtype, expected in ((None, 8.0), ("blockwise8", 2 + 8 / 256)):
        state = gradstep.adamw(state_dtype=state_dtype).init(w)["scale_by_adam"]
        nbytes = sum(a.nbytes for a in gradstep.tree.leaves(state) if a.ndim)
        assert nbytes / w[0].size == expected


@pytest.mark.parametrize("case", FIXTURES, ids=[c["id"] for c in FIXTURES])
def test_recorded_8bit_trajectories(case):
    w0, target, curvature = recorder.problem(case["seed"], case["size"])
    args = recorder.RULE_ARGS[case["rule"]](case["hyperparams"])
    w = w0.copy()
    # every recorded tensor is quantised: bitsandbytes ran with min_8bit_size=0, and
    # torchao's tensor has 4096 elements (its threshold)
    rule = getattr(gradstep, case["rule"])(**args, state_dtype="int8", min_8bit_size=0)
    # the eager reference (the fused engine equals it bit for bit, tested above)
    opt = gradstep.Optimizer(w, rule, engine="eager")
    for k in range(1, recorder.STEPS + 1):
        opt.step(recorder.gradient(w, target, curvature))
        if str(k) in case["params"]:
            want = recorder.decode(case["params"][str(k)])
            travel = np.abs(want - w0).max()
            assert np.abs(w - want).max() <= case["params_travel_fraction"] * travel, k
    (state,) = [node for node in opt.state.values() if "mu" in node]
    for name, _, _, signed in recorder.SLOTS[case["rule"]]:
        have = q8.dequantised(state[name], state[q8.absmax_name(name)], signed)
        want = recorder.decode(case["slots"][name])
        assert np.abs(have - want).max() <= case["moment_fraction"] * np.abs(want).max()


def test_map_and_quantiser_match_bitsandbytes_and_torchao():
    torch = pytest.importorskip("torch", reason="the references run on torch")
    rng = np.random.default_rng(6)
    try:
        import bitsandbytes.functional as bnb_f
    except ImportError:
        bnb_f = None
    if bnb_f is not None:
        for signed in (True, False):
            ref = bnb_f.create_dynamic_map(signed=signed).numpy()
            np.testing.assert_array_equal(q8.dynamic_map(signed), ref)
    try:
        from torchao.optim.quant_utils import quantize_8bit_with_qmap, scale_tensor
    except ImportError:
        if bnb_f is None:
            pytest.skip(reason="needs bitsandbytes or torchao (reference libraries)")
        return
    for signed in (True, False):
        x = _values(rng, 2048, signed)
        scaled, scale = scale_tensor(torch.from_numpy(x), 256)
        table = torch.from_numpy(q8.dynamic_map(signed).copy())
        want = quantize_8bit_with_qmap(scaled, table).numpy()
        codes, absmax = q8.quantised(x, signed)
        np.testing.assert_array_equal(absmax, scale.numpy())
        # equal codes, except where torchao rounds a nonzero value to the zero code
        zero = q8.zero_code(signed)
        differ = codes != want
        assert np.all(want[differ] == zero) and np.all(x[differ] != 0)


def test_checkpoints_move_between_8bit_and_float32():
    rng = np.random.default_rng(8)
    w = {"a": rng.standard_normal(300).astype(np.float32), "b": np.ones(3, np.float32)}
    grads = {"a": _values(rng, 300), "b": np.ones(3, np.float32)}

    def optimizer(state_dtype):  # eager: the conversion is the front's, not an engine's
        params = {k: v.copy() for k, v in w.items()}
        extra = {"min_8bit_size": 0} if state_dtype else {}
        return gradstep.Optimizer(
            params, gradstep.adam(0.1, state_dtype=state_dtype, **extra), engine="eager"
        )

    low = optimizer("int8")
    low.step(grads)
    full = optimizer(None)
    full.load_state_dict(low.state_dict())  # dequantised exactly
    moments = low.state["scale_by_adam"]
    for name, signed in (("mu", True), ("nu", False)):
        for leaf in ("a", "b"):
            want = q8.dequantised(moments[name][leaf], moments[name + "_absmax"][leaf], signed)
            np.testing.assert_array_equal(full.state["scale_by_adam"][name][leaf], want)
    again = optimizer("int8")
    again.load_state_dict(full.state_dict())  # requantised
    back = again.state["scale_by_adam"]
    for name, signed in (("mu", True), ("nu", False)):
        for leaf in ("a", "b"):
            scale = moments[name + "_absmax"][leaf]
            have = q8.dequantised(back[name][leaf], back[name + "_absmax"][leaf], signed)
            want = q8.dequantised(moments[name][leaf], scale, signed)
            # a block led by a negative value shrinks its scale by the map's -0.993
            assert np.all(np.abs(have - want) <= 0.01 * np.repeat(scale, 256)[: want.size])
