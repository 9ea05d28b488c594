"""Trust ratios at zero norms, LAMB's bounds, masks that exclude biases and norms
from the scaling and from the decay, and the validation of the layer-wise options."""

import numpy as np
import pytest

import gradstep
from gradstep.rules import scale_by_lars, scale_by_trust_ratio


def update(t, grads, params):
    u, _ = t.update(grads, t.init(params), params)
    return u


def arrays(*values):
    return [np.array(v, dtype=np.float64) for v in values]


# -- zero norms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "w, g, want",
    [
        ([0.0, 0.0], [1.0, 2.0], 1.0),  # ||w|| = 0
        ([3.0, 4.0], [0.0, 0.0], 1.0),  # ||g|| = 0
        ([0.0, 0.0], [0.0, 0.0], 1.0),  # both
        ([3.0, 4.0], [0.0, 0.5], 10.0),  # 5 / 0.5
    ],
)
def test_trust_ratio_is_one_at_a_zero_norm(w, g, want):
    (u,) = update(scale_by_trust_ratio(), arrays(g), arrays(w))
    np.testing.assert_allclose(u, want * np.array(g), rtol=1e-15)


def test_trust_ratio_coefficient_and_epsilon():
    (u,) = update(scale_by_trust_ratio(0.1, 0.5), arrays([0.0, 0.5]), arrays([3.0, 4.0]))
    np.testing.assert_allclose(u, [0.0, 0.5 * 0.1 * 5 / (0.5 + 0.5)], rtol=1e-15)


def test_bounds_clip_the_parameter_norm_before_the_zero_test():
    # MXNet 1.9.1 (probed): a zero weight with lower_bound 0.5 takes the ratio 0.5/||r||
    t = scale_by_trust_ratio(lower_bound=0.5)
    (u,) = update(t, arrays([3.0, 4.0]), arrays([0.0, 0.0]))
    np.testing.assert_allclose(u, [0.3, 0.4], rtol=1e-15)
    (u,) = update(scale_by_trust_ratio(upper_bound=2.0), arrays([3.0, 4.0]), arrays([6.0, 8.0]))
    np.testing.assert_allclose(u, [1.2, 1.6], rtol=1e-15)
    (u,) = update(scale_by_trust_ratio(lower_bound=20.0), arrays([3.0, 4.0]), arrays([6.0, 8.0]))
    np.testing.assert_allclose(u, [12.0, 16.0], rtol=1e-15)


@pytest.mark.parametrize("zero_norm, want", [("one", 1.0), ("max", 10.0)])
def test_lars_zero_gradient_norm(zero_norm, want):
    # ||g|| = 0, ||w|| = 5, wd 0.1, tc 1, eps 0: r = 5 / (0.5) = 10
    t = scale_by_lars(1.0, 0.0, 0.1, zero_norm=zero_norm)
    (u,) = update(t, arrays([0.0, 0.0]), arrays([3.0, 4.0]))
    np.testing.assert_allclose(u, want * 0.1 * np.array([3.0, 4.0]), rtol=1e-15)


def test_lars_zero_parameter_norm_is_one_in_both_forms():
    for zero_norm in ("one", "max"):
        t = scale_by_lars(1e-3, 1e-5, 1e-4, zero_norm=zero_norm)
        (u,) = update(t, arrays([1.0, -2.0]), arrays([0.0, 0.0]))
        np.testing.assert_array_equal(u, [1.0, -2.0])


def test_nan_gradient_propagates():
    with np.errstate(invalid="ignore"):
        (u,) = update(scale_by_trust_ratio(), arrays([np.nan, 1.0]), arrays([1.0, 1.0]))
    assert np.all(np.isnan(u))


# -- masks --------------------------------------------------------------------------------


def model():
    rng = np.random.default_rng(0)
    params = {
        "dense": {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=3)},
        "norm": {"scale": 1.0 + 0.1 * rng.normal(size=3), "offset": 0.1 * rng.normal(size=3)},
    }
    grads = {k: {n: np.cos(v) for n, v in layer.items()} for k, layer in params.items()}
    return params, grads


def kernels_only(params):
    return {k: {n: n == "kernel" for n in layer} for k, layer in params.items()}


def run(transform, params, grads, steps=3):
    params = gradstep.tree.tree_map(np.copy, params)
    opt = gradstep.Optimizer(params, transform)
    for _ in range(steps):
        opt.step(grads)
    return params


@pytest.mark.parametrize("form", ["objax", "mxnet", "optax"])
def test_lars_masks_leave_biases_and_norms_to_plain_momentum(form):
    params, grads = model()
    masked = gradstep.lars(
        0.1,
        form=form,
        weight_decay=0.01,
        trust_ratio_mask=kernels_only,
        weight_decay_mask=kernels_only,
    )
    plain = gradstep.momentum(0.1, 0.9)  # v = 0.9 v - lr g, no decay, no scaling
    full = gradstep.lars(0.1, form=form, weight_decay=0.01)
    got, want_plain, want_full = run(masked, params, grads), run(plain, params, grads), None
    want_full = run(full, params, grads)
    for layer, name in (("dense", "bias"), ("norm", "scale"), ("norm", "offset")):
        np.testing.assert_allclose(got[layer][name], want_plain[layer][name], rtol=1e-14)
    np.testing.assert_allclose(got["dense"]["kernel"], want_full["dense"]["kernel"], rtol=1e-14)


