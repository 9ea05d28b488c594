"""The per-tensor reduction stage: its structure, the engines, the array libraries,
and the layer-wise fixtures' stated tolerances."""

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine
from gradstep.rules import PerTensorReduction, scale_by_lars, scale_by_trust_ratio

FIXTURES = Path(__file__).resolve().parents[1] / "conformance" / "fixtures"


def test_prepare_scalars_exclude_the_per_tensor_ones():
    stage = scale_by_lars()
    assert stage.tensor_scalars == ("factor", "decay")
    assert stage.scalar_names() == ()
    assert tuple(stage.scalars(0, {})) == stage.scalar_names()
    lbsgd = gradstep.lbsgd(momentum=0.5, warmup_strategy="lars").stages[0]
    assert lbsgd.scalar_names() == (
        "on",
        "off",
        "inv_batch",
        "s",
        "lo",
        "hi",
        "weight_decay",
        "keep",
    )
    assert tuple(lbsgd.scalars(0, {})) == lbsgd.scalar_names()


def test_element_function_must_end_with_the_tensor_scalars():
    def element(g, factor, other):
        return g * factor * other

    with pytest.raises(TypeError, match="last parameters"):
        PerTensorReduction(
            "bad", element, norms=lambda g: (g,), combine=None, tensor_scalars=("factor",)
        )


def test_tensor_scalars_from_sums():
    stage = scale_by_trust_ratio(0.5)
    got = stage.tensor_scalar_values(
        [(4.0, 9.0), (0.0, 1.0)], [{"trust_ratio": True}, {"trust_ratio": True}], {}
    )
    assert got == [{"factor": 0.5 * 3.0 / 2.0}, {"factor": 1.0}]


def test_replace_keeps_the_reduction():
    stage = gradstep.lbsgd(momentum=0.5, warmup_strategy="lars").stages[0]
    cleared = stage.replace(clear_nan_slots=True)
    assert isinstance(cleared, PerTensorReduction) and cleared.clear_nan_slots
    t = gradstep.transforms.with_clear_nan(gradstep.lbsgd(momentum=0.5, warmup_strategy="lars"))
    w = np.array([1.0, 2.0])
    opt = gradstep.Optimizer(w, t)
    with np.errstate(invalid="ignore"):
        opt.step(np.array([np.nan, 1.0]))
    assert w[0] == 0.0 and np.isfinite(w[1])
    assert not np.any(np.isnan(opt.state["lbsgd"]["velocity"]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradstep.lars(0.1),
        lambda: gradstep.lars(0.1, form="optax"),
        lambda: gradstep.lamb(),
        lambda: gradstep.lbsgd(warmup_strategy="lars"),
    ],
    ids=["lars", "lars-optax", "lamb", "lbsgd-lars"],
)
def test_the_fused_engine_compiles_them_and_the_front_runs_it(make):
    engine = FusedEngine(make())
    assert [st.is_per_tensor for st in engine.stages].count(True) == 1
    assert "def reduce" in engine.source
    assert gradstep.Optimizer([np.zeros(2)], make(), engine="fused").engine == "fused"


def _steps(transform, params, convert):
    state = transform.init(params)
    for k in range(4):
        grads = [convert(np.cos(np.arange(p.shape[0], dtype=np.float64) + k)) for p in params]
        updates, state = transform.update(grads, state, params)
        params = [p + u for p, u in zip(params, updates)]
    return [np.asarray(p) for p in params]


MAKERS = [
    lambda: gradstep.lars(0.1, momentum=0.9, momentum_correction=True, weight_decay=0.01),
    lambda: gradstep.lars(0.1, form="optax", weight_decay_mask=[True, False], weight_decay=0.1),
    lambda: gradstep.lamb(0.05, weight_decay=0.01, lower_bound=0.1),
    lambda: gradstep.lbsgd(0.1, momentum=0.5, batch_scale=2, warmup_strategy="lars"),
]


@pytest.mark.parametrize("make", MAKERS, ids=["lars", "lars-optax", "lamb", "lbsgd-lars"])
def test_torch_tensors_give_numpy_numbers(make):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch  # noqa: F401  (registers torch's array namespace)

    base = [np.linspace(-1.0, 1.0, 5), np.zeros(3)]
    want = _steps(make(), base, lambda a: a)
    got = _steps(make(), [torch.tensor(b) for b in base], torch.tensor)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("make", MAKERS, ids=["lars", "lars-optax", "lamb", "lbsgd-lars"])
def test_jax_arrays_give_numpy_numbers(make):
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    import jax.numpy as jnp

    import gradstep.jax  # noqa: F401  (registers JAX's array namespace)

    with jax.enable_x64(True):
        base = [np.linspace(-1.0, 1.0, 5), np.zeros(3)]
        want = _steps(make(), base, lambda a: a)
        got = _steps(make(), [jnp.asarray(b) for b in base], jnp.asarray)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)


