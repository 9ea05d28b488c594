"""The Adam family with torch.optim's names: Adam, AdamW, Adamax, NAdam, RAdam.

As every class with torch's name (see :mod:`gradstep.torch._classes`): torch's
arguments, defaults and state keys over the gradstep rule that reproduces torch.
"""

from __future__ import annotations

from typing import Any

import torch

from .._core.blockwise8 import MIN_8BIT_SIZE
from .._core.transform import Transform
from ..rules import (
    adam,
    adamax,
    adamw,
)
from ._base import (
    ADAM_CHECKS,
    TorchOptimizer,
    nonnegative,
    rule_factory,
)
from ._rule import _number, scalar_dtype

#: torch group key -> gradstep hyperparameters, shared by the Adam family
ADAM_ARGS = {
    "lr": ("learning_rate",),
    "betas": ("beta1", "beta2"),
    "eps": ("epsilon",),
    "weight_decay": ("weight_decay",),
}


class Adam(TorchOptimizer):
    """``torch.optim.Adam`` on ``gradstep.adam`` (``gradstep.adamw`` with
    ``decoupled_weight_decay=True``): epsilon outside the bias-corrected root, AMSGrad
    over the raw second moment.

    Arguments, defaults and state keys (``step``, ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq``) are torch's, so checkpoints move both ways. ``fused=True``
    requires the fused engine, ``fused=False`` the eager one, ``foreach=False`` steps
    each tensor alone. Extensions: ``master_weights``; ``state_dtype`` (None: torch's
    state in the parameter's dtype; e.g. ``torch.bfloat16`` or ``{"mu": ...}``: the
    moments' storage dtype, arithmetic in float32; :mod:`gradstep._core.precision`).
    """

    _args = ADAM_ARGS
    _rename = {"mu": "exp_avg", "nu": "exp_avg_sq", "nu_max": "max_exp_avg_sq"}
    _rules = ("adam", "adamw")
    _torch_checks = ADAM_CHECKS
    _tensor_lr_foreach_refused = True
    _keys = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
        "maximize",
        "foreach",
        "capturable",
        "differentiable",
        "fused",
        "decoupled_weight_decay",
    )

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
        state_dtype: Any = None,
        min_8bit_size: int = MIN_8BIT_SIZE,
    ):
        self._init_from(locals())

    def _check_extra(self, values: dict) -> None:
        betas = values.get("betas")
        if betas is None:
            return
        floats = all(isinstance(b, float) for b in betas)
        if not floats and not all(isinstance(b, torch.Tensor) for b in betas):
            raise ValueError("betas must be either both floats or both Tensors")
        for i, beta in enumerate(betas):
            if not isinstance(beta, torch.Tensor):
                continue
            if values.get("foreach") and not values.get("capturable"):
                raise ValueError(
                    f"betas[{i}] as a Tensor is not supported for capturable=False and foreach=True"
                )
            if beta.numel() != 1:
                raise ValueError(f"Tensor betas[{i}] must be 1-element")

    def _transform_for(self, g: dict) -> Transform:
        factory = adamw if g["decoupled_weight_decay"] else adam
        beta1, beta2 = g["betas"]
        return factory(
            g["lr"],
            beta1,
            beta2,
            g["eps"],
            weight_decay=g["weight_decay"],
            amsgrad=bool(g["amsgrad"]),  # torch takes any truthy value
        )


class AdamW(Adam):
    """``torch.optim.AdamW``: :class:`Adam` with decoupled weight decay (default
    0.01), on ``gradstep.adamw``. Extensions: ``master_weights``, ``state_dtype``,
    ``min_8bit_size``."""

    _fixed = {"decoupled_weight_decay": True}

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
        state_dtype: Any = None,
        min_8bit_size: int = MIN_8BIT_SIZE,
    ):
        self._init_from(locals())


