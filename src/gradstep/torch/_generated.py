"""Classes for every registry entry: torch's names where torch has the algorithm, a
CamelCase class generated from the factory for every other one."""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch

from .._core.transform import Transform
from ._base import TorchOptimizer
from ._classes import SGD, Adadelta, Adafactor, Adagrad, Muon, RMSprop
from ._classes_adam import Adam, Adamax, AdamW, NAdam, RAdam
from ._classes_extra import ASGD, Rprop
from ._lbfgs import LBFGS
from ._optimizer import TransformOptimizer
from ._schedule_free import AdamWScheduleFree, SGDScheduleFree

_TORCH = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adadelta": Adadelta,
    "adamax": Adamax,
    "nadam": NAdam,
    "radam": RAdam,
    "adafactor": Adafactor,
    "muon": Muon,
    "lbfgs": LBFGS,
    "asgd": ASGD,
    "rprop": Rprop,
    "schedule_free_sgd": SGDScheduleFree,
    "schedule_free_adamw": AdamWScheduleFree,
}


def _registered(names: dict) -> dict:
    from ..registry import REGISTRY

    return {k: v for k, v in names.items() if k in REGISTRY}


#: registry name -> the class with torch's name that runs it (for registered rules)
TORCH_CLASSES: dict[str, type[TorchOptimizer]] = _registered(_TORCH)


# -- classes generated from the registry ------------------------------------------------

_FRONT_OPTIONS = ("maximize", "foreach", "engine", "master_weights")


class RegistryOptimizer(TransformOptimizer):
    """Base of the classes generated from registry entries (gradstep's argument names;
    the learning rate lives in ``group["lr"]``)."""

    _spec: Any = None
    _arg_names: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]):
        self._transform = None
        torch.optim.Optimizer.__init__(self, params, defaults)

    @property
    def _build_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(k for k in self.defaults if k not in _FRONT_OPTIONS)

    def step(self, closure: Any = None, **inputs: Any) -> Any:
        """Update every parameter that has a gradient; ``closure`` (optional)
        re-evaluates the loss first and its value is returned.

        ``inputs``: the step's extra inputs a rule takes (:func:`gradstep.sophia`'s
        ``hessian=``), each a sequence with one tensor per parameter, in the order
        of the param groups. A rule that takes ``hvp=`` (Sophia) gets the
        Hessian-vector products of the gradients when they were taken with
        ``create_graph=True`` (``loss.backward(create_graph=True)``) and no estimate
        is given, as pytorch-optimizer's ``SophiaH``.
        """
        taken = self._step_input_names()
        if not inputs and "hvp" not in taken:
            return self._step(closure)
        params = [p for group in self.param_groups for p in group["params"]]
        values: dict[int, dict[str, Any]] = {}
        for name, given in inputs.items():
            if name not in taken:
                raise TypeError(f"{self._owner}.step() got an unexpected keyword argument {name!r}")
            given = list(given)
            if len(given) != len(params):
                raise ValueError(
                    f"{self._owner}.step(): {name} has {len(given)} tensors for "
                    f"{len(params)} parameters; valid values: one per parameter"
                )
            for p, value in zip(params, given):
                values.setdefault(id(p), {})[name] = value
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.__dict__["_gs_inputs"] = {
            "names": tuple(inputs),
            "values": values,
            "hvp": "hvp" in taken and not inputs,
        }
        try:
            self._step()
        finally:
            self.__dict__.pop("_gs_inputs", None)
        return loss

    def _step_input_names(self) -> set:
        """The names a step of this optimizer's rules takes besides the group's
        hyperparameters (extra inputs: a constraint-free name no group holds)."""
        names = set()
        cache = self.__dict__.setdefault("_gs_input_names", {})
        for group in self.param_groups:
            rule = self._rule(group)
            cached = cache.get(id(group))
            if cached is None or cached[0] is not rule:
                found = {
                    name
                    for name, constraint in rule.transform.hyperparameters().items()
                    if constraint is None and name not in self._arg_names
                }
                cached = cache[id(group)] = (rule, found)
            names |= cached[1]
        return names

    def _build(self, group: dict) -> tuple[Transform, dict]:
        kwargs = {}
        for name in self._arg_names:
            key = "lr" if name == "learning_rate" else name
            if key in group:
                kwargs[name] = group[key]
        transform = self._spec.factory(**kwargs)
        dynamic = {("lr" if n == "learning_rate" else n): (n,) for n in self._arg_names}
        return transform, dynamic


