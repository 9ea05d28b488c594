"""The fused engine computes what the eager engine computes at every option setting
of the MXNet and the torch and optax NAdam fixtures (tests/equivalence covers the torch and optax
fixture settings and every registered rule's test hyperparameters)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep

FIXTURES = Path(__file__).resolve().parents[1] / "conformance" / "fixtures"
SIZES = [(0,), (1,), (7,), (1003,), (3, 5)]


def settings():
    seen = set()
    for name in ("mxnet.json", "nadam.json"):
        for case in json.loads((FIXTURES / name).read_text()):
            spec = gradstep.REGISTRY[case["rule"]]
            fusable = "elementwise" in spec.capabilities and case.get("fusable", True)
            seen.add((case["rule"], json.dumps(case["rule_kwargs"], sort_keys=True), fusable))
    for rule, kwargs, fusable in sorted(seen):
        yield pytest.param(rule, json.loads(kwargs), fusable, id=f"{rule}-{kwargs}")


def run(transform, dtype, engine):
    rng = np.random.default_rng(1)
    params = [rng.normal(size=s).astype(dtype) for s in SIZES]
    opt = gradstep.Optimizer(params, transform, engine=engine)
    for k in range(12):
        grads = [(np.sin(3 * p + k) + 0.1 * k).astype(dtype) for p in params]
        grads[3][::7] = 0.0  # zero gradients: sign(0), FTRL's zeroed weights
        opt.step(grads, learning_rate=0.5 ** (k % 3) * 0.05)
    return params, opt.state_dict()


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("rule, kwargs, fusable", list(settings()))
def test_fused_equals_eager(rule, kwargs, fusable, dtype):
    make = lambda: gradstep.REGISTRY[rule].factory(**kwargs)  # noqa: E731
    if not fusable:
        # MXNet's shared NAdam schedule and SGLD's noise are not elementwise
        assert gradstep.Optimizer([np.zeros(2)], make()).engine == "eager"
        with pytest.raises(ValueError, match="cannot run this transform"):
            gradstep.Optimizer([np.zeros(2)], make(), engine="fused")
        return
    (pe, se), (pf, sf) = run(make(), dtype, "eager"), run(make(), dtype, "fused")
    assert se.keys() == sf.keys()
    for a, b in list(zip(pe, pf)) + [(se[k], sf[k]) for k in se]:
        assert a.dtype == b.dtype and a.shape == b.shape
        finite = np.isfinite(a)
        np.testing.assert_array_equal(np.isfinite(b), finite)
        a, b = a[finite], b[finite]
        scale = float(np.max(np.abs(a), initial=0.0))
        if dtype == np.float64:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * scale)
        else:
            eps = np.finfo(np.float32).eps
            bound = 4 * np.spacing(np.abs(a)) + 4 * eps * scale
            assert np.all(np.abs(a.astype(np.float64) - b) <= bound)
