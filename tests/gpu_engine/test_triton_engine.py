"""The Triton engine computes what the eager engine computes, under Triton's interpreter.

Every registered elementwise rule and composed chains run through the generated
Triton kernels (``engine="triton"`` on CPU tensors, ``TRITON_INTERPRET=1``) and
through the eager torch engine, over several steps, on odd sizes and long tensor
lists, in float32, float64, bfloat16 and float16; they must agree within the
storage dtype's tolerance.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T
from gradstep.engines.plan import NotFusable, Unsupported
from gradstep.engines.triton import TritonEngine

_spec = importlib.util.spec_from_file_location(
    "torch_cases", Path(__file__).with_name("torch_cases.py")
)
_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cases)
TORCH_CASES = _cases.TORCH_CASES

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)

SIZES = (0, 1, 7, 33, 2100)
LARGE = (100003,)
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def elementwise_rules():
    for spec in gradstep.REGISTRY:
        if "elementwise" in spec.capabilities:
            yield pytest.param(spec.name, spec.test_hyperparams, id=spec.name)


def run(transform, engine, dtype=torch.float32, sizes=SIZES, steps=3, nonfinite=False, loss=False):
    """``steps`` steps; ``loss``: a rule that takes the loss gets one from a closure."""
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen).to(dtype)) for n in sizes]
    opt = gt.TransformOptimizer(params, transform, engine=engine)
    for k in range(steps):
        for i, p in enumerate(params):
            g = (torch.sin(3 * p.detach().double() + k) + 0.1 * k).to(dtype)
            if nonfinite and k in (1, 2) and i == 2:
                g[0] = float("nan")
                g[3] = float("inf")
            p.grad = g
        opt.step((lambda k=k: torch.tensor(2.0 + k)) if loss else None)
    return [p.detach() for p in params], opt


def assert_close(got, want, dtype):
    tol = TOLERANCE[dtype]
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("rule, kwargs", list(elementwise_rules()))
def test_every_elementwise_rule_equals_eager(rule, kwargs):
    factory = gradstep.REGISTRY[rule].factory
    got, _ = run(factory(**kwargs), "triton")
    want, _ = run(factory(**kwargs), "eager")
    assert_close(got, want, torch.float32)


def triton_rules_beyond_elementwise():
    for spec in gradstep.REGISTRY:
        if "elementwise" in spec.capabilities:
            continue
        try:
            TritonEngine(spec.factory(**spec.test_hyperparams))
        except NotFusable:
            continue
        yield pytest.param(spec.name, spec.test_hyperparams, id=spec.name)


def test_the_per_tensor_reductions_run_on_the_triton_engine():
    names = [p.values[0] for p in triton_rules_beyond_elementwise()]
    assert {"lamb", "lars"} <= set(names), names


@pytest.mark.parametrize("rule, kwargs", list(triton_rules_beyond_elementwise()))
def test_layerwise_rules_equal_eager(rule, kwargs):
    """LAMB's and LARS's trust ratios: per-tensor sums of squares by a device pass,
    the rule's own combine on torch operations, then the main pass."""
    spec = gradstep.REGISTRY[rule]
    loss = "needs_value" in spec.capabilities
    got, _ = run(spec.factory(**kwargs), "triton", loss=loss)
    want, _ = run(spec.factory(**kwargs), "eager", loss=loss)
    assert_close(got, want, torch.float32)