def class_name(registry_name: str) -> str:
    """The class name for a registry entry: torch's where torch has the algorithm,
    else the name in CamelCase (``nesterov_momentum`` -> ``NesterovMomentum``)."""
    if registry_name in TORCH_CLASSES:
        return TORCH_CLASSES[registry_name].__name__
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", registry_name))


_GENERATED: dict[str, type] = {}


def generated_class(spec: Any) -> type:
    """The class of a registry entry that torch.optim does not have."""
    cls = _GENERATED.get(spec.name)
    if cls is not None and cls._spec is spec:
        return cls
    sig = inspect.signature(spec.factory)
    args = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _FRONT_OPTIONS
    ]
    name = class_name(spec.name)

    def __init__(self, params, *positional, **kwargs):
        front = {
            "maximize": kwargs.pop("maximize", False),
            "foreach": kwargs.pop("foreach", None),
            "engine": kwargs.pop("engine", "auto"),
        }
        master = kwargs.pop("master_weights", False)
        try:
            bound = sig.bind(*positional, **kwargs)
        except TypeError as error:
            raise TypeError(f"{name}: {error}") from None
        bound.apply_defaults()
        defaults = {}
        for p in args:
            defaults["lr" if p.name == "learning_rate" else p.name] = bound.arguments[p.name]
        defaults.update(front)
        if master:
            defaults["master_weights"] = master
        RegistryOptimizer.__init__(self, params, defaults)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params.append(inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    params += [p for p in sig.parameters.values() if p in args]
    keyword = inspect.Parameter.KEYWORD_ONLY
    for option, default in (
        ("maximize", False),
        ("foreach", None),
        ("engine", "auto"),
        ("master_weights", False),
    ):
        params.append(inspect.Parameter(option, keyword, default=default))
    params = _ordered(params)
    __init__.__signature__ = inspect.Signature(params)
    doc = (
        f"``gradstep.{spec.name}`` as a torch optimizer: {spec.summary}\n\n"
        f"Arguments are those of ``gradstep.{spec.name}`` (the learning rate is kept in "
        "``group['lr']``, where torch's schedulers write it), plus ``maximize``, "
        "``foreach``, ``engine`` and ``master_weights`` (see "
        ":class:`gradstep.torch.TransformOptimizer`)."
    )
    cls = type(
        name,
        (RegistryOptimizer,),
        {
            "__init__": __init__,
            "__doc__": doc,
            "__module__": "gradstep.torch",
            "__qualname__": name,
            "_spec": spec,
            "_arg_names": tuple(p.name for p in args),
        },
    )
    _GENERATED[spec.name] = cls
    return cls


def _ordered(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """Positional parameters first, keyword-only after (a valid signature)."""
    positional = [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return positional + keyword


def optimizer_class(registry_name: str) -> type:
    """The ``gradstep.torch`` class of a registered optimizer."""
    from ..registry import REGISTRY

    spec = REGISTRY[registry_name]
    if registry_name in TORCH_CLASSES:
        return TORCH_CLASSES[registry_name]
    return generated_class(spec)


def all_classes() -> dict[str, type]:
    """``{registry name: class}`` for every registered optimizer."""
    from ..registry import REGISTRY

    return {spec.name: optimizer_class(spec.name) for spec in REGISTRY}