def test_lars_masks_are_independent():
    """Excluded from the scaling but decayed: rho = 1 and the decay stays."""
    params, grads = model()
    t = gradstep.lars(0.1, momentum=0.0, weight_decay=0.5, trust_ratio_mask=kernels_only)
    got = run(t, params, grads, steps=1)
    bias = params["dense"]["bias"]
    np.testing.assert_allclose(
        got["dense"]["bias"], bias - 0.1 * (grads["dense"]["bias"] + 0.5 * bias), rtol=1e-14
    )
    t = gradstep.lars(0.1, momentum=0.0, weight_decay=0.5, weight_decay_mask=kernels_only)
    got = run(t, params, grads, steps=1)
    # not decayed, but scaled by tc ||w|| / (||g|| + eps) (no decay in the ratio either)
    g, w = grads["dense"]["bias"], params["dense"]["bias"]
    ratio = 1e-3 * np.linalg.norm(w) / (np.linalg.norm(g) + 1e-5)
    np.testing.assert_allclose(got["dense"]["bias"], w - 0.1 * ratio * g, rtol=1e-14)


def test_lamb_masks():
    params, grads = model()
    masked = gradstep.lamb(
        0.01, weight_decay=0.1, weight_decay_mask=kernels_only, trust_ratio_mask=kernels_only
    )
    adam_like = gradstep.adam(0.01, epsilon=1e-6)  # what an excluded tensor gets
    got, want = run(masked, params, grads), run(adam_like, params, grads)
    for layer, name in (("dense", "bias"), ("norm", "scale"), ("norm", "offset")):
        np.testing.assert_allclose(got[layer][name], want[layer][name], rtol=1e-13)
    assert not np.allclose(got["dense"]["kernel"], want["dense"]["kernel"])


def test_mask_as_a_tree_of_booleans():
    params, grads = model()
    tree_mask = kernels_only(params)
    a = run(gradstep.lars(0.1, trust_ratio_mask=tree_mask), params, grads)
    b = run(gradstep.lars(0.1, trust_ratio_mask=kernels_only), params, grads)
    for x, y in zip(gradstep.tree.leaves(a), gradstep.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_mask_of_the_wrong_shape_is_an_error():
    params, grads = model()  # a dict of four: a list of two is no mask for it
    with pytest.raises(ValueError, match="trust_ratio mask: .* expected a dict, got a list of 2"):
        run(gradstep.lars(0.1, trust_ratio_mask=[True, False]), params, grads)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory, kwargs, words",
    [
        (gradstep.lars, dict(learning_rate=0.1, momentum=0.0, nesterov=True), "nesterov"),
        (
            gradstep.lars,
            dict(learning_rate=0.1, momentum=0.0, momentum_correction=True),
            "momentum_correction",
        ),
        (
            gradstep.lars,
            dict(learning_rate=0.1, weight_decay=0.0, weight_decay_mask=[True]),
            "weight_decay_mask",
        ),
        (gradstep.lars, dict(learning_rate=0.1, form="keras"), "form"),
        (gradstep.lars, dict(learning_rate=0.1, trust_coefficient=0.0), "trust_coefficient"),
        (gradstep.lamb, dict(lower_bound=2.0, upper_bound=1.0), "lower_bound"),
        (gradstep.lamb, dict(upper_bound=0.0), "upper_bound"),
        (gradstep.lamb, dict(weight_decay_mask=[True]), "weight_decay_mask"),
        (gradstep.lbsgd, dict(warmup_strategy="lars", warmup_epochs=5), "warmup_epochs"),
        (gradstep.lbsgd, dict(warmup_strategy="cosine"), "warmup_strategy"),
        (gradstep.lbsgd, dict(batch_scale=0), "batch_scale"),
        (gradstep.lbsgd, dict(batch_scale=1.5), "batch_scale"),
        (gradstep.lbsgd, dict(updates_per_epoch=0), "updates_per_epoch"),
        (gradstep.lars, dict(learning_rate=0.1, rescale_grad=0.5), "rescale_grad"),
        (gradstep.lars, dict(learning_rate=0.1, form="optax", clip_gradient=1.0), "clip_gradient"),
        (gradstep.lars, dict(learning_rate=0.1, form="mxnet", clip_gradient=-1.0), "clip_gradient"),
        (gradstep.lbsgd, dict(rescale_grad=0.0), "rescale_grad"),
    ],
)
def test_invalid_combinations_raise_naming_the_argument(factory, kwargs, words):
    with pytest.raises(ValueError, match=words):
        factory(**kwargs)


def test_schedules_are_accepted_where_declared():
    sched = gradstep.schedules.linear_warmup(0.01, 10)
    for t in (
        gradstep.lars(sched, momentum=sched, weight_decay=sched, momentum_correction=True),
        gradstep.lamb(sched, weight_decay=sched),
        gradstep.lbsgd(sched, momentum=sched, weight_decay=sched),
    ):
        params, grads = model()
        run(t, params, grads)
