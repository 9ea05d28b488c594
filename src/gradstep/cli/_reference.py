"""A torch-family reference implementation of a rule, as `gradstep bench --references` runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reference:
    """One torch-family implementation of a registry rule.

    Args:
      rule: the registry name.
      package: the distribution (``pip install`` name, whose version is recorded).
      module: the import path of the class (``timm.optim.x`` is loaded from its file).
      cls: the class name.
      kwargs: the reference's constructor arguments from gradstep's resolved
        hyperparameters (the factory's defaults updated with ``hyperparams``).
      hyperparams: gradstep's arguments for the comparison (both sides).
      train: call ``.train()`` before stepping (schedule-free optimizers).
      foreach_arg: the constructor argument that switches between the per-tensor loop
        and the multi-tensor implementation (heavyball calls it ``multi_tensor``).
      storage_arg: the constructor argument naming the dtype the reference keeps its
        state in, set to the parameters' (heavyball keeps float32 state by default,
        whatever the parameters' dtype); None: the reference follows the parameters.
      clears_grads: ``step()`` sets each ``.grad`` to None (heavyball), so every timed
        step hands the gradients over again first.
      compile_switch: ``module.attribute`` that, set to None, runs the package without
        ``torch.compile`` (heavyball: ``heavyball.utils.compile_mode``): the reference
        is then also timed in a ``compiled`` mode, with the package's own value; its
        other modes, and the check, run uncompiled.
    """

    rule: str
    package: str
    module: str
    cls: str
    kwargs: Callable[[dict], dict]
    hyperparams: dict = field(default_factory=dict)
    train: bool = False
    foreach_arg: str = "foreach"
    storage_arg: str | None = None
    clears_grads: bool = False
    compile_switch: str | None = None

    @property
    def name(self) -> str:
        return f"{self.module.split('.')[0]}.{self.cls}"


def betas(hp: dict, n: int = 2) -> tuple:
    return tuple(hp[f"beta{i}"] for i in range(1, n + 1))


def adam_args(hp: dict, **extra) -> dict:
    """lr, betas, eps and weight_decay: the arguments most Adam-family classes share."""
    out = {"lr": hp["learning_rate"], "betas": betas(hp), "eps": hp["epsilon"]}
    return {**out, "weight_decay": hp["weight_decay"], **extra}
