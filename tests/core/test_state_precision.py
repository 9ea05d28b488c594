"""State precision (gradstep._core.precision): the storage dtype of each slot as an
option of every rule, float32 arithmetic whatever the storage, and float16/bfloat16
parameters, gradients and state in the NumPy front's engines."""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest

import gradstep
from gradstep._core.namespaces import numpy_dtype
from gradstep._core.precision import (
    HALF_DTYPES,
    STORAGE_DTYPES,
    dtype_name,
    slot_dtypes,
    with_state_dtype,
)

ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")
BF16 = numpy_dtype("bfloat16")


def test_every_registered_optimizer_takes_state_dtype():
    for spec in gradstep.REGISTRY:
        sig = inspect.signature(spec.factory)
        assert sig.parameters["state_dtype"].default is None, spec.name
        assert "state_dtype" in spec.ranges, spec.name
    assert "mu_dtype" in inspect.signature(gradstep.adamw).parameters
    assert "accumulator_dtype" in inspect.signature(gradstep.momentum).parameters


def test_slots_get_their_storage_dtype_and_others_keep_the_parameters():
    w = np.ones(3, np.float32)
    state = gradstep.adam(state_dtype={"nu": "bfloat16"}).init(w)["scale_by_adam"]
    assert state["mu"].dtype == np.float32 and state["nu"].dtype == BF16
    state = gradstep.adam(mu_dtype="float16").init(w)["scale_by_adam"]
    assert state["mu"].dtype == np.float16 and state["nu"].dtype == np.float32
    momentum = gradstep.momentum(0.1, 0.9, accumulator_dtype=np.float16)
    assert slot_dtypes(momentum) == {"velocity": "float16"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gradstep.adam(state_dtype="int16"), "invalid state_dtype='int16'"),
        (lambda: gradstep.adam(state_dtype={"moment": "bfloat16"}), "no slot named 'moment'"),
        (lambda: gradstep.adam(mu_dtype="complex64"), "invalid mu_dtype='complex64'"),
        (lambda: gradstep.adam(mu_dtype="bfloat16", state_dtype="float16"), "not both"),
        # Adafactor's factored moments are not elementwise slots: refused, not ignored
        (lambda: gradstep.adafactor(state_dtype="bfloat16"), "keeps state outside"),
    ],
)
def test_invalid_state_dtypes_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_transform_with_state_dtype_pickles_and_rebuilds_it():
    t = pickle.loads(pickle.dumps(gradstep.adamw(0.1, state_dtype="bfloat16")))
    assert slot_dtypes(t) == {"mu": "bfloat16", "nu": "bfloat16"}
    assert with_state_dtype(t, None) is t


def test_math_runs_in_float32_and_only_storage_rounds():
    """One Adam step on bfloat16 parameters: the float32 arithmetic, rounded once."""
    g32 = np.array([0.3, -1.7, 2.5e-3, 40.0], np.float32)
    w = (g32 * np.float32(2)).astype(BF16)
    w32 = w.astype(np.float32)
    opt = gradstep.Optimizer(w, gradstep.adam(0.01), engine="eager")
    opt.step(g32.astype(BF16))
    g = g32.astype(BF16).astype(np.float32)
    mu, nu = np.float32(0.1) * g, np.float32(0.001) * g * g
    step = (mu / np.float32(0.1)) / (np.sqrt(nu / np.float32(0.001)) + np.float32(1e-8))
    want = (w32 + np.float32(-0.01) * step).astype(BF16)
    np.testing.assert_array_equal(w, want)
    np.testing.assert_array_equal(opt.state["scale_by_adam"]["mu"], mu.astype(BF16))


