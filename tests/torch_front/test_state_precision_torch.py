"""State precision in the torch front: half-precision parameters on the fused CPU
engine (``fused=True``) against torch's fused CPU kernels, and ``state_dtype``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy views need ml_dtypes")

import gradstep.torch as gt  # noqa: E402
from gradstep._core.precision import dtype_name  # noqa: E402

N = 2000


def _pair(dtype, make_ours, make_torch, steps=10, seed=0):
    """Step gradstep's and torch's optimizer on the same parameters and gradients."""
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(N, generator=gen).to(dtype)
    ours, theirs = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    a, b = make_ours([ours]), make_torch([theirs])
    for _ in range(steps):
        g = torch.randn(N, generator=gen).to(dtype)
        ours.grad, theirs.grad = g.clone(), g.clone()
        a.step()
        b.step()
    return (ours, a.state[ours]), (theirs, b.state[theirs])


def _within_one_unit(got, want):
    """Equal, or neighbours among the values of the 16-bit dtype."""
    assert got.dtype == want.dtype
    bits = lambda t: t.contiguous().view(torch.int16).int()  # noqa: E731
    same_sign = torch.signbit(got) == torch.signbit(want)
    apart = (bits(got) - bits(want)).abs()
    assert torch.all(same_sign & (apart <= 1) | (got == want)), (got - want).abs().max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_adamw_fused_half_precision_matches_torch_fused_cpu(dtype):
    kwargs = dict(lr=1e-2, weight_decay=0.1)
    (w, state), (w_ref, state_ref) = _pair(
        dtype,
        lambda p: gt.AdamW(p, fused=True, **kwargs),
        lambda p: torch.optim.AdamW(p, fused=True, **kwargs),
    )
    _within_one_unit(w.detach(), w_ref.detach())
    eps = torch.finfo(dtype).eps
    for key in ("exp_avg", "exp_avg_sq"):
        # one unit at the tensor's scale: a one-unit difference in an earlier moment
        # stays absolute when new gradients cancel it to a small value
        got, want = state[key].float(), state_ref[key].float()
        assert state[key].dtype == dtype
        torch.testing.assert_close(got, want, rtol=eps, atol=eps * want.abs().max())
    # rounding differences of torch's operation order are rare
    assert (w != w_ref).sum() <= N // 100


def test_sgd_momentum_bfloat16_is_the_float32_step_rounded_once():
    """torch 2.13's fused CPU SGD leaves bfloat16 parameters of its vectorised path
    unchanged, so the reference is the float32 step torch's ``opmath`` defines,
    rounded to bfloat16 once per step."""
    lr, momentum, decay = 1e-2, 0.9, 0.01
    gen = torch.Generator().manual_seed(3)
    w = torch.nn.Parameter(torch.randn(N, generator=gen).to(torch.bfloat16))
    want = w.detach().clone()
    opt = gt.SGD([w], lr=lr, momentum=momentum, weight_decay=decay, fused=True)
    buf = None
    for _ in range(5):
        g = torch.randn(N, generator=gen).to(torch.bfloat16)
        w.grad = g.clone()
        opt.step()
        d = g.float() + decay * want.float()
        buf = d if buf is None else momentum * buf.float() + d
        want = (want.float() - lr * buf).to(torch.bfloat16)
        buf = buf.to(torch.bfloat16)
    torch.testing.assert_close(w.detach(), want, rtol=0, atol=0)
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], buf, rtol=0, atol=0)


def test_state_dtype_fused_matches_eager_and_checkpoints_move_between_precisions():
    make = lambda p, fused: gt.AdamW(p, lr=1e-2, state_dtype=torch.bfloat16, fused=fused)  # noqa: E731
    (w, state), (w_eager, state_eager) = _pair(
        torch.float32, lambda p: make(p, True), lambda p: make(p, False), steps=4
    )
    assert w.dtype == torch.float32 and state["exp_avg"].dtype == torch.bfloat16
    # the eager engine runs torch's float32 operations (rounding as torch does)
    torch.testing.assert_close(w, w_eager, rtol=1e-6, atol=1e-7)
    eps = torch.finfo(torch.bfloat16).eps
    for key in ("exp_avg", "exp_avg_sq"):
        want = state_eager[key].float()
        torch.testing.assert_close(
            state[key].float(), want, rtol=eps, atol=eps * want.abs().max().item()
        )

    opt = make([w], True)
    opt.state[w] = state
    saved = opt.state_dict()
    assert saved["param_groups"][0]["state_dtype"] is torch.bfloat16
    # each optimizer keeps its own state_dtype: the checkpoints load unedited
    full = gt.AdamW([w], lr=1e-2)
    full.load_state_dict(saved)
    assert "state_dtype" not in full.param_groups[0]
    assert full.state[w]["exp_avg"].dtype == torch.float32
    again = make([w], True)
    again.load_state_dict(full.state_dict())
    assert again.param_groups[0]["state_dtype"] is torch.bfloat16
    for key in ("exp_avg", "exp_avg_sq"):
        assert again.state[w][key].dtype == torch.bfloat16
        torch.testing.assert_close(again.state[w][key], state[key], rtol=0, atol=0)


def test_param_groups_choose_their_own_state_dtype_and_it_is_validated():
    a, b = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    groups = [{"params": [a]}, {"params": [b], "state_dtype": {"mu": torch.float16}}]
    opt = gt.Adam(groups, lr=0.1, fused=False)
    a.grad, b.grad = torch.ones(4), torch.ones(4)
    opt.step()
    assert opt.state[a]["exp_avg"].dtype == torch.float32
    assert opt.state[b]["exp_avg"].dtype == torch.float16
    assert opt.state[b]["exp_avg_sq"].dtype == torch.float32
    with pytest.raises(ValueError, match="state_dtype"):
        gt.AdamW([a], state_dtype=torch.int8)
    assert dtype_name(torch.bfloat16) == "bfloat16"
