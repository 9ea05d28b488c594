"""The NumPy front splits a tensorwise rule's step: the tensors its fused forms cover
(vectors) on the fused engine, the others (matrices) on the transform's own update,
one state tree for all, as the whole list stepped eagerly would keep it."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import gradstep
from gradstep.engines.fused import FusedEngine

RULES = ["adamp", "sgdp", "came", "ranger", "agc+adam"]


def _rule(name):
    if name == "agc+adam":  # AGC's form: a per-tensor reduction on vectors
        return gradstep.chain(gradstep.transforms.adaptive_clip(0.01), gradstep.adam(0.1))
    return gradstep.REGISTRY[name].factory()


# a matrix and vectors of several lengths, a scalar among them, in a nested tree
SHAPES = {"layer": {"w": (30, 20), "b": (7,)}, "gain": (5,), "scale": (1,), "t": ()}
VECTORS = ["layer/b", "gain", "scale", "t"]


def _params(seed=0):
    return _made(SHAPES, np.random.default_rng(seed))


def _made(shapes, rng):
    """Arrays of the shapes (tuples, which trees would take apart) in ``shapes``."""
    if isinstance(shapes, dict):
        return {k: _made(v, rng) for k, v in shapes.items()}
    return rng.normal(size=shapes).astype(np.float32)


def _grads(params, k):
    return gradstep.tree.tree_map(lambda p: np.sin(3 * p + k).astype(np.float32), params)


def _run(name, engine, steps=7):  # Ranger's lookahead syncs on step 6
    params = _params()
    opt = gradstep.Optimizer(params, _rule(name), engine=engine)
    for k in range(steps):
        opt.step(_grads(params, k))
    return params, opt


def _leaves(tree):
    return dict(zip(gradstep.tree.leaf_paths(tree), gradstep.tree.leaves(tree)))


def _assert_same_tree(a, b):
    assert gradstep.tree.structure(a) == gradstep.tree.structure(b)
    for x, y in zip(gradstep.tree.leaves(a), gradstep.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert np.asarray(x).dtype == np.asarray(y).dtype


@pytest.mark.parametrize("name", RULES)
def test_a_tensorwise_rule_steps_vectors_fused_beside_the_eager_matrix(name, watch):
    """One launch per step over the four tensors the forms cover; the matrix runs on
    the transform's own update, bit for bit the whole eager step's; the vectors
    within float32 rounding of it; the state is the same tree (names, shapes, dtypes)."""
    calls = watch(FusedEngine, "step_leaves")
    eager_params, eager = _run(name, "eager")
    assert not calls and eager.engine == "eager"
    params, opt = _run(name, "auto")
    assert opt.engine == "fused+eager"
    assert [len(w_leaves) for _, w_leaves, *_ in calls] == [4] * 7
    got, want = _leaves(params), _leaves(eager_params)
    np.testing.assert_array_equal(got["layer/w"], want["layer/w"])
    for path in VECTORS:
        np.testing.assert_allclose(got[path], want[path], rtol=1e-5, atol=1e-6)
    assert gradstep.tree.structure(opt.state) == gradstep.tree.structure(eager.state)
    a, b = opt.state_dict(), eager.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, key
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", RULES)
def test_a_split_run_resumed_from_a_checkpoint_is_exact(name, tmp_path):
    """A checkpoint taken after two steps, loaded into a new optimizer over copies of
    the parameters (and a copy of the optimizer), continues bit for bit as the run
    that was not interrupted."""
    params, opt = _run(name, "auto", steps=2)
    opt.save(tmp_path / "mid.npz")
    resumed_params = copy.deepcopy(params)
    resumed = gradstep.Optimizer(resumed_params, _rule(name))
    resumed.load(tmp_path / "mid.npz")
    clone = copy.deepcopy(opt)
    for k in range(2, 7):
        for o in (opt, resumed, clone):
            o.step(_grads(o.params, k))
    for o in (resumed, clone):
        assert o.engine == "fused+eager"
        _assert_same_tree(o.params, params)
        _assert_same_tree(o.state, opt.state)


def _vector_slot(opt, vector="gain"):
    """The path of a state array of the vector ``vector`` of its parameter's size."""
    size = int(np.prod(SHAPES[vector]))
    return next(
        path
        for path, leaf in _leaves(opt.state).items()
        if path.endswith("/" + vector) and np.size(leaf) == size
    )


def _replace(tree, path, value):
    *parents, last = path.split("/")
    for key in parents:
        tree = tree[key] if isinstance(tree, dict) else tree[int(key)]
    tree[last if isinstance(tree, dict) else int(last)] = value


def _matrix_slot(opt):
    return next(
        path
        for path, leaf in _leaves(opt.state).items()
        if path.endswith("/layer/w") and np.shape(leaf) == SHAPES["layer"]["w"]
    )


