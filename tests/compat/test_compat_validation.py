"""The seed systems' APIs check their values at the call, with the core's messages:
``gradstep.compat.mxnet`` at construction (not at the first update) and in its
setters, ``gradstep.compat.objax`` at each ``opt(lr, grads)``; a refused call changes
nothing."""

from __future__ import annotations

import numpy as np
import pytest

from gradstep.compat import mxnet, objax

NAN = float("nan")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("sgd", {"learning_rate": -1}, r"SGD: invalid learning_rate=-1; valid values"),
        ("adam", {"learning_rate": NAN}, r"Adam: invalid learning_rate=nan"),
        ("adam", {"wd": -0.1}, r"Adam: invalid wd=-0.1"),
        ("adam", {"beta1": 1.5}, r"invalid beta1=1.5; valid values: a number in \[0, 1\)"),
        ("adam", {"beta2": -0.1}, r"invalid beta2=-0.1"),
        ("rmsprop", {"gamma1": 2.0}, r"invalid"),
        ("nag", {"momentum": -1.0}, r"invalid momentum=-1.0"),
        ("adagrad", {"eps": -1.0}, r"invalid epsilon=-1.0"),
        ("ftml", {"beta1": 1.0}, r"invalid beta1=1.0"),
        ("lamb", {"beta2": 1.0}, r"invalid beta2=1.0"),
    ],
)
def test_mxnet_refuses_bad_values_at_construction(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mxnet.create(name, **kwargs)


def test_mxnet_every_registered_optimizer_builds_with_its_defaults():
    for name in (
        "sgd",
        "nag",
        "signum",
        "ftml",
        "lars",
        "lbsgd",
        "lamb",
        "dcasgd",
        "sgld",
        "adam",
        "adagrad",
        "rmsprop",
        "adadelta",
        "ftrl",
        "adamax",
        "nadam",
    ):
        mxnet.create(name)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda o: o.set_learning_rate(NAN), r"set_learning_rate: invalid lr=nan"),
        (lambda o: o.set_learning_rate(-1.0), r"set_learning_rate: invalid lr=-1.0"),
        (lambda o: o.set_lr_mult({0: -1.0}), r"set_lr_mult: invalid \[0\]=-1.0"),
        (lambda o: o.set_wd_mult({"fc_weight": NAN}), r"set_wd_mult: invalid \['fc_weight'\]=nan"),
    ],
)
def test_mxnet_setters_refuse_bad_values_and_keep_the_old_ones(call, match):
    opt = mxnet.create("sgd", learning_rate=0.1, momentum=0.9)
    opt.set_lr_mult({0: 2.0})
    opt.set_wd_mult({"fc_weight": 0.5})
    before = (opt.lr, dict(opt.lr_mult), dict(opt.wd_mult))
    with pytest.raises(ValueError, match=match):
        call(opt)
    assert (opt.lr, opt.lr_mult, opt.wd_mult) == before


@pytest.mark.parametrize("lr", [NAN, -1.0])
@pytest.mark.parametrize("cls", [objax.SGD, objax.Momentum, objax.Adam, objax.LARS])
def test_objax_refuses_a_bad_rate_at_the_call_and_changes_nothing(cls, lr):
    w = [np.array([1.0, -2.0, 0.5])]
    opt = cls(w)
    opt(0.1, [np.ones(3)])
    weights = w[0].copy()
    state = [np.copy(x) for x in _leaves(opt.state)]
    with pytest.raises(ValueError, match=rf"{cls.__name__}: invalid lr={lr}"):
        opt(lr, [np.ones(3)])
    np.testing.assert_array_equal(w[0], weights)
    for a, b in zip(_leaves(opt.state), state):
        np.testing.assert_array_equal(a, b)


def test_objax_refuses_bad_step_time_overrides():
    w = [np.ones(2)]
    with pytest.raises(ValueError, match=r"Adam: invalid beta1=1.0"):
        objax.Adam(w)(0.1, [np.ones(2)], beta1=1.0)
    with pytest.raises(ValueError, match=r"Momentum: invalid momentum=-0.5"):
        objax.Momentum(w)(0.1, [np.ones(2)], momentum=-0.5)


def _leaves(tree):
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in _leaves(v)]
    return [tree]