FUSED_MAKERS = [
    lambda: gradstep.lars(0.1, momentum=0.9, weight_decay=0.01),  # no momentum correction
    *MAKERS[1:],
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("make", FUSED_MAKERS, ids=["lars", "lars-optax", "lamb", "lbsgd-lars"])
def test_the_fused_engine_steps_as_the_eager_engine(make, dtype):
    """The trust ratios from the fused engine's per-tensor reduction pass: a tensor
    over several chunks and a zero tensor (zero norms)."""
    results = []
    for engine in ("eager", "fused"):
        rng = np.random.default_rng(3)
        params = [rng.normal(size=150001).astype(dtype), np.zeros(3, dtype)]
        opt = gradstep.Optimizer(params, make(), engine=engine)
        assert opt.engine == engine
        for k in range(5):
            opt.step([np.sin(3 * p + k).astype(dtype) + 0.1 for p in params])
        results.append((params, opt.state_dict()))
    (pe, se), (pf, sf) = results
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in list(zip(pe, pf)) + [(se[k], sf[k]) for k in se]:
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * 1e-2)


def layerwise_cases():
    return json.loads((FIXTURES / "layerwise.json").read_text())


def _follows(case, lr_scale):
    dtype = np.dtype(case["dtype"])
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    opt = gradstep.Optimizer(params, gradstep.REGISTRY[case["rule"]].factory(**case["rule_kwargs"]))
    lrs = case["lrs"] or [case["rule_kwargs"]["learning_rate"]] * len(case["grads"])
    for k, grads in enumerate(case["grads"]):
        opt.step([np.array(g, dtype=dtype) for g in grads], learning_rate=lrs[k] * lr_scale)
        if not all(
            np.allclose(p, w, **case["tolerance"]) for p, w in zip(params, case["trajectory"][k])
        ):
            return False
    return True


@pytest.mark.parametrize(
    "case", [c for c in layerwise_cases() if "tolerance" in c], ids=lambda c: c["id"]
)
def test_a_stated_tolerance_still_catches_a_small_error(case):
    """Every loosened tolerance has a reason, and a learning rate off by 1e-4 relative
    (far less than any wrong option) still fails it."""
    assert case["tolerance_reason"]
    assert _follows(case, 1.0)
    assert not _follows(case, 1.0 + 1e-4)


def test_fixtures_cover_every_warmup_strategy_and_form():
    cases = layerwise_cases()
    strategies = {
        c["rule_kwargs"].get("warmup_strategy", "linear") for c in cases if c["rule"] == "lbsgd"
    }
    assert strategies == {"linear", "power2", "sqrt", "lars"}
    forms = {c["rule_kwargs"]["form"] for c in cases if c["rule"] == "lars"}
    assert forms == {"mxnet", "optax"}  # objax: hand-derived values, test_objax_lars.py
    assert {c["reference"] for c in cases} == {
        "optax.lars",
        "optax.lamb",
        "mxnet.optimizer.LARS",
        "mxnet.optimizer.LAMB",
        "mxnet.optimizer.LBSGD",
    }
    manifest = json.loads((FIXTURES / "MANIFEST-layerwise.json").read_text())
    assert manifest["mxnet_environment"]["mxnet"] == "1.9.1"
    assert manifest["versions"]["optax"] == "0.2.8"


def test_momentum_correction_state_resumes_exactly(tmp_path):
    def make():
        return gradstep.lars(0.5, momentum=0.9, form="mxnet", momentum_correction=True)

    lrs = [0.5, 0.5, 0.2, 0.2, 0.7, 0.7, 0.1]
    w = [np.linspace(0.5, 1.5, 4), np.array([0.3, -0.2])]
    opt = gradstep.Optimizer(w, make())
    for lr in lrs[:3]:
        opt.step([np.sin(p) for p in w], learning_rate=lr)
    opt.save(tmp_path / "ckpt.npz")
    assert opt.state_dict()["state/momentum/last_learning_rate"] == 0.2
    saved = [p.copy() for p in w]
    for lr in lrs[3:]:
        opt.step([np.sin(p) for p in w], learning_rate=lr)
    resumed = gradstep.Optimizer(saved, make())
    resumed.load(tmp_path / "ckpt.npz")
    for lr in lrs[3:]:
        resumed.step([np.sin(p) for p in saved], learning_rate=lr)
    for a, b in zip(w, saved):
        np.testing.assert_array_equal(a, b)


def test_momentum_correction_scales_the_momentum_by_the_rate_ratio():
    # one element, g = 1 every step: v1 = -0.5, then lr 0.25: mu' = 0.9 * 0.5
    w = np.zeros(1)
    t = gradstep.lars(
        0.5,
        momentum=0.9,
        form="mxnet",
        momentum_correction=True,
        trust_ratio_mask=[False],
        weight_decay=0.0,
    )
    opt = gradstep.Optimizer([w], t)
    opt.step([np.ones(1)])
    opt.step([np.ones(1)], learning_rate=0.25)
    np.testing.assert_allclose(w, [-0.5 + (0.45 * -0.5 - 0.25)], rtol=1e-15)