@pytest.mark.parametrize(
    "param, state",
    # float16 parameters: tests/torch_front/test_state_precision_torch.py
    [("bfloat16", {"nu": "float32"}), ("float64", "float16")],
)
def test_fused_engine_equals_eager_bit_for_bit(param, state):
    """The numba kernel's 16-bit loads and stores (uint16 bits converted inside the
    kernel) round exactly as NumPy/ml_dtypes do."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(300).astype(np.float32)
    w0[:3] = [1e-6, 70000.0, -3e-8]  # a float16 subnormal, an overflow, an underflow
    grads = [rng.standard_normal(300).astype(np.float32) * 10.0**k for k in (-3, 0, 2)]
    out = {}
    for engine in ("fused", "eager"):
        w = w0.astype(numpy_dtype(param))
        opt = gradstep.Optimizer(w, gradstep.adamw(0.05, state_dtype=state), engine=engine)
        with np.errstate(over="ignore", invalid="ignore"):  # the overflowed element
            for g in grads:
                opt.step(g.astype(w.dtype))
        assert opt.engine == engine
        out[engine] = (w, opt.state["scale_by_adam"])
    (w_f, s_f), (w_e, s_e) = out["fused"], out["eager"]
    assert w_f.dtype == w_e.dtype == numpy_dtype(param)
    np.testing.assert_array_equal(w_f.view(np.uint8), w_e.view(np.uint8))
    for name in ("mu", "nu"):
        assert s_f[name].dtype == s_e[name].dtype
        np.testing.assert_array_equal(s_f[name].view(np.uint8), s_e[name].view(np.uint8))


def _float16_forms(form):
    """(load, store) of float16 in the kernels: the form this processor compiles
    (``"selected"``: its conversion instructions where it has them) or the integer
    arithmetic of processors without them (``"integer"``)."""
    from gradstep.engines import _half_ops as h

    if form == "integer":
        return h.f16_load_bits, h.f16_store_bits
    return h.f16_load, h.f16_store


@pytest.mark.parametrize("form", ["selected", "integer"])
def test_sixteen_bit_conversions_match_numpy_and_ml_dtypes_bit_for_bit(form):
    numba = pytest.importorskip("numba", reason="needs numba (a dependency of the fused engine)")
    from gradstep.engines._half_ops import bf16_load, bf16_store

    f16_load, f16_store = _float16_forms(form)

    @numba.njit
    def round_trip(x, bf, hf, bf_back, hf_back):
        for i in range(x.size):
            bf[i] = bf16_store(x[i])
            hf[i] = f16_store(x[i])
            bf_back[i] = bf16_load(bf[i])
            hf_back[i] = f16_load(hf[i])

    rng = np.random.default_rng(1)
    special = [0.0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, 6e-8, 2.98e-8, 1e-45]
    x = np.concatenate(
        [
            rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
            np.float32(rng.standard_normal(50_000) * np.exp(rng.uniform(-30, 15, 50_000))),
            np.array(special, np.float32),
        ]
    )
    x = x[~np.isnan(x)]
    bf, hf = np.zeros(x.size, np.uint16), np.zeros(x.size, np.uint16)
    bf_back, hf_back = np.zeros(x.size, np.float32), np.zeros(x.size, np.float32)
    with np.errstate(over="ignore"):
        round_trip(x, bf, hf, bf_back, hf_back)
        np.testing.assert_array_equal(bf, x.astype(BF16).view(np.uint16))
        np.testing.assert_array_equal(hf, x.astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(bf_back, bf.view(BF16).astype(np.float32))
    np.testing.assert_array_equal(hf_back, hf.view(np.float16).astype(np.float32))


@pytest.mark.parametrize("form", ["selected", "integer"])
def test_float16_conversions_of_every_pattern_and_nan(form):
    # every float16 pattern loads exactly; a NaN stays a quiet NaN of its sign (the
    # integer form: with its payload on load, the payload dropped on store; a
    # processor's instructions quiet it and keep the payload's top bits)
    numba = pytest.importorskip("numba", reason="needs numba (a dependency of the fused engine)")
    f16_load, f16_store = _float16_forms(form)

    @numba.njit
    def loads(bits, out):
        for i in range(bits.size):
            out[i] = f16_load(bits[i])

    @numba.njit
    def stores(x, out):
        for i in range(x.size):
            out[i] = f16_store(x[i])

    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    loaded = np.zeros(every.size, np.float32)
    loads(every, loaded)
    nan = np.isnan(every.view(np.float16))
    np.testing.assert_array_equal(
        loaded.view(np.uint32)[~nan],
        every[~nan].view(np.float16).astype(np.float32).view(np.uint32),
    )
    h = every[nan].astype(np.uint32)
    got = loaded.view(np.uint32)[nan]
    assert np.isnan(loaded[nan]).all()
    np.testing.assert_array_equal(got >> 31, h >> 15)  # the sign
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFBFFFFF], np.uint32)
    stored = np.zeros(nans.size, np.uint16)
    stores(nans.view(np.float32), stored)
    assert np.isnan(stored.view(np.float16)).all()
    np.testing.assert_array_equal(stored & 0x8200, [0x0200, 0x8200, 0x0200, 0x8200])  # quiet
    if form == "integer":
        payload = ((h & 0x8000) << 16) | 0x7F800000 | ((h & 0x3FF) << 13)
        np.testing.assert_array_equal(got, payload)
        np.testing.assert_array_equal(stored, [0x7E00, 0xFE00, 0x7E00, 0xFE00])


def test_float16_form_follows_numbas_target(monkeypatch):
    # the processor's instructions only where numba compiles for them: LLVM would call
    # compiler-rt's conversions elsewhere, which numba may not link
    pytest.importorskip("numba", reason="needs numba (a dependency of the fused engine)")
    from numba.core import config

    from gradstep.engines import _half_ops as h

    monkeypatch.setattr(h.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(config, "CPU_FEATURES", "+sse2,+avx2,-f16c")
    assert not h._target_converts_half()
    monkeypatch.setattr(config, "CPU_FEATURES", "+sse2,+f16c")
    assert h._target_converts_half()
    monkeypatch.setattr(h.platform, "machine", lambda: "aarch64")
    assert h._target_converts_half()
    monkeypatch.setattr(h.platform, "machine", lambda: "ppc64le")
    assert not h._target_converts_half()


def test_checkpoints_move_between_precisions(tmp_path):
    w = np.linspace(-1, 1, 8).astype(np.float32)
    low = gradstep.Optimizer(w.copy(), gradstep.adam(0.1, state_dtype="bfloat16"), engine="eager")
    low.step(w)
    low.save(tmp_path / "low.npz")
    full = gradstep.Optimizer(w.copy(), gradstep.adam(0.1))
    full.load(tmp_path / "low.npz")  # the bfloat16 moments, widened exactly
    np.testing.assert_array_equal(
        full.state["scale_by_adam"]["mu"], low.state["scale_by_adam"]["mu"].astype(np.float32)
    )
    again = gradstep.Optimizer(w.copy(), gradstep.adam(0.1, state_dtype="bfloat16"))
    again.load_state_dict(full.state_dict())
    for name in ("mu", "nu"):
        got, want = again.state["scale_by_adam"][name], low.state["scale_by_adam"][name]
        assert got.dtype == BF16
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_storage_names():
    assert set(HALF_DTYPES) < set(STORAGE_DTYPES)
    assert dtype_name(BF16) == "bfloat16" and dtype_name(np.float16) == "float16"
    assert dtype_name("torch.float16") == "float16"


def test_wrappers_with_their_own_per_element_state_are_refused():
    # sharpness-aware minimisation caches a gradient outside any slot: a state_dtype
    # it could not reach is refused, not accepted and ignored
    with pytest.raises(ValueError, match="state_dtype.*'sam'.*valid values: None"):
        gradstep.sam(0.1, state_dtype="bfloat16")


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["f16", "bf16"])
def test_global_reduction_runs_fused_on_16bit_parameters_as_eager(dtype):
    # Prodigy's distance estimate is a reduction over every tensor: the eager engine
    # widens its terms to float32 as the kernels read 16-bit rows, so the fused run
    # is the eager one bit for bit (the carried state: float64 sums either way)
    results = []
    for engine in ("eager", "fused"):
        params = {"w": np.linspace(-1, 1, 7).astype(dtype), "b": np.ones(3, dtype)}
        opt = gradstep.Optimizer(params, gradstep.prodigy(1.0), engine=engine)
        for k in range(3):
            opt.step(
                {n: (v.astype(np.float32) * 0.5 + 0.1 * k).astype(dtype) for n, v in params.items()}
            )
        assert opt.engine == engine
        results.append((params, opt.state["prodigy"]))
    (eager, eager_state), (fused, fused_state) = results
    for name in eager:
        np.testing.assert_array_equal(fused[name], eager[name])
        np.testing.assert_array_equal(fused_state["s"][name], eager_state["s"][name])
    assert float(fused_state["d"]) == float(eager_state["d"])
