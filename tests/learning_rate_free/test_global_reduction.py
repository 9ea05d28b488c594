"""The global reduction stage (sums over every tensor, scalar state carried between
steps): its structure, the numba engine against the eager one, the torch front's
engines, and what Prodigy does before its first nonzero gradient."""

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T
from gradstep._core.global_reduction import GlobalReduction
from gradstep.engines.fused import FusedEngine
from gradstep.rules import scale_by_prodigy

SIZES = [(0,), (1,), (7,), (70001,), (3, 5)]  # 70001: several chunks of one tensor


def _combine(sums, h, scalars):
    return {"total": h["total"] + sums[0]}, {"mean": sums[0] * 0.5, "energy": sums[1]}


def _sum_and_abs_slotless(g, scale):
    return g, g * g


def _toy_element(g, scale, mean, energy):
    return g * scale - mean + 0.0 * energy


def test_scalars_split_into_prepared_and_reduced():
    stage = GlobalReduction(
        "toy",
        _toy_element,
        terms=_sum_and_abs_slotless,
        combine=_combine,
        reduced_scalars=("mean", "energy"),
        carried={"total": 0.0},
        hyperparams={"scale": 2.0},
    )
    assert stage.scalar_names() == ("scale",)
    assert stage.n_terms() == 2
    state = stage.init([np.zeros(3)])
    assert float(state["total"]) == 0.0
    g = [np.array([1.0, 2.0, 3.0]), np.array([4.0])]
    state = stage.init([np.zeros(3), np.zeros(1)])
    u, state = stage.update(g, state)
    assert float(state["total"]) == 10.0
    np.testing.assert_allclose(u[0], 2.0 * g[0] - 5.0)
    u, state = stage.update(g, state)
    assert float(state["total"]) == 20.0


def test_element_function_must_end_with_the_reduced_scalars():
    with pytest.raises(TypeError, match="last parameters"):
        GlobalReduction(
            "bad",
            _toy_element,
            terms=_sum_and_abs_slotless,
            combine=_combine,
            reduced_scalars=("energy", "mean"),
            carried={"total": 0.0},
            hyperparams={"scale": 2.0},
        )


def run(transform, dtype, engine, steps=12, zero_steps=0):
    rng = np.random.default_rng(1)
    params = [rng.normal(size=s).astype(dtype) for s in SIZES]
    opt = gradstep.Optimizer(params, transform, engine=engine)
    assert opt.engine == engine
    for k in range(steps):
        grads = [(np.sin(3 * p + k) + 0.1 * k).astype(dtype) for p in params]
        if k < zero_steps:
            grads = [np.zeros_like(g) for g in grads]
        opt.step(grads)
    return params, opt.state_dict()


CHAINS = {
    "prodigy": lambda: gradstep.prodigy(d0=1e-3),
    # stages before the reduction are recomputed by its pass: a global norm clip (a
    # reduction of its own) and a coupled decay
    "clip+prodigy coupled, no momentum": lambda: gradstep.chain(
        T.clip_by_global_norm(0.5),
        gradstep.prodigy(beta1=0.0, weight_decay=0.1, decouple=False, d0=1e-3),
    ),
    "prodigy decoupled, bias correction, growth": lambda: gradstep.prodigy(
        weight_decay=0.05, use_bias_correction=True, growth_rate=1.2, d0=1e-3
    ),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(CHAINS))
def test_numba_engine_equals_eager(name, dtype):
    (pe, se), (pf, sf) = (run(CHAINS[name](), dtype, e) for e in ("eager", "fused"))
    assert se.keys() == sf.keys()
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    for a, b in zip(pe, pf):
        assert b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol)
    for key in se:
        np.testing.assert_allclose(sf[key], se[key], rtol=rtol, atol=rtol, err_msg=key)
    d = [v for k, v in se.items() if k.endswith("/d")]
    assert d and float(d[0]) > 1e-3  # the estimate grew: the carried state is exercised


def test_one_reduction_pass_then_one_main_pass():
    engine = FusedEngine(gradstep.prodigy())
    source = engine.source
    assert source.count("def reduce") == 1 and source.count("def step") == 1
    assert "q0, q1 = _n0(" in source  # its terms, exact, summed per block in vector lanes


@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_prodigy_changes_nothing_before_its_first_nonzero_gradient(engine):
    """prodigyopt returns early while sum |s| = 0: no decay, no growth of d, k kept."""
    transform = gradstep.prodigy(weight_decay=0.1, use_bias_correction=True)
    rng = np.random.default_rng(0)
    params = [rng.normal(size=s) for s in ((3,), (2, 2))]
    start = [p.copy() for p in params]
    opt = gradstep.Optimizer(params, transform, engine=engine)
    for _ in range(3):
        opt.step([np.zeros_like(p) for p in params])
    for p, q in zip(params, start):
        np.testing.assert_array_equal(p, q)
    state = opt.state["prodigy"]
    assert float(state["d"]) == 1e-6 and float(state["k"]) == 0.0
    opt.step([np.ones_like(p) for p in params])
    assert float(opt.state["prodigy"]["k"]) == 1.0


def test_prodigy_stage_validates_its_arguments():
    with pytest.raises(ValueError, match="growth_rate"):
        scale_by_prodigy(growth_rate=0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        gradstep.prodigy(0.0)


def test_torch_front_engines_keep_the_carried_state():
    """The fused engines update the carried state inside their own state tree; the
    torch front must store it back in every parameter's state, as the eager path does."""
    torch = pytest.importorskip("torch", reason="the torch front needs torch")
    import gradstep.torch as gt

    def trajectory(engine):
        gen = torch.Generator().manual_seed(3)
        params = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in (1, 7, 33)]
        opt = gt.TransformOptimizer(params, gradstep.prodigy(d0=1e-3), engine=engine)
        for k in range(10):
            for p in params:
                p.grad = torch.sin(3 * p.detach() + k) + 0.1 * k
            opt.step()
        return [p.detach() for p in params], opt.state[params[0]]["d"]

    (want, d_want), (got, d_got) = trajectory("eager"), trajectory("fused")
    assert d_want > 1e-3
    assert d_got == pytest.approx(d_want, rel=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _scaled(g, total):
    return g / (1.0 + total)


def _square(g):
    return g * g


def _total(sums, h, scalars):
    return {}, (sums[0],)


def test_terms_that_are_not_a_tuple_are_refused_by_the_fused_engine():
    """The kernels unpack a stage's terms as a tuple: a single array is refused with
    the reason instead of being compiled into wrong sums."""
    from gradstep._core.global_reduction import GlobalReduction
    from gradstep.engines.fused import FusedEngine

    stage = GlobalReduction(
        "single_term",
        _scaled,
        terms=_square,
        combine=_total,
        reduced_scalars=("total",),
        carried={},
    )
    with pytest.raises(TypeError, match="terms must return a tuple"):
        FusedEngine(stage)
