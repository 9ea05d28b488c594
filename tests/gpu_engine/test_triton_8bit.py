"""8-bit blockwise state on the Triton engine: the same codes, scales and parameters as
the numba engine, under Triton's interpreter on CPU tensors.

Both engines dequantise with the same map, run the same element function in float32
(IEEE operations in both: the interpreter computes with NumPy, numba compiles
without fast-math), take each block's scale from the bits of the float32
magnitudes and find each code with the same bucket table, so the comparison is
bit for bit: codes, block scales (NaN where a block holds one) and parameters.
"""

from __future__ import annotations

import os

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep._core import blockwise8 as q8
from gradstep.engines.plan import NotFusable, Unsupported
from gradstep.engines.triton import TritonEngine

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

# empty, one element, a short block, one whole block, a block and one, and a tensor
# over two of the Triton engine's chunks (4096) with a short last block
SIZES = (0, 1, 7, 256, 257, 5003)

RULES = {
    "adam": lambda **o: gradstep.adam(0.01, **o),
    "adamw": lambda **o: gradstep.adamw(0.01, weight_decay=0.1, **o),
    "lion": lambda **o: gradstep.lion(0.01, **o),
    "momentum": lambda **o: gradstep.momentum(0.01, 0.9, **o),
    "rmsprop": lambda **o: gradstep.rmsprop(0.01, **o),
    "adagrad": lambda **o: gradstep.adagrad(0.1, **o),
    "ademamix": lambda **o: gradstep.ademamix(0.01, **o),
}


def _grads(sizes, steps, dtype, seed=5):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        gs = []
        for n in sizes:
            # magnitudes over many decades, exact zeros: every part of the map is used
            g = torch.randn(n, generator=gen) * 10.0 ** torch.randint(-6, 2, (n,), generator=gen)
            g[::13] = 0.0
            gs.append(g.to(dtype))
        out.append(gs)
    return out


def run(rule, engine, sizes=SIZES, steps=3, dtype=torch.float32, grads=None):
    gen = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen).to(dtype)) for n in sizes]
    opt = gt.TransformOptimizer(params, rule, engine=engine)
    for gs in grads or _grads(sizes, steps, dtype):
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    return params, opt


def _engines(opt) -> set[str]:
    return {type(b.engine).__name__ for b in opt._runtime().fused.values()}