CHAINS = {
    "clip+decay+adam+ema": lambda: T.parameter_ema(
        gradstep.chain(
            T.clip_by_global_norm(0.5), T.add_decayed_weights(0.01), gradstep.adam(1e-2)
        ),
        momentum=0.9,
    ),
    "clip_by_norm+adamw": lambda: gradstep.chain(T.clip_by_norm(0.3), gradstep.adamw(1e-2)),
    "clear_nan+momentum": lambda: T.nonfinite_policy(gradstep.momentum(0.01, 0.9), "clear_nan"),
    "zero+adam": lambda: T.nonfinite_policy(gradstep.adam(0.01), "zero"),
    "lion": lambda: gradstep.lion(1e-3),
    "masked decay": lambda: gradstep.chain(
        T.masked(T.add_decayed_weights(0.1), lambda ps: [i % 2 == 0 for i in range(len(ps))]),
        gradstep.adam(1e-2),
    ),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_composed_chains_equal_eager(name):
    got, _ = run(CHAINS[name](), "triton", nonfinite="nan" in name or "zero" in name)
    want, _ = run(CHAINS[name](), "eager", nonfinite="nan" in name or "zero" in name)
    assert_close(got, want, torch.float32)


def test_schedule_free_adamw_equals_eager():
    got, _ = run(gradstep.schedule_free_adamw(1e-2), "triton")
    want, _ = run(gradstep.schedule_free_adamw(1e-2), "eager")
    assert_close(got, want, torch.float32)


def run_rounded(transform, dtype, sizes=SIZES, steps=3):
    """The eager engine in float32 with parameters and state rounded to ``dtype``
    after every step: what a kernel that loads ``dtype``, computes in float32 and
    stores ``dtype`` computes."""
    gen = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(n, generator=gen).to(dtype).float()) for n in sizes]
    opt = gt.TransformOptimizer(params, transform, engine="eager")
    for k in range(steps):
        for p in params:
            p.grad = (torch.sin(3 * p.detach().double() + k) + 0.1 * k).to(dtype).float()
        opt.step()
        with torch.no_grad():
            for p in params:
                p.copy_(p.to(dtype).float())
                for key, v in opt.state[p].items():
                    if key != "step":
                        v.copy_(v.to(dtype).float())
    return [p.detach().to(dtype) for p in params]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_other_dtypes_keep_their_dtype_and_compute_in_float32(dtype):
    got, opt = run(gradstep.adamw(1e-2), "triton", dtype=dtype)
    if dtype == torch.float64:
        want, _ = run(gradstep.adamw(1e-2), "eager", dtype=dtype)
    else:
        want = run_rounded(gradstep.adamw(1e-2), dtype)
    assert_close(got, want, dtype)
    for state in opt.state.values():
        assert all(v.dtype == dtype for k, v in state.items() if k != "step")


def test_a_large_tensor_in_full_and_tail_chunks():
    got, _ = run(gradstep.adam(1e-2), "triton", sizes=LARGE, steps=2)
    want, _ = run(gradstep.adam(1e-2), "eager", sizes=LARGE, steps=2)
    assert_close(got, want, torch.float32)


def test_hundreds_of_tensors_in_one_launch():
    sizes = [(i * 7) % 61 for i in range(300)]
    got, _ = run(gradstep.adam(1e-2), "triton", sizes=sizes, steps=2)
    want, _ = run(gradstep.adam(1e-2), "eager", sizes=sizes, steps=2)
    assert_close(got, want, torch.float32)


def test_torch_classes_on_the_triton_engine_match_torch_optim():
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(n, generator=gen) for n in (5, 1000)]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    a = gt.AdamW(ours, lr=1e-2, weight_decay=0.1)
    b = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.1, foreach=False)
    for group in a.param_groups:
        group["engine"] = "triton"
    for k in range(3):
        for p, q in zip(ours, ref):
            p.grad = torch.cos(p.detach() * (k + 1))
            q.grad = torch.cos(q.detach() * (k + 1))
        a.step()
        b.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q, rtol=2e-6, atol=2e-7)
    assert float(a.state[ours[0]]["step"]) == 3.0


@pytest.mark.parametrize("name", ["Adam", "Rprop"])
def test_complex_parameters_on_the_triton_engine_match_torch_optim(name):
    """A complex parameter is stepped as its real view, beside a real one."""
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(3, 4, dtype=torch.complex64, generator=gen), torch.randn(7, generator=gen)]
    grads = [[torch.randn_like(t) for t in init] for _ in range(3)]
    results = []
    for lib, extra in ((torch.optim, {"foreach": False}), (gt, {})):
        params = [torch.nn.Parameter(t.clone()) for t in init]
        opt = getattr(lib, name)(params, lr=0.05, **extra)
        for group in opt.param_groups:
            if lib is gt:
                group["engine"] = "triton"
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
        results.append(params)
    for p, q in zip(*results):
        torch.testing.assert_close(q, p, rtol=2e-6, atol=2e-7)
    assert results[1][0].dtype == torch.complex64


