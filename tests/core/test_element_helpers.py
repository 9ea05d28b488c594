"""Element helpers: declared once in gradstep._core.xmath, called by element functions
on every engine (eager NumPy, torch, JAX, the generated numba kernel), and copied
into generated kernels by ``element_sources``."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep._core import xmath
from gradstep._core.elementwise import Elementwise, Slot
from gradstep._core.xmath import HELPERS, ema, ema_square, sqrt
from gradstep.engines.element_source import element_sources


@xmath.element_helper
def _test_rms_step(x, average, eps):
    # calls an operation and another helper: both must follow it everywhere
    return x / (sqrt(ema_square(average, x, eps, eps)) + eps)


def _uses_helpers(g, mu, nu, b1, c1, eps):
    mu = ema(mu, g, b1, c1)
    return _test_rms_step(mu, nu, eps), mu, nu


def _stage():
    return Elementwise(
        "helped",
        _uses_helpers,
        slots=(Slot("mu"), Slot("nu", 1.0)),
        prepare=lambda h, t: {"b1": 0.9, "c1": 0.1, "eps": 0.5},
    )


class _Stage:
    def __init__(self, index, stage):
        self.index, self.stage = index, stage


def test_sources_copy_each_referenced_helper_once_before_the_functions():
    sources = element_sources([_Stage(0, _stage()), _Stage(1, gradstep.rules.scale_by_adam())])
    names = [s.split("(", 1)[0].removeprefix("def ") for s in sources]
    # Adam's own helper (its overflow-safe root) comes with it, after the first's
    assert names == ["ema", "ema_square", "_test_rms_step", "adam_root", "_e0", "_e1"]
    assert all(s.startswith("def ") for s in sources)  # no decorators: the caller's
    assert "ema(" in sources[4] and "_test_rms_step(" in sources[4]
    assert "adam_root(" in sources[5]


def test_a_helper_may_use_only_operations_and_helpers():
    def bad(x, y):
        return np.sqrt(x) + y

    with pytest.raises(ValueError, match="np"):
        xmath.element_helper(bad)
    assert "bad" not in HELPERS


def _run(convert, engine="eager"):
    params = [np.linspace(-1.0, 1.0, 7), np.ones((3, 4))]
    params = [convert(p) for p in params] if engine == "eager" else params
    t = gradstep.chain(_stage(), gradstep.transforms.scale_by_learning_rate(0.1))
    if engine == "fused":
        opt = gradstep.Optimizer(params, t, engine="fused")
    state = None if engine == "fused" else t.init(params)
    for k in range(3):
        grads = [np.cos(np.arange(7.0) + k), np.full((3, 4), 0.2 * k - 0.1)]
        if engine == "fused":
            opt.step(grads)
            continue
        updates, state = t.update([convert(g) for g in grads], state, params)
        params = [p + u for p, u in zip(params, updates)]
    return [np.asarray(p) for p in params]


def test_every_engine_runs_the_helpers():
    want = _run(np.asarray)
    fused = _run(np.asarray, engine="fused")
    for a, b in zip(fused, want):
        np.testing.assert_allclose(a, b, rtol=1e-14)

    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch  # noqa: F401  (registers torch's array namespace)

    got = _run(torch.tensor)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-14)

    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    import jax.numpy as jnp

    import gradstep.jax  # noqa: F401  (registers JAX's array namespace)

    with jax.enable_x64(True):
        got = _run(jnp.asarray)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-14)


def test_scale_by_adam_without_bias_correction_uses_the_raw_moments():
    t = gradstep.rules.scale_by_adam(0.9, 0.99, 1e-3, bias_correction=False)
    g = np.array([0.5, -2.0])
    u, state = t.update([g], t.init([np.zeros(2)]))
    mu, nu = (1 - 0.9) * g, (1 - 0.99) * g * g
    np.testing.assert_allclose(u[0], mu / (np.sqrt(nu) + 1e-3), rtol=1e-15)
    assert np.array_equal(state["mu"][0], mu)


def test_lamb_composes_scale_by_adam():
    lamb = gradstep.lamb(0.1, bias_correction=False)
    direction = lamb.stages[0]
    reference = gradstep.rules.scale_by_adam(0.9, 0.999, 1e-6, bias_correction=False)
    assert direction.element is reference.element
    assert direction.scalars(4, {}) == reference.scalars(4, {})