def assert_same_runs(a, b, params=True):
    (pa, oa), (pb, ob) = a, b
    for x, y in zip(pa, pb):
        if params:
            assert torch.equal(x.detach(), y.detach()), x.numel()
        sa, sb = oa.state[x], ob.state[y]
        assert sa.keys() == sb.keys()
        for key, value in sa.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == sb[key].dtype, key
                torch.testing.assert_close(value, sb[key], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("min_8bit_size", [0, 200], ids=["all-8bit", "mixed"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_rules_equal_the_numba_engine_bit_for_bit(name, min_8bit_size):
    """Every tensor quantised (even the empty one), or the tensors below
    ``min_8bit_size`` keeping float32 state in the same kernel launch."""
    rule = RULES[name](state_dtype="int8", min_8bit_size=min_8bit_size)
    triton, fused = run(rule, "triton"), run(rule, "fused")
    assert _engines(triton[1]) == {"TritonEngine"}
    state = triton[1].state[triton[0][-1]]
    codes = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.dtype == torch.uint8]
    assert codes, state.keys()  # 8-bit state was kept
    small = triton[1].state[triton[0][2]]
    below = torch.uint8 if min_8bit_size == 0 else torch.float32  # the 7 elements' state
    assert all(small[k].dtype == below for k in codes)
    assert_same_runs(triton, fused)


def test_a_list_of_tensors_all_below_min_8bit_size_keeps_float32_state():
    # no tensor quantised: plain float rows, kernels without the 8-bit tables
    rule = gradstep.adam(0.01, state_dtype="int8")
    triton, fused = run(rule, "triton", sizes=(7, 300)), run(rule, "fused", sizes=(7, 300))
    assert triton[1].state[triton[0][1]]["mu"].dtype == torch.float32
    assert_same_runs(triton, fused)


def test_float64_parameters_round_the_new_moments_to_float32_as_numba_does():
    rule = gradstep.lion(0.01, state_dtype="int8", min_8bit_size=100)
    sizes = (7, 300, 4500)
    triton = run(rule, "triton", sizes=sizes, dtype=torch.float64)
    fused = run(rule, "fused", sizes=sizes, dtype=torch.float64)
    assert triton[1].state[triton[0][0]]["mu"].dtype == torch.float64  # below: math dtype
    assert_same_runs(triton, fused)


def test_bfloat16_parameters_keep_the_codes_of_numba():
    # AdamW's moments read only the gradients: the codes and scales are bit for bit;
    # the parameters differ where Triton's interpreter truncates float32 -> bfloat16
    # (a GPU rounds to the nearest even, as the numba engine does), one unit each step
    pytest.importorskip("ml_dtypes", reason="the numba engine's bfloat16 views need ml_dtypes")
    rule = gradstep.adamw(0.01, state_dtype="int8", min_8bit_size=100)
    sizes = (7, 300, 4500)
    triton = run(rule, "triton", sizes=sizes, dtype=torch.bfloat16)
    fused = run(rule, "fused", sizes=sizes, dtype=torch.bfloat16)
    assert_same_runs(triton, fused, params=False)
    unit = torch.finfo(torch.bfloat16).eps
    for x, y in zip(triton[0], fused[0]):
        torch.testing.assert_close(x.float(), y.float(), rtol=3 * unit, atol=3 * 0.01 * unit)


def test_8bit_beside_bfloat16_state_and_stochastically_rounded_parameters():
    # stochastic rounding adds the stream's bits and truncates: no float -> bfloat16
    # conversion of the interpreter's, so the parameters too are bit for bit
    pytest.importorskip("ml_dtypes", reason="the numba engine's bfloat16 views need ml_dtypes")
    rule = gradstep.adamw(
        0.01,
        state_dtype={"mu": "int8", "nu": "bfloat16"},
        stochastic_rounding=True,
        min_8bit_size=100,
    )
    sizes = (7, 300, 4500)
    triton = run(rule, "triton", sizes=sizes, dtype=torch.bfloat16)
    fused = run(rule, "fused", sizes=sizes, dtype=torch.bfloat16)
    assert triton[1].state[triton[0][1]]["nu"].dtype == torch.bfloat16
    assert_same_runs(triton, fused)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_nonfinite_gradient_poisons_its_block_as_in_numba():
    sizes = (1000,)
    grads = _grads(sizes, 3, torch.float32)
    grads[1][0][300] = float("nan")  # block 1
    grads[1][0][600] = float("inf")  # block 2
    rule = gradstep.adam(0.01, state_dtype="int8", min_8bit_size=0)
    triton = run(rule, "triton", sizes=sizes, grads=grads)
    fused = run(rule, "fused", sizes=sizes, grads=grads)
    scales = triton[1].state[triton[0][0]]["mu_absmax"]
    assert scales[1].isnan() and scales[0].isfinite()
    for x, y in zip(triton[0], fused[0]):
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)
    assert_same_runs(triton, fused, params=False)


def test_a_reduction_pass_reads_the_8bit_slots():
    """A norm clip after Adam: the reduction kernel recomputes Adam from the 8-bit
    moments (loads only, in both a codes and a floats tensor), the step stores them."""
    from gradstep.transforms.clipping import clip_by_global_norm

    rule = gradstep.chain(
        gradstep.adam(0.1, state_dtype="int8", min_8bit_size=100), clip_by_global_norm(0.5)
    )
    sizes = (7, 257, 4500)
    triton, fused = run(rule, "triton", sizes=sizes), run(rule, "fused", sizes=sizes)
    # the sums of squares are float64 in both, added in another order: the clip factor
    # may differ in its last float32 bit
    for x, y in zip(triton[0], fused[0]):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    rule = gradstep.chain(
        gradstep.adam(0.1, state_dtype="int8", min_8bit_size=100), clip_by_global_norm(1e9)
    )
    assert_same_runs(run(rule, "triton", sizes=sizes), run(rule, "fused", sizes=sizes))


@pytest.mark.parametrize("name", ["lamb", "cautious_adamw"])
def test_per_tensor_and_cautious_reductions_over_8bit_moments(name):
    """LAMB's trust ratios and the cautious mask's counts: reduction kernels that
    recompute Adam from the 8-bit moments. The moments are bit for bit; the sums are
    float64 in both engines, added in another order, so a parameter may differ in
    its last float32 bit."""
    rule = getattr(gradstep, name)(0.01, state_dtype="int8", min_8bit_size=100)
    sizes = (7, 300, 4500)
    triton, fused = run(rule, "triton", sizes=sizes), run(rule, "fused", sizes=sizes)
    assert _engines(triton[1]) == {"TritonEngine"}
    assert_same_runs(triton, fused, params=False)
    for x, y in zip(triton[0], fused[0]):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


def test_state_moves_between_the_numba_and_triton_engines():
    # the same state tensors (codes, scales, floats below min_8bit_size) on either
    sizes = (7, 5003)
    grads = _grads(sizes, 4, torch.float32)
    rule = gradstep.adamw(0.01, state_dtype="int8", min_8bit_size=100)
    fused = run(rule, "fused", sizes=sizes, grads=grads[:2])
    params = [torch.nn.Parameter(p.detach().clone()) for p in fused[0]]
    triton = gt.TransformOptimizer(params, rule, engine="triton")
    for p, q in zip(params, fused[0]):
        triton.state[p] = {k: v.clone() for k, v in fused[1].state[q].items()}
    for gs in grads[2:]:
        for p, q, g in zip(params, fused[0], gs):
            p.grad, q.grad = g.clone(), g.clone()
        triton.step()
        fused[1].step()
    assert_same_runs((params, triton), fused)


def test_kernels_without_8bit_state_are_unchanged():
    plain = TritonEngine(gradstep.adamw(1e-3))
    source = plain.source(["float32"] * plain.n_rows, "float32", set())
    assert "q8_" not in source and "qmap" not in source
    eight = TritonEngine(gradstep.adamw(1e-3, state_dtype="int8"))
    rows = ["float32"] * eight.n_rows
    for code_row in eight.q8_rows:
        rows[code_row] = q8.BLOCKWISE8
    source = eight.source(rows, "float32", set())
    assert "q8_codes" in source and "q8 = tl.load(tmask" not in source  # no mixed row


def test_8bit_state_in_a_masked_stage_is_not_fusable():
    masked = gradstep.chain(
        gradstep.masked(gradstep.momentum(0.1, state_dtype="int8"), [True, False]),
        gradstep.sgd(0.1),
    )
    with pytest.raises(NotFusable, match="8-bit"):
        TritonEngine(masked)


def test_slots_of_one_tensor_stored_as_codes_and_floats_are_refused():
    params = [torch.zeros(300), torch.zeros(300)]
    engine = TritonEngine(gradstep.adam(0.1, state_dtype="int8", min_8bit_size=0))
    state = engine.transform.init(params)
    node = state["scale_by_adam"] if "scale_by_adam" in state else state
    node["nu"][1] = torch.zeros(300)  # floats beside the codes of its first moment
    node["nu_absmax"][1] = torch.zeros(0)
    with pytest.raises(Unsupported, match="codes and as floats"):
        engine.step_leaves(params, [torch.ones(300)] * 2, params, state, {})
    assert not params[0].any()


def _adamw(params, engine, **options):
    opt = gt.AdamW(params, lr=0.01, weight_decay=0.1, state_dtype="int8", **options)
    for group in opt.param_groups:
        group["engine"] = engine
    return opt


def _steps(params, opt, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()


def test_torch_adamw_checkpoints_move_between_the_engines():
    """``gt.AdamW(state_dtype="int8")``: a checkpoint saved by the numba engine
    resumes on the Triton engine (CUDA's) bit for bit."""
    sizes = (7, 5003)
    grads = _grads(sizes, 4, torch.float32)
    gen = torch.Generator().manual_seed(1)
    w0 = [torch.randn(n, generator=gen) for n in sizes]
    whole = [torch.nn.Parameter(w.clone()) for w in w0]
    _steps(whole, _adamw(whole, "fused", min_8bit_size=100), grads)
    half = [torch.nn.Parameter(w.clone()) for w in w0]
    first = _adamw(half, "fused", min_8bit_size=100)
    _steps(half, first, grads[:2])
    again = _adamw(half, "triton", min_8bit_size=100)
    again.load_state_dict(first.state_dict())
    again.param_groups[0]["engine"] = "triton"  # the checkpoint's group says "fused"
    assert again.state[half[1]]["exp_avg"].dtype == torch.uint8
    _steps(half, again, grads[2:])
    assert _engines(again) == {"TritonEngine"}
    for a, b in zip(half, whole):
        assert torch.equal(a, b)


def test_a_transform_declaring_8bit_state_resumes_on_the_triton_engine():
    """8-bit slots the transform itself declares (no group ``state_dtype``) keep their
    uint8 codes through ``load_state_dict`` (torch casts them to the parameter's
    dtype) and resume on the Triton engine bit for bit."""
    sizes = (7, 5003)
    grads = _grads(sizes, 3, torch.float32)
    gen = torch.Generator().manual_seed(2)
    w0 = [torch.randn(n, generator=gen) for n in sizes]

    def make(params):
        rule = gradstep.adamw(1e-3, state_dtype="int8", min_8bit_size=100)
        return gt.TransformOptimizer(params, rule, engine="triton")

    whole = [torch.nn.Parameter(w.clone()) for w in w0]
    _steps(whole, make(whole), grads)
    half = [torch.nn.Parameter(w.clone()) for w in w0]
    first = make(half)
    _steps(half, first, grads[:1])
    again = make(half)
    again.load_state_dict(first.state_dict())
    assert again.state[half[1]]["mu"].dtype == torch.uint8
    _steps(half, again, grads[1:])
    assert _engines(again) == {"TritonEngine"}
    for a, b in zip(half, whole):
        assert torch.equal(a, b)


def test_capturable_8bit_steps_compute_their_scalars_on_the_device():
    sizes = (7, 300)
    grads = _grads(sizes, 4, torch.float32)
    out, opts = {}, {}
    for capturable in (True, False):
        gen = torch.Generator().manual_seed(1)
        params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in sizes]
        opts[capturable] = _adamw(params, "triton", min_8bit_size=100, capturable=capturable)
        _steps(params, opts[capturable], grads)
        out[capturable] = params
    for capturable, opt in opts.items():
        assert next(iter(opt._runtime().fast.values())).on_device is capturable
    # bias corrections by torch operations on the device or by the host: within a
    # float32 unit, which may move a code by one (a step of 1e-2 times its spacing)
    for a, b in zip(out[True], out[False]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_torch_front_runs_a_masked_8bit_stage_eager():
    """No fused engine quantises in a masked stage: ``engine="auto"`` steps it with
    the transform's own update (equal to ``engine="eager"``), a required fused engine
    says it cannot compile it."""

    def rule():
        mask = lambda params: [p.shape[0] == 300 for p in params]  # noqa: E731
        inner = gradstep.momentum(0.1, state_dtype="int8", min_8bit_size=0)
        return gradstep.chain(gradstep.masked(inner, mask), gradstep.sgd(0.1))

    sizes = (300, 200)
    grads = _grads(sizes, 2, torch.float32)
    auto, eager = (
        run(rule(), "auto", sizes=sizes, grads=grads),
        run(rule(), "eager", sizes=sizes, grads=grads),
    )
    assert_same_runs(auto, eager)
    for engine in ("triton", "fused"):
        with pytest.raises(RuntimeError, match="cannot compile"):
            run(rule(), engine, sizes=sizes, grads=grads)
