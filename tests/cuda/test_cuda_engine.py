"""On a CUDA GPU: gradstep.torch's classes, on the Triton engine, give torch.optim's numbers.

Skipped where there is no GPU (CI). On a GPU (``benchmarks/gpu_check.sh`` runs it)
every class with a torch.optim counterpart steps CUDA parameters through the
Triton engine and must match torch.optim within float32 tolerance over many
steps; half precision matches the eager reference rounded to its dtype.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
if not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip(
        reason="needs a CUDA GPU (and Triton compiling, not interpreting)", allow_module_level=True
    )
pytest.importorskip("triton", reason="needs Triton (a test dependency on Linux)")

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402
from gradstep.engines.triton import TritonEngine  # noqa: E402

SHAPES = [(0,), (1,), (7,), (100003,), (64, 33), (4096,)]
STEPS = 25

_spec = importlib.util.spec_from_file_location(
    "torch_cases", Path(__file__).resolve().parents[1] / "gpu_engine" / "torch_cases.py"
)
_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cases)
CASES = _cases.TORCH_CASES


def make(shapes, dtype=torch.float32, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(s, generator=gen, device="cuda", dtype=dtype) for s in shapes]


def grads_at(k, params):
    return [torch.sin(3 * p.detach().float() + k).to(p.dtype) * (1 + k % 3) for p in params]


def step_both(a, ours, b, ref, before_ref=lambda: None):
    """``STEPS`` steps of gradstep's ``a`` and the reference ``b`` on the same
    gradients; the parameters must then agree to float32 rounding."""
    for k in range(STEPS):
        for p, g in zip(ours, grads_at(k, ours)):
            p.grad = g
        for q, g in zip(ref, grads_at(k, ref)):
            q.grad = g
        a.step()
        before_ref()
        b.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_classes_match_torch_optim_on_cuda(case):
    name = case.split("-")[0]
    kwargs = CASES[case]
    init = make(SHAPES)
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    a = getattr(gt, name)(ours, **kwargs)
    b = getattr(torch.optim, name)(ref, **kwargs, foreach=False)
    step_both(a, ours, b, ref)
    runtime = a._runtime()
    assert any(isinstance(v.engine, TritonEngine) for v in runtime.fused.values())
    assert runtime.fast, "the steps after the first ran as one launch"


def test_clip_by_global_norm_adamw_matches_torch():
    init = make(SHAPES)
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    a = gt.TransformOptimizer(
        ours,
        gradstep.chain(
            gradstep.transforms.clip_by_global_norm(0.5), gradstep.adamw(1e-2, weight_decay=0.1)
        ),
    )
    b = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.1, foreach=False)
    step_both(a, ours, b, ref, before_ref=lambda: torch.nn.utils.clip_grad_norm_(ref, 0.5))


def test_scalars_changing_every_step_stay_right_past_the_ring_and_a_stream_switch():
    """Adam's bias corrections change every step: they reach the kernel through the
    ring of pinned rows (gradstep.engines.scalar_ring), written again a ring later;
    over three rings, and on a side stream for a while, the numbers stay torch's."""
    from gradstep.engines.scalar_ring import ROWS

    init = make([(7,), (4096,)])
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    a = gt.Adam(ours, lr=1e-2)
    b = torch.optim.Adam(ref, lr=1e-2, foreach=False)
    side = torch.cuda.Stream()
    for k in range(3 * ROWS + 5):
        for p, q, g in zip(ours, ref, grads_at(k, ours)):
            p.grad, q.grad = g, g.clone()
        if ROWS <= k < ROWS + 10:
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                a.step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            a.step()
        b.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert a._runtime().fast


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_float32_math_rounded(dtype):
    init = make(SHAPES, dtype)
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.float()) for t in init]
    a = gt.AdamW(ours, lr=1e-2, weight_decay=0.1)
    b = gt.AdamW(ref, lr=1e-2, weight_decay=0.1, fused=False)
    for k in range(5):
        for p, g in zip(ours, grads_at(k, ours)):
            p.grad = g
        for q, g in zip(ref, grads_at(k, ours)):
            q.grad = g.float()
        a.step()
        b.step()
        with torch.no_grad():
            for q in ref:
                q.copy_(q.to(dtype).float())
                for key, v in b.state[q].items():
                    if key != "step":
                        v.copy_(v.to(dtype).float())
    tol = 2e-2 if dtype == torch.bfloat16 else 2e-3
    for p, q in zip(ours, ref):
        assert p.dtype == dtype
        torch.testing.assert_close(p.float(), q, rtol=tol, atol=tol)


