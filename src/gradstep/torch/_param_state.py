"""Per-parameter state of a TransformOptimizer: storage options, creation, loading.

A parameter's state is created on its first step from the transform's layout, and
loaded from torch.optim state dicts into the optimizer's own storage options
(:mod:`._own_storage`), with torch's dtype casts undone where the slots have storage
dtypes of their own (a group's ``state_dtype`` or the transform's declaration).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._core.blockwise8 import MIN_8BIT_SIZE
from .._core.precision import slot_dtypes, with_state_dtype
from .._core.rounding import ParameterStore, with_rounding
from .._core.transform import Transform, walk
from . import _distributed as _dist
from ._checkpoint_8bit import converted_8bit
from ._checks import check_loaded_state, loaded_values
from ._members import _as_tensor, _first_param, _init_view, _real_view
from ._own_storage import with_own_storage
from ._rule import _LOW_PRECISION, MASTER, _Rule, scalar_dtype
from ._state import STEP


class ParamState:
    """The state-keeping half of :class:`~gradstep.torch._optimizer.TransformOptimizer`."""

    def _ensure_state(self, p, state: dict, rule: _Rule, master: bool) -> bool:
        """Create what the rule needs in ``state``; True if anything was missing."""
        if master and MASTER not in state:
            wide = torch.complex64 if p.is_complex() else torch.float32
            state[MASTER] = p.detach().to(wide, copy=True)
        like = (state[MASTER] if master else p).detach()
        complex_param = like.is_complex()
        if complex_param:
            like = torch.view_as_real(like)
        gathered = _dist.is_dtensor(like) and not rule.local_ok
        base = _dist.full(like) if gathered else like
        layout = rule.layout(base)
        missing = [k for k in rule.wanted(layout) if k not in state]
        if missing:
            own, shared = layout.init_entries(_init_view(base))
            for name, value in own.items():
                key = rule.key(name)
                if key in state or name in layout.empty:
                    continue
                if name == STEP:  # a count per parameter: torch's step, a float tensor
                    state[key] = torch.tensor(float(np.asarray(value)), dtype=scalar_dtype())
                    continue
                value = _in_memory_format(_as_tensor(value, base), base)
                if complex_param and _complex_kept(value, like):
                    value = torch.view_as_complex(value.contiguous())  # torch keeps it complex
                if gathered and tuple(value.shape) == tuple(like.shape):
                    value = _dist.distribute_like(value, like)  # sharded as its parameter
                state[key] = value
            for name, value in shared.items():
                key = rule.key(name)
                if name != STEP and key not in state:
                    # np.size of a torch tensor is its bound ``size`` method, not a count
                    size = value.numel() if isinstance(value, torch.Tensor) else np.size(value)
                    if size != 1:
                        raise TypeError(
                            f"{self._owner}: {rule.transform!r} keeps state shared by all "
                            f"parameters ({name!r} of shape {np.shape(value)}), which "
                            "torch's per-parameter state cannot hold"
                        )
                    # a Python number: torch would cast a tensor to the parameter's dtype
                    state[key] = (
                        value.item()
                        if isinstance(value, torch.Tensor)
                        else (np.asarray(value).item())
                    )
        if rule.track_step and STEP not in state:
            state[STEP] = torch.tensor(0.0, dtype=scalar_dtype())
        return bool(missing)

    def _init_all_state(self) -> None:
        """Create every parameter's state now (torch's Adagrad does so in __init__)."""
        for group in self.param_groups:
            rule = self._rule(group)
            master = bool(group.get("master_weights", False))
            for p in group["params"]:
                self._ensure_state(p, self.state[p], rule, master and p.dtype in _LOW_PRECISION)

    def _loaded_rule(self, values: dict) -> _Rule | None:
        """The rule a group with ``values`` (a checkpoint's group) steps with, or None
        where its state cannot be split per parameter."""
        try:
            transform, dynamic = self._build(values)
            transform = stored(transform, values, self._owner)
            rule = _Rule(
                transform,
                dynamic,
                bool(values.get("maximize", False)),
                self._rename,
                self._track_step,
                self._check_ranges,
            )
            rule.layout(_first_param(values))
        except (TypeError, ValueError, KeyError):
            return None
        return rule

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # the groups keep their own storage options, into which the checkpoint's 8-bit
        # codes and float values are converted; a checkpoint whose tensors do not fit
        # the parameters is refused before anything changes
        state_dict = with_own_storage(self, state_dict)
        state_dict = converted_8bit(self, state_dict)
        check_loaded_state(self, state_dict)
        keep = _kept_dtypes(self, state_dict)
        super().load_state_dict(state_dict)
        for p, key, value in keep:
            self.state[p][key] = value.to(device=p.device, copy=True)
        self.__dict__.pop("_gs_runtime", None)
        self._restore_state_dtypes()
        self._restore_memory_formats()

    def _restore_memory_formats(self) -> None:
        """A checkpoint saved from parameters in another memory format (C order,
        ``channels_last``) keeps its per-element state in that format through torch's
        loading: laid out as the parameters are now, so that the fused engines take
        them (the same values)."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if not state or _dist.is_dtensor(p) or p.is_complex():
                    continue
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and key != STEP:
                        state[key] = _in_memory_format(value, p)

    def _restore_state_dtypes(self) -> None:
        """torch's loading casts every state tensor to its parameter's dtype: slots
        with a storage dtype of their own (a group's ``state_dtype``, or the
        transform's declaration) get it back."""
        for group in self.param_groups:
            try:
                rule = self._rule(group)
            except (TypeError, ValueError, KeyError):
                continue  # the checkpoint's values: the step says why
            if not _declares_dtypes(rule):
                continue
            master = bool(group.get("master_weights", False))
            for p in group["params"]:
                state = self.state.get(p)
                if not state or _dist.is_dtensor(p):
                    continue
                like = _real_view((state.get(MASTER, p) if master else p).detach())
                own, _ = rule.layout(like).init_entries(_init_view(like))
                for name, fresh in own.items():
                    if name == STEP:
                        continue  # a count per parameter: torch's float step
                    value = state.get(rule.key(name))
                    dtype = _as_tensor(fresh, like).dtype
                    if isinstance(value, torch.Tensor) and value.is_floating_point():
                        if value.dtype != dtype:
                            state[rule.key(name)] = value.to(dtype)


def _declares_dtypes(rule: _Rule | None) -> bool:
    """Some slot of ``rule`` has a storage dtype of its own."""
    return rule is not None and any(d is not None for d in slot_dtypes(rule.transform).values())


def _kept_dtypes(opt: Any, state_dict: dict) -> list[tuple]:
    """``(parameter, key, tensor)`` of the saved state tensors that torch's loading,
    which casts every state tensor to its parameter's dtype, must not cast: the float32
    master weights and state of low-precision parameters (``master_weights``), and
    every floating state tensor of a group whose slots have storage dtypes of their
    own (8-bit block scales, a small tensor's float32 slots, bfloat16 slots of a
    float16 parameter), which :meth:`ParamState._restore_state_dtypes` then gives
    its storage dtype."""
    keep = []
    wide = (torch.float32, torch.complex64)
    saved_state = state_dict.get("state", {})
    for group, saved_group in zip(opt.param_groups, state_dict.get("param_groups", [])):
        master = bool(saved_group.get("master_weights", False))
        storage = _declares_dtypes(opt._loaded_rule(loaded_values(group, saved_group)))
        for p, pid in zip(group["params"], saved_group["params"]):
            entry = saved_state.get(pid) or {}
            for key, value in entry.items():
                if key == STEP or not isinstance(value, torch.Tensor):
                    continue
                if _is_count(value):  # an integer counter (_checks.integer_keys)
                    keep.append((p, key, value))
                    continue
                if not (master or storage):
                    continue
                if master and p.dtype in _LOW_PRECISION and value.dtype in wide:
                    keep.append((p, key, value))
                elif storage and p.is_floating_point() and value.is_floating_point():
                    if value.dtype != p.dtype:
                        keep.append((p, key, value))
    return keep


def _is_count(value: torch.Tensor) -> bool:
    """An integer tensor (not 8-bit codes), which torch's loading would cast to its
    parameter's dtype."""
    return not (value.is_floating_point() or value.is_complex() or value.dtype == torch.uint8)


def _complex_kept(value: torch.Tensor, real_view: torch.Tensor) -> bool:
    """A complex parameter's state entry ``value`` (written for its real view) is
    kept complex, as torch.optim keeps it: an entry of the real view's shape in the
    parameter's precision. Entries in a storage dtype of their own (``state_dtype``:
    bfloat16, float16, 8-bit codes) stay the real view the rule writes."""
    return tuple(value.shape) == tuple(real_view.shape) and value.dtype == real_view.dtype


def stored(transform: Transform, group: dict, owner: str) -> Transform:
    """The group's transform with its storage options: ``state_dtype`` (and its
    ``min_8bit_size``), and ``stochastic_rounding`` / ``rounding_seed`` /
    ``kahan_summation`` (:mod:`gradstep._core.rounding`)."""
    size = group.get("min_8bit_size", MIN_8BIT_SIZE)
    transform = with_state_dtype(transform, group.get("state_dtype"), owner, size)
    stochastic = bool(group.get("stochastic_rounding", False))
    seed = int(group.get("rounding_seed", 0))
    kahan = bool(group.get("kahan_summation", False))
    built = [v.transform for v in walk(transform) if isinstance(v.transform, ParameterStore)]
    if built and (built[0].seed, built[0].kahan) == (seed if stochastic else None, kahan):
        return transform  # a registry class's factory took the group's options already
    return with_rounding(transform, stochastic, seed, kahan, owner)


def step_on_device(p: torch.Tensor, state: dict, interpreted: bool) -> None:
    """capturable=True: the step count is a float32 tensor on the parameter's device,
    as torch.optim keeps it (CPU parameters: torch refuses them at step time, except
    here under ``engine="triton"``, Triton's interpreter, which the tests use)."""
    if p.device.type == "cpu" and not interpreted:
        raise RuntimeError(
            "capturable=True needs parameters on a CUDA device (the step count is kept "
            f"there for CUDA-graph capture), got a parameter on {p.device}"
        )
    step = state.get(STEP)
    if isinstance(step, torch.Tensor) and (step.device != p.device or step.dtype != torch.float32):
        state[STEP] = step.to(device=p.device, dtype=torch.float32)


def _in_memory_format(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-element state tensor laid out in memory as its parameter ``like`` is
    (``channels_last``, a transposed weight), as torch.optim makes its state
    (``zeros_like(p, memory_format=torch.preserve_format)``); the engines then step
    such a parameter and its state as C-contiguous views of their memory
    (:func:`gradstep.torch._members._storage_view`)."""
    if like.layout != torch.strided or value.shape != like.shape:
        return value
    if value.layout != torch.strided:
        # torch's SGD keeps a sparse momentum buffer where the gradients were sparse;
        # the dense buffer with zeros elsewhere continues the same steps
        value = value.to_dense()
    if like.is_contiguous():
        return value.contiguous()
    out = torch.empty_like(like, dtype=value.dtype)
    return out.copy_(value) if out.stride() != value.stride() else value
