"""Mechanic on the fused numba engine: a global reduction stage after the inner rule's
stages (its sums in a reduction pass reading the gradient, the parameter and the
reference point only), equal to the eager engine, resumable, and eager where the
inner rule is not fusable."""

import re

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T
from gradstep.engines.fused import FusedEngine
from gradstep.engines.plan import NotFusable
from gradstep.rules.mechanic import mechanize

SIZES = [(0,), (1,), (7,), (70001,), (3, 5)]  # 70001: several chunks of one tensor
STEPS = 20


def _params(dtype):
    rng = np.random.default_rng(1)
    return [rng.normal(size=s).astype(dtype) for s in SIZES]


def _grads(params, k, dtype):
    # a pull towards 0.3 with a wobble: the scale keeps growing for a while
    return [((p - 0.3) + 0.2 * np.sin(3 * p + k)).astype(dtype) for p in params]


def run(transform, dtype, engine, steps=STEPS, opt=None, params=None, first=0):
    if opt is None:
        params = _params(dtype)
        opt = gradstep.Optimizer(params, transform, engine=engine)
    assert opt.engine == engine
    for k in range(first, first + steps):
        opt.step(_grads(params, k, dtype))
    return params, opt


CHAINS = {
    "mechanic": lambda: gradstep.mechanic(s_init=1e-3),
    "mechanic, a scheduled learning rate, no decay": lambda: gradstep.mechanic(
        lambda t: 1.0 / (1.0 + 0.1 * t), s_init=1e-3, weight_decay=0.0, num_betas=3
    ),
    # a stage before the wrapper (a global norm clip, a reduction of its own): the
    # Mechanic pass recomputes it; a stage after it: the main pass runs it on S'(..)
    "clip, mechanize(lion), scale": lambda: gradstep.chain(
        T.clip_by_global_norm(0.5),
        mechanize(gradstep.lion(1.0), s_init=1e-3, weight_decay=0.1),
        T.scale(0.5),
    ),
    # the rule's stages skip the tensors its mask leaves out: there u is the gradient
    "mechanize(masked(adam))": lambda: mechanize(
        gradstep.masked(gradstep.adam(1.0), [True, False, True, False, True]), s_init=1e-3
    ),
}


def _close(got, want, rtol):
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(CHAINS))
def test_numba_engine_equals_eager(name, dtype):
    (pe, oe), (pf, of) = (run(CHAINS[name](), dtype, e) for e in ("eager", "fused"))
    se, sf = oe.state_dict(), of.state_dict()
    assert se.keys() == sf.keys()
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    _close(pf, pe, rtol)
    for key in se:  # float32: a moment crossing zero is off by its neighbours' error
        atol = rtol * float(np.max(np.abs(se[key]), initial=0.0))
        np.testing.assert_allclose(sf[key], se[key], rtol=rtol, atol=atol, err_msg=key)
    # the learned scale moved far from its start: the carried state is exercised
    start = gradstep.Optimizer(_params(dtype), CHAINS[name]()).state_dict()
    assert abs(_scale(se) / _scale(start) - 1.0) > 0.5


def _scale(state: dict) -> float:
    """S, the sum of the s_j in a state dict."""
    return sum(float(v) for k, v in state.items() if re.fullmatch(r"s\d+", k.rsplit("/")[-1]))


def test_one_reduction_pass_reading_no_state_of_the_inner_rule():
    source = FusedEngine(gradstep.mechanic()).source
    assert source.count("def reduce") == 1 and source.count("def step") == 1
    reduce = source[source.index("def reduce") :]
    # rows: 0 gradient, 1 parameter, 2-3 Adam's moments, 4 the reference point
    assert "ptrs[4, j]" in reduce and "ptrs[2, j]" not in reduce and "ptrs[3, j]" not in reduce
    assert "_e0" not in reduce  # Adam is not recomputed for the sums


def test_the_first_update_takes_the_parameters_as_they_are_then():
    """The reference point is the parameters at the first update, not at init."""
    out = {}
    for engine in ("eager", "fused"):
        params = _params(np.float64)
        opt = gradstep.Optimizer(params, gradstep.mechanic(s_init=1e-3), engine=engine)
        for p in params:
            p += 0.25  # moved after init (the copy init made is stale)
        out[engine] = run(None, np.float64, engine, opt=opt, params=params, steps=5)[0]
    _close(out["fused"], out["eager"], 1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_resume_through_a_saved_state_is_exact(dtype, tmp_path):
    whole, _ = run(gradstep.mechanic(s_init=1e-3), dtype, "fused", steps=16)
    params, opt = run(gradstep.mechanic(s_init=1e-3), dtype, "fused", steps=8)
    opt.save(tmp_path / "mechanic.npz")
    resumed = gradstep.Optimizer(params, gradstep.mechanic(s_init=1e-3), engine="fused")
    resumed.load(tmp_path / "mechanic.npz")
    run(None, dtype, "fused", opt=resumed, params=params, steps=8, first=8)
    for a, b in zip(params, whole):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "transform",
    [
        lambda: mechanize(gradstep.adafactor(1.0)),  # factored moments: not elementwise
        lambda: gradstep.masked(gradstep.mechanic(), [True] * len(SIZES)),
        lambda: mechanize(mechanize(gradstep.sgd(1.0))),
    ],
    ids=["adafactor inside", "masked", "nested"],
)
def test_what_the_fused_engine_cannot_run_stays_eager(transform):
    with pytest.raises(NotFusable):
        FusedEngine(transform())
    params = _params(np.float64)
    opt = gradstep.Optimizer(params, transform())
    opt.step(_grads(params, 0, np.float64))
    assert opt.engine == "eager"


def test_torch_front_runs_it_on_the_cpu_fused_engine(watch):
    torch = pytest.importorskip("torch", reason="the torch front needs torch")
    import gradstep.torch as gt
    from gradstep.engines import fused

    calls = watch(fused.FusedEngine, "step_leaves", completed=False)

    def trajectory(engine):
        gen = torch.Generator().manual_seed(3)
        params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (0, 1, 7, 70001)]
        opt = gt.TransformOptimizer(params, gradstep.mechanic(s_init=1e-3), engine=engine)
        for k in range(STEPS):
            for p in params:
                p.grad = (p.detach() - 0.3) + 0.2 * torch.sin(3 * p.detach() + k)
            opt.step()
        return [p.detach() for p in params], opt.state[params[1]]["s1"]

    (want, s_want), (got, s_got) = trajectory("eager"), trajectory("fused")
    assert len(calls) == STEPS
    assert float(s_want) > 1e-3
    assert float(s_got) == pytest.approx(float(s_want), rel=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)


def test_the_optimizer_table_says_how_it_runs():
    from gradstep.cli.listing import engine

    assert engine(gradstep.REGISTRY["mechanic"]) == "fused/reduction"
    assert engine(gradstep.REGISTRY["adafactor"]) == "eager/reduction"