def test_fused_true_requires_and_uses_the_triton_engine():
    params = [torch.nn.Parameter(t) for t in make([(1000,)])]
    opt = gt.Adam(params, lr=1e-3, fused=True)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    assert any(isinstance(v.engine, TritonEngine) for v in opt._runtime().fused.values())


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_8bit_state_runs_on_the_triton_engine_and_follows_numba(name):
    """``state_dtype="int8"`` on CUDA: one Triton launch (not eager torch), codes and
    scales as the numba engine's on CPU copies of the same tensors. On a GPU the
    element functions' divisions are Triton's (``div.full``, within 2 ulp), so a code
    may move by one near a rounding boundary: almost all codes are equal, and the
    parameters agree to the 8-bit state's precision."""
    shapes = [(7,), (257,), (64, 100), (100003,)]
    options = {"lr": 1e-2, "state_dtype": "int8", "min_8bit_size": 256}
    if name == "SGD":
        options["momentum"] = 0.9
    ours = [torch.nn.Parameter(t) for t in make(shapes)]
    ref = [torch.nn.Parameter(t.detach().cpu().clone()) for t in ours]
    a = getattr(gt, name)(ours, fused=True, **options)
    b = getattr(gt, name)(ref, fused=True, **options)
    for k in range(5):
        for p, g in zip(ours, grads_at(k, ours)):
            p.grad = g
        for q, g in zip(ref, grads_at(k, ours)):
            q.grad = g.cpu()
        a.step()
        b.step()
    assert any(isinstance(v.engine, TritonEngine) for v in a._runtime().fused.values())
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p.cpu(), q, rtol=1e-4, atol=1e-4)
        for key, value in a.state[p].items():
            want = b.state[q][key]
            assert value.dtype == want.dtype, key
            if value.dtype == torch.uint8:
                same = (value.cpu() == want).float().mean().item()
                assert same > 0.999, (key, same)
                assert (value.cpu().int() - want.int()).abs().max() <= 1, key


def test_foreach_true_runs_eager_torch_on_the_device():
    params = [torch.nn.Parameter(t) for t in make([(1000,)])]
    opt = gt.Adam(params, lr=1e-3, foreach=True)
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    assert not opt._runtime().fused
    assert opt.state[params[0]]["exp_avg"].device.type == "cuda"


def _captured(opt, params, grads, warmup=3):
    """A CUDA graph of ``opt.step()`` over static gradient tensors, after warm-up steps
    on a side stream (the pattern torch's documentation gives)."""
    for p, g in zip(params, grads):
        p.grad = g
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    return graph


def test_capturable_step_replays_in_a_cuda_graph_like_torch():
    init = make(SHAPES)
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    g_ours = [torch.zeros_like(p) for p in ours]
    g_ref = [torch.zeros_like(p) for p in ref]
    for g, h in zip(g_ours, g_ref):
        g.fill_(0.1)
        h.fill_(0.1)
    a = gt.AdamW(ours, lr=1e-2, weight_decay=0.1, capturable=True)
    b = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.1, capturable=True, foreach=True)
    graph_a = _captured(a, ours, g_ours)
    graph_b = _captured(b, ref, g_ref)
    for k in range(20):
        for g, h, p in zip(g_ours, g_ref, ours):
            new = torch.sin(3 * p.detach() + k)
            g.copy_(new)
            h.copy_(new)
        graph_a.replay()
        graph_b.replay()
    torch.cuda.synchronize()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    # three warm-up steps and twenty replays: capturing a graph runs none of its work
    assert float(b.state[ref[0]]["step"]) == 23.0
    assert float(a.state[ours[0]]["step"]) == 23.0


