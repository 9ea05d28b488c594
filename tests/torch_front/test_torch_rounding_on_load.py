"""The torch front's rounding options through ``load_state_dict``: like ``state_dtype``
they say how the loading optimizer stores, so they stay its own (lr and the other
hyperparameters come from the checkpoint); a Kahan compensation the checkpoint holds
and the optimizer does not keep is dropped, and one it keeps but the checkpoint lacks
starts at zero, as in a fresh run."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch", reason="needs torch")
pytest.importorskip("ml_dtypes", reason="the numba engine's bfloat16 views need ml_dtypes")

import gradstep.torch as gt  # noqa: E402

ROUNDING = ("stochastic_rounding", "rounding_seed", "kahan_summation")
KAHAN = {"stochastic_rounding": True, "rounding_seed": 3, "kahan_summation": True}
ENGINES = pytest.mark.parametrize("fused", [True, False], ids=["fused", "eager"])


def _problem(steps, sizes=(500, 4)):
    gen = torch.Generator().manual_seed(2)
    w0 = [torch.randn(n, generator=gen).to(torch.bfloat16) for n in sizes]
    grads = [
        [torch.randn(n, generator=gen).to(torch.bfloat16) for n in sizes] for _ in range(steps)
    ]
    return w0, grads


def _params(w0):
    return [torch.nn.Parameter(w.detach().clone()) for w in w0]


def _run(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()


def _saved(fused, options):
    """Parameters, optimizer and state dict after two steps under ``options``."""
    w0, grads = _problem(4)
    params = _params(w0)
    opt = gt.AdamW([{"params": params, **options}], lr=1e-2, fused=fused)
    _run(opt, params, grads[:2])
    return params, opt, copy.deepcopy(opt.state_dict()), grads[2:]


def _resumes_as(loaded, params, states, grads, fused, options):
    """Steps after loading equal those of AdamW under ``options`` whose state was
    set by hand to ``states``."""
    copies = _params(params)
    ref = gt.AdamW([{"params": copies, **options}], lr=1e-2, fused=fused)
    for c, state in zip(copies, states):
        ref.state[c] = {k: v.clone() for k, v in state.items()}
    _run(loaded, params, grads)
    _run(ref, copies, grads)
    for p, c in zip(params, copies):
        assert torch.equal(p, c)
        assert sorted(loaded.state[p]) == sorted(ref.state[c])
        for key, value in ref.state[c].items():
            assert torch.equal(loaded.state[p][key], value), key


@ENGINES
def test_a_kahan_checkpoint_loads_into_an_optimizer_without_kahan(fused):
    params, opt, saved, grads = _saved(fused, KAHAN)
    loaded = gt.AdamW(params, lr=0.5, fused=fused)
    loaded.load_state_dict(saved)
    group = loaded.param_groups[0]
    assert not any(key in group for key in ROUNDING)  # its own: the defaults
    assert group["lr"] == 1e-2  # the checkpoint's
    states = []
    for p in params:
        assert sorted(loaded.state[p]) == ["exp_avg", "exp_avg_sq", "step"]
        states.append({k: v for k, v in opt.state[p].items() if k != "compensation"})
    _resumes_as(loaded, params, states, grads, fused, {})


@ENGINES
def test_a_checkpoint_without_kahan_loads_into_an_optimizer_with_kahan(fused):
    params, opt, saved, grads = _saved(fused, {"stochastic_rounding": True, "rounding_seed": 3})
    own = {**KAHAN, "rounding_seed": 7}
    loaded = gt.AdamW([{"params": params, **own}], lr=0.5, fused=fused)
    loaded.load_state_dict(saved)
    group = loaded.param_groups[0]
    assert {key: group[key] for key in ROUNDING} == own
    assert group["lr"] == 1e-2
    states = [
        {**opt.state[p], "compensation": torch.zeros_like(p)}  # a fresh compensation
        for p in params
    ]
    _resumes_as(loaded, params, states, grads, fused, own)
