"""``gradstep.torch`` with stochastic rounding and Kahan-compensated bfloat16
parameters (:mod:`gradstep._core.rounding`), as param-group options: torch's eager
path and the numba engine (``fused=True``) store the same bits, and a run resumed
from ``state_dict`` continues bit for bit."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch")
pytest.importorskip("ml_dtypes", reason="the numba engine's bfloat16 views need ml_dtypes")

import gradstep.torch as gt  # noqa: E402

OPTIONS = {"stochastic_rounding": True, "rounding_seed": 3, "kahan_summation": True}


def _grads(steps: int, sizes=(500, 4)):
    gen = torch.Generator().manual_seed(1)
    return [[torch.randn(n, generator=gen).to(torch.bfloat16) for n in sizes] for _ in range(steps)]


def _params(sizes=(500, 4)):
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(n, generator=gen).to(torch.bfloat16)) for n in sizes]


def _steps(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()


def test_eager_and_fused_store_the_same_bits_and_resume_exactly():
    grads = _grads(4)
    runs = {}
    for fused in (False, True):
        params = _params()
        opt = gt.AdamW([{"params": params, **OPTIONS}], lr=1e-2, fused=fused)
        _steps(opt, params, grads)
        runs[fused] = params, opt
    (pe, oe), (pf, of) = runs[False], runs[True]
    for a, b in zip(pe, pf):
        assert torch.equal(a, b)
        assert set(oe.state[a]) == {"step", "exp_avg", "exp_avg_sq", "compensation"}
        for key, value in oe.state[a].items():
            assert torch.equal(value, of.state[b][key]), key
    assert oe.state[pe[0]]["compensation"].dtype == torch.bfloat16
    # two steps, a checkpoint, a new optimizer, two more steps: the same bits
    params = _params()
    opt = gt.AdamW([{"params": params, **OPTIONS}], lr=1e-2, fused=True)
    _steps(opt, params, grads[:2])
    saved = opt.state_dict()
    resumed = gt.AdamW([{"params": params, **OPTIONS}], lr=1e-2)
    resumed.load_state_dict(saved)
    _steps(resumed, params, grads[2:])
    for a, b in zip(params, pe):
        assert torch.equal(a, b)


def test_the_options_are_checked_and_change_the_result():
    with pytest.raises(ValueError, match="kahan_summation"):
        gt.AdamW([{"params": _params(), "kahan_summation": "yes"}], lr=1e-2)
    grads = _grads(2)
    results = []
    for options in (
        {},
        {"stochastic_rounding": True},
        {"stochastic_rounding": True, "rounding_seed": 1},
    ):
        params = _params()
        _steps(gt.SGD([{"params": params, **options}], lr=0.1, fused=False), params, grads)
        results.append(params[0].detach().clone())
    assert not torch.equal(results[0], results[1])
    assert not torch.equal(results[1], results[2])


def test_registry_classes_take_the_options_as_arguments():
    # a class generated from a registry entry passes them to its factory
    grads = _grads(2)
    results = []
    options = {"stochastic_rounding": True, "kahan_summation": True}
    for make in (
        lambda ps: gt.Lion(ps, learning_rate=1e-3, engine="eager", **options),
        lambda ps: gt.Lion([{"params": ps, **options}], learning_rate=1e-3, engine="eager"),
    ):
        params = _params()
        opt = make(params)
        _steps(opt, params, grads)
        assert "compensation" in opt.state[params[0]]
        results.append(params[0].detach().clone())
    assert torch.equal(results[0], results[1])