def test_replaced_state_tensor_rebuilds_the_tables():
    params = [torch.nn.Parameter(torch.ones(100))]
    opt = gt.TransformOptimizer(params, gradstep.adam(0.1), engine="triton")
    params[0].grad = torch.ones(100)
    opt.step()
    engine_before = next(iter(opt._runtime().fused.values())).engine
    tables_before = engine_before._tables
    state = opt.state[params[0]]
    state["exp_avg" if "exp_avg" in state else "mu"] = torch.zeros(100)
    opt.step()
    bucket = next(iter(opt._runtime().fused.values()))
    assert bucket.engine._tables is not tables_before or bucket.engine is not engine_before


def test_engine_refuses_mismatched_gradients_and_changes_nothing():
    engine = TritonEngine(gradstep.adam(0.1))
    w = [torch.ones(10)]
    state = {"scale_by_adam": {"count": 0, "mu": [torch.zeros(10)], "nu": [torch.zeros(10)]},
             "learning_rate": {}}  # fmt: skip
    with pytest.raises(ValueError, match="shape"):
        engine.step_leaves(w, [torch.ones(11)], w, state, {})
    with pytest.raises(Unsupported):
        engine.step_leaves(w, [torch.ones(10, dtype=torch.float64)], w, state, {})
    with pytest.raises(Unsupported):
        engine.step_leaves(w, [torch.ones(20)[::2]], w, state, {})
    assert torch.equal(w[0], torch.ones(10))
    assert state["scale_by_adam"]["count"] == 0
    assert torch.equal(state["scale_by_adam"]["mu"][0], torch.zeros(10))


def test_non_elementwise_transforms_are_not_fusable():
    with pytest.raises(NotFusable):
        TritonEngine(gradstep.lbfgs())


EVENTS = {
    "parameter tensor replaced": lambda opt, ps: setattr(ps[1], "data", torch.full((50,), -3.0)),
    "slot replaced": lambda opt, ps: opt.state[ps[0]].__setitem__(
        "exp_avg", torch.full((50,), 0.25)
    ),
    "state started afresh": lambda opt, ps: opt.state.__setitem__(ps[1], {}),
    "gradient missing": lambda opt, ps: setattr(ps[2], "grad", None),
}


@pytest.mark.parametrize("event", list(EVENTS))
def test_fast_path_notices_what_moved_between_steps(event, monkeypatch):
    """After the first step a group repeats its launch without the per-parameter
    bookkeeping; whatever moved in between sends it back to the general path, and the
    numbers stay the eager engine's."""
    from gradstep.torch import _cuda

    took = []
    original = _cuda.FastStep.step

    def recorded(self, opt, ctx, amp=None):
        result = original(self, opt, ctx, amp)
        took.append(result)
        return result

    monkeypatch.setattr(_cuda.FastStep, "step", recorded)

    def scenario(engine):
        params = [torch.nn.Parameter(torch.full((50,), float(i + 1))) for i in range(3)]
        opt = gt.Adam(params, lr=0.1)
        for group in opt.param_groups:
            group["engine"] = engine
        for k in range(5):
            for i, p in enumerate(params):
                p.grad = torch.full_like(p, 0.5 * (k + 1) - i)
            if k == 2:
                EVENTS[event](opt, params)
            opt.step()
        return [p.detach().clone() for p in params]

    got = scenario("triton")
    assert took[:2] == [True, False], took  # step 2 launched directly, step 3 could not
    want = scenario("eager")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_torch_classes_on_triton_match_torch_optim_over_many_steps(case):
    """The same comparison tests/cuda makes on a GPU, here under the interpreter: the
    first step takes the general path, the later ones the fast path."""
    name = case.split("-")[0]
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen) for s in [(0,), (1,), (7,), (2100,), (8, 5)]]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    a = getattr(gt, name)(ours, **TORCH_CASES[case])
    for group in a.param_groups:
        group["engine"] = "triton"
    b = getattr(torch.optim, name)(ref, **TORCH_CASES[case], foreach=False)
    for k in range(6):
        for p in ours:
            p.grad = torch.sin(3 * p.detach() + k) * (1 + k % 3)
        for q in ref:
            q.grad = torch.sin(3 * q.detach() + k) * (1 + k % 3)
        a.step()
        b.step()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_capturable_computes_every_scalar_on_the_device():
    """capturable=True keeps the step count as a tensor beside the parameters and
    computes the bias corrections from it with torch operations (no host value):
    the numbers equal the host path's, and torch.optim's capturable Adam's."""

    def steps(capturable, engine="triton"):
        gen = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (1, 7, 300)]
        opt = gt.AdamW(params, lr=1e-2, weight_decay=0.1, capturable=capturable)
        for group in opt.param_groups:
            group["engine"] = engine
        for k in range(6):
            for p in params:
                p.grad = torch.cos(p.detach() * (k + 1))
            opt.step()
        return [p.detach() for p in params], opt

    on_device, opt = steps(True)
    on_host, _ = steps(False)
    for a, b in zip(on_device, on_host):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    fast = next(iter(opt._runtime().fast.values()))
    assert fast.on_device
    assert float(opt.state[next(iter(opt.state))]["step"]) == 6.0