class Adamax(TorchOptimizer):
    """``torch.optim.Adamax`` on ``gradstep.adamax`` with epsilon inside the maximum
    (``epsilon_placement="in_max"``). State keys ``step``, ``exp_avg``, ``exp_inf``.
    Extension: ``master_weights``."""

    _args = ADAM_ARGS
    _rename = {"mu": "exp_avg", "inf_norm": "exp_inf"}
    _rules = ("adamax",)
    _torch_checks = ADAM_CHECKS
    _keys = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "foreach",
        "maximize",
        "differentiable",
        "capturable",
    )

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
        self._init_from(locals())

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
    ``exp_avg_sq``; a step takes the schedule's product from ``mu_product``, which
    each step multiplies by its own momentum, as torch (a beta1 that a scheduler
    cycles then gives torch's steps). Extension: ``master_weights``."""

    _args = {**ADAM_ARGS, "momentum_decay": ("schedule_decay",)}
    _rename = {"mu": "exp_avg", "nu": "exp_avg_sq"}
    _rules = ("nadam",)
    _torch_checks = ADAM_CHECKS + (
        ("momentum_decay", None, nonnegative, "Invalid momentum_decay value: {v}"),
    )
    _keys = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "momentum_decay",
        "decoupled_weight_decay",
        "maximize",
        "foreach",
        "capturable",
        "differentiable",
    )

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
        self._init_from(locals())

    def _transform_for(self, g: dict) -> Transform:
        beta1, beta2 = g["betas"]
        return rule_factory("nadam")(
            g["lr"],
            beta1,
            beta2,
            g["eps"],
            schedule_decay=g["momentum_decay"],
            weight_decay=g["weight_decay"],
            # torch takes the flag with a zero decay (the usual bias group): nothing
            # to decouple then; a decay switched on later rebuilds the transform
            decoupled_weight_decay=bool(g["decoupled_weight_decay"]) and g["weight_decay"] != 0,
        )

    def _ensure_state(self, p, state, rule, master) -> bool:
        missing = super()._ensure_state(p, state, rule, master)
        if "mu_product" not in state:
            state["mu_product"] = torch.tensor(1.0, dtype=scalar_dtype())
        return missing

    def _carried(self, m) -> dict[str, float]:
        # torch multiplies each step's own mu_t into the product it keeps: with a beta1
        # that changes (OneCycleLR, CyclicLR), a product derived from the step count
        # and today's beta1 is another number
        return {"mu_product": float(m.state["mu_product"])}

    def _after_step(self, group: dict, members: list) -> None:
        from ..rules.nadam import momentum_schedule

        beta1 = _number(group["betas"][0])
        decay = group["momentum_decay"]
        for m in members:
            step = m.state["step"]
            if group.get("capturable"):
                # the count lives on the device (as torch's capturable NAdam keeps it):
                # the product follows it there with device operations, not a host read
                product = m.state["mu_product"]
                if product.device != step.device:
                    product = m.state["mu_product"] = product.to(step.device)
                product.mul_(momentum_schedule(beta1, decay, step))
                continue
            m.state["mu_product"].mul_(momentum_schedule(beta1, decay, int(step)))

    def _fast_carried(self, group: dict, dicts: list[dict]) -> Any:
        # capturable: the rule's scalars read the count on the host (the product of
        # every step's factor), which no device-only step can do; differentiable:
        # derived from the tensor hyperparameters
        if group.get("capturable") or group.get("differentiable"):
            return False
        return _SharedProducts(dicts)


class _SharedProducts:
    """NAdam's ``mu_product`` of every parameter of a fast path, as views of one
    tensor: read once a step and advanced by one multiplication, as
    :meth:`NAdam._after_step` advances each."""

    keys = ("mu_product",)

    def __init__(self, dicts: list[dict]):
        from ._cuda import share_entries

        self.base = share_entries(dicts, "mu_product")

    def values(self) -> dict[str, float] | None:
        """The product every parameter holds; None where they differ."""
        first = self.base[0]
        if not bool((self.base == first).all()):
            return None
        return {"mu_product": float(first)}

    def advance(self, group: dict, count: int) -> None:
        """Multiply in this step's own factor (``count``: the step count after it)."""
        from ..rules.nadam import momentum_schedule

        beta1 = _number(group["betas"][0])
        self.base.mul_(momentum_schedule(beta1, group["momentum_decay"], count))


class RAdam(TorchOptimizer):
    """``torch.optim.RAdam`` on ``gradstep.radam`` (rectified when
    :math:`\rho_t > 5`, epsilon on the uncorrected root; RAdamW with
    ``decoupled_weight_decay``). State keys ``step``, ``exp_avg``, ``exp_avg_sq``.
    Extension: ``master_weights``."""

    _args = ADAM_ARGS
    _rename = {"mu": "exp_avg", "nu": "exp_avg_sq"}
    _rules = ("radam",)
    _torch_checks = ADAM_CHECKS
    _keys = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "maximize",
        "foreach",
        "capturable",
        "decoupled_weight_decay",
        "differentiable",
    )

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
        self._init_from(locals())

    def _transform_for(self, g: dict) -> Transform:
        beta1, beta2 = g["betas"]
        return rule_factory("radam")(
            g["lr"],
            beta1,
            beta2,
            g["eps"],
            g["weight_decay"],
            bool(g["decoupled_weight_decay"]),
            threshold_rule="greater",
            epsilon_placement="outside_uncorrected",
        )
