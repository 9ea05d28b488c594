"""An element function's scalars are passed by position: a ``prepare`` whose names
or order differ from the element function's parameters is refused at the first step,
on every engine, instead of silently swapping two numbers."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep._core.elementwise import Elementwise


def _scaled(g, scale, shift):
    return g * scale + shift


def _stage(prepare):
    return Elementwise("scaled", _scaled, hyperparams={"a": 2.0, "b": 0.5}, prepare=prepare)


def _in_order(h, count):
    return {"scale": h["a"], "shift": h["b"]}


def _swapped(h, count):
    return {"shift": h["b"], "scale": h["a"]}


@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_scalars_in_the_element_functions_order_run(engine):
    w = np.zeros(3)
    gradstep.Optimizer(w, _stage(_in_order), engine=engine).step(np.ones(3))
    np.testing.assert_array_equal(w, np.full(3, 2.5))


@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_scalars_in_another_order_are_refused_before_anything_changes(engine):
    w = np.zeros(3)
    opt = gradstep.Optimizer(w, _stage(_swapped), engine=engine)
    with pytest.raises(TypeError, match=r"prepare returns the scalars \['shift', 'scale'\]"):
        opt.step(np.ones(3))
    np.testing.assert_array_equal(w, np.zeros(3))