def test_step_capture_without_capturable_is_refused():
    params = [torch.nn.Parameter(t) for t in make([(100,)])]
    opt = gt.Adam(params, lr=1e-3)
    with pytest.raises(RuntimeError, match="capturable"):
        _captured(opt, params, [torch.ones_like(params[0])])


def test_grad_scaler_steps_without_capturable_do_not_synchronise():
    """Without capturable, GradScaler's steps on the Triton engine read found_inf on
    the device (as torch's fused Adam): once the first of them has moved the step
    count to the device, no step synchronises with the host (torch's sync debug mode
    raises on any), and a skipped step leaves parameters, moments and step counts as
    they were."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    model = model.cuda()
    opt = gt.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)
    data = torch.randn(16, 64, device="cuda")

    def backward(k):
        opt.zero_grad(set_to_none=False)
        scaler.scale((model(data) ** 2).mean() * (1 + k)).backward()

    backward(0)
    opt.step()  # the first step takes the general path and builds the one-launch step
    for k in range(1, 5):
        backward(k)
        opt.grad_scale = scaler._scale
        found = torch.tensor(float(k == 3), device="cuda")
        opt.found_inf = found
        before = [p.detach().clone() for p in model.parameters()]
        states = [{n: t.clone() for n, t in opt.state[p].items()} for p in model.parameters()]
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if k > 1 else "default")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        del opt.grad_scale, opt.found_inf
        if k == 3:
            for p, b, s in zip(model.parameters(), before, states):
                assert torch.equal(p.detach(), b)
                assert all(torch.equal(opt.state[p][n], t) for n, t in s.items())
    assert [float(opt.state[p]["step"]) for p in model.parameters()] == [4.0] * 4
    assert all(opt.state[p]["step"].is_cuda for p in model.parameters())


@pytest.mark.parametrize("refresh", ["before", "after"])
def test_sophia_runs_on_the_triton_engine_and_its_fold_does_not_synchronise(refresh):
    """Sophia on CUDA: the kernel and the fold of its Hessian estimate (the eager
    update's torch code, queued on the device around the launch) equal the eager
    engine (``foreach=True``) over many steps with estimates on refresh steps; the
    steps with an estimate, after the first, synchronise nothing with the host."""
    start = make(SHAPES)
    ours = [torch.nn.Parameter(x.clone()) for x in start]
    ref = [torch.nn.Parameter(x.clone()) for x in start]
    kwargs = {"update_interval": 3, "gamma": 0.5, "weight_decay": 0.01, "refresh": refresh}
    a = gt.Sophia(ours, 1e-2, **kwargs)
    b = gt.Sophia(ref, 1e-2, foreach=True, **kwargs)
    for k in range(STEPS):
        # gradients and estimates a fixed sequence: rounding does not feed back
        grads = [torch.sin(3 * x + k) for x in start]
        inputs = {} if k % 3 else {"hessian": [1.0 + torch.cos(x + k) ** 2 for x in start]}
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if k > 0 else "default")
        try:
            a.step(**inputs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        b.step(**inputs)
    assert a._runtime().fused and not b._runtime().fused
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.state[p]["nu"], b.state[q]["nu"], rtol=1e-6, atol=0)


def test_channels_last_parameters_run_on_the_triton_engine_like_torch_fused():
    """A channels_last convolution's weights: one Triton launch (no eager step),
    state in the weights' memory format, torch's fused AdamW's numbers."""
    from gradstep.torch import _engines

    torch.manual_seed(0)
    ours = torch.nn.Conv2d(16, 32, 3).cuda().to(memory_format=torch.channels_last)
    ref = torch.nn.Conv2d(16, 32, 3).cuda().to(memory_format=torch.channels_last)
    ref.load_state_dict(ours.state_dict())
    a = gt.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    b = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    eager = []
    run_eager = _engines.EngineRuns._run_eager
    _engines.EngineRuns._run_eager = lambda self, *x, **k: (
        eager.append(1) or run_eager(self, *x, **k)
    )
    try:
        step_both(a, list(ours.parameters()), b, list(ref.parameters()))
    finally:
        _engines.EngineRuns._run_eager = run_eager
    assert not eager
    assert a.state[ours.weight]["exp_avg"].stride() == ours.weight.stride()
