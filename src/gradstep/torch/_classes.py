"""The optimizer classes: torch.optim's names where torch has the algorithm, gradstep's
names for every other registered optimizer.

A class with torch's name takes torch's exact arguments and defaults, keeps its state
under torch's keys, and builds its group's transform from the gradstep rule with the
options that reproduce torch (pinned by the conformance fixtures); it holds no math of
its own. Every other registry entry gets a class generated from its factory: the
factory's arguments, with the learning rate in ``group["lr"]``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import torch

from .._core.transform import Transform
from .._core.validate import BOOL, OneOf, check, declared_ranges
from ..rules import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    momentum,
    nesterov_momentum,
    rmsprop,
    sgd,
)
from ._optimizer import TransformOptimizer, _number, scalar_dtype
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
    _sparse = False

    def __init__(self, params: Any, defaults: dict[str, Any], master_weights: bool = False):
        owner = type(self).__name__
        check(owner, "master_weights", master_weights, BOOL)
        _check_flags(owner, defaults)
        if master_weights:
            defaults["master_weights"] = True
        self._transform = None
        torch.optim.Optimizer.__init__(self, params, defaults)
        if self._eager_state:
            self._init_all_state()

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

    def _check_args(self, group: dict) -> None:
        owner = type(self).__name__
        ranges: dict = {}
        for name in self._rules:
            ranges.update(declared_ranges(rule_factory(name)))
        for key, names in self._args.items():
            if key not in group:
                continue
            value = group[key]
            values = [value] if len(names) == 1 else list(value)
            if len(values) != len(names):
                raise ValueError(f"{owner}: {key} must have {len(names)} values, got {value!r}")
            for i, (name, v) in enumerate(zip(names, values)):
                constraint = ranges.get(name)
                if constraint is not None:
                    check(owner, key if len(names) == 1 else f"{key}[{i}]", _number(v), constraint)
        _check_flags(owner, group)
        self._check_extra(group)

    def _check_extra(self, group: dict) -> None:
        """Checks of combinations (torch's own, where gradstep's ranges do not say)."""

    def _build(self, group: dict) -> tuple[Transform, dict]:
        values = {
            k: _number(v) if k != "betas" else tuple(map(_number, v)) for k, v in group.items()
        }
        return self._transform_for(values), dict(self._args)

    def _transform_for(self, g: dict) -> Transform:  # pragma: no cover - interface
        raise NotImplementedError

    def _sparse_error(self, group: dict) -> str | None:
        if not self._sparse:
            return f"{type(self).__name__} does not support sparse gradients"
        return self._sparse_reason(group)

    def _sparse_reason(self, group: dict) -> str | None:
        return None


def rule_factory(name: str) -> Callable:
    """The factory of a registered rule."""
    from ..registry import REGISTRY

    return REGISTRY[name].factory


def _check_flags(owner: str, values: dict) -> None:
    for flag in ("foreach", "fused"):
        if flag in values:
            check(owner, flag, values[flag], _FLAG)
    if values.get("fused") and values.get("foreach"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if values.get("capturable"):
        raise ValueError(
            f"{owner}: capturable=True (state kept on the device for CUDA-graph capture) is "
            "not supported by gradstep.torch; use capturable=False"
        )
    if values.get("differentiable"):
        raise ValueError(
            f"{owner}: differentiable=True is not supported by gradstep.torch (its engines "
            "update parameters in place, outside autograd)"
        )


# -- the classes torch.optim also has ---------------------------------------------------


class SGD(TorchOptimizer):
    """``torch.optim.SGD`` on gradstep's rules: plain (``gradstep.sgd``), heavy-ball
    (``gradstep.momentum``) or Nesterov (``gradstep.nesterov_momentum``), with the
    velocity outside the learning rate (``lr_in_buffer=False``) as torch keeps it.

    Arguments, defaults and the state key (``momentum_buffer``) are torch's; sparse
    gradients are taken (as the same zero-filled dense step torch's sparse arithmetic
    makes). ``fused=True`` requires the fused engine, ``fused=False`` the eager one,
    ``foreach=False`` steps each tensor alone. Extension: ``master_weights``.
    """

    _args = {"lr": ("learning_rate",), "momentum": ("momentum",), "weight_decay": ("weight_decay",)}
    _rename = {"velocity": "momentum_buffer"}
    _rules = ("sgd", "momentum")
    _track_step = False
    _sparse = True

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | torch.Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults, master_weights)

    def _check_extra(self, group: dict) -> None:
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        check("SGD", "dampening", group["dampening"], declared_ranges(momentum)["dampening"])

    def _transform_for(self, g: dict) -> Transform:
        if g["momentum"] == 0:
            return sgd(g["lr"], weight_decay=g["weight_decay"])
        factory = nesterov_momentum if g["nesterov"] else momentum
        return factory(
            g["lr"],
            g["momentum"],
            dampening=g["dampening"],
            lr_in_buffer=False,
            weight_decay=g["weight_decay"],
        )


class Adam(TorchOptimizer):
    """``torch.optim.Adam`` on ``gradstep.adam`` (``gradstep.adamw`` with
    ``decoupled_weight_decay=True``): epsilon outside the bias-corrected root, AMSGrad
    over the raw second moment.

    Arguments, defaults and state keys (``step``, ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq``) are torch's, so checkpoints move both ways. ``fused=True``
    requires the fused engine, ``fused=False`` the eager one, ``foreach=False`` steps
    each tensor alone. Extension: ``master_weights``.
    """

    _args = {
        "lr": ("learning_rate",),
        "betas": ("beta1", "beta2"),
        "eps": ("epsilon",),
        "weight_decay": ("weight_decay",),
    }
    _rename = {"mu": "exp_avg", "nu": "exp_avg_sq", "nu_max": "max_exp_avg_sq"}
    _rules = ("adam", "adamw")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults, master_weights)

    def _check_extra(self, group: dict) -> None:
        check(type(self).__name__, "amsgrad", group["amsgrad"], BOOL)
        check(type(self).__name__, "decoupled_weight_decay", group["decoupled_weight_decay"], BOOL)

    def _transform_for(self, g: dict) -> Transform:
        factory = adamw if g["decoupled_weight_decay"] else adam
        beta1, beta2 = g["betas"]
        return factory(
            g["lr"],
            beta1,
            beta2,
            g["eps"],
            weight_decay=g["weight_decay"],
            amsgrad=g["amsgrad"],
        )


class AdamW(Adam):
    """``torch.optim.AdamW``: :class:`Adam` with decoupled weight decay (default
    0.01), on ``gradstep.adamw``. Extension: ``master_weights``."""

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )
        TorchOptimizer.__init__(self, params, defaults, master_weights)


class Adagrad(TorchOptimizer):
    """``torch.optim.Adagrad`` on ``gradstep.adagrad`` (epsilon outside the root,
    torch's ``lr_decay``). State (``step``, ``sum``) is created for every parameter in
    the constructor, as torch does. Sparse gradients are taken (without weight decay,
    as torch) as the same dense step: a zero gradient leaves an element untouched.
    Extension: ``master_weights``."""

    _args = {
        "lr": ("learning_rate",),
        "lr_decay": ("lr_decay",),
        "weight_decay": ("weight_decay",),
        "initial_accumulator_value": ("initial_accumulator_value",),
        "eps": ("epsilon",),
    }
    _rename = {"sum_sq": "sum"}
    _rules = ("adagrad",)
    _eager_state = True
    _sparse = True

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults, master_weights)

    def _sparse_reason(self, group: dict) -> str | None:
        if group["weight_decay"] != 0:
            return "weight_decay option is not compatible with sparse gradients"
        return None

    def _transform_for(self, g: dict) -> Transform:
        return adagrad(
            g["lr"],
            g["eps"],
            initial_accumulator_value=g["initial_accumulator_value"],
            epsilon_placement="outside",
            lr_decay=g["lr_decay"],
            weight_decay=g["weight_decay"],
        )


class RMSprop(TorchOptimizer):
    """``torch.optim.RMSprop`` on ``gradstep.rmsprop``: epsilon outside the root, the
    velocity outside the learning rate. State keys ``step``, ``square_avg``,
    ``grad_avg`` (centered), ``momentum_buffer`` (momentum > 0). Extension:
    ``master_weights``."""

    _args = {
        "lr": ("learning_rate",),
        "alpha": ("rho",),
        "eps": ("epsilon",),
        "weight_decay": ("weight_decay",),
        "momentum": ("momentum",),
    }
    _rename = {"nu": "square_avg", "mu": "grad_avg", "velocity": "momentum_buffer"}
    _rules = ("rmsprop",)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, master_weights)

    def _check_extra(self, group: dict) -> None:
        check("RMSprop", "centered", group["centered"], BOOL)

    def _transform_for(self, g: dict) -> Transform:
        return rmsprop(
            g["lr"],
            g["alpha"],
            g["eps"],
            centered=g["centered"],
            momentum=g["momentum"],
            lr_in_buffer=not g["momentum"] > 0,
            epsilon_placement="outside",
            weight_decay=g["weight_decay"],
        )


class Adadelta(TorchOptimizer):
    """``torch.optim.Adadelta`` on ``gradstep.adadelta`` (coupled weight decay). State
    keys ``step``, ``square_avg``, ``acc_delta``. Extension: ``master_weights``."""

    _args = {
        "lr": ("learning_rate",),
        "rho": ("rho",),
        "eps": ("epsilon",),
        "weight_decay": ("weight_decay",),
    }
    _rename = {"nu": "square_avg", "nu_delta": "acc_delta"}
    _rules = ("adadelta",)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            capturable=capturable,
            foreach=foreach,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, master_weights)

    def _transform_for(self, g: dict) -> Transform:
        return adadelta(g["lr"], g["rho"], g["eps"], weight_decay=g["weight_decay"])


class Adamax(TorchOptimizer):
    """``torch.optim.Adamax`` on ``gradstep.adamax`` with epsilon inside the maximum
    (``epsilon_placement="in_max"``). State keys ``step``, ``exp_avg``, ``exp_inf``.
    Extension: ``master_weights``."""

    _args = {
        "lr": ("learning_rate",),
        "betas": ("beta1", "beta2"),
        "eps": ("epsilon",),
        "weight_decay": ("weight_decay",),
    }
    _rename = {"mu": "exp_avg", "inf_norm": "exp_inf"}
    _rules = ("adamax",)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        super().__init__(params, defaults, master_weights)

    def _transform_for(self, g: dict) -> Transform:
        beta1, beta2 = g["betas"]
        return adamax(
            g["lr"],
            beta1,
            beta2,
            g["eps"],
            epsilon_placement="in_max",
            weight_decay=g["weight_decay"],
        )


class NAdam(TorchOptimizer):
    """``torch.optim.NAdam`` on ``gradstep.nadam`` (torch's per-parameter momentum
    schedule, ``momentum_decay`` = gradstep's ``schedule_decay``; NAdamW with
    ``decoupled_weight_decay``). State keys ``step``, ``mu_product``, ``exp_avg``,
    ``exp_avg_sq``; the rule derives the schedule's product from ``step``, and
    ``mu_product`` is kept alongside for torch. Extension: ``master_weights``."""

    _args = {
        "lr": ("learning_rate",),
        "betas": ("beta1", "beta2"),
        "eps": ("epsilon",),
        "weight_decay": ("weight_decay",),
        "momentum_decay": ("schedule_decay",),
    }
    _rename = {"mu": "exp_avg", "nu": "exp_avg_sq"}
    _rules = ("nadam",)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, master_weights)

    def _transform_for(self, g: dict) -> Transform:
        beta1, beta2 = g["betas"]
        return rule_factory("nadam")(
            g["lr"],
            beta1,
            beta2,
            g["eps"],
            schedule_decay=g["momentum_decay"],
            weight_decay=g["weight_decay"],
            decoupled_weight_decay=g["decoupled_weight_decay"],
        )

    def _ensure_state(self, p, state, rule, master) -> bool:
        missing = super()._ensure_state(p, state, rule, master)
        if "mu_product" not in state:
            state["mu_product"] = torch.tensor(1.0, dtype=scalar_dtype())
        return missing

    def _after_step(self, group: dict, members: list) -> None:
        from ..rules.nadam import momentum_schedule

        beta1 = _number(group["betas"][0])
        for m in members:
            step = int(m.state["step"])
            m.state["mu_product"].mul_(momentum_schedule(beta1, group["momentum_decay"], step))


class RAdam(TorchOptimizer):
    """``torch.optim.RAdam`` on ``gradstep.radam`` (rectified when
    :math:`\rho_t > 5`, epsilon on the uncorrected root; RAdamW with
    ``decoupled_weight_decay``). State keys ``step``, ``exp_avg``, ``exp_avg_sq``.
    Extension: ``master_weights``."""

    _args = {
        "lr": ("learning_rate",),
        "betas": ("beta1", "beta2"),
        "eps": ("epsilon",),
        "weight_decay": ("weight_decay",),
    }
    _rename = {"mu": "exp_avg", "nu": "exp_avg_sq"}
    _rules = ("radam",)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            decoupled_weight_decay=decoupled_weight_decay,
            differentiable=differentiable,
        )
        super().__init__(params, defaults, master_weights)

    def _transform_for(self, g: dict) -> Transform:
        beta1, beta2 = g["betas"]
        return rule_factory("radam")(
            g["lr"],
            beta1,
            beta2,
            g["eps"],
            g["weight_decay"],
            g["decoupled_weight_decay"],
            threshold_rule="greater",
            epsilon_placement="outside_uncorrected",
        )


class Adafactor(TorchOptimizer):
    """``torch.optim.Adafactor`` on ``gradstep.adafactor``: ``beta2_decay`` is
    :math:`-c` (gradstep's ``decay_rate``), ``eps`` = (``epsilon1``, ``epsilon2``),
    ``d`` = ``clipping_threshold``. State keys ``step``, ``row_var``, ``col_var``
    (matrices and higher), ``variance`` (vectors); the rule also keeps an empty
    array under the key a tensor does not use. Its math is not elementwise: it runs
    on NumPy for CPU float32/float64 tensors. Extension: ``master_weights``."""

    _args = {
        "lr": ("learning_rate",),
        "eps": ("epsilon1", "epsilon2"),
        "d": ("clipping_threshold",),
        "weight_decay": ("weight_decay",),
    }
    _rename = {"v_row": "row_var", "v_col": "col_var", "v": "variance"}
    _rules = ("adafactor",)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            beta2_decay=beta2_decay,
            eps=eps,
            d=d,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
        )
        super().__init__(params, defaults, master_weights)

    def _check_extra(self, group: dict) -> None:
        if not group["beta2_decay"] <= 0:
            raise ValueError(
                f"Adafactor: invalid beta2_decay={group['beta2_decay']!r}; valid values: a "
                "number <= 0"
            )
        if not group["d"] >= 1.0:
            raise ValueError(f"Adafactor: invalid d={group['d']!r}; valid values: a number >= 1")

    def _transform_for(self, g: dict) -> Transform:
        eps1, eps2 = g["eps"]
        return rule_factory("adafactor")(
            g["lr"],
            -g["beta2_decay"],
            eps1,
            eps2,
            g["d"],
            g["weight_decay"],
        )


class Muon(TorchOptimizer):
    """``torch.optim.Muon`` on ``gradstep.muon(fallback="none")``: every parameter
    must be a matrix, as in torch. ``adjust_lr_fn`` None/``"original"`` is
    ``update_scale="width_out_in"``, ``"match_rms_adamw"`` is ``"rms"``. State key
    ``momentum_buffer``. torch runs the Newton-Schulz iteration in bfloat16 and
    gradstep in the parameter's dtype, so trajectories agree to bfloat16 precision.
    Extension: ``master_weights``."""

    _args = {
        "lr": ("learning_rate",),
        "weight_decay": ("weight_decay",),
        "momentum": ("momentum",),
        "eps": ("epsilon",),
        "ns_steps": ("ns_steps",),
    }
    _rename = {"mu": "momentum_buffer"}
    _rules = ("muon",)
    _track_step = False
    _scales = {None: "width_out_in", "original": "width_out_in", "match_rms_adamw": "rms"}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        master_weights: bool = False,
    ):
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        super().__init__(params, defaults, master_weights)

    def _check_extra(self, group: dict) -> None:
        if group["adjust_lr_fn"] not in self._scales:
            raise ValueError(
                f"Adjust learning rate function {group['adjust_lr_fn']} is not supported"
            )
        for p in group["params"]:
            if p.ndim != 2:
                raise ValueError(
                    "Muon only supports 2D parameters whereas we found a parameter with "
                    f"size: {p.size()}"
                )

    def _transform_for(self, g: dict) -> Transform:
        return rule_factory("muon")(
            g["lr"],
            g["weight_decay"],
            g["momentum"],
            g["nesterov"],
            tuple(g["ns_coefficients"]),
            g["eps"],
            g["ns_steps"],
            update_scale=self._scales[g["adjust_lr_fn"]],
            fallback="none",
        )


class LBFGS(TorchOptimizer):
    """``torch.optim.LBFGS`` on ``gradstep.lbfgs``: all parameters as one vector, a
    step re-evaluates the loss through ``closure`` (required), one param group.

    The rule keeps its history in fixed buffers; between steps the state is kept
    under torch's keys (``func_evals``, ``n_iter``, ``d``, ``t``, ``old_dirs``,
    ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, in the first parameter's
    state), so checkpoints move both ways. The math runs on NumPy: parameters must be
    CPU float32/float64 tensors.
    """

    _args = {
        "lr": ("learning_rate",),
        "max_iter": ("max_iter",),
        "max_eval": ("max_eval",),
        "tolerance_grad": ("tolerance_grad",),
        "tolerance_change": ("tolerance_change",),
        "history_size": ("history_size",),
        "line_search_fn": ("line_search_fn",),
    }
    _rules = ("lbfgs",)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    def _check_group(self, group: dict) -> None:
        self._check_args(group)
        self._transform_for(group)
        for p in group["params"]:
            if p.is_complex() or not p.is_floating_point():
                raise TypeError(
                    f"LBFGS: parameters must be real floating-point tensors, got {p.dtype}"
                )

    def _transform_for(self, g: dict) -> Transform:
        return rule_factory("lbfgs")(
            _number(g["lr"]),
            g["max_iter"],
            g["max_eval"],
            g["tolerance_grad"],
            g["tolerance_change"],
            g["history_size"],
            g["line_search_fn"],
        )

    def step(self, closure: Callable) -> Any:  # type: ignore[override]
        """One optimisation step; ``closure`` re-evaluates the model and returns the
        loss. Returns the loss of the first evaluation, as torch."""
        import numpy as np

        if closure is None:
            raise RuntimeError("LBFGS requires a closure that re-evaluates the loss")
        group = self.param_groups[0]
        transform = self._transform_for(group)
        params = group["params"]
        for p in params:
            if p.device.type != "cpu" or p.dtype not in (torch.float32, torch.float64):
                raise TypeError(
                    "LBFGS: gradstep.torch runs L-BFGS on CPU float32/float64 tensors, got "
                    f"{p.dtype} on {p.device}"
                )
        views = [p.detach().numpy() for p in params]
        state = self.state[params[0]]
        first: list = []

        def loss_and_grad(trial):
            with torch.no_grad():
                for view, value in zip(views, trial):
                    np.copyto(view, value, casting="same_kind")
            with torch.enable_grad():
                loss = closure()
            first.append(loss)
            grads = []
            for p, view in zip(params, views):
                g = p.grad
                if g is None:
                    grads.append(np.zeros_like(view))
                else:
                    grads.append((g.to_dense() if g.is_sparse else g).detach().numpy())
            value = loss.detach() if isinstance(loss, torch.Tensor) else loss
            return float(value), grads

        start = [np.array(v, copy=True) for v in views]
        try:
            _, new_params, new_state = transform.step_with_closure(
                loss_and_grad,
                views,
                _lbfgs_state(transform, views, state),
                learning_rate=_number(group["lr"]),
            )
        except BaseException:
            for view, value in zip(views, start):
                np.copyto(view, value)
            raise
        for view, value in zip(views, new_params):
            np.copyto(view, value, casting="same_kind")
        torch.autograd.graph.increment_version(params)
        _torch_lbfgs_state(new_state, state, views[0].dtype if views else np.float64)
        return first[0] if first else None


def _lbfgs_state(transform: Any, views: list, state: dict) -> dict:
    """gradstep's L-BFGS state from torch's keys."""
    import numpy as np

    out = transform.init(views)
    if not state:
        return out
    out["n_iter"] = np.asarray(int(state.get("n_iter", 0)), np.int64)
    out["func_evals"] = np.asarray(int(state.get("func_evals", 0)), np.int64)
    dtype = out["direction"].dtype
    if state.get("d") is not None:
        out["direction"][:] = _flat_numpy(state["d"])
    if state.get("t") is not None:
        out["step_size"] = np.asarray(float(state["t"]), dtype)
    if state.get("prev_flat_grad") is not None:
        out["prev_grad"][:] = _flat_numpy(state["prev_flat_grad"])
    if state.get("H_diag") is not None:
        out["h_diag"] = np.asarray(float(state["H_diag"]), dtype)
    dirs, steps, ro = state.get("old_dirs", []), state.get("old_stps", []), state.get("ro", [])
    size = out["s"].shape[0]
    keep = min(len(dirs), size)
    for i, (y, s, r) in enumerate(zip(dirs[-keep:], steps[-keep:], ro[-keep:])):
        out["y"][i] = _flat_numpy(y)
        out["s"][i] = _flat_numpy(s)
        out["rho"][i] = float(r)
    out["history_len"] = np.asarray(keep, np.int64)
    out["history_start"] = np.asarray(0, np.int64)
    return out


def _torch_lbfgs_state(new: dict, state: dict, dtype: Any) -> None:
    """Write gradstep's L-BFGS state under torch's keys."""
    size = new["s"].shape[0]
    start, length = int(new["history_start"]), int(new["history_len"])
    rows = [(start + i) % size for i in range(length)]
    tensor = lambda a: torch.from_numpy(a.copy())  # noqa: E731
    state["func_evals"] = int(new["func_evals"])
    state["n_iter"] = int(new["n_iter"])
    if state["n_iter"] == 0:
        return
    state["d"] = tensor(new["direction"])
    state["t"] = float(new["step_size"])
    state["old_dirs"] = [tensor(new["y"][i]) for i in rows]
    state["old_stps"] = [tensor(new["s"][i]) for i in rows]
    state["ro"] = [torch.tensor(float(new["rho"][i]), dtype=state["d"].dtype) for i in rows]
    state["H_diag"] = torch.tensor(float(new["h_diag"]), dtype=state["d"].dtype)
    state["prev_flat_grad"] = tensor(new["prev_grad"])


def _flat_numpy(x: Any) -> Any:
    import numpy as np

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().reshape(-1).numpy()
    return np.asarray(x).reshape(-1)


class _ScheduleFree(TorchOptimizer):
    """Base of the classes with the ``schedulefree`` package's names: the parameters
    hold :math:`y` while training; :meth:`eval` puts :math:`x` in them and
    :meth:`train` puts :math:`y` back (both idempotent), and a step in evaluation
    mode raises, as in the package. The package's group counters (``k``,
    ``train_mode``) are kept; the rule counts steps per parameter (``step``)."""

    _track_step = True
    _beta_key = "momentum"
    _counters = ("k", "train_mode", "weight_sum", "lr_max", "scheduled_lr")

    @property
    def _build_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(k for k in self.defaults if k not in self._counters)

    def _beta(self, group: dict) -> float:
        value = group[self._beta_key]
        return float(value[0] if isinstance(value, (tuple, list)) else value)

    def step(self, closure: Any = None) -> Any:
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError(
                "Optimizer was not in train mode when step is called. Please insert "
                ".train() and .eval() calls on the optimizer."
            )
        loss = super().step(closure)
        for group in self.param_groups:
            group["k"] += 1
        return loss

    @torch.no_grad()
    def eval(self) -> None:
        """Put the evaluation point :math:`x` in the parameters."""
        self._switch(to_train=False)

    @torch.no_grad()
    def train(self) -> None:
        """Put the training point :math:`y` back in the parameters."""
        self._switch(to_train=True)

    def _switch(self, to_train: bool) -> None:
        for group in self.param_groups:
            if bool(group["train_mode"]) == to_train:
                continue
            beta = self._beta(group)
            weight = 1 - beta if to_train else 1 - 1 / beta
            for p in group["params"]:
                z = self.state.get(p, {}).get("z")
                if z is not None:
                    # the rule's to_training / to_evaluation, rounded as torch.lerp
                    p.lerp_(z.to(p.device), weight)
            group["train_mode"] = to_train

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # a schedulefree checkpoint counts per group
            for p in group["params"]:
                state = self.state.get(p)
                if state and STEP not in state:
                    state[STEP] = torch.tensor(float(group["k"]), dtype=scalar_dtype())


class SGDScheduleFree(_ScheduleFree):
    """``schedulefree.SGDScheduleFree`` on ``gradstep.schedule_free_sgd``: the
    package's arguments and defaults, ``train()``/``eval()``, state key ``z``."""

    _args = {
        "lr": ("learning_rate",),
        "momentum": ("momentum",),
        "weight_decay": ("weight_decay",),
        "warmup_steps": ("warmup_steps",),
        "r": ("r",),
        "weight_lr_power": ("weight_lr_power",),
        "train_mode": ("train_mode",),
    }
    _rules = ("schedule_free_sgd",)

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2,
        foreach: bool | None = True,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            r=r,
            k=0,
            warmup_steps=warmup_steps,
            train_mode=False,
            weight_sum=0.0,
            lr_max=-1.0,
            scheduled_lr=0.0,
            weight_lr_power=weight_lr_power,
            weight_decay=weight_decay,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _transform_for(self, g: dict) -> Transform:
        return rule_factory("schedule_free_sgd")(
            g["lr"],
            g["momentum"],
            weight_decay=g["weight_decay"],
            warmup_steps=g["warmup_steps"],
            r=g["r"],
            weight_lr_power=g["weight_lr_power"],
        )


