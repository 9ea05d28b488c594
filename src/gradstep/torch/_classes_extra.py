"""torch.optim's ASGD, Rprop and SparseAdam on gradstep's rules.

As every class with torch's name (see :mod:`gradstep.torch._classes`): torch's
arguments, defaults and state keys over the gradstep rule that reproduces torch.
"""

from __future__ import annotations

from typing import Any

import torch

from .._core.transform import Transform
from ..rules import adam
from ._base import (
    BETAS,
    LR,
    WEIGHT_DECAY,
    TorchOptimizer,
    etas_around_one,
    positive,
    rule_factory,
)
from ._members import _Member
from ._rule import _number, scalar_dtype
from ._state import STEP


class ASGD(TorchOptimizer):
    """``torch.optim.ASGD`` on ``gradstep.asgd``: the step size
    :math:`\\eta_k = lr / (1 + \\lambda\\, lr\\, k)^\\alpha`, the weights shrunk by
    :math:`\\lambda\\eta_k`, and the averaged parameter kept from step ``t0`` on.

    State keys ``step``, ``eta``, ``mu``, ``ax`` (the average). As torch, each step
    computes ``eta`` and ``mu`` from its own hyperparameters and the next step
    reads them: after a learning-rate change (a scheduler's), one more step takes
    the old rate's :math:`\\eta`. torch keeps them in its default dtype (float32
    unless set), and so does this class. Extension: ``master_weights``.
    """

    _args = {
        "lr": ("learning_rate",),
        "lambd": ("lambd",),
        "alpha": ("alpha",),
        "t0": ("t0",),
        "weight_decay": ("weight_decay",),
    }
    _rules = ("asgd",)
    _torch_checks = (LR, WEIGHT_DECAY)
    _keys = (
        "lr",
        "lambd",
        "alpha",
        "t0",
        "weight_decay",
        "foreach",
        "maximize",
        "differentiable",
        "capturable",
    )

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        master_weights: bool = False,
    ):
        self._init_from(locals())

    def _transform_for(self, g: dict) -> Transform:
        return rule_factory("asgd")(g["lr"], g["lambd"], g["alpha"], g["t0"], g["weight_decay"])

    def _ensure_state(self, p, state, rule, master) -> bool:
        missing = super()._ensure_state(p, state, rule, master)
        if "eta" not in state:
            group = next(g for g in self.param_groups if any(q is p for q in g["params"]))
            state["eta"] = torch.tensor(_number(group["lr"]), dtype=scalar_dtype())
            state["mu"] = torch.tensor(1.0, dtype=scalar_dtype())
        return missing

    def _carried(self, m) -> dict[str, float]:
        return {"eta": float(m.state["eta"]), "mu": float(m.state["mu"])}

    def _after_step(self, group: dict, members: list) -> None:
        lr, lambd = _number(group["lr"]), group["lambd"]
        for m in members:
            step = float(m.state[STEP])
            m.state["eta"].fill_(lr / (1 + lambd * lr * step) ** group["alpha"])
            m.state["mu"].fill_(1 / max(1, step - group["t0"]))


class Rprop(TorchOptimizer):
    """``torch.optim.Rprop`` on ``gradstep.rprop`` (iRprop-): ``lr`` is the initial
    step size of every element, ``etas`` = (``eta_minus``, ``eta_plus``),
    ``step_sizes`` = (``min_step_size``, ``max_step_size``). State keys ``step``,
    ``prev``, ``step_size``. As in torch, changing ``lr`` later only affects
    parameters that have no state yet. Extension: ``master_weights``."""

    _args = {
        "etas": ("eta_minus", "eta_plus"),
        "step_sizes": ("min_step_size", "max_step_size"),
    }
    _rules = ("rprop",)
    _torch_checks = (LR, ("etas", None, etas_around_one, "Invalid eta values: {v[0]}, {v[1]}"))
    _keys = ("lr", "etas", "step_sizes", "foreach", "maximize", "differentiable", "capturable")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        master_weights: bool = False,
    ):
        self._init_from(locals())

    def _ensure_state(self, p, state, rule, master) -> bool:
        missing = super()._ensure_state(p, state, rule, master)
        group = next(g for g in self.param_groups if any(q is p for q in g["params"]))
        lr = group["lr"]
        if missing and group.get("differentiable") and isinstance(lr, torch.Tensor):
            # the initial step sizes carry the tensor lr, so gradients reach it
            sizes = state["step_size"]
            ones = torch.ones_like(torch.view_as_real(sizes) if sizes.is_complex() else sizes)
            sizes = ones * lr.to(ones.dtype)
            state["step_size"] = torch.view_as_complex(sizes) if p.is_complex() else sizes
        return missing

    def _transform_for(self, g: dict) -> Transform:
        (eta_minus, eta_plus), (smallest, largest) = g["etas"], g["step_sizes"]
        return rule_factory("rprop")(g["lr"], eta_minus, eta_plus, smallest, largest)


