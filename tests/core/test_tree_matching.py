"""Trees handed in beside the parameters are matched to them by key, not by position.

Gradients built in another key order than the parameters, and masks or labels written
in another order, pair with the parameters by key; a tree with other keys, another
length or a value that is no True/False mask entry raises a ValueError naming where.
"""

import numpy as np
import pytest

import gradstep
from gradstep._core import tree as _tree

ENGINES = ["eager", "fused"]


def _params():
    return {"w": np.full(3, 1.0), "b": np.full(2, 100.0)}


def test_functional_update_pairs_gradients_with_parameters_by_key():
    t = gradstep.chain(gradstep.transforms.add_decayed_weights(0.5))
    params = _params()
    state = t.init(params)
    in_order, _ = t.update({"w": np.zeros(3), "b": np.zeros(2)}, state, params)
    reordered, _ = t.update({"b": np.zeros(2), "w": np.zeros(3)}, state, params)
    for key in params:
        np.testing.assert_array_equal(reordered[key], in_order[key])
    np.testing.assert_array_equal(reordered["w"], np.full(3, 0.5))


def test_functional_adamw_state_and_parameters_follow_the_gradients_keys():
    t = gradstep.adamw(0.1, weight_decay=0.5)
    params = {"w": np.full(3, 1.0), "b": np.full(3, 100.0)}
    state = t.init(params)
    grads = {"w": np.array([1.0, -2.0, 3.0]), "b": np.array([0.5, 0.25, -1.0])}
    u1, s1 = t.update(grads, state, params)
    u2, s2 = t.update({"b": grads["b"], "w": grads["w"]}, state, params)
    for key in params:
        np.testing.assert_array_equal(u2[key], u1[key])
    u1, _ = t.update(grads, s1, params)
    u2, _ = t.update(grads, s2, params)
    for key in params:
        np.testing.assert_array_equal(u2[key], u1[key])


def test_apply_updates_pairs_by_key_and_refuses_other_keys():
    out = gradstep.apply_updates(
        {"w": np.ones(2), "b": np.full(2, 100.0)}, {"b": np.full(2, -100.0), "w": np.zeros(2)}
    )
    np.testing.assert_array_equal(out["w"], np.ones(2))
    np.testing.assert_array_equal(out["b"], np.zeros(2))
    with pytest.raises(ValueError, match="'w': missing|'x': unexpected"):
        gradstep.apply_updates({"w": np.ones(2)}, {"x": np.ones(2)})


def test_a_rebuilt_dict_keeps_the_users_key_order():
    t = gradstep.sgd(0.1)
    params = {"w": np.ones(2), "b": np.ones(2), "a": np.ones(1)}
    updates, _ = t.update({"w": np.ones(2), "b": np.ones(2), "a": np.ones(1)}, t.init(params))
    assert list(updates) == ["w", "b", "a"]


def _masked_step(mask, engine):
    params = {"w": np.ones(3), "b": np.ones(2)}
    opt = gradstep.Optimizer(
        params, gradstep.adamw(0.1, weight_decay=0.5, mask=mask), engine=engine
    )
    opt.step({"w": np.zeros(3), "b": np.zeros(2)})
    return params


@pytest.mark.parametrize("engine", ENGINES)
def test_a_mask_written_in_another_order_selects_by_key(engine):
    params = _masked_step({"b": False, "w": True}, engine)
    np.testing.assert_array_equal(params["b"], np.ones(2))
    np.testing.assert_allclose(params["w"], np.full(3, 0.95))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "mask, where",
    [
        ({"weight": True, "bias": False}, "unexpected key"),
        ({"w": True}, "'b': missing"),
        ([True, False], "expected a dict"),
        ({"w": "False", "b": "False"}, "one True or False per parameter"),
        ({"w": 1, "b": 0}, "one True or False per parameter"),
        ({"w": np.array([True, False, True]), "b": True}, "an array of shape \\(3,\\)"),
    ],
)
def test_a_mask_that_does_not_fit_is_refused_and_changes_nothing(engine, mask, where):
    params = {"w": np.ones(3), "b": np.ones(2)}
    with pytest.raises(ValueError, match=where):
        opt = gradstep.Optimizer(
            params, gradstep.adamw(0.1, weight_decay=0.5, mask=mask), engine=engine
        )
        opt.step({"w": np.zeros(3), "b": np.zeros(2)})
    np.testing.assert_array_equal(params["w"], np.ones(3))
    np.testing.assert_array_equal(params["b"], np.ones(2))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_prefix_mask_labels_every_leaf_below_it(engine):
    params = {"encoder": {"w": np.ones(2), "b": np.ones(2)}, "head": [np.ones(2)]}
    t = gradstep.masked(
        gradstep.transforms.add_decayed_weights(0.5), {"head": True, "encoder": False}
    )
    opt = gradstep.Optimizer(params, gradstep.chain(t, gradstep.sgd(1.0)), engine=engine)
    opt.step({"encoder": {"w": np.zeros(2), "b": np.zeros(2)}, "head": [np.zeros(2)]})
    np.testing.assert_array_equal(params["encoder"]["w"], np.ones(2))
    np.testing.assert_array_equal(params["head"][0], np.full(2, 0.5))


@pytest.mark.parametrize("engine", ["eager", "auto"])
def test_partition_labels_are_matched_by_key(engine):
    params = {"w": np.ones(3), "b": np.ones(2)}
    t = gradstep.partition(
        {
            "decay": gradstep.adamw(0.1, weight_decay=0.5),
            "frozen": gradstep.transforms.set_to_zero(),
        },
        {"b": "frozen", "w": "decay"},
    )
    gradstep.Optimizer(params, t, engine=engine).step({"w": np.zeros(3), "b": np.zeros(2)})
    np.testing.assert_array_equal(params["b"], np.ones(2))
    np.testing.assert_allclose(params["w"], np.full(3, 0.95))
    with pytest.raises(ValueError, match="unexpected key"):
        gradstep.partition({"a": gradstep.sgd(0.1)}, {"x": "a", "w": "a"}).init(
            {"w": np.ones(1), "b": np.ones(1)}
        )


def test_the_jax_front_refuses_a_mask_with_other_keys():
    jnp = pytest.importorskip("jax.numpy", reason="the JAX front needs jax")
    import gradstep.jax as gj

    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    tx = gj.to_optax(gradstep.adamw(0.1, weight_decay=0.5, mask={"weight": True, "bias": False}))
    with pytest.raises(ValueError, match="unexpected key|missing"):
        tx.update({"w": jnp.zeros(3), "b": jnp.zeros(2)}, tx.init(params), params)
    tx = gj.to_optax(gradstep.adamw(0.1, weight_decay=0.5, mask={"w": "yes", "b": False}))
    with pytest.raises(ValueError, match="one True or False"):
        tx.update({"w": jnp.zeros(3), "b": jnp.zeros(2)}, tx.init(params), params)


def test_dicts_flatten_alike_whatever_their_key_order():
    a, td_a = _tree.flatten({"w": 1, "b": 2})
    b, td_b = _tree.flatten({"b": 2, "w": 1})
    assert a == b and td_a == td_b
    assert list(_tree.unflatten(td_a, a)) == ["w", "b"]
    assert list(_tree.unflatten(td_b, b)) == ["b", "w"]
    mixed, _ = _tree.flatten({1: "one", "a": "letter"})  # keys that do not sort together
    assert sorted(mixed) == ["letter", "one"]
