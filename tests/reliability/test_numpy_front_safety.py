"""The NumPy front never writes through a stale pointer, never mis-assigns a gradient,
and a step either completes or changes nothing."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import gradstep
from gradstep._core.transform import FunctionTransform


def _adam_pair(n=5, engine="fused"):
    params = {"a": np.linspace(-1, 1, n), "b": np.linspace(0, 2, n)}
    return params, gradstep.Optimizer(params, gradstep.adam(0.1), engine=engine)


def _grads(params, k=0):
    return {name: np.cos(p + k) for name, p in params.items()}


def _snapshot(opt):
    return copy.deepcopy((opt.params, opt.state, opt.hyperparams))


def _assert_same_tree(a, b):
    la, lb = gradstep.tree.leaves(a), gradstep.tree.leaves(b)
    assert gradstep.tree.structure(a) == gradstep.tree.structure(b)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert np.asarray(x).dtype == np.asarray(y).dtype


# -- item: the pointer table follows the arrays, not their containers ------------------


def test_a_replaced_state_slot_is_the_one_the_fused_engine_updates():
    params, opt = _adam_pair()
    twin_params, twin = _adam_pair(engine="eager")
    opt.step(_grads(params))
    twin.step(_grads(twin_params))
    old = opt.state["scale_by_adam"]["mu"]["a"]  # kept alive: a stale pointer hits it
    new = np.full_like(old, 0.5)
    opt.state["scale_by_adam"]["mu"]["a"] = new
    twin.state["scale_by_adam"]["mu"]["a"] = np.full_like(old, 0.5)
    before_old = old.copy()
    opt.step(_grads(params, 1))
    twin.step(_grads(twin_params, 1))
    np.testing.assert_array_equal(old, before_old)
    assert opt.state["scale_by_adam"]["mu"]["a"] is new
    np.testing.assert_allclose(new, twin.state["scale_by_adam"]["mu"]["a"], rtol=1e-13)
    np.testing.assert_allclose(params["a"], twin_params["a"], rtol=1e-13)


def test_a_state_slot_that_no_longer_fits_is_refused_before_anything_changes():
    params, opt = _adam_pair()
    opt.step(_grads(params))
    opt.state["scale_by_adam"]["nu"]["b"] = np.zeros(2)  # far too small for the kernel
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="nu.*shape"):
        opt.step(_grads(params))
    _assert_same_tree(before, (opt.params, opt.state, opt.hyperparams))
    mu = opt.state["scale_by_adam"]["mu"]["a"]
    opt.state["scale_by_adam"]["nu"]["b"] = np.zeros(5)
    mu.shape = (5, 1)  # reshaped in place: same memory, another shape
    with pytest.raises(ValueError, match="mu.*shape"):
        opt.step(_grads(params))


def test_a_read_only_or_strided_state_slot_runs_eagerly_with_the_right_numbers():
    params, opt = _adam_pair()
    twin_params, twin = _adam_pair(engine="eager")
    ro = np.zeros(5)
    ro.flags.writeable = False
    opt.state["scale_by_adam"]["mu"]["a"] = ro
    twin.state["scale_by_adam"]["mu"]["a"] = np.zeros(5)
    strided = np.zeros(10)[::2]
    opt.state["scale_by_adam"]["nu"]["b"] = strided
    twin.state["scale_by_adam"]["nu"]["b"] = np.zeros(5)
    with pytest.warns(RuntimeWarning, match="eager"):
        opt.step(_grads(params))
    twin.step(_grads(twin_params))
    assert opt.engine == "eager"
    assert not ro.any() and not strided.any()  # never written through
    _assert_same_tree(opt.params, twin.params)


def test_a_replaced_parameter_is_the_one_updated():
    params, opt = _adam_pair()
    opt.step(_grads(params))
    old = params["a"]
    params["a"] = old.copy()
    opt.step(_grads(params, 1))
    assert not np.array_equal(params["a"], old)  # the new array moved, the old did not
    frozen = old.copy()
    opt.step(_grads(params, 2))
    np.testing.assert_array_equal(old, frozen)


def test_a_parameter_replaced_by_one_that_does_not_fit_is_refused():
    params, opt = _adam_pair()
    opt.step(_grads(params))
    params["a"] = np.zeros(3)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="parameter a was replaced"):
        opt.step({"a": np.ones(3), "b": np.ones(5)})
    _assert_same_tree(before, (opt.params, opt.state, opt.hyperparams))
    params["a"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="dtype"):
        opt.step(_grads(params))


def test_a_parameter_reshaped_in_place_is_refused():
    params, opt = _adam_pair(n=6)
    opt.step(_grads(params))
    params["b"].shape = (2, 3)
    with pytest.raises(ValueError, match="parameter b"):
        opt.step({"a": np.ones(6), "b": np.ones((2, 3))})


# -- item: copies are independent ---------------------------------------------------------


@pytest.mark.parametrize("engine", ["fused", "eager"])
def test_deepcopy_gives_an_independent_optimizer(engine):
    params, opt = _adam_pair(engine=engine)
    opt.step(_grads(params))
    clone = copy.deepcopy(opt)
    before = copy.deepcopy(params)
    state_before = copy.deepcopy(opt.state)
    for k in range(3):
        clone.step(_grads(clone.params, k))
    _assert_same_tree(params, before)
    _assert_same_tree(opt.state, state_before)
    for k in range(3):
        opt.step(_grads(params, k))
    _assert_same_tree(opt.params, clone.params)
    _assert_same_tree(opt.state, clone.state)
    assert clone.engine == engine


# -- item: gradients are matched by key --------------------------------------------------


@pytest.mark.parametrize("engine", ["fused", "eager"])
def test_gradients_in_a_dict_are_matched_by_key_not_by_position(engine):
    params = {"a": np.zeros(3), "b": np.zeros(3)}
    opt = gradstep.Optimizer(params, gradstep.sgd(1.0), engine=engine)
    opt.step({"b": np.full(3, 2.0), "a": np.full(3, 1.0)})
    np.testing.assert_array_equal(params["a"], -1.0)
    np.testing.assert_array_equal(params["b"], -2.0)


@pytest.mark.parametrize(
    "grads, path",
    [
        ({"a": np.ones(3), "c": np.ones(3)}, "'c': unexpected key; 'b' missing"),
        ({"a": np.ones(3), "b": np.ones(3), "c": np.ones(3)}, "'c'"),
        ({"a": np.ones(3), "b": [np.ones(3)]}, "'b'"),
        ([np.ones(3), np.ones(3)], "'<root>'"),
    ],
)
def test_a_gradient_tree_that_differs_is_refused_naming_the_path(grads, path):
    params = {"a": np.zeros(3), "b": np.zeros(3)}
    opt = gradstep.Optimizer(params, gradstep.adam(0.1))
    with pytest.raises(ValueError, match=f"structures differ at {path}"):
        opt.step(grads)
    assert not params["a"].any() and int(opt.state["scale_by_adam"]["count"]) == 0


def test_nested_gradient_trees_name_the_first_differing_path():
    params = {"layer": {"w": np.zeros(2), "b": np.zeros(1)}, "out": [np.zeros(2)]}
    opt = gradstep.Optimizer(params, gradstep.sgd(0.1))
    with pytest.raises(ValueError, match="'layer/bias': unexpected key; 'layer/b' missing"):
        opt.step({"layer": {"w": np.ones(2), "bias": np.ones(1)}, "out": [np.ones(2)]})
    with pytest.raises(ValueError, match="'out'.*expected 1 entries, got 2"):
        opt.step({"layer": {"w": np.ones(2), "b": np.ones(1)}, "out": [np.ones(2)] * 2})


# -- item: a parameter given twice ---------------------------------------------------


def test_the_same_array_twice_is_refused():
    w = np.zeros(4)
    with pytest.raises(ValueError, match="parameters 0 and 1 are the same array"):
        gradstep.Optimizer([w, w], gradstep.sgd(0.1))
    with pytest.raises(ValueError, match="same array"):
        gradstep.Optimizer({"x": w, "y": {"z": w}}, gradstep.sgd(0.1))


def test_overlapping_views_are_refused_and_disjoint_ones_accepted():
    base = np.zeros(10)
    with pytest.raises(ValueError, match="share memory"):
        gradstep.Optimizer([base[:6], base[4:]], gradstep.sgd(0.1))
    with pytest.raises(ValueError, match="share memory"):
        gradstep.Optimizer([base, base[3:5]], gradstep.sgd(0.1))
    grid = np.zeros((4, 4))
    with pytest.raises(ValueError, match="share memory"):
        gradstep.Optimizer([grid[1], grid[:, 1]], gradstep.sgd(0.1))
    # views that touch different elements are distinct parameters
    opt = gradstep.Optimizer([base[:5], base[5:], grid[::2], grid[1::2]], gradstep.sgd(1.0))
    with pytest.warns(RuntimeWarning, match="not a contiguous array"):
        opt.step([np.ones(5), np.ones(5), np.ones((2, 4)), np.ones((2, 4))])
    np.testing.assert_array_equal(base, -1.0)
    np.testing.assert_array_equal(grid, -1.0)


def test_a_parameter_replaced_by_a_view_of_another_is_refused():
    params = [np.zeros(4), np.zeros(4)]
    opt = gradstep.Optimizer(params, gradstep.sgd(0.1))
    params[1] = params[0][:]
    with pytest.raises(ValueError, match="share memory"):
        opt.step([np.ones(4), np.ones(4)])


# -- item: a failed step changes nothing -------------------------------------------


def _three_params():
    return [np.linspace(0, 1, 4), np.linspace(1, 2, 3), np.linspace(2, 3, 5)]


@pytest.mark.parametrize("engine", ["fused", "eager"])
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones(3, np.complex128), "gradient 1 has dtype complex128"),
        (np.ones(4), "gradient 1 has shape"),
        (np.array(["a", "b", "c"]), "gradient 1 has dtype"),
    ],
)
def test_a_step_that_fails_leaves_params_and_state_as_they_were(engine, bad, match):
    params = _three_params()
    opt = gradstep.Optimizer(params, gradstep.adam(0.1), engine=engine)
    opt.step([np.ones(4), np.ones(3), np.ones(5)])
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=match):
        opt.step([np.ones(4), bad, np.ones(5)])
    _assert_same_tree(before, (opt.params, opt.state, opt.hyperparams))


def test_an_eager_step_whose_update_cannot_be_applied_changes_nothing():
    params = [np.zeros(2), np.zeros(3)]
    # a transform that returns complex updates for the second parameter
    bad = FunctionTransform(
        lambda p: {"n": np.zeros((), np.int64)},
        lambda g, s, p=None, **ctx: ([g[0], g[1] * 1j], {"n": s["n"] + 1}),
    )
    opt = gradstep.Optimizer(params, bad)
    with pytest.raises(ValueError, match="the update of 1"):
        opt.step([np.ones(2), np.ones(3)])
    assert not params[0].any() and int(opt.state["n"]) == 0


# -- item: the engine reported is the one that ran ---------------------------------------


def test_engine_reports_what_ran():
    # a state slot in another dtype than the others of its row: eager (float16 runs
    # fused since the state-precision work)
    p = [np.ones(3), np.ones(2)]
    opt = gradstep.Optimizer(p, gradstep.adam(0.1))
    assert opt.engine == "fused"  # what it will try
    opt.state["scale_by_adam"]["mu"][1] = np.zeros(2, np.float32)
    with pytest.warns(RuntimeWarning):
        opt.step([np.ones(3), np.ones(2)])
    assert opt.engine == "eager"
    q = [np.ones(3)]
    opt = gradstep.Optimizer(q, gradstep.adam(0.1))
    opt.step([np.ones(3)])
    assert opt.engine == "fused"


@pytest.mark.filterwarnings("ignore:gradstep.Optimizer. running the eager engine")
@pytest.mark.parametrize("engine", ["fused", "eager", "auto-fallback"])
def test_pickle_gives_an_independent_optimizer_that_continues_identically(engine):
    import pickle

    dtype = np.float16 if engine == "auto-fallback" else np.float64
    params = {"a": np.linspace(-1, 1, 5).astype(dtype), "b": np.linspace(0, 2, 7).astype(dtype)}
    rule = gradstep.chain(
        gradstep.transforms.clip_by_global_norm(1.0),
        gradstep.adam(gradstep.schedules.warmup_cosine_decay(0.0, 0.1, 3, 20)),
    )
    mode = "auto" if engine == "auto-fallback" else engine
    opt = gradstep.Optimizer(params, rule, engine=mode)
    opt.step(_grads(params))
    clone = pickle.loads(pickle.dumps(opt))
    before = copy.deepcopy(params)
    for k in range(3):
        clone.step(_grads(clone.params, k))
    _assert_same_tree(params, before)
    for k in range(3):
        opt.step(_grads(params, k))
    _assert_same_tree(opt.params, clone.params)
    _assert_same_tree(opt.state, clone.state)


# -- item: per-tensor reductions (trust ratios, NovoGrad's norms) on the fused engine ----

PER_TENSOR = ["lamb", "lars", "novograd", "mars", "stable_adamw"]


def _per_tensor_stage(transform):
    from gradstep._core.per_tensor import PerTensorReduction
    from gradstep._core.transform import walk

    return next(v.transform for v in walk(transform) if isinstance(v.transform, PerTensorReduction))


@pytest.mark.parametrize("engine", ["fused", "eager"])
def test_a_per_tensor_step_that_fails_after_its_reduction_changes_nothing(engine):
    """The reduction pass has run and the host's ``combine`` fails: the main pass never
    ran, so parameters and state are as they were; the next step runs normally."""
    params = _three_params()
    transform = gradstep.lamb(0.1, weight_decay=0.01)
    opt = gradstep.Optimizer(params, transform, engine=engine)
    opt.step([np.ones(4), np.ones(3), np.ones(5)])
    stage = _per_tensor_stage(transform)
    combine = stage.combine

    def failing(sums, flags, h):
        raise FloatingPointError("combine failed")

    stage.combine = failing
    before = _snapshot(opt)
    with pytest.raises(FloatingPointError, match="combine failed"):
        opt.step([np.ones(4), np.ones(3), np.ones(5)])
    _assert_same_tree(before, (opt.params, opt.state, opt.hyperparams))
    stage.combine = combine
    opt.step([np.ones(4), np.ones(3), np.ones(5)])
    assert opt.engine == engine and int(opt.state["scale_by_adam"]["count"]) == 2


@pytest.mark.parametrize("rule", PER_TENSOR)
def test_a_per_tensor_rule_pickled_on_the_fused_engine_continues_identically(rule):
    import pickle

    params = {"a": np.linspace(-1, 1, 5), "b": np.linspace(0, 2, 7).reshape(7, 1)}
    opt = gradstep.Optimizer(params, getattr(gradstep, rule)(0.01), engine="fused")
    opt.step(_grads(params))
    clone = pickle.loads(pickle.dumps(opt))
    for k in range(3):
        clone.step(_grads(clone.params, k))
        opt.step(_grads(params, k))
    assert opt.engine == clone.engine == "fused"
    _assert_same_tree(opt.params, clone.params)
    _assert_same_tree(opt.state, clone.state)
