"""The torch front splits state by what each transform declares per parameter.

``Transform.per_parameter_state`` names the lists of a transform's own state that
hold one item per parameter; the torch front's :class:`Layout` reads the declarations
(never comparing states initialised for one and for two parameters). Here that
comparison is the oracle: for every registered optimizer, alone and under every
wrapper, the declared lists are exactly the lists that grow with the parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradstep
import gradstep.transforms as T
from gradstep._core import tree as _tree
from gradstep._core.transform import Transform, per_parameter_paths
from gradstep.registry import REGISTRY
from gradstep.rules.ldog import scale_by_ldog
from gradstep.rules.nadam import scale_by_nadam
from gradstep.torch import TransformOptimizer
from gradstep.torch._state import Layout, StateSplitError
from gradstep.transforms.accumulation import accumulate
from gradstep.transforms.lookahead import lookahead
from gradstep.transforms.nonfinite import nonfinite_policy

SHAPES = [(3,), (3, 4), (2, 3, 4)]


def _wrappers():
    yield "plain", lambda t: t
    yield "masked", lambda t: gradstep.masked(t, lambda p: [True for _ in p])
    yield "masked-none", lambda t: gradstep.masked(t, lambda p: [False for _ in p])
    yield (
        "partition",
        lambda t: gradstep.partition(
            {"a": t, "b": gradstep.momentum(0.1)}, lambda p: ["a" for _ in p]
        ),
    )
    yield "accumulate", lambda t: accumulate(t, 2)
    yield "lookahead", lambda t: lookahead(t)
    for policy in ("clear_nan", "skip", "zero"):
        yield policy, lambda t, policy=policy: nonfinite_policy(t, policy)


def _growing_lists(t: Transform, like: np.ndarray) -> set[tuple]:
    """The state paths whose lists grow from one item to two with the parameters."""
    one = _tree.structure(t.init([like]))
    two = _tree.structure(t.init([like, np.zeros_like(like)]))
    found: set[tuple] = set()

    def visit(a, b, tokens: tuple) -> None:
        if a.kind in ("list", "tuple"):
            if len(a.children) == 1 and len(b.children) == 2:
                found.add(tokens)
                return
            for i, (x, y) in enumerate(zip(a.children, b.children)):
                visit(x, y, tokens + (i,))
        elif a.kind in ("dict", "namedtuple"):
            names = a.keys._fields if a.kind == "namedtuple" else a.keys
            for k, x, y in zip(names, a.children, b.children):
                visit(x, y, tokens + (k,))

    visit(one, two, ())
    return found


def _at(state, path: tuple):
    for key in path:
        state = getattr(state, key) if hasattr(state, "_fields") else state[key]
    return state


def _nonempty(t: Transform, like: np.ndarray, paths: set[tuple]) -> set[tuple]:
    """The paths holding a non-empty list in the one-parameter state (a declared
    list is empty where a mask or a label leaves the parameter out)."""
    state = t.init([like])
    return {path for path in paths if len(_at(state, path))}


@pytest.mark.parametrize("wrapper", [name for name, _ in _wrappers()])
@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.name)
def test_declared_lists_are_the_per_parameter_ones(spec, wrapper):
    wrap = dict(_wrappers())[wrapper]
    try:
        t = wrap(spec.factory(**spec.test_hyperparams))
    except ValueError as error:  # a policy the rule refuses (said by its own check)
        pytest.skip(reason=f"{spec.name} under {wrapper}: {error}")
    declared, _ = per_parameter_paths(t)
    for shape in SHAPES:
        like = np.zeros(shape)
        assert _nonempty(t, like, declared) == _growing_lists(t, like), (spec.name, shape)
        Layout(t, like)  # and the front builds its layout from them


def _adam():
    return gradstep.adam(0.1)


# transforms outside the registry that keep state, each built the way a user would
EXTRAS = {
    "scale_by_ldog": lambda: scale_by_ldog(),
    "nadam_shared_schedule": lambda: scale_by_nadam(schedule_scope="shared"),
    "per_parameter": lambda: T.mxnet.per_parameter(_adam()),
    "measure_with_ema": lambda: T.measure_with_ema("update_norm", 0.9),
    "monitor": lambda: T.monitor(
        {"norm": "update_norm", "ema": T.measure_with_ema("update_rms", 0.9)}
    ),
    "parameter_ema": lambda: T.parameter_ema(_adam()),
    "parameter_swa": lambda: T.parameter_swa(_adam()),
    "reduce_on_plateau": lambda: T.reduce_on_plateau(),
    "skip_large_updates": lambda: T.skip_large_updates(_adam(), 10.0),
    "skip_nonfinite": lambda: T.skip_nonfinite(_adam()),
    "selective_transform": lambda: T.selective_transform(_adam(), freeze_mask=False),
    "adaptive_clip": lambda: gradstep.chain(T.adaptive_clip(), _adam()),
    "dp_aggregate": lambda: T.differentially_private_aggregate(1.0, 0.1, seed=0),
    "block_rms": lambda: gradstep.chain(T.clip_by_block_rms(1.0), _adam()),
    "param_block_norm": lambda: gradstep.chain(_adam(), T.scale_by_param_block_norm()),
}


@pytest.mark.parametrize("name", list(EXTRAS))
def test_declared_lists_of_transforms_outside_the_registry(name):
    t = EXTRAS[name]()
    declared, _ = per_parameter_paths(t)
    for shape in SHAPES:
        like = np.zeros(shape)
        assert _nonempty(t, like, declared) == _growing_lists(t, like), (name, shape)
        Layout(t, like)


def test_partition_with_clear_nan_splits_both_groups():
    labels = lambda params: ["a" if np.size(p) == 3 else "b" for p in params]  # noqa: E731
    groups = {"a": gradstep.adam(0.1), "b": gradstep.momentum(0.1)}
    t = nonfinite_policy(gradstep.partition(groups, labels), "clear_nan")
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2))
    opt = TransformOptimizer([a, b], t)
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    opt.step()
    assert set(opt.state[a]) == {"step", "mu", "nu"}
    assert set(opt.state[b]) == {"step", "velocity"}
    assert torch.allclose(opt.state[b]["velocity"], torch.full((2,), -0.1))


class _Running(Transform):
    """A sum of the gradients per parameter: one list indexed by parameter."""

    name = "running"

    def init(self, params):
        return {"total": [np.zeros_like(np.asarray(p)) for p in _tree.leaves(params)]}

    def update(self, grads, state, params=None, **ctx):
        total = [t + g for t, g in zip(state["total"], _tree.leaves(grads))]
        return _tree.unflatten(_tree.structure(grads), total), {"total": total}


class _DeclaredRunning(_Running):
    per_parameter_state = ("total",)


class _WronglyDeclared(_Running):
    per_parameter_state = ("missing",)

    def init(self, params):
        return {"missing": 0.0, **super().init(params)}


def test_an_undeclared_list_is_refused_with_its_reason():
    w = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(TypeError, match="per_parameter_state"):
        TransformOptimizer([w], _Running())


def test_a_declared_list_becomes_each_parameters_entry():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(2))
    opt = TransformOptimizer([a, b], _DeclaredRunning())
    a.grad, b.grad = torch.full((3,), 2.0), torch.full((2,), 3.0)
    opt.step()
    opt.step()
    assert torch.equal(opt.state[a]["total"], torch.full((3,), 4.0))
    assert torch.equal(opt.state[b]["total"], torch.full((2,), 6.0))


def test_a_declaration_that_is_not_a_list_is_refused():
    with pytest.raises(StateSplitError, match="declares missing a list"):
        Layout(_WronglyDeclared(), np.zeros(3))
