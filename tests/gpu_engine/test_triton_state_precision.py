"""The Triton engine with the state-precision option: the same storage mechanism as
the numba engine (each pointer-table row in its storage dtype, math in float32), run
under Triton's interpreter on CPU tensors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch")
pytest.importorskip("ml_dtypes", reason="the numba engine's bfloat16 views need ml_dtypes")

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402


@pytest.mark.parametrize("param_dtype", [torch.float32, torch.bfloat16])
def test_triton_and_numba_store_the_same_bfloat16_state(param_dtype):
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(300, generator=gen).to(param_dtype)
    params = {e: torch.nn.Parameter(w0.clone()) for e in ("triton", "fused")}
    rule = gradstep.adamw(1e-2, state_dtype="bfloat16")
    opts = {e: gt.TransformOptimizer([p], rule, engine=e) for e, p in params.items()}
    for _ in range(3):
        g = torch.randn(300, generator=gen).to(param_dtype)
        for e, p in params.items():
            p.grad = g.clone()
            opts[e].step()
    state = {e: opts[e].state[p] for e, p in params.items()}
    assert state["triton"]["mu"].dtype == torch.bfloat16
    # Triton 3.9's interpreter truncates float32 -> bfloat16 (a GPU rounds to the
    # nearest even, as the numba engine): the slots agree to one bfloat16 unit at
    # their scale, and the parameters to what that moves in 3 steps of lr 1e-2
    unit = torch.finfo(torch.bfloat16).eps
    for key in ("mu", "nu"):
        want = state["fused"][key].float()
        got = state["triton"][key].float()
        torch.testing.assert_close(got, want, rtol=unit, atol=unit * want.abs().max().item())
    # (bfloat16 parameters: also their own last unit, truncated on each of the 3 steps)
    rtol = 4 * unit if param_dtype == torch.bfloat16 else 0.0
    torch.testing.assert_close(
        params["triton"].float(), params["fused"].float(), rtol=rtol, atol=3 * 1e-2 * 4 * unit
    )


def test_triton_numba_and_torch_eager_round_stochastically_with_the_same_bits():
    # stochastic rounding adds the stream's bits to float32's bit pattern and
    # truncates: no float-to-bfloat16 conversion, so even the interpreter matches
    gen = torch.Generator().manual_seed(0)
    sizes = (300, 5000)  # the second spans two chunks of the Triton engine
    w0 = [torch.randn(n, generator=gen).to(torch.bfloat16) for n in sizes]
    grads = [[torch.randn(n, generator=gen).to(torch.bfloat16) for n in sizes] for _ in range(2)]
    rule = gradstep.adamw(1e-2, state_dtype="bfloat16", stochastic_rounding=True)
    params, opts = {}, {}
    for e in ("triton", "fused", "eager"):
        params[e] = [torch.nn.Parameter(w.clone()) for w in w0]
        opts[e] = gt.TransformOptimizer(params[e], rule, engine=e)
        for gs in grads:
            for p, g in zip(params[e], gs):
                p.grad = g.clone()
            opts[e].step()
    for e in ("triton", "eager"):
        for a, b in zip(params[e], params["fused"]):
            assert torch.equal(a, b), e
            for key in ("mu", "nu"):
                assert torch.equal(opts[e].state[a][key], opts["fused"].state[b][key]), (e, key)


def test_triton_kernels_without_stochastic_stores_are_unchanged():
    from gradstep.engines.triton import TritonEngine

    plain = TritonEngine(gradstep.adamw(1e-3))
    rounded = TritonEngine(gradstep.adamw(1e-3, stochastic_rounding=True))
    assert "bf16_store_sr" not in plain.source(["bfloat16"] * plain.n_rows, "float32", set())
    assert "bf16_store_sr" not in rounded.source(["float32"] * rounded.n_rows, "float32", set())
    assert "bf16_store_sr" in rounded.source(["bfloat16"] * rounded.n_rows, "float32", set())


def test_triton_kahan_compensated_store_follows_numba():
    # the compensation is stored to the nearest, which the interpreter truncates:
    # parameters and compensation agree to one bfloat16 unit of their scale
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(300, generator=gen).to(torch.bfloat16)
    grads = [torch.randn(300, generator=gen).to(torch.bfloat16) for _ in range(2)]
    rule = gradstep.adamw(1e-3, stochastic_rounding=True, kahan_summation=True)
    params, opts = {}, {}
    for e in ("triton", "fused"):
        params[e] = torch.nn.Parameter(w0.clone())
        opts[e] = gt.TransformOptimizer([params[e]], rule, engine=e)
        for g in grads:
            params[e].grad = g.clone()
            opts[e].step()
    unit = torch.finfo(torch.bfloat16).eps
    got, want = params["triton"].float(), params["fused"].float()
    torch.testing.assert_close(got, want, rtol=unit, atol=0.0)
    assert (got != want).float().mean() < 0.05
    comp = {e: opts[e].state[params[e]]["compensation"].float() for e in params}
    scale = comp["fused"].abs().max().item()
    torch.testing.assert_close(comp["triton"], comp["fused"], rtol=unit, atol=unit * scale)
