"""Every registered optimizer, wrapped in every combinator and non-finite policy, gives
the same trajectory on every engine and front as on the eager NumPy engine.

Engines and fronts: torch CPU eager through :class:`gradstep.torch.TransformOptimizer`
and JAX under ``jax.jit`` (stages declared not traceable run on the host,
``fallback="host"``), for every rule in every wrapper; the fused engine, on the NumPy
front and the torch front's default path, for a rotation over the wrappers (see
:func:`_fused_sample`; labelled only where the wrapped transform compiles there).
Small arrays, three steps, float64; the second step's gradient has a NaN element for
the non-finite policies.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine
from gradstep.engines.plan import NotFusable
from gradstep.transforms import accumulate, lookahead, nonfinite_policy, parameter_swa
from gradstep.transforms.nonfinite import POLICIES

SHAPES = ((3, 2), (4,))
STEPS = 3
TOLERANCE = 1e-12  # relative, float64: the same math in another order at most

#: capabilities whose rules take no part, and why
NOT_COMPARED = {
    "needs_closure": "re-evaluates the loss inside the step, which these fronts' "
    "plain step(grads) does not",
    "stochastic": "draws random numbers; each backend has its own generator",
    "needs_value": "takes the loss every step, which these fronts' plain step(grads) "
    "does not give; tests/jax_front/test_cross_backend.py compares it on every backend",
}


# masks and labels are functions of the parameters (by shape): every front takes
# them, including the torch front, which initialises one parameter at a time
def _is_matrix(params):
    return gradstep.tree.tree_map(lambda p: np.ndim(p) == 2, params)


def _labels(params):
    return gradstep.tree.tree_map(lambda p: "rule" if np.ndim(p) == 2 else "other", params)


def _partitioned(t):
    return gradstep.partition({"rule": t, "other": gradstep.sgd(0.05)}, _labels)


def _policy(name):
    return lambda t: nonfinite_policy(t, name)


WRAPPERS = {
    "masked": lambda t: gradstep.masked(t, _is_matrix),
    "partition": _partitioned,
    **{f"nonfinite_{p}": _policy(p) for p in POLICIES},
    "accumulate": lambda t: accumulate(t, 2),
    "lookahead": lambda t: lookahead(t, sync_period=2),
}

#: wrappers run around a sample of the rules only, one of each stage kind (every
#: rule in them would cost more than it finds): SWA averages the iterates without
#: changing them, so the trajectories compared are the inner rule's, through the
#: wrapper's state on every front
SAMPLED_WRAPPERS = {"swa": lambda t: parameter_swa(t, start=2)}
SAMPLE = {"prodigy", "lamb", "cautious_adamw", "mechanic"}

SPECS = [s for s in gradstep.REGISTRY if not set(NOT_COMPARED) & set(s.capabilities)]


def _problem(with_nan: bool):
    rng = np.random.default_rng(1)
    params = [rng.normal(size=s) for s in SHAPES]
    grads = [[rng.normal(size=s) for s in SHAPES] for _ in range(STEPS)]
    if with_nan:
        grads[1][0][1, 0] = np.nan
    return params, grads


def _make(spec, wrapper):
    wrap = WRAPPERS.get(wrapper) or SAMPLED_WRAPPERS[wrapper]
    return wrap(spec.factory(**spec.test_hyperparams))


def run_numpy(spec, wrapper, engine):
    params, grads = _problem(wrapper.startswith("nonfinite"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN arithmetic of "propagate"
        if engine == "fused":
            warnings.filterwarnings("error", message="gradstep.Optimizer: running the eager")
        opt = gradstep.Optimizer(params, _make(spec, wrapper), engine=engine)
        out = []
        for g in grads:
            opt.step(g)
            out.append([p.copy() for p in params])
    return out


def run_torch(spec, wrapper, engine):
    import torch

    from gradstep.torch import TransformOptimizer

    params, grads = _problem(wrapper.startswith("nonfinite"))
    tensors = [torch.nn.Parameter(torch.tensor(p)) for p in params]
    opt = TransformOptimizer(tensors, _make(spec, wrapper), engine=engine)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for g in grads:
            for t, x in zip(tensors, g):
                t.grad = torch.tensor(x)
            opt.step()
            out.append([t.detach().numpy().copy() for t in tensors])
    return out


def run_jax(spec, wrapper):
    import jax
    import jax.numpy as jnp

    from gradstep.jax import apply_updates, to_optax

    params, grads = _problem(wrapper.startswith("nonfinite"))
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # host fallback, NaN arithmetic
        opt = to_optax(_make(spec, wrapper), fallback="host")
        params = [jnp.asarray(p) for p in params]
        state = opt.init(params)
        step = jax.jit(opt.update)
        out = []
        for g in grads:
            updates, state = step([jnp.asarray(x) for x in g], state, params)
            params = apply_updates(params, updates)
            out.append([np.asarray(p) for p in params])
    return out


def _fusable(spec, wrapper) -> bool:
    """Whether the wrapped rule compiles and its fused forms cover this problem's
    shapes (AdamP's projection, CAME's moments run fused on vectors only)."""
    try:
        engine = FusedEngine(_make(spec, wrapper))
    except NotFusable:
        return False
    return engine.refusal(list(SHAPES), np.float64) is None


def _assert_same(got, want, label):
    for k, (step_got, step_want) in enumerate(zip(got, want)):
        for i, (a, b) in enumerate(zip(step_got, step_want)):
            assert a.dtype == b.dtype, (label, a.dtype, b.dtype)
            assert np.array_equal(np.isnan(a), np.isnan(b)), f"{label}: NaN at step {k + 1}"
            scale = float(np.max(np.abs(np.nan_to_num(b)))) or 1.0
            diff = np.nan_to_num(np.abs(a - b)) / scale
            assert float(np.max(diff)) <= TOLERANCE, f"{label}: step {k + 1}, tensor {i}"


FRONTS = ["numpy fused", "torch fused", "torch", "jax jit"]

#: (front, wrapper) -> (the rules that diverge there today, None for all; why). Each
#: such case is a strict xfail: a fix makes it fail until its entry is removed.
KNOWN_DIVERGENCES: dict[tuple[str, str], tuple[set[str] | None, str]] = {}


def _known(spec, wrapper, front):
    entry = KNOWN_DIVERGENCES.get((front, wrapper))
    if entry is None or (entry[0] is not None and spec.name not in entry[0]):
        return ()
    return (pytest.mark.xfail(reason=entry[1], strict=True),)


def _fused_sample() -> set[tuple[str, str]]:
    """The (rule, wrapper) pairs run on the fused engine: every wrapper around each
    rule of :data:`SAMPLE` (one of each stage kind), and around every other rule the
    wrappers in turn, one each, over those that compile with it. Each pair is a
    kernel of its own, compiled in about half a second: the whole product took a
    sixth of the suite's time to compile, and a wrapper's part of a kernel is the
    same whichever elementwise rule it wraps (the eager fronts run every pair)."""
    pairs = set()
    for turn, spec in enumerate(SPECS):
        wrappers = list(WRAPPERS) + (list(SAMPLED_WRAPPERS) if spec.name in SAMPLE else [])
        fusable = [w for w in wrappers if _fusable(spec, w)]
        chosen = fusable if spec.name in SAMPLE else fusable[turn % max(len(fusable), 1) :][:1]
        pairs.update((spec.name, w) for w in chosen)
    return pairs


FUSED = _fused_sample()

CASES = [
    pytest.param(
        spec,
        wrapper,
        front,
        marks=_known(spec, wrapper, front),
        id=f"{spec.name}-{wrapper}-{front.replace(' ', '_')}",
    )
    for spec in SPECS
    for wrapper in list(WRAPPERS) + (list(SAMPLED_WRAPPERS) if spec.name in SAMPLE else [])
    for front in FRONTS
    if "fused" not in front or (spec.name, wrapper) in FUSED
]


@pytest.fixture(scope="module")
def reference():
    cache: dict = {}

    def get(spec, wrapper):
        key = (spec.name, wrapper)
        if key not in cache:
            cache[key] = run_numpy(spec, wrapper, "eager")
        return cache[key]

    return get


@pytest.mark.parametrize(("spec", "wrapper", "front"), CASES)
def test_wrapped_rule_matches_numpy_eager(spec, wrapper, front, reference):
    want = reference(spec, wrapper)
    if front == "numpy fused":
        got = run_numpy(spec, wrapper, "fused")
    elif front.startswith("torch"):
        pytest.importorskip("torch", reason="needs torch (a test dependency)")
        got = run_torch(spec, wrapper, "fused" if front == "torch fused" else "eager")
    else:
        pytest.importorskip("jax", reason="needs JAX (a test dependency)")
        got = run_jax(spec, wrapper)
    _assert_same(got, want, f"{spec.name} in {wrapper} on {front}")


def test_the_sample_is_registered():
    assert SAMPLE <= {s.name for s in SPECS}


def test_every_wrapper_and_every_fusable_rule_run_fused():
    fusable = {(s.name, w) for s in SPECS for w in WRAPPERS if _fusable(s, w)}
    assert {name for name, _ in fusable} == {name for name, _ in FUSED}
    assert {w for _, w in fusable} <= {w for _, w in FUSED}


def test_every_registered_rule_takes_part_or_says_why():
    for spec in gradstep.REGISTRY:
        left_out = set(NOT_COMPARED) & set(spec.capabilities)
        assert (spec in SPECS) != bool(left_out), spec.name