def test_capturable_on_cpu_parameters_is_refused_at_step_as_torch_does():
    p = torch.nn.Parameter(torch.ones(3))
    opt = gt.Adam([p], capturable=True)
    p.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="capturable"):
        opt.step()


def test_chains_that_need_host_values_say_so_for_capturable():
    engine = TritonEngine(gradstep.adam(1e-3))
    assert engine.device_scalars_problem() is None
    lasagne_adam = gradstep.adam(1e-3, epsilon_placement="outside_uncorrected")
    problem = TritonEngine(lasagne_adam).device_scalars_problem()
    assert problem is not None and "scale_by_adam" in problem


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_momentum_scalars_follow_a_device_count(dampening):
    """SGD momentum's first-step gain (no dampening on the first step, as torch) is
    written without a branch on the count, so a captured step computes it on the
    device; its values equal the host's at every count."""
    from gradstep.rules.sgd import _trace_prepare

    momentum = gradstep.momentum(1e-2, 0.9, dampening=dampening)
    assert TritonEngine(momentum).device_scalars_problem() is None
    for count in (0, 1, 7):
        host = _trace_prepare({"momentum": 0.9}, count, nesterov=False, dampening=dampening)
        device = _trace_prepare(
            {"momentum": 0.9}, torch.tensor(float(count)), nesterov=False, dampening=dampening
        )
        assert host["gain"] == (1.0 if count == 0 else 1.0 - dampening)
        assert float(device["gain"]) == pytest.approx(host["gain"], rel=1e-7)


def test_without_triton_a_required_engine_fails_and_auto_gives_one_notice(monkeypatch):
    from gradstep.torch import _cuda

    monkeypatch.setattr(_cuda, "_triton_state", {"ok": False, "why": "No module named 'triton'"})
    p = torch.nn.Parameter(torch.ones(4))
    opt = gt.Adam([p], lr=0.1)
    for group in opt.param_groups:
        group["engine"] = "triton"
    p.grad = torch.ones(4)
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(4))
    with pytest.warns(RuntimeWarning, match="pip install triton"):
        _cuda.notice_no_triton()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _cuda.notice_no_triton()  # once per process


def test_a_step_count_edited_by_hand_is_followed():
    """Bias corrections come from the step counts in ``optimizer.state``: one edited
    between steps sends the group back to the general path, which honours it."""

    def scenario(engine):
        params = [torch.nn.Parameter(torch.ones(20)), torch.nn.Parameter(torch.ones(5))]
        opt = gt.Adam(params, lr=0.1)
        for group in opt.param_groups:
            group["engine"] = engine
        for k in range(4):
            for p in params:
                p.grad = torch.full_like(p, 0.3 * (k + 1))
            if k == 2:
                opt.state[params[1]]["step"].fill_(10.0)
            opt.step()
        return [p.detach().clone() for p in params]

    for a, b in zip(scenario("triton"), scenario("eager")):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=2e-6)
