"""Stochastic rounding of bfloat16 stores and the Kahan-compensated parameter store
(:mod:`gradstep._core.rounding`): the stream, its unbiasedness, the same bits on
the eager and numba engines whatever the chunking and threads, bit-exact resume."""

from __future__ import annotations

import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")

import gradstep  # noqa: E402
from gradstep._core import tree  # noqa: E402
from gradstep._core.rounding import (  # noqa: E402
    mix32,
    random_bits,
    round_bf16_stochastic,
    slot_id,
    stream_keys,
)

BF16 = ml_dtypes.bfloat16
SHAPES = (300, 70_000, 3)  # the second spans two chunks of the numba engine


def _lowbias32(x: int) -> int:
    """The hash as published (Wellons), on Python integers."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_the_stream_is_lowbias32_keyed_as_documented():
    xs = [0, 1, 2, 0x7FFFFFFF, 0xFFFFFFFF, 123456789]
    assert [int(v) for v in mix32(np.array(xs, np.uint32))] == [_lowbias32(x) for x in xs]
    seed, count, tensor, slot = 7, 2**33 + 5, 4, slot_id("mu")
    key = _lowbias32(_lowbias32(_lowbias32(_lowbias32(slot) ^ seed) ^ 5) ^ tensor)
    assert int(stream_keys(seed, count, tensor, slot)) == key
    assert [int(b) for b in random_bits(key, 3, start=10)] == [
        _lowbias32(key ^ _lowbias32(i)) for i in (10, 11, 12)
    ]


def test_rounding_goes_to_a_neighbour_and_keeps_specials():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(4096) * 10.0 ** rng.integers(-30, 30, 4096)).astype(np.float32)
    out = round_bf16_stochastic(x, random_bits(99, x.size)).astype(np.float32)
    down = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)  # towards zero
    up = (down.view(np.uint32) + np.uint32(0x10000)).view(np.float32)
    assert np.all((out == down) | (out == up))
    assert np.all(out[x == down] == x[x == down])  # exact values are kept
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    got = round_bf16_stochastic(special, random_bits(1, 5)).astype(np.float32)
    assert np.isnan(got[0]) and list(got[1:3]) == [np.inf, -np.inf]
    assert np.array_equal(got[3:].view(np.uint32), special[3:].view(np.uint32))


def test_the_mean_of_many_roundings_is_the_float32_value():
    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 4, 500).astype(np.float32)
    draws = np.stack(
        [round_bf16_stochastic(x, random_bits(k, x.size)).astype(np.float64) for k in range(800)]
    )
    # each draw is one of two neighbours at spacing s, up with probability p: the mean of
    # n draws has standard deviation s * sqrt(p (1 - p) / n)
    down = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64)
    spacing = np.abs((down.astype(np.float32).view(np.uint32) + 1 << 16).view(np.float32) - down)
    p = np.abs(x - down) / spacing
    sigma = spacing * np.sqrt(np.maximum(p * (1 - p), 1e-12) / len(draws))
    z = (draws.mean(axis=0) - x) / sigma
    assert np.abs(z).max() < 5.0
    # over all elements: the average standardised error is centred (no bias)
    assert abs(z.mean()) < 5.0 / np.sqrt(z.size)
    # while rounding to the nearest is biased on these values
    nearest = x.astype(BF16).astype(np.float64)
    assert np.abs(nearest - x).mean() > 10 * np.abs(draws.mean(axis=0) - x).mean()


def test_same_distribution_as_torchaos_stochastic_rounding():
    torch = pytest.importorskip("torch")
    quant_utils = pytest.importorskip("torchao.optim.quant_utils")
    x = np.linspace(1.0, 1.0078125, 64, endpoint=False, dtype=np.float32)  # one spacing
    n = 1000
    many = np.tile(x, n)  # n roundings of each value, in one call each
    ours = round_bf16_stochastic(many, random_bits(5, many.size)).astype(np.float32) > many
    torch.manual_seed(0)
    t = torch.from_numpy(many)
    theirs = (quant_utils._fp32_to_bf16_sr(t).float() > t).numpy()
    ours, theirs = ours.reshape(n, -1).mean(axis=0), theirs.reshape(n, -1).mean(axis=0)
    # both round up with probability (x - 1) / spacing: two independent estimates of p
    p = (x - 1.0) / 0.0078125
    sigma = np.sqrt(np.maximum(p * (1 - p), 1 / n) / n)
    assert np.all(np.abs(ours - p) < 5 * sigma)
    assert np.all(np.abs(theirs - p) < 5 * sigma)
    assert np.all(np.abs(ours - theirs) < 5 * np.sqrt(2) * sigma)


def _run(kwargs: dict, engine: str, steps: int = 3, state=None, params=None):
    rng = np.random.default_rng(0)
    p = [rng.standard_normal(n).astype(BF16) for n in SHAPES]
    p = params if params is not None else p
    grads = [[rng.standard_normal(n).astype(BF16) for n in SHAPES] for _ in range(4)]
    opt = gradstep.Optimizer(p, gradstep.adamw(1e-2, **kwargs), engine=engine)
    if state is not None:
        opt.load_state_dict(state)
    for g in grads[len(grads) - steps :] if state is not None else grads[:steps]:
        opt.step(g)
    assert opt.engine == engine
    return p, opt


def _bits(arrays):
    return [np.asarray(a).view(np.uint16) if a.dtype == BF16 else np.asarray(a) for a in arrays]


# bfloat16 parameters (stochastic, compensated), a stochastic bfloat16 slot and a
# float32 one (rounded to the nearest): every kind of store in one kernel
OPTIONS = dict(
    stochastic_rounding=True,
    kahan_summation=True,
    rounding_seed=11,
    state_dtype={"mu": "bfloat16", "nu": "float32"},
)


def test_eager_and_numba_round_the_same_bits_whatever_the_threads():
    numba = pytest.importorskip("numba")
    kwargs = OPTIONS
    eager, opt_e = _run(kwargs, "eager")
    threads = numba.get_num_threads()
    try:
        for n in {1, threads}:
            numba.set_num_threads(n)
            fused, opt_f = _run(kwargs, "fused")
            for a, b in zip(_bits(eager), _bits(fused)):
                np.testing.assert_array_equal(a, b)
            for a, b in zip(tree.leaves(opt_e.state), tree.leaves(opt_f.state)):
                np.testing.assert_array_equal(_bits([np.asarray(a)]), _bits([np.asarray(b)]))
    finally:
        numba.set_num_threads(threads)
    # and the stream matters: another seed rounds otherwise
    other, _ = _run({**kwargs, "rounding_seed": 12345}, "eager")
    assert not np.array_equal(_bits(other)[1], _bits(eager)[1])


def test_resume_from_a_checkpoint_is_bit_exact():
    kwargs = OPTIONS
    straight, _ = _run(kwargs, "fused", steps=4)
    half, opt = _run(kwargs, "fused", steps=2)
    saved = opt.state_dict()
    resumed, _ = _run(kwargs, "eager", steps=2, state=saved, params=[p.copy() for p in half])
    for a, b in zip(_bits(straight), _bits(resumed)):
        np.testing.assert_array_equal(a, b)


def test_kahan_keeps_updates_smaller_than_half_a_bfloat16_unit():
    w32 = np.ones(64, np.float32)
    runs = {}
    for name, kw in {
        "nearest": {},
        "kahan": dict(kahan_summation=True),
        "stochastic": dict(stochastic_rounding=True),
    }.items():
        w = np.ones(64, BF16)
        opt = gradstep.Optimizer([w], gradstep.sgd(1e-3, **kw), engine="eager")
        for _ in range(200):
            opt.step([np.full(64, -1.0, BF16)])
        runs[name] = w.astype(np.float32)
    for _ in range(200):
        w32 += np.float32(1e-3)
    assert np.all(runs["nearest"] == 1.0)  # 1e-3 < half a unit (2**-8): lost every step
    unit = 2.0**-7  # bfloat16's spacing just above 1
    assert np.abs(runs["kahan"] - w32).max() <= unit
    # each step rounds with variance <= unit**2 / 4, independently: the mean of 64
    # elements after 200 steps is within 4 standard deviations of float32's
    assert abs(runs["stochastic"].mean() - w32.mean()) < 4 * unit * np.sqrt(200 / 4 / 64)


def test_options_are_validated():
    with pytest.raises(ValueError, match="stochastic_rounding"):
        gradstep.adam(1e-3, stochastic_rounding=1)
    with pytest.raises(ValueError, match="rounding_seed"):
        gradstep.adam(1e-3, stochastic_rounding=True, rounding_seed=-1)
    with pytest.raises(ValueError, match="keeps state outside"):
        gradstep.adafactor(1e-3, stochastic_rounding=True)
    with pytest.raises(ValueError, match="give them once"):
        from gradstep._core.rounding import with_rounding

        with_rounding(gradstep.adam(1e-3, kahan_summation=True), True, 0, False)
    # the compensation stays in its parameter's dtype whatever the state's
    t = gradstep.adam(1e-3, kahan_summation=True, state_dtype="float16")
    state = t.init([np.ones(2, BF16)])
    assert state["parameter_store"]["compensation"][0].dtype == BF16
    assert state["scale_by_adam"]["mu"][0].dtype == np.float16
    # nothing stored in bfloat16: the option would do nothing
    for engine in ("eager", "fused"):
        w = np.ones(4, np.float32)
        opt = gradstep.Optimizer([w], gradstep.adam(1e-3, stochastic_rounding=True), engine=engine)
        with pytest.raises(ValueError, match="rounds values stored in bfloat16"):
            opt.step([np.ones(4, np.float32)])
    # float32 parameters with bfloat16 state: the state is rounded stochastically
    w = np.ones(4, np.float32)
    t = gradstep.adam(1e-3, stochastic_rounding=True, state_dtype="bfloat16")
    gradstep.Optimizer([w], t, engine="eager").step([np.full(4, 0.3, np.float32)])
    assert "stochastic_rounding" in str(gradstep.adam.__signature__)


def test_numba_kernels_of_float32_state_are_unchanged_by_the_option():
    fused = pytest.importorskip("gradstep.engines.fused")
    plain = fused.FusedEngine(gradstep.adamw(1e-3))
    rounded = fused.FusedEngine(gradstep.adamw(1e-3, stochastic_rounding=True))
    assert "bf16_store_sr" not in plain.source
    assert "bf16_store_sr" not in rounded.source_for(("float32",) * rounded.n_rows)
    assert "bf16_store_sr" in rounded.source_for(("bfloat16",) * rounded.n_rows)