class SparseAdam(TorchOptimizer):
    """``torch.optim.SparseAdam``: Adam applied only to the entries a sparse
    gradient stores (``nn.Embedding(sparse=True)``); the other entries of the
    parameter and of its moments are left as they are.

    The math is ``gradstep.adam`` with epsilon on the uncorrected root
    (``epsilon_placement="outside_uncorrected"``, torch's SparseAdam) run on the
    gathered entries (duplicated indices summed first, as torch coalesces), then
    scattered back. State keys ``step`` (an int, as torch), ``exp_avg``,
    ``exp_avg_sq``. A class of the torch front only: which entries move depends on
    which ones the sparse gradient stores (an explicitly stored zero still moves the
    moments), which a dense gradient array, all the core rules and the NumPy and JAX
    fronts take, does not carry.
    """

    _args = {
        "lr": ("learning_rate",),
        "betas": ("beta1", "beta2"),
        "eps": ("epsilon",),
    }
    _rename = {"mu": "exp_avg", "nu": "exp_avg_sq"}
    _rules = ("adam",)
    _torch_checks = (
        ("lr", None, positive, "Invalid learning rate: {v}"),
        ("eps", None, positive, "Invalid epsilon value: {v}"),
        *BETAS,
    )
    _complex = False  # refused in the constructor, as torch
    _keys = ("lr", "betas", "eps", "maximize")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
    ):
        self._init_from(locals())
        sparse, complex_ = [], []
        for i, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                if p.is_sparse:
                    sparse.append([i, j])
                if p.is_complex():
                    complex_.append([i, j])
        if sparse:
            raise ValueError(
                f"Sparse params at indices {sparse}: SparseAdam requires dense parameter tensors"
            )
        if complex_:
            raise ValueError(
                f"Complex params at indices {complex_}: SparseAdam does not support complex "
                "parameters"
            )

    def _transform_for(self, g: dict) -> Transform:
        beta1, beta2 = g["betas"]
        return adam(g["lr"], beta1, beta2, g["eps"], epsilon_placement="outside_uncorrected")

    def _step_group(self, group: dict, amp: tuple | None = None) -> None:
        rule = self._rule(group)
        ctx = rule.ctx(group, self._owner)
        for p in group["params"]:
            if p.grad is None:
                continue
            if not p.grad.is_sparse:
                raise RuntimeError(
                    "SparseAdam does not support dense gradients, please consider Adam instead"
                )
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            grad = p.grad.coalesce()
            where = tuple(grad.indices())
            # the stored entries, gathered into dense tensors the rule steps
            gathered = {
                "step": torch.tensor(float(state["step"]), dtype=scalar_dtype()),
                "exp_avg": state["exp_avg"][where],
                "exp_avg_sq": state["exp_avg_sq"][where],
            }
            w = p.detach()[where]
            member = _Member(w, grad.values(), gathered, False, False, rule)
            numpy = member.numpy_ok() and all(t.is_contiguous() for t in (w, member.g))
            counted = self._run_eager(rule, [member], ctx, numpy=numpy)
            if not counted:
                gathered["step"] += 1
            p.detach()[where] = w
            state["exp_avg"][where] = gathered["exp_avg"]
            state["exp_avg_sq"][where] = gathered["exp_avg_sq"]
            state["step"] = int(gathered["step"])
