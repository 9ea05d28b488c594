from collections import namedtuple

import numpy as np
import pytest

from gradstep import tree

Pair = namedtuple("Pair", "weight bias")


def test_flatten_and_unflatten_round_trip_nested_containers():
    t = {"a": [np.ones(2), (np.zeros(1), 3.0)], "b": Pair(np.ones(3), None), "c": None}
    leaves, td = tree.flatten(t)
    assert len(leaves) == 4 and td.num_leaves == 4
    back = tree.unflatten(td, leaves)
    assert isinstance(back["a"], list) and isinstance(back["a"][1], tuple)
    assert isinstance(back["b"], Pair) and back["b"].bias is None and back["c"] is None
    assert back["a"][1][1] == 3.0


def test_single_array_is_a_tree_of_one_leaf():
    x = np.arange(3.0)
    leaves, td = tree.flatten(x)
    assert leaves[0] is x and tree.unflatten(td, leaves) is x
    assert tree.leaf_paths(x) == [""]


def test_leaf_paths_name_every_leaf():
    t = {
        "layer1": {"weight": np.ones(2), "bias": np.ones(1)},
        "head": [np.ones(1)],
        "pair": Pair(1.0, 2.0),
    }
    assert tree.leaf_paths(t) == [  # a dict's leaves in the order of its sorted keys
        "head/0",
        "layer1/bias",
        "layer1/weight",
        "pair/weight",
        "pair/bias",
    ]


def test_tree_map_and_mismatched_structures():
    a = [np.ones(2), np.ones(3)]
    doubled = tree.tree_map(lambda x, y: x + y, a, a)
    assert [x.tolist() for x in doubled] == [[2, 2], [2, 2, 2]]
    with pytest.raises(ValueError, match="structures differ"):
        tree.tree_map(lambda x, y: x, a, [np.ones(2)])
    with pytest.raises(ValueError, match="too many leaves"):
        tree.unflatten(tree.structure(a), [1, 2, 3])
    with pytest.raises(ValueError, match="too few leaves"):
        tree.unflatten(tree.structure(a), [1])