FAILURES = {
    # checked before anything runs
    "nan learning rate": lambda opt, g: opt.step(g, learning_rate=float("nan")),
    "complex vector gradient": lambda opt, g: opt.step(
        {**g, "gain": g["gain"].astype(np.complex64)}
    ),
    "matrix gradient of another shape": lambda opt, g: opt.step(
        {**g, "layer": {**g["layer"], "w": np.ones((20, 30), np.float32)}}
    ),
}
# state arrays of another shape: the matrix's (its eager update fails, the engine has
# not run) and a vector's (the matrix's update is computed, then the engine refuses)
BAD_STATE = {
    "matrix state of another shape": _matrix_slot,
    "vector state of another shape": _vector_slot,
}


@pytest.mark.parametrize("failure", sorted(FAILURES) + sorted(BAD_STATE))
@pytest.mark.parametrize("name", RULES)
def test_a_split_step_that_fails_changes_nothing(name, failure):
    params, opt = _run(name, "auto", steps=2)
    grads = _grads(params, 2)
    before = copy.deepcopy((opt.params, opt.state, opt.hyperparams))
    state = opt.state
    if failure in BAD_STATE:
        path = BAD_STATE[failure](opt)
        _replace(opt.state, path, np.zeros(2, np.float32))
        with pytest.raises(ValueError):
            opt.step(grads)
        _replace(opt.state, path, _leaves(before[1])[path])  # the test's own change undone
    else:
        with pytest.raises(ValueError):
            FAILURES[failure](opt, grads)
    assert opt.state is state
    _assert_same_tree((opt.params, opt.state, opt.hyperparams), before)
    # and the next step is the one the failed step would have been
    twin_params, twin = _run(name, "auto", steps=2)
    opt.step(grads)
    twin.step(_grads(twin_params, 2))
    _assert_same_tree(params, twin_params)
    _assert_same_tree(opt.state, twin.state)


@pytest.mark.parametrize("name", RULES)
def test_a_launch_that_fails_after_the_eager_part_changes_nothing(name, monkeypatch):
    """The matrix's update is computed, the engine has checked every array, and its
    launch fails: the matrix is not updated either."""
    params, opt = _run(name, "auto", steps=2)
    before = copy.deepcopy((opt.params, opt.state))

    def failing(*args, **kwargs):
        raise FloatingPointError("launch failed")

    monkeypatch.setattr(FusedEngine, "_launch_all", failing)
    with pytest.raises(FloatingPointError, match="launch failed"):
        opt.step(_grads(params, 2))
    _assert_same_tree((opt.params, opt.state), before)


def test_vectors_the_engine_refuses_at_the_step_run_eagerly_with_the_matrix():
    """A gradient the engine cannot take (not contiguous): the vectors' part runs on
    the transform's own update too, with one warning; the step is the eager one."""
    eager_params, _ = _run("adamp", "eager", steps=1)
    params = _params()
    opt = gradstep.Optimizer(params, gradstep.adamp())
    grads = _grads(params, 0)
    grads["gain"] = np.repeat(grads["gain"], 2)[::2]
    with pytest.warns(RuntimeWarning, match="eager engine instead of the fused one"):
        opt.step(grads)
    assert opt.engine == "eager"
    _assert_same_tree(params, eager_params)


def test_a_chain_that_couples_tensors_still_steps_the_whole_list_eagerly(watch):
    """A global norm makes every tensor's update depend on the others: no split."""
    calls = watch(FusedEngine, "step_leaves", completed=False)
    rule = gradstep.chain(gradstep.transforms.clip_by_global_norm(1.0), gradstep.adamp())
    params = _params()
    opt = gradstep.Optimizer(params, rule)
    opt.step(_grads(params, 0))
    assert opt.engine == "eager" and not calls


def test_what_the_forms_cover_wholly_or_not_at_all_is_not_split():
    vectors = [np.ones(3, np.float32), np.ones(4, np.float32)]
    assert gradstep.Optimizer(vectors, gradstep.adamp()).engine == "fused"
    matrices = [np.ones((3, 2), np.float32), np.ones((2, 2), np.float32)]
    assert gradstep.Optimizer(matrices, gradstep.adamp()).engine == "eager"
    # CAME's form covers no 16-bit parameter
    half = [np.ones((3, 2), np.float16), np.ones(3, np.float16)]
    assert gradstep.Optimizer(half, gradstep.came(0.01)).engine == "eager"
    with pytest.raises(ValueError, match=r"rank < 2 only, not on a tensor of shape \(3, 2\)"):
        gradstep.Optimizer([np.ones((3, 2)), np.ones(3)], gradstep.adamp(), engine="fused")
