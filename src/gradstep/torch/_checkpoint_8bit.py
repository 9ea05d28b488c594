"""Checkpoints across 8-bit and floating-point state: each slot in the form its group keeps it.

A torch state dict holds, per parameter, an 8-bit slot (``state_dtype="int8"``) as
uint8 codes under the slot's key and float32 block scales under ``<key>_absmax``
(:mod:`gradstep._core.blockwise8`), or as float values where the tensor is below
the group's ``min_8bit_size`` (with an empty ``<key>_absmax``), and a
floating-point slot as float values alone. Before loading, every slot of a
checkpoint saved in another of these forms is converted, tensor by tensor, to the
one its group keeps once loaded (the loading optimizer's own ``state_dtype`` and
``min_8bit_size``, which the saved groups take: :mod:`._own_storage`): codes
dequantised, float values quantised, with the same functions the engines use
(:func:`gradstep._core.blockwise8.converted`).
Codes whose block scales are missing or do not fit them are refused here, before
anything changes; everything else is left to the loader's checks.
"""

from __future__ import annotations

from typing import Any

import torch

from .._core import blockwise8 as q8
from .._core.elementwise import Elementwise
from .._core.transform import walk
from . import _distributed as _dist
from ._checks import loaded_values
from ._rule import _LOW_PRECISION


def converted_8bit(opt: Any, state_dict: dict) -> dict:
    """``state_dict`` with its 8-bit and floating-point slots in the forms their
    groups keep them once loaded (a new dict; the given one and its tensors are not
    changed). Raises ``ValueError`` for codes without block scales that fit them."""
    saved_state = state_dict.get("state", {})
    state = dict(saved_state)
    for gi, (group, saved_group) in enumerate(
        zip(opt.param_groups, state_dict.get("param_groups", []))
    ):
        values = loaded_values(group, saved_group)
        rule = opt._loaded_rule(values)
        if rule is None:
            continue  # the step says why
        slots = _slots(rule.transform)
        if not slots:
            continue
        wide = bool(values.get("master_weights", False))
        for i, (p, pid) in enumerate(zip(group["params"], saved_group.get("params", []))):
            entry = saved_state.get(pid)
            if not isinstance(entry, dict) or not entry or _dist.is_dtensor(p):
                continue  # sharded checkpoints are checked by the step
            like = torch.view_as_real(p.detach()) if p.is_complex() else p.detach()
            if wide and p.dtype in _LOW_PRECISION:  # the float32 master copy's state
                like = torch.empty(like.shape, dtype=torch.float32, device="meta")
            where = f"parameter {i} of param group {gi}"
            layout = rule.layout(like)
            new = _entry(opt._owner, where, rule, layout, slots, entry, like, p.is_complex())
            if new is not entry:
                state[pid] = new
    return {**state_dict, "state": state}


def _slots(transform: Any) -> list[tuple[tuple, Any]]:
    """``(state tokens, slot)`` of every slot of the elementwise stages."""
    return [
        (tuple(visit.path) + (slot.name,), slot)
        for visit in walk(transform)
        if isinstance(visit.transform, Elementwise) and visit.path is not None
        for slot in visit.transform.slots
    ]


def _entry(
    owner: str, where: str, rule, layout, slots: list, entry: dict, like, complex_param: bool
) -> dict:
    """One parameter's saved ``entry`` with its slots converted (itself where none
    needs it); ``like``: the tensor its state is made for (a complex parameter's real
    view, a float32 master copy)."""
    out = entry
    for tokens, slot in slots:
        name = layout.name(tokens)
        if name not in layout.names:
            continue
        key = rule.key(name)
        value = entry.get(key)
        if not isinstance(value, torch.Tensor):
            continue
        eight = slot.dtype == q8.BLOCKWISE8
        if eight:
            scale_key = rule.key(layout.name(tokens[:-1] + (q8.absmax_name(slot.name),)))
        else:
            scale_key = key + q8.ABSMAX_SUFFIX
        scale = entry.get(scale_key)
        real = (torch.view_as_real(value) if value.is_complex() else value).detach()
        if q8.is_codes(real):
            _check_scales(owner, where, key, real, scale_key, scale)
        new, new_scale = q8.converted(real, scale, not slot.nonnegative, eight, slot.min_8bit_size)
        if new is real:
            new = value
        elif q8.is_codes(real):  # dequantised
            new = _as_kept(new, slot, like, complex_param)
        if new is value and new_scale is scale:
            continue
        if out is entry:
            out = dict(entry)
        out[key] = new
        if new_scale is None:
            out.pop(scale_key, None)
        else:
            out[scale_key] = new_scale
    return out


def _check_scales(owner: str, where: str, key: str, codes, scale_key: str, scale) -> None:
    """Refuse codes whose block scales are missing or do not fit them: they can be
    neither dequantised nor stepped."""
    blocks = (q8.n_blocks(codes.numel()),)
    if scale is None:
        raise ValueError(
            f"{owner}: state[{key!r}] of {where} holds 8-bit codes, but "
            f"state[{scale_key!r}], its block scales, is missing (a float32 tensor of "
            f"shape {blocks}: one scale per {q8.BLOCK} codes)"
        )
    if not isinstance(scale, torch.Tensor) or tuple(scale.shape) != blocks:
        described = (
            f"has shape {tuple(scale.shape)}"
            if isinstance(scale, torch.Tensor)
            else f"is a {type(scale).__name__}"
        )
        raise ValueError(
            f"{owner}: state[{scale_key!r}] of {where} {described}, but the 8-bit codes "
            f"state[{key!r}] of shape {tuple(codes.shape)} need a float32 tensor of "
            f"shape {blocks} (one scale per {q8.BLOCK} codes)"
        )


def _as_kept(values: torch.Tensor, slot: Any, like: torch.Tensor, complex_param: bool):
    """Dequantised float32 ``values`` (the real view's) in the dtype a fresh state
    keeps the slot in, complex where torch keeps it so (a complex parameter's state
    in its own precision)."""
    if slot.dtype == q8.BLOCKWISE8:  # a tensor below min_8bit_size
        dtype = getattr(torch, q8.float_dtype_for(like))
    elif slot.dtype is None:
        dtype = like.dtype
    else:
        dtype = getattr(torch, slot.dtype)
    values = values.to(dtype)
    if complex_param and dtype == like.dtype:
        return torch.view_as_complex(values.contiguous())
    return values
