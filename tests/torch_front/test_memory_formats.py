"""Parameters laid out in memory other than C order (``channels_last`` convolutions,
transposed weights) step on the fused engine as torch's fused step takes them, with
state in the parameter's memory format as torch.optim keeps it; rules whose math
reads shapes or positions (8-bit blocks, masks by shape, factored moments) step them
in their logical layout."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402
from gradstep.torch import _engines  # noqa: E402


def _convnet():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3), torch.nn.Flatten()
    )
    return net.to(memory_format=torch.channels_last)


def _train(net, opt, steps=4):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(2, 3, 9, 9, generator=g).to(memory_format=torch.channels_last)
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


CASES = [
    ("Adam", {"lr": 1e-2}, {"fused": True}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}, {"fused": True}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9, "nesterov": True}, {"fused": True}),
    ("RMSprop", {"lr": 1e-3, "centered": True}, {}),
    ("Adagrad", {"lr": 1e-2}, {"fused": True}),
]


@pytest.mark.parametrize("name, kwargs, torch_fused", CASES, ids=[c[0] for c in CASES])
def test_channels_last_steps_fused_as_torch_does(name, kwargs, torch_fused, monkeypatch):
    net = _convnet()
    ref_net = copy.deepcopy(net)
    eager = []  # steps the numba engine did not take
    run_eager = _engines.EngineRuns._run_eager
    monkeypatch.setattr(
        _engines.EngineRuns,
        "_run_eager",
        lambda self, *a, **k: eager.append(1) or run_eager(self, *a, **k),
    )
    ours = _train(net, getattr(gt, name)(net.parameters(), **kwargs, **torch_fused))
    ref_opt = getattr(torch.optim, name)(ref_net.parameters(), **kwargs, **torch_fused)
    theirs = _train(ref_net, ref_opt)
    assert not eager
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert a.stride() == b.stride()


def test_state_keeps_the_parameters_memory_format_as_torch():
    net = _convnet()
    opt = gt.Adam(net.parameters(), lr=1e-2)
    _train(net, opt, steps=1)
    weight = net[0].weight
    assert not weight.is_contiguous()
    for key in ("exp_avg", "exp_avg_sq"):
        assert opt.state[weight][key].stride() == weight.stride()


def test_a_transposed_weight_steps_fused():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3).t())  # (3, 5), column-major
    ref = torch.nn.Parameter(w.detach().clone())
    opts = [gt.Adam([w], lr=0.1, fused=True), torch.optim.Adam([ref], lr=0.1)]
    for k in range(3):
        for p, opt in zip((w, ref), opts):
            p.grad = (p.detach() * (k + 1) - 0.5).contiguous().t().contiguous().t()
            opt.step()
    torch.testing.assert_close(w, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: gt.AdamW(ps, lr=1e-2, state_dtype="int8", min_8bit_size=0),
        lambda ps: gt.TransformOptimizer(
            ps, gradstep.adam(1e-2, state_dtype="bfloat16", stochastic_rounding=True)
        ),
        lambda ps: gt.TransformOptimizer(
            ps, gradstep.masked(gradstep.adam(1e-2), lambda p: [x.ndim == 4 for x in p])
        ),
        lambda ps: gt.Adafactor(ps, lr=1e-2),
    ],
    ids=["8bit", "stochastic-rounding", "mask-by-shape", "adafactor"],
)
def test_rules_reading_shapes_or_positions_step_the_logical_layout(make):
    """The same trajectory as the same model in C order, exactly."""
    net = _convnet()
    flat = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    opt_cl, opt_c = make(list(net.parameters())), make(list(flat.parameters()))
    for a, b in zip(_train(net, opt_cl), _train(flat, opt_c)):
        assert torch.equal(a, b)


def test_a_required_fused_engine_names_the_8bit_layout_it_cannot_take():
    net = _convnet()
    opt = gt.AdamW(net.parameters(), lr=1e-2, state_dtype="int8", min_8bit_size=0, fused=True)
    with pytest.raises(RuntimeError, match="not contiguous"):
        _train(net, opt, steps=1)


@pytest.mark.parametrize("saved, loaded", [("channels_last", "c"), ("c", "channels_last")])
def test_a_checkpoint_resumes_fused_in_the_other_memory_format(saved, loaded, monkeypatch):
    fmt = {"c": torch.contiguous_format, "channels_last": torch.channels_last}
    net = _convnet().to(memory_format=fmt[saved])
    opt = gt.Adam(net.parameters(), lr=1e-2)
    _train(net, opt, steps=2)
    checkpoint = copy.deepcopy((net.state_dict(), opt.state_dict()))
    expected = _train(net, opt, steps=2)
    resumed = _convnet().to(memory_format=fmt[loaded])
    resumed.load_state_dict(checkpoint[0])
    resumed_opt = gt.Adam(resumed.parameters(), lr=1e-2)
    resumed_opt.load_state_dict(checkpoint[1])
    eager = []
    run_eager = _engines.EngineRuns._run_eager
    monkeypatch.setattr(
        _engines.EngineRuns,
        "_run_eager",
        lambda self, *a, **k: eager.append(1) or run_eager(self, *a, **k),
    )
    got = _train(resumed, resumed_opt, steps=2)
    assert not eager
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    weight = resumed[0].weight
    assert resumed_opt.state[weight]["exp_avg"].stride() == weight.stride()
