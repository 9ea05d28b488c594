"""A global reduction whose element function takes no reduced scalar has its sums taken by
the fused engine's step kernel (no reduction pass), with the same per-chunk sums up to
the order of their float64 additions."""

import numpy as np
import pytest

import gradstep
from gradstep.engines import fused_passes, kernel_plan
from gradstep.engines.fused import FusedEngine
from gradstep.rules import scale_by_dadapt_adam

SIZES = [(70001,), (5,), (0,), (3, 7)]  # one tensor over two chunks, an empty one


def kernel_names(transform):
    kernels = FusedEngine(transform).kernels
    return sorted(n for n in dir(kernels) if n == "step" or n.startswith("reduce"))


def test_only_the_step_kernel_where_nothing_waits_for_the_sums():
    assert kernel_names(gradstep.dadapt_adam()) == ["step"]
    assert kernel_names(gradstep.dadapt_adagrad(momentum=0.5, weight_decay=0.01)) == ["step"]
    # the decoupled decay is a reduced scalar of this step: the pass stays
    decoupled = gradstep.dadapt_adam(weight_decay=0.1, decouple=True)
    assert kernel_names(decoupled) == ["reduce0", "step"]


def steps(transform, dtype, monkeypatch=None, fold=True, engine="fused", n=6):
    if not fold:  # the reduction pass, as before folding
        for module in (kernel_plan, fused_passes):
            monkeypatch.setattr(module, "foldable", lambda st: False)
    rng = np.random.default_rng(3)
    params = [rng.normal(size=s).astype(dtype) for s in SIZES]
    opt = gradstep.Optimizer(params, transform, engine=engine)
    for k in range(n):
        opt.step([(np.sin(2 * p + k) + 0.05 * k).astype(dtype) for p in params])
    return params, opt.state_dict()


def leaves(tree):
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in leaves(tree[k])]
    if isinstance(tree, list | tuple):
        return [x for v in tree for x in leaves(v)]
    return [np.asarray(tree)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("rule", ["dadapt_adam", "dadapt_adagrad"])
def test_folding_keeps_the_sums(rule, dtype, monkeypatch):
    make = gradstep.REGISTRY[rule].factory
    folded = steps(make(), dtype)
    assert len(kernel_names(make())) == 1
    passes = steps(make(), dtype, monkeypatch, fold=False)
    assert len(kernel_names(make())) == 2
    # a reduction pass adds its float64 terms in vector lanes (the reduction kernels
    # reassociate their additions only), the step kernel in element order: the
    # totals differ in their last bits, which float32 results do not see
    for a, b in zip(leaves(folded), leaves(passes)):
        if dtype == np.float32:
            np.testing.assert_array_equal(a, b)
        else:
            scale = float(np.max(np.abs(b), initial=0.0))
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale)


def test_two_folded_reductions_keep_their_own_sums():
    """Two global reductions in one chain: each sums into its own totals."""
    make = lambda: gradstep.chain(  # noqa: E731
        scale_by_dadapt_adam(d0=1e-3), gradstep.dadapt_adagrad(d0=1e-2)
    )
    assert kernel_names(make()) == ["step"]
    eager = steps(make(), np.float32, engine="eager")
    fused = steps(make(), np.float32)
    estimates = [v for v in leaves(fused[1]) if v.ndim == 0]
    assert len({float(v) for v in estimates}) > 2  # the two stages' d differ
    eps = np.finfo(np.float32).eps
    for a, b in zip(leaves(eager), leaves(fused)):
        scale = float(np.max(np.abs(a), initial=0.0))
        bound = 4 * np.spacing(np.abs(a)) + 4 * eps * scale
        assert np.all(np.abs(a.astype(np.float64) - b) <= bound)
