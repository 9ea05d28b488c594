"""Array namespaces come from registration by the module that brings a library, never
from the array's module name."""

from __future__ import annotations

import numpy as np
import pytest

from gradstep._core.namespaces import NUMPY, Namespace, namespace_of, register_namespace


class _Foreign:
    """An array of a library nobody registered (it speaks DLPack)."""

    def __dlpack__(self):  # pragma: no cover - never called
        raise NotImplementedError


class _Mine(_Foreign):
    pass


class _MineNamespace(Namespace):
    name = "test-mine"


def test_numpy_and_python_numbers_are_built_in():
    for x in (np.zeros(2), np.float32(1.0), 1.0, 3, True):
        assert namespace_of(x) is NUMPY


def test_an_unregistered_library_is_an_error_naming_the_import():
    with pytest.raises(TypeError, match="gradstep.torch"):
        namespace_of(_Foreign())


def test_a_registered_type_and_its_subclasses_get_its_namespace_made_once():
    made = []

    def factory():
        made.append(1)
        return _MineNamespace()

    register_namespace(_Mine, factory)
    ns = namespace_of(_Mine())
    assert isinstance(ns, _MineNamespace)
    assert namespace_of(type("Sub", (_Mine,), {})()) is ns
    assert len(made) == 1
    with pytest.raises(TypeError):
        namespace_of(_Foreign())  # the base class is still nobody's
