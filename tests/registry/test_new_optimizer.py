"""Adding an optimizer is one rule file and one catalog entry: a toy rule, written in a
temporary module and registered, is picked up by the generic tests, the torch front,
the JAX front, ``gradstep list`` and the documentation table without any other edit."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep import OptimizerSpec

TESTS = Path(__file__).resolve().parents[1]

TOY_RULE = '''
"""A toy rule for the test: SGD whose step is damped by a constant."""

from gradstep._core.elementwise import Elementwise
from gradstep._core.stages import rule, scale_by_learning_rate
from gradstep._core.validate import Interval, hyperparams


def _damped(g, damping):
    return g / (1 + damping)


@hyperparams(learning_rate=Interval(0.0, lo_open=True), damping=Interval(0.0))
def toy_damped_sgd(learning_rate, damping=1.0):
    """A toy: ``w <- w - lr * g / (1 + damping)``."""
    stage = Elementwise("toy_damping", _damped, hyperparams={"damping": damping})
    return rule("toy_damped_sgd", stage, scale_by_learning_rate(learning_rate))
'''


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy_rule_module.py"
    path.write_text(textwrap.dedent(TOY_RULE))
    module = _load(path, "toy_rule_module")
    spec = OptimizerSpec(
        "toy_damped_sgd",
        module.toy_damped_sgd,
        "toy",
        "A toy rule registered by a test.",
        frozenset({"elementwise"}),
        test_hyperparams={"learning_rate": 0.1, "damping": 0.5},
    )
    gradstep.REGISTRY.register(spec)
    try:
        yield spec
    finally:
        gradstep.REGISTRY.unregister(spec.name)


def test_generic_tests_parametrise_over_it(toy):
    properties = _load(TESTS / "properties" / "test_registry_properties.py", "_props")
    assert toy.name in properties.IDS
    # and they pass on it
    properties.test_converges_on_a_quadratic(toy)
    properties.test_keeps_float32_as_float32(toy)
    properties.test_state_dict_round_trip(toy)
    properties.test_update_is_pure(toy)
    properties.test_element_functions_receive_the_scalars_prepare_makes(toy)
    wrapped = _load(TESTS / "equivalence" / "test_wrapped_everywhere.py", "_wrapped")
    assert toy in wrapped.SPECS
    assert any(case.values[0] is toy for case in wrapped.CASES)


def test_public_export_and_listings_pick_it_up(toy):
    assert gradstep.toy_damped_sgd is toy.factory
    from gradstep.cli import listing

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        listing.run(argparse.Namespace(markdown=False))
    assert "toy_damped_sgd(" in out.getvalue()
    assert "`toy_damped_sgd(" in listing.markdown()


def test_torch_front_has_a_class_for_it(toy):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep.torch as gt

    cls = getattr(gt, gt.class_name(toy.name))
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = cls([w], learning_rate=0.1, damping=1.0)
    w.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), [0.95, -2.05])


def test_jax_front_runs_it_under_jit(toy):
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    import jax.numpy as jnp

    from gradstep.jax import to_optax

    opt = to_optax(gradstep.toy_damped_sgd(0.1, damping=1.0))
    params = [jnp.array([1.0, -2.0])]
    updates, _ = jax.jit(opt.update)([jnp.array([1.0, 1.0])], opt.init(params), params)
    np.testing.assert_allclose(np.asarray(updates[0]), [-0.05, -0.05], rtol=1e-6)
