"""The classes with torch.optim's names outside the Adam family: SGD, Adagrad, RMSprop, ...

(The Adam family is in :mod:`gradstep.torch._classes_adam`; every other registered
optimizer gets a class generated from its factory, :mod:`gradstep.torch._generated`.)

A class with torch's name takes torch's exact arguments and defaults, keeps its state
under torch's keys, and builds its group's transform from the gradstep rule with the
options that reproduce torch (pinned by the conformance fixtures); it holds no math of
its own. Every other registry entry gets a class generated from its factory: the
factory's arguments, with the learning rate in ``group["lr"]``.
"""

from __future__ import annotations

from typing import Any

import torch

from .._core.blockwise8 import MIN_8BIT_SIZE
from .._core.transform import Transform
from ..rules import (
    adadelta,
    adagrad,
    momentum,
    nesterov_momentum,
    rmsprop,
    sgd,
)
from ._base import (
    EPS,
    LR,
    WEIGHT_DECAY,
    TorchOptimizer,
    at_least_one,
    closed_unit_interval,
    nonnegative,
    nonpositive,
    not_negative,
    rule_factory,
)
from ._rule import _number


class SGD(TorchOptimizer):
    """``torch.optim.SGD`` on gradstep's rules: plain (``gradstep.sgd``), heavy-ball
    (``gradstep.momentum``) or Nesterov (``gradstep.nesterov_momentum``), with the
    velocity outside the learning rate (``lr_in_buffer=False``) as torch keeps it.

    Arguments, defaults and the state key (``momentum_buffer``) are torch's; sparse
    gradients are taken (as the same zero-filled dense step torch's sparse arithmetic
    makes). ``fused=True`` requires the fused engine, ``fused=False`` the eager one,
    ``foreach=False`` steps each tensor alone. Extensions: ``master_weights``,
    ``state_dtype`` (the momentum buffer's storage dtype; :mod:`gradstep._core.precision`).
    """

    _args = {"lr": ("learning_rate",), "momentum": ("momentum",), "weight_decay": ("weight_decay",)}
    _rename = {"velocity": "momentum_buffer"}
    _rules = ("sgd", "momentum")
    _track_step = False
    _sparse = True
    _repeat_starts_afresh = True
    _torch_checks = (
        ("lr", None, not_negative, "Invalid learning rate: {v}"),
        ("momentum", None, not_negative, "Invalid momentum value: {v}"),
        ("weight_decay", None, not_negative, "Invalid weight_decay value: {v}"),
    )
    _keys = (
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "nesterov",
        "maximize",
        "foreach",
        "differentiable",
        "fused",
    )

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
        state_dtype: Any = None,
        min_8bit_size: int = MIN_8BIT_SIZE,
    ):
        self._init_from(locals())

    def _check_extra(self, values: dict) -> None:
        nesterov, momentum = values.get("nesterov"), values.get("momentum", 0)
        dampening = values.get("dampening", 0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening (got "
                f"momentum={momentum!r}, dampening={dampening!r})"
            )

    def _sparse_reason(self, group: dict) -> str | None:
        # torch's own errors, raised before anything changes: its fused kernel
        # refuses sparse gradients, and the decay adds the dense parameter to one
        if group.get("fused"):
            return "`_fused_sgd` does not support sparse gradients"
        if _number(group["weight_decay"]) != 0:
            return "add(sparse, dense) is not supported. Use add(dense, sparse) instead."
        return None

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
    _torch_checks = (
        LR,
        ("lr_decay", None, nonnegative, "Invalid lr_decay value: {v}"),
        WEIGHT_DECAY,
        (
            "initial_accumulator_value",
            None,
            nonnegative,
            "Invalid initial_accumulator_value value: {v}",
        ),
        EPS,
    )
    _eager_state = True
    _sparse = True
    _keys = (
        "lr",
        "lr_decay",
        "eps",
        "weight_decay",
        "initial_accumulator_value",
        "foreach",
        "maximize",
        "differentiable",
        "fused",
    )

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
        self._init_from(locals())

    def _sparse_reason(self, group: dict) -> str | None:
        if group.get("fused"):  # torch's fused kernel refuses them first
            return "`fused` does not support sparse grad or complex param"
        if _number(group["weight_decay"]) != 0:
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
    _torch_checks = (
        LR,
        EPS,
        ("momentum", None, nonnegative, "Invalid momentum value: {v}"),
        WEIGHT_DECAY,
        ("alpha", None, nonnegative, "Invalid alpha value: {v}"),
    )
    _keys = (
        "lr",
        "momentum",
        "alpha",
        "eps",
        "centered",
        "weight_decay",
        "capturable",
        "foreach",
        "maximize",
        "differentiable",
    )

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
        self._init_from(locals())

    def _transform_for(self, g: dict) -> Transform:
        return rmsprop(
            g["lr"],
            g["alpha"],
            g["eps"],
            centered=bool(g["centered"]),  # torch takes any truthy value
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
    _torch_checks = (
        LR,
        ("rho", None, closed_unit_interval, "Invalid rho value: {v}"),
        EPS,
        WEIGHT_DECAY,
    )
    _keys = (
        "lr",
        "rho",
        "eps",
        "weight_decay",
        "maximize",
        "capturable",
        "foreach",
        "differentiable",
    )

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
        self._init_from(locals())

    def _transform_for(self, g: dict) -> Transform:
        return adadelta(g["lr"], g["rho"], g["eps"], weight_decay=g["weight_decay"])


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
    _complex = False  # torch raises at the step
    _torch_checks = (
        ("lr", None, nonnegative, "Learning rate should be >= 0 but is: {v}"),
        ("beta2_decay", None, nonpositive, "beta2_decay should be <= 0 but is: {v}"),
        ("eps", 0, nonnegative, "epsilon1 should be >= 0 but is: {v}"),
        ("eps", 1, nonnegative, "epsilon2 should be >= 0 but is: {v}"),
        ("d", None, at_least_one, "Clipping threshold d should be >= 1 but is: {v}"),
        ("weight_decay", None, nonnegative, "weight_decay should be >= 0 but is: {v}"),
    )
    _keys = ("lr", "beta2_decay", "eps", "d", "weight_decay", "foreach", "maximize")

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
        self._init_from(locals())

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
    _complex = False  # torch raises at the step
    _track_step = False
    _torch_checks = (
        ("lr", None, nonnegative, "Learning rate should be >= 0 but is: {v}"),
        ("momentum", None, nonnegative, "momentum should be >= 0 but is: {v}"),
        ("weight_decay", None, nonnegative, "weight decay should be >= 0 but is: {v}"),
    )
    _scales = {None: "width_out_in", "original": "width_out_in", "match_rms_adamw": "rms"}
    _keys = (
        "lr",
        "weight_decay",
        "momentum",
        "nesterov",
        "ns_coefficients",
        "eps",
        "ns_steps",
        "adjust_lr_fn",
    )

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
        self._init_from(locals())

    def _check_extra(self, values: dict) -> None:
        if "adjust_lr_fn" in values and values["adjust_lr_fn"] not in self._scales:
            raise ValueError(
                f"Adjust learning rate function {values['adjust_lr_fn']} is not supported"
            )
        steps = values.get("ns_steps", 5)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps >= 100:
            # torch refuses these at the first step (range() and its own bound)
            raise ValueError(
                f"Muon: invalid ns_steps={steps!r}; torch.optim.Muon takes an integer "
                "below 100 (the number of Newton-Schulz iterations)"
            )

    def _check_params(self, group: dict) -> None:
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
