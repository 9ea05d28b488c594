"""The cautious wrapper: its mask and rescaling, the tree protocol (so chains, maps and
every engine see through it), its refusal of whole rules, and conformance around a
direction that no registry entry names (pytorch-optimizer's cautious ADOPT).

C-AdamW and C-Lion are registry entries: the generic conformance, property,
cross-backend and wrapper tests cover them against timm and pytorch-optimizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep._core.cautious import Cautious
from gradstep._core.stages import scale_by_learning_rate, with_clear_nan
from gradstep._core.transform import chain, map_transform, walk
from gradstep.rules import adopt as adopt_rules
from gradstep.rules.cautious import cautious

FIXTURES = Path(__file__).parent / "fixtures" / "cautious_wrapped.json"
CASES = json.loads(FIXTURES.read_text())
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}


def _passthrough():
    # Lion with beta1 = beta2 = 1 steps along sign(m) and keeps m: a direction whose
    # signs the test chooses through the state
    return gradstep.rules.scale_by_lion(beta1=1.0, beta2=1.0)


@pytest.mark.parametrize(
    ("normalization", "scale"),
    [("mean", 1 / (2 / 4)), ("count_plus_one", 4 / (2 + 1))],
)
def test_mask_keeps_agreeing_elements_and_rescales(normalization, scale):
    t = cautious(_passthrough(), normalization=normalization)
    mu = np.array([1.0, -1.0, 1.0, -1.0])
    g = np.array([2.0, -3.0, -1.0, 5.0])  # agrees in sign with mu on the first two
    u, state = t.update([g], {"inner": {"mu": [mu]}})
    np.testing.assert_allclose(u[0], [scale, -scale, 0.0, 0.0])
    # the wrapped rule's state advances as without the wrapper
    np.testing.assert_array_equal(state["inner"]["mu"][0], mu)


def test_no_agreement_gives_zero_not_nan():
    t = cautious(_passthrough())
    u, _ = t.update([np.array([-1.0, 1.0])], {"inner": {"mu": [np.array([1.0, -1.0])]}})
    np.testing.assert_array_equal(u[0], [0.0, 0.0])


def test_refuses_a_whole_rule():
    with pytest.raises(ValueError, match="cautious: invalid direction='adamw'"):
        cautious(gradstep.adamw(0.1))


def test_invalid_options_name_argument_and_range():
    with pytest.raises(ValueError, match="normalization"):
        cautious(_passthrough(), normalization="max")
    with pytest.raises(ValueError, match="min_fraction"):
        cautious(_passthrough(), min_fraction=0.0)


def test_tree_protocol_sees_the_inner_direction():
    rule = gradstep.cautious_adamw(0.1)
    kinds = [type(v.transform).__name__ for v in walk(rule)]
    assert "Cautious" in kinds and "Elementwise" in kinds
    wrapper = next(v for v in walk(rule) if isinstance(v.transform, Cautious))
    assert wrapper.path == ("scale_by_adam",)
    # a map rebuilds the wrapper around its mapped child (Dandelion's clear_nan
    # marks every elementwise stage with slots, inside the wrapper too)
    cleared = with_clear_nan(rule)
    inner = next(v.transform for v in walk(cleared) if isinstance(v.transform, Cautious)).inner
    assert inner.clear_nan_slots
    same = map_transform(lambda t: t, rule)
    assert same is rule


def _replay(case: dict, engine: str) -> list[list[np.ndarray]]:
    dtype = np.dtype(case["dtype"])
    direction = getattr(adopt_rules, case["direction"])(**case["direction_kwargs"])
    transform = chain(
        cautious(direction, **case["wrapper_kwargs"]),
        scale_by_learning_rate(case["learning_rate"]),
    )
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    opt = gradstep.Optimizer(params, transform, engine=engine)
    out = []
    for grads in case["grads"]:
        opt.step([np.array(g, dtype=dtype) for g in grads])
        out.append([p.copy() for p in params])
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_wrapped_direction_matches_reference(case):
    got = _replay(case, "auto")
    for k, (step_got, step_want) in enumerate(zip(got, case["trajectory"])):
        for i, (g, w) in enumerate(zip(step_got, step_want)):
            assert g.dtype == np.dtype(case["dtype"])
            np.testing.assert_allclose(
                g,
                np.array(w),
                **TOLERANCE[case["dtype"]],
                err_msg=f"{case['id']}: step {k + 1}, tensor {i}",
            )


def test_jax_engine_runs_the_wrapper_under_jit():
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    import jax.numpy as jnp

    from gradstep.jax import to_optax

    rule = gradstep.cautious_lion(0.1)
    opt = to_optax(rule)
    params = [jnp.array([1.0, 1.0, 1.0])]
    g = [jnp.array([0.5, -2.0, 0.0])]
    updates, _ = jax.jit(opt.update)(g, opt.init(params), params)
    np.testing.assert_allclose(np.asarray(updates[0]), [-0.15, 0.15, 0.0], rtol=1e-6)


def test_a_nan_direction_is_not_hidden_by_the_mask():
    t = cautious(_passthrough())
    g = np.array([np.nan, 1.0])
    u, _ = t.update([g], {"inner": {"mu": [np.array([np.nan, 1.0])]}})
    assert np.isnan(u[0][0]) and u[0][1] == 2.0
