"""The schedule-free classes: the ``schedulefree`` package's arguments, state keys and
``train()``/``eval()`` over gradstep's schedule-free rules."""

from __future__ import annotations

from typing import Any

import torch

from .._core.carried import holding
from .._core.transform import Transform
from ._base import TorchOptimizer, rule_factory
from ._rule import scalar_dtype
from ._state import STEP

# group entries the schedulefree package keeps, so its checkpoints and code that reads
# them find them
_PACKAGE_GROUP_KEYS = dict(k=0, train_mode=False, weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0)


class _ScheduleFree(TorchOptimizer):
    """Base of the classes with the ``schedulefree`` package's names: the parameters
    hold :math:`y` while training; :meth:`eval` puts :math:`x` in them and
    :meth:`train` puts :math:`y` back (both idempotent), and a step in evaluation
    mode raises, as in the package. The package's group counters (``k``,
    ``train_mode``) are kept; the rule counts steps per parameter (``step``)."""

    # the group counter k must not advance on a skipped step: GradScaler skips the
    # call instead
    _step_supports_amp_scaling = False

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
        loss = self._step(closure)
        for group in self.param_groups:
            group["k"] += 1
        return loss

    def _step_group(self, group: dict, amp: tuple | None = None, extra: dict | None = None) -> None:
        # the package's totals lr_max and weight_sum live in the group: the step reads
        # them (so a learning rate a scheduler changes weighs as in the package) and
        # they are updated from what it computed; a group of an older gradstep
        # checkpoint, whose totals were never kept, derives them from the count
        stages = self._rule(group).carried
        if not stages or (group["k"] > 0 and not group["weight_sum"]):
            return super()._step_group(group, amp, extra)
        totals = {"lr_max": float(group["lr_max"]), "weight_sum": float(group["weight_sum"])}
        with holding(stages, totals):
            super()._step_group(group, amp, extra)
            reported = stages[0].reported
        if reported is not None:
            group.update(reported)

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
            warmup_steps=warmup_steps,
            weight_lr_power=weight_lr_power,
            weight_decay=weight_decay,
            foreach=foreach,
        )
        super().__init__(params, {**defaults, **_PACKAGE_GROUP_KEYS})

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
            warmup_steps=warmup_steps,
            weight_lr_power=weight_lr_power,
            weight_decay=weight_decay,
            foreach=foreach,
        )
        super().__init__(params, {**defaults, **_PACKAGE_GROUP_KEYS})

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
