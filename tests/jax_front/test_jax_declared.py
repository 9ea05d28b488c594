"""The JAX engine knows the core's stage kinds without any import side effect, and
goes to the host only for transforms that declare themselves not traceable."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
import jax.numpy as jnp  # noqa: E402

import gradstep  # noqa: E402
from gradstep._core.elementwise import Elementwise  # noqa: E402
from gradstep._core.transform import Transform  # noqa: E402
from gradstep.engines.jax import JaxEngine, NotTraceable  # noqa: E402
from gradstep.engines.jax_host import _WARNED  # noqa: E402


def test_engine_is_complete_without_the_front():
    """Importing only the engine: the skip wrapper and per-tensor reductions get
    their own nodes (no call of the NumPy update), as through gradstep.jax."""
    code = (
        "import jax, jax.numpy as jnp, gradstep\n"
        "from gradstep.engines.jax import JaxEngine\n"
        "from gradstep.transforms import skip_nonfinite\n"
        "from gradstep.engines.jax_nodes import PerTensorNode\n"
        "from gradstep.engines.jax_wrapper_nodes import SkipNonfiniteNode\n"
        "import sys\n"
        "assert 'gradstep.jax' not in sys.modules\n"
        "e = JaxEngine(skip_nonfinite(gradstep.lamb(0.1)))\n"
        "assert type(e.root) is SkipNonfiniteNode, e.root\n"
        "nodes = [e.root.inner]\n"
        "found = False\n"
        "while nodes:\n"
        "    n = nodes.pop()\n"
        "    found |= type(n) is PerTensorNode\n"
        "    nodes += getattr(n, 'nodes', [])\n"
        "assert found\n"
        "p = [jnp.ones(3)]\n"
        "s = e.init(p)\n"
        "u, s = jax.jit(lambda g, s: e.update(g, s, p))([jnp.ones(3)], s)\n"
        "assert int(s['notfinite_count']) == 0 and u[0].shape == (3,)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class _ReadsValues(Transform):
    """A transform that reads array values in Python but does not declare it."""

    name = "reads_values"

    def init(self, params):
        return {}

    def update(self, grads, state, params=None, **ctx):
        return [g * float(g.sum() > 0) for g in grads], state


class _DeclaredHost(_ReadsValues):
    name = "declared_host"
    traceable = False


def _run(transform, fallback):
    engine = JaxEngine(transform, fallback=fallback)
    params = [jnp.ones(3)]
    state = engine.init(params)
    step = jax.jit(lambda g, s: engine.update(g, s, params))
    updates, state = step([jnp.ones(3)], state)
    updates, state = step([jnp.ones(3) * 2], state)
    return updates


def test_undeclared_transform_is_never_sent_to_the_host():
    with pytest.raises(NotTraceable, match="reads_values.*traceable = False"):
        _run(_ReadsValues(), "host")


def test_declared_transform_runs_on_the_host_with_one_warning():
    _WARNED.discard(("_DeclaredHost", "declared_host"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        updates = _run(_DeclaredHost(), "host")
        _run(_DeclaredHost(), "host")
    named = [w for w in caught if "declared_host" in str(w.message)]
    assert len(named) == 1 and issubclass(named[0].category, RuntimeWarning)
    np.testing.assert_allclose(np.asarray(updates[0]), [2.0, 2.0, 2.0])
    with pytest.raises(NotTraceable, match="fallback='host'"):
        _run(_DeclaredHost(), "error")


def _broken_prepare(h, count):
    return {"factor": h["missing"] * count}  # a bug: a KeyError, not a tracing problem


def _scaled(g, factor):
    return g * factor


def test_a_bug_in_prepare_propagates_instead_of_going_to_the_host():
    stage = Elementwise("broken", _scaled, prepare=_broken_prepare, uses_count=True)
    with pytest.raises(KeyError, match="missing"):
        _run(stage, "host")


def test_a_prepare_needing_python_numbers_still_runs_on_the_host():
    """Branching on the count is a tracing error: the scalars come from the host."""
    opt = gradstep.REGISTRY["schedule_free_sgd"]
    t = opt.factory(**opt.test_hyperparams)
    _run(t, "error")


def _per_parameter():
    from gradstep.transforms.mxnet import per_parameter

    return per_parameter(gradstep.adam(0.1))


@pytest.mark.parametrize(
    "make",
    [_per_parameter],
    ids=["per_parameter"],
)
def test_numpy_transforms_are_declared_and_run_on_the_host(make):
    """gradstep's NumPy transforms declare themselves, so fallback='host' keeps
    running them (an undeclared one would raise NotTraceable)."""
    want = make()
    params = [np.ones((2, 3)), np.ones(3)]
    state = want.init(params)
    grads = [np.full((2, 3), 0.1), np.full(3, 0.2)]
    expected, _ = want.update(grads, state, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        engine = JaxEngine(make(), fallback="host")
        jparams = [jnp.asarray(p) for p in params]
        jstate = engine.init(jparams)
        got, _ = jax.jit(lambda g, s: engine.update(g, s, jparams))(
            [jnp.asarray(g) for g in grads], jstate
        )
    for a, b in zip(got, expected):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6)
