"""Parameter EMA (objax's form) and evaluating with the averaged weights.

objax cannot be installed today, so its ``ExponentialMovingAverage`` is checked
against values DERIVED BY HAND from its documented formulas (objax documentation,
"Optimizers"; semantics reference, sec. 4):

    m_0 = 0,   m_t = m_{t-1} + (1 - mu) (w_t - m_{t-1}),
    debiased:  m_t / (1 - (1 - eps) mu^t),   eps = 1e-6 by default.

The numbers below were worked out with exact fractions, then rounded to float64.
``start="first"`` is checked against torch's ``AveragedModel`` in
``test_references.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import modes, transforms


def _run(ema_kwargs, grads, engine="eager", w0=0.0):
    # SGD with learning rate 1 moves w by -g: w takes the values we choose
    w = np.array([w0])
    opt = gradstep.Optimizer(
        w, transforms.parameter_ema(gradstep.sgd(1.0), **ema_kwargs), engine=engine
    )
    seen = []
    for g in grads:
        opt.step(np.array([g]))
        seen.append(modes.evaluation_params(opt.transform, opt.state, opt.params)[0])
    return opt, w, seen


@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_objax_hand_derived_values(engine):
    # HAND-DERIVED (objax formulas): mu = 1/2, weights after each step 1, 2, 4:
    #   m_1 = 0 + (1/2)(1 - 0) = 1/2
    #   m_2 = 1/2 + (1/2)(2 - 1/2) = 5/4
    #   m_3 = 5/4 + (1/2)(4 - 5/4) = 21/8
    _, w, seen = _run({"momentum": 0.5}, [-1.0, -1.0, -2.0], engine)
    assert w[0] == 4.0
    np.testing.assert_array_equal(seen, [0.5, 1.25, 2.625])
    # HAND-DERIVED debiased values m_t / (1 - (1 - 1e-6) (1/2)^t), exact fractions:
    #   t=1: (1/2) / (1/2 + 1/2 * 1e-6)          = 0.999999000001
    #   t=2: (5/4) / (1 - (1 - 1e-6)/4)          = 1.6666661111112964
    #   t=3: (21/8) / (1 - (1 - 1e-6)/8)         = 2.9999995714286327
    _, _, seen = _run({"momentum": 0.5, "debias": True}, [-1.0, -1.0, -2.0], engine)
    np.testing.assert_allclose(
        seen, [0.999999000001, 1.6666661111112964, 2.9999995714286327], rtol=1e-15
    )


def test_objax_defaults_are_zero_started_and_biased():
    # HAND-DERIVED: objax defaults (momentum 0.999, debias False): after one step to
    # w_1 = 3 the average is (1 - 0.999) * 3 = 0.003, not 3 (zero initialisation);
    # debiased it is 0.003 / (1 - (1 - 1e-6) 0.999) = 2.997005991014976.
    spec = transforms.parameter_ema
    assert (spec.__wrapped__.__defaults__[:3]) == (0.999, False, 1e-6)
    _, _, seen = _run({}, [-3.0])
    np.testing.assert_allclose(seen, [0.003], rtol=1e-12)
    _, _, seen = _run({"debias": True}, [-3.0])
    np.testing.assert_allclose(seen, [2.997005991014976], rtol=1e-12)


def test_debiased_average_before_any_step_is_zero():
    w = np.array([5.0])
    opt = gradstep.Optimizer(w, transforms.parameter_ema(gradstep.sgd(1.0), debias=True))
    np.testing.assert_array_equal(
        modes.evaluation_params(opt.transform, opt.state, opt.params), [0.0]
    )


def test_start_first_copies_the_first_parameters():
    _, _, seen = _run({"momentum": 0.5, "start": "first"}, [-1.0, -1.0, -2.0])
    # m_1 = w_1 = 1, then m_2 = 1 + (1/2)(2 - 1) = 1.5, m_3 = 1.5 + (1/2)(4 - 1.5) = 2.75
    np.testing.assert_array_equal(seen, [1.0, 1.5, 2.75])


def test_debias_needs_a_zero_start():
    with pytest.raises(ValueError, match="debias=True with start='first'"):
        transforms.parameter_ema(gradstep.sgd(1.0), debias=True, start="first")


@pytest.mark.parametrize(
    "kwargs, name",
    [({"momentum": 1.5}, "momentum"), ({"epsilon": -1.0}, "epsilon"), ({"start": "x"}, "start")],
)
def test_invalid_arguments_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=f"invalid {name}="):
        transforms.parameter_ema(gradstep.sgd(1.0), **kwargs)
    with pytest.raises(TypeError):
        transforms.parameter_ema(0.1)


def test_evaluating_swaps_in_the_average_and_restores_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2).astype(np.float64)}
    opt = gradstep.Optimizer(params, transforms.parameter_ema(gradstep.adam(0.1), debias=True))
    for _ in range(4):
        opt.step({k: rng.normal(size=v.shape) for k, v in params.items()})
    before = {k: v.copy() for k, v in params.items()}
    average = modes.evaluation_params(opt.transform, opt.state, opt.params)
    with modes.evaluating(opt) as same:
        assert same is opt
        for k in params:
            np.testing.assert_array_equal(params[k], average[k])
        with pytest.raises(ValueError, match="evaluating"):
            opt.step({k: np.ones_like(v) for k, v in params.items()})
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert "train_mode" not in opt.hyperparams


def test_ema_is_fused_with_the_optimizer_and_matches_eager():
    t = transforms.parameter_ema(gradstep.adam(0.05), momentum=0.9, debias=True)
    runs = []
    for engine in ("eager", "fused"):
        opt, _, seen = _run({"momentum": 0.9}, [0.3, -1.0, 2.0, 0.5], engine)
        runs.append(seen)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-15)
    assert gradstep.Optimizer([np.zeros(3)], t).engine == "fused"


def test_float32_stays_float32_and_inner_is_exposed():
    inner = gradstep.adam(0.1)
    t = transforms.parameter_ema(inner, debias=True)
    assert t.inner is inner and t.children()[0] is inner
    params = [np.ones(4, np.float32)]
    state = t.init(params)
    updates, state = t.update([np.ones(4, np.float32)], state, params)
    assert updates[0].dtype == np.float32
    assert state["ema"]["average"][0].dtype == np.float32
    avg = modes.evaluation_params(t, state, params)
    assert avg[0].dtype == np.float32
