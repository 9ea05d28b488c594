"""gradstep.compat.optax's further names (``_optax_extra``) against optax 0.2.8,
called side by side on the same inputs (optax is a test dependency)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
optax = pytest.importorskip("optax", reason="optax is the reference")

import jax.numpy as jnp  # noqa: E402

import gradstep.compat.optax as cx  # noqa: E402
from gradstep import schedules as S  # noqa: E402
from gradstep.compat import _optax_extra  # noqa: E402

COUNTS = np.arange(0, 130)

#: compat names whose comparison with optax lives beside their transform's tests
TESTED_ELSEWHERE = {
    "reduce_on_plateau",  # tests/transforms/test_plateau.py
    # tests/transforms/test_optax_transforms.py
    "adaptive_grad_clip",
    "clip_by_block_rms",
    "freeze",
    "keep_params_nonnegative",
    "selective_transform",
    "set_to_zero",
    "skip_large_updates",
    # tests/transforms/test_privacy.py
    "differentially_private_aggregate",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    # tests/transforms/test_monitoring.py
    "measure_with_ema",
    "monitor",
    "snapshot",
    # tests/jax_front/test_optax_tail.py
    "add_noise",
    "mechanize",
    "noisy_sgd",
    "polyak_sgd",
    "scale_by_polyak",
}


def reference(schedule, counts=COUNTS) -> np.ndarray:
    """optax's values at each count in float64 (vmapped: not every optax schedule
    broadcasts)."""
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(schedule)(jnp.asarray(counts)))


def ours_at(schedule, counts=COUNTS) -> np.ndarray:
    """Our compat schedule at each count in float64 (like optax's, an array of counts
    gives values in JAX's default float dtype: float64 only with x64 on)."""
    with jax.enable_x64(True):
        return np.asarray(schedule(counts))


SCHEDULE_CASES = {
    "sgdr_schedule": (
        [
            [
                dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=30),
                dict(init_value=0.2, peak_value=0.5, warmup_steps=0, decay_steps=50, end_value=0.1),
                dict(init_value=0.1, peak_value=0.3, warmup_steps=3, decay_steps=20, exponent=2.0),
            ]
        ],
        {},
    ),
    "piecewise_interpolate_schedule": (["cosine", 2.0, {10: 0.5, 40: 0.1, 41: 3.0}], {}),
    "linear_onecycle_schedule": ([100, 1.5], dict(pct_start=0.2, pct_final=0.7)),
    "cosine_onecycle_schedule": ([97, 1.5], dict(div_factor=10.0, final_div_factor=100.0)),
    "warmup_exponential_decay_schedule": (
        [0.01, 1.0, 10, 7, 0.8],
        dict(transition_begin=5, staircase=True, end_value=0.2),
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULE_CASES))
def test_schedule_matches_optax(name):
    args, kwargs = SCHEDULE_CASES[name]
    want = reference(getattr(optax, name)(*args, **kwargs))
    ours = getattr(cx, name)(*args, **kwargs)
    np.testing.assert_allclose(ours_at(ours), want, rtol=1e-12, atol=1e-15)
    # a traced count goes through the host (usable inside real optax and jax.jit)
    traced = jax.jit(ours)(jnp.asarray(COUNTS[:20]))
    np.testing.assert_allclose(np.asarray(traced), ours_at(ours, COUNTS[:20]), rtol=1e-6)


def test_piecewise_interpolate_linear_and_empty_match_optax():
    for args in (("linear", 1.0, {4: 0.1, 8: 0.01}), ("linear", 3.0, None)):
        want = reference(optax.piecewise_interpolate_schedule(*args))
        np.testing.assert_allclose(ours_at(cx.piecewise_interpolate_schedule(*args)), want, 1e-12)
    with pytest.raises(ValueError, match="interpolate_type"):
        cx.piecewise_interpolate_schedule("cubic", 1.0)
    with pytest.raises(ValueError, match="scale"):
        cx.piecewise_interpolate_schedule("linear", 1.0, {3: -1.0})


def test_core_one_cycle_with_optax_convention_is_optax():
    """The core schedule (not only the compat name) reproduces both optax one-cycles."""
    lin = S.one_cycle(100, 1.5, 0.2, anneal="linear", pct_final=0.7)
    cos = S.one_cycle(97, 1.5, div_factor=10.0, final_div_factor=100.0)
    want_lin = optax.linear_onecycle_schedule(100, 1.5, pct_start=0.2, pct_final=0.7)
    want_cos = optax.cosine_onecycle_schedule(97, 1.5, div_factor=10.0, final_div_factor=100.0)
    for ours, want in ((lin, want_lin), (cos, want_cos)):
        np.testing.assert_allclose(ours(COUNTS), reference(want), 1e-12)


def test_every_extra_name_is_exported_and_tested():
    tested = set(SCHEDULE_CASES) | TESTED_ELSEWHERE
    assert set(_optax_extra.__all__) <= set(dir(cx))
    assert set(_optax_extra.__all__) - tested == set()
