"""The structural protocol: every walk over a transform tree goes through it."""

import numpy as np
import pytest

import gradstep
from gradstep._core.combine import Masked, Partition
from gradstep._core.elementwise import Elementwise
from gradstep._core.transform import fold_transform, map_transform, walk
from gradstep.transforms import clip_by_global_norm, lookahead, nonfinite_policy


def _nan_step(transform):
    """One step whose gradient has a NaN element, then the state's float leaves."""
    params = {"a": np.array([1.0, 2.0, 3.0])}
    state = transform.init(params)
    grads = {"a": np.array([0.5, np.nan, -0.5])}
    _, state = transform.update(grads, state, params)
    leaves = []

    def collect(node):
        if isinstance(node, dict):
            for v in node.values():
                collect(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                collect(v)
        elif np.ndim(node) > 0:
            leaves.append(np.asarray(node))

    collect(state)
    return leaves


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradstep.adam(0.1),
        lambda: gradstep.partition({"a": gradstep.adam(0.1)}, {"a": "a"}),
        lambda: gradstep.masked(gradstep.adam(0.1), {"a": True}),
        lambda: lookahead(gradstep.adam(0.1)),
    ],
    ids=["plain", "partition", "masked", "lookahead"],
)
def test_clear_nan_clears_the_moments_wherever_the_rule_sits(make):
    """Dandelion's clear_nan zeroes NaN in every slot, also inside a partition (the
    bug: the policy did not see through ``partition``, so Muon kept NaN moments)."""
    slots = _nan_step(nonfinite_policy(make(), "clear_nan"))
    assert slots, "the rule keeps per-element state"
    for leaf in slots:
        assert not np.isnan(leaf).any(), leaf


def test_walk_gives_state_paths_and_leaves():
    inner = gradstep.adam(0.1)
    t = gradstep.chain(
        clip_by_global_norm(1.0),
        gradstep.partition({"x": inner, "y": gradstep.sgd(0.1)}, {"p": "x", "q": "y", "r": "x"}),
    )
    params = {"p": np.zeros(2), "q": np.zeros(3), "r": np.zeros(4)}
    state = t.init(params)
    visits = list(walk(t, params))
    assert visits[0].transform is t and visits[0].path == () and visits[0].leaves == [0, 1, 2]
    by_id = {id(v.transform): v for v in visits}
    v = by_id[id(inner)]
    assert v.leaves == [0, 2]
    assert v.path[-1] == "x" and v.state(state) is state[v.path[0]]["x"]
    assert isinstance(v.parents[-1], Partition) and v.parents[0] is t
    elementwise = [v for v in visits if isinstance(v.transform, Elementwise)]
    for v in elementwise:  # every path addresses that stage's own state
        assert isinstance(v.state(state), dict)


def test_map_transform_rebuilds_only_what_changed_and_keeps_subclasses():
    t = lookahead(gradstep.chain(gradstep.masked(gradstep.adam(0.1), {"a": True})))
    same = map_transform(lambda n: n, t)
    assert same is t
    renamed = map_transform(
        lambda n: n.replace(clear_nan_slots=True) if type(n) is Elementwise and n.slots else n, t
    )
    assert type(renamed) is type(t) and renamed is not t
    assert renamed.sync_period == t.sync_period
    masked = [v.transform for v in walk(renamed) if isinstance(v.transform, Masked)]
    assert len(masked) == 1 and masked[0].mask == {"a": True}
    assert all(
        n.transform.clear_nan_slots
        for n in walk(renamed)
        if type(n.transform) is Elementwise and n.transform.slots
    )
    # the original is untouched
    assert not any(n.transform.clear_nan_slots for n in walk(t) if type(n.transform) is Elementwise)


def test_fold_counts_every_node():
    t = gradstep.chain(gradstep.adam(0.1), gradstep.partition({"a": gradstep.sgd(1.0)}, ["a"]))
    # chain, adam's chain and its two stages, partition, sgd's chain and its stage(s)
    assert fold_transform(lambda n, kids: 1 + sum(kids), t) == len(list(walk(t))) >= 7
