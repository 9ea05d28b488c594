"""The fused engine computes exactly what the eager engine computes.

For every registered elementwise rule, at every option setting the conformance
fixtures use, and for composed chains, both engines run the same steps on lists of
tensors of odd sizes; float64 must agree to 1e-12 relative, float32 to a few units
in the last place.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T
from gradstep.engines.fused import FusedEngine
from gradstep.engines.plan import NotFusable, Unsupported

FIXTURES = Path(__file__).resolve().parents[1] / "conformance" / "fixtures"
SIZES = [(0,), (1,), (7,), (100003,), (3, 5)]
STEPS = 12


def option_settings():
    seen = set()
    for spec in gradstep.REGISTRY:
        if "elementwise" in spec.capabilities:
            key = (spec.name, json.dumps(spec.test_hyperparams, sort_keys=True))
            seen.add(key)
    for name in ("torch.json", "optax.json"):
        for case in json.loads((FIXTURES / name).read_text()):
            seen.add((case["rule"], json.dumps(case["rule_kwargs"], sort_keys=True)))
    for rule, kwargs in sorted(seen):
        yield pytest.param(rule, json.loads(kwargs), id=f"{rule}-{kwargs}")


def mask_for(kwargs):
    # fixture masks name two tensors; here every other tensor is decayed
    if "mask" in kwargs:
        kwargs = {**kwargs, "mask": [i % 2 == 0 for i in range(len(SIZES))]}
    return kwargs


def run(transform, dtype, engine, steps=STEPS, nonfinite=False, sizes=SIZES):
    rng = np.random.default_rng(1)
    params = [rng.normal(size=s).astype(dtype) for s in sizes]
    opt = gradstep.Optimizer(params, transform, engine=engine)
    assert opt.engine == engine
    for k in range(steps):
        with np.errstate(all="ignore"):
            grads = [(np.sin(3 * p + k) + 0.1 * k).astype(dtype) for p in params]
            if nonfinite and k in (2, 5):
                grads[2][0] = np.nan
                grads[2][3] = np.inf if k == 5 else -np.inf
            opt.step(grads)
    assert opt.engine == engine  # no step fell back to eager
    return params, opt.state_dict()


def assert_same(eager, fused, dtype, ulps=4):
    (pe, se), (pf, sf) = eager, fused
    pairs = list(zip(pe, pf)) + [(se[k], sf[k]) for k in se]
    assert se.keys() == sf.keys()
    for a, b in pairs:
        assert a.dtype == b.dtype and a.shape == b.shape
        finite = np.isfinite(a)
        np.testing.assert_array_equal(np.isfinite(b), finite)
        np.testing.assert_array_equal(a[~finite], b[~finite])
        a, b = a[finite], b[finite]
        # relative to each element, and to the tensor's scale for elements that
        # cancelled to near zero (a norm summed in another order moves them by 1 ulp
        # of the scale)
        scale = float(np.max(np.abs(a), initial=0.0))
        if dtype == np.float64:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * scale)
        else:
            eps = np.finfo(np.float32).eps
            bound = ulps * (np.spacing(np.abs(a)) + eps * scale)
            assert np.all(np.abs(a.astype(np.float64) - b) <= bound)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("rule, kwargs", list(option_settings()))
def test_every_rule_setting(rule, kwargs, dtype):
    kwargs = mask_for(kwargs)
    make = lambda: gradstep.REGISTRY[rule].factory(**kwargs)  # noqa: E731
    assert_same(run(make(), dtype, "eager"), run(make(), dtype, "fused"), dtype)


#: capabilities whose rules a plain ``step(grads)`` cannot run or compare
NOT_STEPPED = {"needs_closure", "needs_value", "stochastic"}


def reduction_rules():
    """The registered rules beyond plain elementwise math (per-tensor, global and
    norm reductions) that the fused engine compiles, at their test settings."""
    for spec in gradstep.REGISTRY:
        if "elementwise" in spec.capabilities or NOT_STEPPED & set(spec.capabilities):
            continue
        try:
            FusedEngine(spec.factory(**spec.test_hyperparams))
        except NotFusable:
            continue
        yield pytest.param(spec.name, spec.test_hyperparams, id=spec.name)


#: (rule, dtype name) -> why the fused engine's state differs beyond the tolerance: a
#: strict xfail, so a fix makes it fail until its entry is removed
REDUCTION_DIVERGENCES = {
    ("dadapt_adam", "float64"): "its carried numerator is a running sum of inner "
    "products that cancels; the kernels sum per chunk, the eager engine in NumPy's "
    "pairwise order: 3e-10 relative apart after 12 steps (the parameters agree)",
}


def test_the_per_tensor_reductions_run_fused():
    names = {p.values[0] for p in reduction_rules()}
    assert {"lamb", "lars", "novograd", "mars", "stable_adamw"} <= names, names


#: rules whose shape-dependent stages have a fused form for vectors only
VECTOR_FORMS = {"adamp", "sgdp", "ranger", "came", "ranger21"}
#: of those, the ones whose tensors are stepped apart (Ranger21's stable decay couples
#: them: a list with a matrix runs on its own update as a whole)
TENSORWISE_FORMS = VECTOR_FORMS - {"ranger21"}


def test_the_vector_forms_run_fused():
    names = {p.values[0] for p in reduction_rules()}
    assert VECTOR_FORMS <= names, names


def fused_sizes(rule, kwargs):
    """:data:`SIZES`, or its vectors where the engine refuses the others (a fused
    form covering vectors only)."""
    engine = FusedEngine(gradstep.REGISTRY[rule].factory(**kwargs))
    if engine.refusal(SIZES) is None:
        return SIZES
    assert rule in VECTOR_FORMS, (rule, engine.refusal(SIZES))
    return [s for s in SIZES if len(s) < 2]


#: float32 ulps a rule's fused state may be from the eager one's, where not the
#: default 4: Ranger21's momentum takes gradients divided by their standard deviation
#: (twice) through a softplus, so the last-bit differences of the sums (added in
#: another order) and of the parameters (the test's gradient is sin(3 w + k)) it keeps
#: reach 8 ulps of the momentum's scale in 12 steps
REDUCTION_ULPS = {"ranger21": 16}


def reduction_cases():
    for p in reduction_rules():
        rule, kwargs = p.values
        for dtype, label in ((np.float64, "f64"), (np.float32, "f32")):
            reason = REDUCTION_DIVERGENCES.get((rule, np.dtype(dtype).name))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            yield pytest.param(rule, kwargs, dtype, marks=marks, id=f"{rule}-{label}")


@pytest.mark.parametrize("rule, kwargs, dtype", list(reduction_cases()))
def test_every_reduction_rule(rule, kwargs, dtype):
    """Trust ratios and other per-tensor scalars from the fused engine's reduction
    passes, over tensors of odd sizes (an empty one, one over two chunks)."""
    make = lambda: gradstep.REGISTRY[rule].factory(**kwargs)  # noqa: E731
    sizes = fused_sizes(rule, kwargs)
    eager = run(make(), dtype, "eager", sizes=sizes)
    fused = run(make(), dtype, "fused", sizes=sizes)
    assert_same(eager, fused, dtype, ulps=REDUCTION_ULPS.get(rule, 4))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "rule, kwargs",
    [
        ("adamp", {"weight_decay": 0.1, "epsilon_placement": "outside"}),
        ("sgdp", {"weight_decay": 0.1, "nesterov": True, "dampening": 0.2}),
        ("ranger", {"weight_decay": 0.05, "sync_period": 4}),
        ("came", {"clipping_threshold": 0.5, "weight_decay": 0.1, "beta1": 0.8}),
    ],
)
def test_vector_forms_with_non_finite_gradients(rule, kwargs, dtype):
    """The fused forms on vectors at other settings, NaN and inf gradients included."""
    make = lambda: gradstep.REGISTRY[rule].factory(**kwargs)  # noqa: E731
    sizes = fused_sizes(rule, kwargs)
    eager = run(make(), dtype, "eager", nonfinite=True, sizes=sizes)
    assert_same(eager, run(make(), dtype, "fused", nonfinite=True, sizes=sizes), dtype)


@pytest.mark.parametrize("rule", sorted(TENSORWISE_FORMS))
def test_a_matrix_runs_the_vector_forms_eagerly(rule):
    """Parameters a form does not cover: the optimizer runs the transform's own update
    on them (no notice), exactly as the eager engine, and the vector beside them on
    the fused engine (the rules are tensorwise); ``engine="fused"`` refuses them; the
    engine itself refuses such a step before writing anything."""
    make = lambda: gradstep.REGISTRY[rule].factory(learning_rate=0.01)  # noqa: E731
    shapes = [(5,), (3, 4)]
    got, want = ([np.linspace(-1, 1, int(np.prod(s))).reshape(s) for s in shapes] for _ in "ab")
    auto = gradstep.Optimizer(got, make())
    eager = gradstep.Optimizer(want, make(), engine="eager")
    assert auto.engine == "fused+eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto.step([np.cos(3 * w) for w in got])
    eager.step([np.cos(3 * w) for w in want])
    assert auto.engine == "fused+eager"
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="runs fused on tensors of rank < 2 only"):
        gradstep.Optimizer(got, make(), engine="fused")
    before = [w.copy() for w in got]
    state = make().init(got)
    with pytest.raises(Unsupported, match="not on a tensor of shape \\(3, 4\\)"):
        FusedEngine(make()).step(got, [np.ones_like(w) for w in got], state, {})
    for a, b in zip(got, before):
        np.testing.assert_array_equal(a, b)


CHAINS = {
    "clip+decay+adam+lr": lambda: gradstep.chain(
        T.clip(0.8), T.add_decayed_weights(0.01), gradstep.adam(0.01, amsgrad=True)
    ),
    "clear_nan sgd+momentum": lambda: gradstep.momentum(0.05, 0.9, clear_nan=True),
    "clear_nan adam": lambda: gradstep.adam(0.05, clear_nan=True),
    "zero_nonfinite+rmsprop": lambda: T.nonfinite_policy(
        gradstep.rmsprop(0.01, centered=True, momentum=0.5), "zero"
    ),
    "global_norm+adamw masked": lambda: gradstep.chain(
        T.clip_by_global_norm(1.0),
        gradstep.adamw(0.01, weight_decay=0.1, mask=[i % 2 == 1 for i in range(len(SIZES))]),
    ),
    "norm+adagrad+schedule": lambda: gradstep.chain(
        T.clip_by_norm(0.5),
        gradstep.adagrad(gradstep.schedules.cosine_decay(0.5, 10), lr_decay=0.01),
    ),
    "adam after adadelta, momentum": lambda: gradstep.chain(
        gradstep.adadelta(rho=gradstep.schedules.linear_warmup(0.95, 5, 0.5)),
        gradstep.apply_nesterov_momentum(0.5),
        T.scale(0.5),
    ),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(CHAINS))
def test_composed_chains(name, dtype):
    make = CHAINS[name]
    nonfinite = "nan" in name or "nonfinite" in name
    eager = run(make(), dtype, "eager", nonfinite=nonfinite)
    fused = run(make(), dtype, "fused", nonfinite=nonfinite)
    assert_same(eager, fused, dtype)


def test_one_kernel_per_chain_with_a_separate_reduction_pass():
    engine = FusedEngine(CHAINS["global_norm+adamw masked"]())
    names = [n for n in dir(engine.kernels) if n == "step" or n.startswith("reduce")]
    assert names == ["reduce0", "step"]
    assert engine.source.count("def step(") == 1


def test_checkpoints_move_between_engines():
    make = CHAINS["clip+decay+adam+lr"]
    p_f = [np.linspace(-1, 1, 11)]
    fused = gradstep.Optimizer(p_f, make(), engine="fused")
    for k in range(3):
        fused.step([np.cos(p_f[0] + k)])
    p_e = [p_f[0].copy()]
    eager = gradstep.Optimizer(p_e, make(), engine="eager")
    eager.load_state_dict(fused.state_dict())
    for k in range(3, 6):
        fused.step([np.cos(p_f[0] + k)])
        eager.step([np.cos(p_e[0] + k)])
    np.testing.assert_array_equal(p_f[0], p_e[0])


def test_other_dtypes_fall_back_to_eager_with_one_notice():
    # float16 and bfloat16 run fused (tests/core/test_state_precision.py); the
    # platform's long double does not
    wide = np.dtype(np.longdouble)
    if wide.itemsize <= 8:
        pytest.skip(reason="long double is float64 on this platform")
    p = [np.ones(3, wide)]
    opt = gradstep.Optimizer(p, gradstep.adam(0.1))
    assert opt.engine == "fused"
    with pytest.warns(RuntimeWarning, match=f"eager engine.*{wide.name}"):
        opt.step([np.ones(3, wide)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step([np.ones(3, wide)])
    assert p[0].dtype == wide and np.all(p[0] < 1)


def test_non_elementwise_transforms_run_eagerly_or_refuse_explicit_fused():
    skip = T.skip_nonfinite(gradstep.adam(0.1))
    assert gradstep.Optimizer([np.ones(2)], skip).engine == "eager"
    with pytest.raises(ValueError, match="cannot run this transform"):
        gradstep.Optimizer([np.ones(2)], skip, engine="fused")
    with pytest.raises(NotFusable):
        FusedEngine(T.constrain_norm(1.0))


def test_gradients_of_the_wrong_shape_are_refused_before_anything_changes():
    p = [np.ones(4)]
    opt = gradstep.Optimizer(p, gradstep.adam(0.1))
    with pytest.raises(ValueError, match="gradient 0 has shape"):
        opt.step([np.ones(5)])
    eager = gradstep.Optimizer(p, gradstep.adam(0.1), engine="eager")
    with pytest.raises(ValueError, match="gradient 0 has shape"):
        eager.step([np.ones(1)])
    np.testing.assert_array_equal(p[0], np.ones(4))


def test_second_process_loads_compiled_kernels_from_disk(tmp_path):
    script = textwrap.dedent(
        """
        import numpy as np, gradstep
        p = [np.ones(10, np.float32)]
        opt = gradstep.Optimizer(p, gradstep.chain(gradstep.transforms.clip(0.3),
                                                 gradstep.adam(0.01)))
        opt.step([np.ones(10, np.float32)])
        stats = opt._fused.kernels.step.stats
        print(stats.cache_hits.__len__(), stats.cache_misses.__len__())
        """
    )
    env = {"GRADSTEP_CACHE_DIR": str(tmp_path)}
    first = _run_python(script, env)
    second = _run_python(script, env)
    assert first == "0 1" and second == "1 0", (first, second)


def _run_python(script, env):
    import os

    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()
