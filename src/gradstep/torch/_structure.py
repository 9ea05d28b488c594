"""Whether a group's edited hyperparameters can be handed to its built transform.

A group's values reach its transform by name on every step (``_Rule.ctx``), which
is the same as building the transform with them only where the factory uses a
value as nothing but that stage hyperparameter. Factories also use values to
decide what the transform is: a coupled decay stage exists only for a nonzero
``weight_decay`` (Madgrad, Novograd), a flag picks which stage gets the decay,
a constant derived from ``momentum`` is baked into another stage (SGDP's decay
factor ``1 / (1 - momentum)``). So when an edited value arrives, the front builds
the transform anew and compares the two with :func:`structure`: where they differ
in more than the values handed over, the new build replaces the old one.
"""

from __future__ import annotations

import functools
import numbers
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

_HANDED_OVER = "handed over"
#: attributes that record how an object was made, which values it accepts, or what a
#: step found, not what it computes (the recipe is the factory call with an id of
#: the object itself; the declared ranges check values, which ``_Rule.ctx`` does)
_BOOKKEEPING = frozenset({"_recipe", "_names_checked", "declared_ranges"})
#: small tensors and arrays compare by value; larger ones by identity
_SMALL = 64


def structure(transform: Any, dynamic: dict[str, tuple[str, ...]]) -> Any:
    """A comparable description of everything ``transform`` computes with, except
    the values of the stage hyperparameters its group hands over by name every step
    (``dynamic``: group key -> hyperparameter names, as ``_build`` returns them).
    Two builds of one factory with the same arguments describe equally; an object
    it cannot describe by value is described by identity, so builds that hold a new
    one differ (the safe answer: a rebuild)."""
    handed = handed_over(transform, dynamic)
    names = frozenset(name for names in handed.values() for name in names)
    return (tuple(handed), _describe(transform, names, set()))


def handed_over(transform: Any, dynamic: dict[str, tuple[str, ...]]) -> dict:
    """The entries of ``dynamic`` the transform takes at a step (as ``_Rule``
    keeps them: every name one of its hyperparameters)."""
    ranges = transform.hyperparameters()
    return {k: names for k, names in dynamic.items() if all(n in ranges for n in names)}


def edited_build(build: Callable, group: dict, rule: Any, owner: str) -> tuple | None:
    """None where ``rule`` (a ``_Rule`` with the ``built_structure`` and
    ``handed_values`` the front gave it) still stands for the group's values; else
    the group's transform and dynamic keys built anew by ``build``. Only an edit of
    a value handed over builds again, to be compared with the rule's build."""
    values = handed_over_values(group, rule.dynamic)
    if values == rule.handed_values or rule.built_structure is None:
        return None
    rule.ctx(group, owner)  # an invalid value raises the group's own error first
    try:
        built = build(group)
    except ValueError:
        # a combination a factory refuses to be built with, where the value itself
        # is in range (Novograd's decoupled decay edited to 0): the built stages
        # take it as it is, the meaning the value has (no decay)
        built = None
    if built is None or structure(*built) == rule.built_structure:
        rule.handed_values = values
        return None
    return built


def _describe(value: Any, handed_over: frozenset[str], active: set[int]) -> Any:
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, np.ndarray):
        # 0 and 0.0 build the same transform; repr keeps NaN equal to itself
        return ("number", repr(float(value)))
    if isinstance(value, numbers.Complex):
        return ("complex", repr(complex(value)))
    if isinstance(value, torch.Tensor):
        if value.numel() <= _SMALL and not value.requires_grad and value.device.type == "cpu":
            return ("tensor", str(value.dtype), tuple(value.shape), value.tolist())
        return ("object", id(value))
    if isinstance(value, np.ndarray):
        if value.size <= _SMALL:
            return ("array", str(value.dtype), value.shape, value.tobytes())
        return ("object", id(value))
    if isinstance(value, (type, types.BuiltinFunctionType, types.ModuleType)):
        return ("object", id(value))
    if id(value) in active:
        return ("cycle",)
    active.add(id(value))
    try:
        return _describe_container(value, handed_over, active)
    finally:
        active.discard(id(value))


def _describe_container(value: Any, handed_over: frozenset[str], active: set[int]) -> Any:
    def describe(v: Any) -> Any:
        return _describe(v, handed_over, active)

    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(describe(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted(repr(describe(v)) for v in value)))
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), describe(v)) for k, v in value.items()))
    if isinstance(value, functools.partial):
        return ("partial", describe(value.func), describe(value.args), describe(value.keywords))
    if isinstance(value, types.MethodType):
        return ("method", describe(value.__func__), describe(value.__self__))
    if isinstance(value, types.FunctionType):
        # a function made inside a factory is a new object per build: the same code
        # with the same captured values computes the same
        cells = tuple(describe(c.cell_contents) for c in value.__closure__ or ())
        defaults = (describe(value.__defaults__), describe(value.__kwdefaults__))
        return ("function", id(value.__code__), cells, defaults)
    fields = getattr(value, "__dict__", None)
    if fields is None:
        return ("object", id(value))
    described = []
    for name, field in fields.items():
        if name in _BOOKKEEPING:
            continue
        if name == "hyperparams" and isinstance(field, dict):
            field = {k: _HANDED_OVER if _handed(k, v, handed_over) else v for k, v in field.items()}
        described.append((name, describe(field)))
    return ("instance", id(type(value)), tuple(described))


def _handed(name: str, value: Any, handed_over: frozenset[str]) -> bool:
    # a schedule is part of the transform: the step hands over numbers only
    return name in handed_over and not (callable(value) and not isinstance(value, torch.Tensor))


def handed_over_values(group: dict, dynamic: dict[str, tuple[str, ...]]) -> tuple:
    """The group's values of ``dynamic``'s keys, comparable between steps without
    reading a tensor's value (a tensor by identity: no device sync, and none while a
    CUDA graph is captured)."""
    return tuple(_value_key(group.get(key)) for key in dynamic)


def _value_key(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value))
    if isinstance(value, (list, tuple)):
        return tuple(_value_key(v) for v in value)
    if isinstance(value, float) and value != value:
        return ("nan",)  # equal to itself, so a NaN kept in a group verifies once
    if callable(value):
        return ("callable", id(value))
    return value
