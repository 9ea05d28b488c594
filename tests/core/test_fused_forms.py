"""Fused forms: the stages a shape-dependent transform equals on some shapes, and the
``sized`` per-tensor reduction (its combine gets the tensor's size) on every engine."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep._core.fused_form import Keyed, fused_form_of
from gradstep._core.transform import chain
from gradstep.engines.fused import FusedEngine
from gradstep.engines.plan import NotFusable, flatten_stages
from gradstep.rules.adafactor import ClipByBlockRms
from gradstep.transforms import centralize


def _clip_chain(form: bool):
    clip = ClipByBlockRms(0.5)
    return gradstep.chain(clip.fused_form().transform if form else clip, gradstep.sgd(0.1))


SHAPES = [(0,), (1,), (7,), (100003,), (3, 5)]


def _data(dtype):
    rng = np.random.default_rng(3)
    params = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    grads = [(np.sin(3 * p) * (1 + i)).astype(dtype) for i, p in enumerate(params)]
    return params, grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_sized_reduction_equals_the_clip_on_eager_and_numba(dtype):
    """The clip's form (a sized per-tensor reduction: an RMS needs the size) gives
    the clip's own update on the eager engine and on the numba engine, empty and
    multi-chunk tensors included."""
    params, grads = _data(dtype)
    want, _ = _clip_chain(False).update(grads, _clip_chain(False).init(params), params)
    form = _clip_chain(True)
    got, _ = form.update(grads, form.init(params), params)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    fused = [p.copy() for p in params]
    FusedEngine(form).step(fused, grads, form.init(fused), {})
    for p, u, f in zip(params, want, fused):
        np.testing.assert_allclose(f, p + u, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_the_sized_reduction_under_jax():
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    from gradstep.jax import to_optax

    params, grads = _data(np.float32)
    want, _ = _clip_chain(False).update(grads, _clip_chain(False).init(params), params)
    opt = to_optax(_clip_chain(True))
    jp, jg = [jax.numpy.asarray(p) for p in params], [jax.numpy.asarray(g) for g in grads]
    got, _ = jax.jit(opt.update)(jg, opt.init(jp), jp)
    for a, b in zip(want, got):
        np.testing.assert_allclose(np.asarray(b), a, rtol=1e-6, atol=0)


def test_a_stateful_stage_needs_a_place_in_the_state():
    form = Keyed("f", (gradstep.momentum(0.1, 0.9),), (None,))
    with pytest.raises(NotFusable, match="keeps state but has no place"):
        flatten_stages(form, per_tensor=True)


def test_forms_are_used_only_when_asked():
    t = chain(centralize(), gradstep.adam(0.1))
    with pytest.raises(NotFusable):
        flatten_stages(t, per_tensor=True)
    forms: list = []
    names = [st.stage.name for st in flatten_stages(t, per_tensor=True, forms=forms)]
    assert names == ["scale_by_adam", "learning_rate"]
    assert [f.name for f in forms] == ["centralize"]
    assert fused_form_of(gradstep.adam(0.1)) is None


def test_the_centralised_rank_follows_min_rank():
    engine = FusedEngine(chain(centralize(min_rank=4), gradstep.adam(0.1)))
    assert engine.refusal([(3, 4, 5), (7,)]) is None
    assert "shape (2, 3, 4, 5)" in engine.refusal([(2, 3, 4, 5)])


@pytest.mark.parametrize("rule", ["adamp", "sgdp"])
def test_projection_decay_of_zero_leaves_a_non_finite_parameter(rule):
    """weight_decay=0 adds nothing, not 0 * inf (NaN), on both engines."""
    out = []
    for engine in ("eager", "fused"):
        w = [np.array([np.inf, 1.0, -2.0], np.float32)]
        opt = gradstep.Optimizer(w, gradstep.REGISTRY[rule].factory(), engine=engine)
        opt.step([np.array([0.5, 0.5, -0.5], np.float32)])
        out.append(w[0])
        assert opt.engine == engine
    assert np.isinf(out[0][0])
    np.testing.assert_array_equal(out[0], out[1])


def test_forms_that_round_16bit_updates_leave_16bit_parameters_eager():
    """CAME's moments round a float16 gradient's updates to float16 between stages;
    the kernels would not: 16-bit parameters run eagerly, 32-bit ones fused."""
    engine = FusedEngine(gradstep.came(0.01))
    assert engine.refusal([(5,)], np.float32) is None
    assert "32- and 64-bit parameters only" in engine.refusal([(5,)], np.float16)
    assert gradstep.Optimizer([np.ones(5, np.float16)], gradstep.came(0.01)).engine == "eager"
    assert gradstep.Optimizer([np.ones(5, np.float32)], gradstep.came(0.01)).engine == "fused"
    # element functions keep a step's updates in float32: AdamP's form covers float16
    assert FusedEngine(gradstep.adamp(0.01)).refusal([(5,)], np.float16) is None
