"""The base of the classes with torch.optim's names: argument and flag handling
shared by all of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._core.blockwise8 import MIN_8BIT_SIZE
from .._core.carried import holding
from .._core.transform import Transform
from .._core.validate import BOOL, OneOf, check, declared_ranges, ranges_waived
from ._optimizer import TransformOptimizer
from ._rule import _number
from ._state import STEP

_FLAG = OneOf((None, False, True))


class TorchOptimizer(TransformOptimizer):
    """Base of the classes with torch.optim's names, arguments and state keys.

    Subclasses give ``_args`` (torch group key -> the gradstep hyperparameters it
    sets, used to check values and to hand them over every step), ``_rename``
    (gradstep state name -> torch's key), ``_factories`` (whose declared ranges check
    the arguments) and ``_build``.
    """

    _gradstep_names = False
    _args: dict[str, tuple[str, ...]] = {}
    _rules: tuple[str, ...] = ()  # registry names of the rules it builds
    _eager_state = False
    _complex = True  # torch.optim steps complex parameters as their real views
    # torch's foreach implementation of the class refuses a tensor lr without capturable
    _tensor_lr_foreach_refused = False
    _sparse = False
    #: torch's own constructor checks, ``(key, index or None, test)``: a class that
    #: mimics torch.optim accepts exactly what torch accepts (None: the class mimics
    #: another library, and its values are checked against gradstep's ranges)
    _torch_checks: tuple[tuple[str, int | None, Callable[[Any], bool], str], ...] | None = None
    #: the constructor's arguments that are group values, in the order of torch's
    #: ``defaults`` (and so of every param group); ``_fixed``: values a class sets
    #: itself (AdamW's decoupled weight decay)
    _keys: tuple[str, ...] = ()
    _fixed: dict[str, Any] = {}

    def __init__(
        self,
        params: Any,
        defaults: dict[str, Any],
        master_weights: bool = False,
        state_dtype: Any = None,
        min_8bit_size: Any = MIN_8BIT_SIZE,
    ):
        owner = type(self).__name__
        check(owner, "master_weights", master_weights, BOOL)
        # torch checks every hyperparameter before it looks at ``params``
        self._check_values(defaults)
        if master_weights:
            defaults["master_weights"] = True
        if state_dtype is not None:  # extension: the state's storage dtype
            defaults["state_dtype"] = state_dtype
        if not (type(min_8bit_size) is int and min_8bit_size == MIN_8BIT_SIZE):  # extension
            defaults["min_8bit_size"] = min_8bit_size
        self._transform = None
        torch.optim.Optimizer.__init__(self, params, defaults)
        if self._eager_state:
            self._init_all_state()

    def _init_from(self, args: dict[str, Any]) -> None:
        """Construct from a subclass ``__init__``'s arguments (its ``locals()``): the
        group values of :attr:`_keys`, and the extensions ``master_weights``,
        ``state_dtype`` and ``min_8bit_size`` where the class takes them."""
        defaults = {k: self._fixed[k] if k in self._fixed else args[k] for k in self._keys}
        TorchOptimizer.__init__(
            self,
            args["params"],
            defaults,
            args.get("master_weights", False),
            args.get("state_dtype"),
            args.get("min_8bit_size", MIN_8BIT_SIZE),
        )

    @property
    def _build_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.defaults)

    def _engine(self, group: dict) -> str:
        # torch's fused flag picks the engine; a group may also name one (extension)
        fused = group.get("fused")
        mapped = "auto" if fused is None else "fused" if fused else "eager"
        engine = group.get("engine", mapped)
        if fused is not None and engine != mapped:
            raise ValueError(
                f"{type(self).__name__}: engine={engine!r} contradicts fused={fused!r}"
            )
        return engine

    def _check_group(self, group: dict) -> None:
        self._check_args(group)
        super()._check_group(group)

    @property
    def _check_ranges(self) -> bool:  # type: ignore[override]
        return self._torch_checks is None

    def _check_args(self, group: dict) -> None:
        self._check_values(group)
        self._check_params(group)

    def _check_values(self, values: dict) -> None:
        """torch's constructor checks of the hyperparameters in ``values`` (a group or
        the defaults), in torch's order and with torch's messages; also run for
        groups added later (torch itself checks only the constructor's arguments)."""
        owner = type(self).__name__
        if self._torch_checks is not None:
            tensor_lr(values, self._tensor_lr_foreach_refused)
            torch_checks(owner, values, self._torch_checks)
            _check_flags(owner, values)
            self._check_extra(values)
            return
        ranges: dict = {}
        for name in self._rules:
            ranges.update(declared_ranges(rule_factory(name)))
        for key, names in self._args.items():
            if key not in values:
                continue
            value = values[key]
            items = [value] if len(names) == 1 else list(value)
            if len(items) != len(names):
                raise ValueError(f"{owner}: {key} must have {len(names)} values, got {value!r}")
            for i, (name, v) in enumerate(zip(names, items)):
                constraint = ranges.get(name)
                if constraint is not None:
                    check(owner, key if len(names) == 1 else f"{key}[{i}]", _number(v), constraint)
        _check_flags(owner, values)
        self._check_extra(values)

    def _check_extra(self, values: dict) -> None:
        """Checks of combinations (torch's own, where gradstep's ranges do not say)."""

    def _check_params(self, group: dict) -> None:
        """Checks of a group's parameters that torch makes in its constructor."""

    def _build(self, group: dict) -> tuple[Transform, dict]:
        values = {
            k: _number(v) if k != "betas" else tuple(map(_number, v)) for k, v in group.items()
        }
        if self._torch_checks is None:
            return self._transform_for(values), dict(self._args)
        # torch's own checks ran in the constructor: build from every value torch takes
        with ranges_waived():
            return self._transform_for(values), dict(self._args)

    def _carried(self, m: Any) -> dict[str, float] | None:
        """The values the member ``m``'s state holds for the rule's stages to read
        this step (:mod:`gradstep._core.carried`); None for a class keeping none."""
        return None

    def _run(self, rule, members, ctx, engine, foreach=None, whole=False, amp=None) -> None:
        # differentiable=True derives them from the (tensor) hyperparameters, through
        # which the hypergradients flow, and capturable=True (a step count on the
        # device) from the count there: the kept values are numbers on the host
        count = members[0].state.get(STEP)
        on_device = isinstance(count, torch.Tensor) and count.device.type != "cpu"
        if type(self)._carried is TorchOptimizer._carried or members[0].differentiable or on_device:
            return super()._run(rule, members, ctx, engine, foreach, whole, amp)
        # parameters whose states hold other values (one that missed steps) step apart
        parts: dict[tuple, list] = {}
        for m in members:
            parts.setdefault(tuple(sorted(self._carried(m).items())), []).append(m)
        for values, part in parts.items():
            with holding(rule.carried, dict(values)):
                super()._run(rule, part, ctx, engine, foreach, whole, amp)

    def _transform_for(self, g: dict) -> Transform:  # pragma: no cover - interface
        raise NotImplementedError

    def _sparse_error(self, group: dict) -> str | None:
        if not self._sparse:
            return f"{type(self).__name__} does not support sparse gradients"
        return self._sparse_reason(group)

    def _sparse_reason(self, group: dict) -> str | None:
        return None


def torch_checks(owner: str, values: dict, checks: tuple) -> None:
    """Raise where torch.optim's constructor raises: ``checks`` are ``(key, index or
    None, test, message)`` in torch's order, ``message`` torch's own words (formatted
    with the value ``v``), followed by what torch takes."""
    for key, index, test, message in checks:
        if key not in values:
            continue
        value = values[key]
        label = key
        if index is not None:
            if value[index] is None:
                continue
            value, label = value[index], f"{key}[{index}]"
        number = tuple(map(_number, value)) if isinstance(value, (tuple, list)) else _number(value)
        if not test(number):
            raise ValueError(
                f"{message.format(v=value)} (torch.optim.{owner} takes {label} {_TAKES[test]})"
            )


def tensor_lr(values: dict, foreach_refused: bool = False) -> None:
    """torch's checks of a learning rate given as a tensor (``foreach_refused``: the
    classes whose foreach implementation cannot take one without ``capturable``)."""
    lr = values.get("lr")
    if not isinstance(lr, torch.Tensor):
        return
    if foreach_refused and values.get("foreach") and not values.get("capturable"):
        raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
    if lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")


def nonnegative(v: Any) -> bool:
    """torch's ``if not 0.0 <= v: raise`` (NaN is refused)."""
    return 0.0 <= v


def not_negative(v: Any) -> bool:
    """torch's ``if v < 0.0: raise`` (NaN is taken)."""
    return not v < 0.0


def unit_interval(v: Any) -> bool:
    """torch's ``if not 0.0 <= v < 1.0: raise``."""
    return 0.0 <= v < 1.0


def closed_unit_interval(v: Any) -> bool:
    """torch's ``if not 0.0 <= v <= 1.0: raise``."""
    return 0.0 <= v <= 1.0


def nonpositive(v: Any) -> bool:
    """torch's ``if not 0.0 >= v: raise``."""
    return 0.0 >= v


def at_least_one(v: Any) -> bool:
    """torch's ``if not 1.0 <= v: raise``."""
    return 1.0 <= v


def positive(v: Any) -> bool:
    """torch's ``if not 0.0 < v: raise``."""
    return 0.0 < v


def etas_around_one(v: Any) -> bool:
    """torch's Rprop ``if not 0.0 < etas[0] < 1.0 < etas[1]: raise``."""
    return 0.0 < v[0] < 1.0 < v[1]


_TAKES = {
    nonnegative: ">= 0",
    not_negative: ">= 0 (or NaN)",
    unit_interval: "in [0, 1)",
    closed_unit_interval: "in [0, 1]",
    nonpositive: "<= 0",
    at_least_one: ">= 1",
    positive: "> 0",
    etas_around_one: "with 0 < etas[0] < 1 < etas[1]",
}

LR = ("lr", None, nonnegative, "Invalid learning rate: {v}")
EPS = ("eps", None, nonnegative, "Invalid epsilon value: {v}")
WEIGHT_DECAY = ("weight_decay", None, nonnegative, "Invalid weight_decay value: {v}")
BETAS = (
    ("betas", 0, unit_interval, "Invalid beta parameter at index 0: {v}"),
    ("betas", 1, unit_interval, "Invalid beta parameter at index 1: {v}"),
)

#: the checks torch.optim.Adam, AdamW, Adamax, RAdam and NAdam share
ADAM_CHECKS = (LR, EPS, *BETAS, WEIGHT_DECAY)


def rule_factory(name: str) -> Callable:
    """The factory of a registered rule."""
    from ..registry import REGISTRY

    return REGISTRY[name].factory


def _check_flags(owner: str, values: dict) -> None:
    for flag in ("foreach", "fused"):
        if flag in values:
            check(owner, flag, values[flag], _FLAG)
    if values.get("fused") and values.get("differentiable"):
        raise RuntimeError("`fused` does not support `differentiable`")
    if values.get("fused") and values.get("foreach"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")


# -- the classes torch.optim also has ---------------------------------------------------