class AdamWScheduleFree(_ScheduleFree):
    """``schedulefree.AdamWScheduleFree`` on ``gradstep.schedule_free_adamw``: the
    package's arguments and defaults, ``train()``/``eval()``, state keys ``z`` and
    ``exp_avg_sq``."""

    _args = {
        "lr": ("learning_rate",),
        "betas": ("beta1", "beta2"),
        "eps": ("epsilon",),
        "weight_decay": ("weight_decay",),
        "warmup_steps": ("warmup_steps",),
        "r": ("r",),
        "weight_lr_power": ("weight_lr_power",),
        "train_mode": ("train_mode",),
    }
    _rename = {"nu": "exp_avg_sq"}
    _rules = ("schedule_free_adamw",)
    _beta_key = "betas"

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = True,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            r=r,
            k=0,
            warmup_steps=warmup_steps,
            train_mode=False,
            weight_sum=0.0,
            lr_max=-1.0,
            scheduled_lr=0.0,
            weight_lr_power=weight_lr_power,
            weight_decay=weight_decay,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _transform_for(self, g: dict) -> Transform:
        beta1, beta2 = g["betas"]
        return rule_factory("schedule_free_adamw")(
            g["lr"],
            beta1,
            beta2,
            g["eps"],
            weight_decay=g["weight_decay"],
            warmup_steps=g["warmup_steps"],
            r=g["r"],
            weight_lr_power=g["weight_lr_power"],
        )


#: the classes with torch's names, by the registry name of their rule
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
