"""Loading a checkpoint keeps the optimizer's own storage options, and converts the state into them.

torch.optim's ``load_state_dict`` takes every param-group value from the checkpoint.
gradstep's storage options (``state_dtype``, ``min_8bit_size``,
``stochastic_rounding``, ``rounding_seed``, ``kahan_summation``) say how *this*
optimizer keeps its state, not what the checkpoint holds (its tensors say that), so
each saved group takes the loading group's own values (none where the loading group
did not set one: the defaults), while lr, betas and every other hyperparameter come
from the checkpoint as in torch.optim. The state then follows: 8-bit codes and
floats are converted by :func:`._checkpoint_8bit.converted_8bit`, storage dtypes
given back after torch's casts by ``ParamState._restore_state_dtypes``, and a Kahan
compensation the checkpoint holds but this optimizer does not keep is dropped here
(the part of past updates that rounding left out of each parameter, under half a
unit in its last place: what every uncompensated step drops); one this optimizer
keeps but the checkpoint lacks starts at zero at the next step, as in a fresh run.
``master_weights`` follows the checkpoint, as torch's rule has it (its float32
master copy is part of the weights).
"""

from __future__ import annotations

from typing import Any

import torch

from .._core.rounding import ROUNDING_OPTIONS, ParameterStore
from .._core.transform import walk
from . import _distributed as _dist
from ._checks import expected_shapes, loaded_values
from ._rule import _LOW_PRECISION

#: the storage options a group keeps through ``load_state_dict``
KEPT_OPTIONS = ("state_dtype", "min_8bit_size", *ROUNDING_OPTIONS)


def with_own_storage(opt: Any, state_dict: dict) -> dict:
    """``state_dict`` with each saved group's storage options (:data:`KEPT_OPTIONS`)
    replaced by those of the group it loads into, and without the Kahan compensations
    those do not keep (a new dict; the given one and its groups are not changed)."""
    saved_groups = list(state_dict.get("param_groups", []))
    saved_state = state_dict.get("state", {})
    state = dict(saved_state)
    for gi, (group, saved_group) in enumerate(zip(opt.param_groups, saved_groups)):
        own = {k: v for k, v in saved_group.items() if k not in KEPT_OPTIONS}
        own.update((k, group[k]) for k in KEPT_OPTIONS if k in group)
        saved_groups[gi] = own
        if all(_same(saved_group.get(k), own.get(k)) for k in KEPT_OPTIONS):
            continue
        source = opt._loaded_rule(loaded_values(group, saved_group))
        target = opt._loaded_rule(loaded_values(group, own))
        if source is None or target is None:
            continue  # the step says why
        wide = bool(own.get("master_weights", False))
        for p, pid in zip(group["params"], saved_group.get("params", [])):
            entry = saved_state.get(pid)
            if not isinstance(entry, dict) or not entry or _dist.is_dtensor(p):
                continue
            like = torch.view_as_real(p.detach()) if p.is_complex() else p.detach()
            if wide and p.dtype in _LOW_PRECISION:  # the float32 master copy's state
                like = torch.empty(like.shape, dtype=torch.float32, device="meta")
            layout = target.layout(like)
            kept = expected_shapes(target, layout, tuple(like.shape))
            dropped = _store_keys(source, like) - set(kept)
            if dropped & set(entry):
                state[pid] = {k: v for k, v in entry.items() if k not in dropped}
    return {**state_dict, "param_groups": saved_groups, "state": state}


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError, RuntimeError):
        return a is b


def _store_keys(rule: Any, like: torch.Tensor) -> set:
    """The state keys of the parameter-store stage's slots (the Kahan compensation)
    in ``rule``'s state for a tensor like ``like``."""
    layout = rule.layout(like)
    keys = set()
    for visit in walk(rule.transform):
        if isinstance(visit.transform, ParameterStore) and visit.path is not None:
            for slot in visit.transform.slots:
                name = layout.name(tuple(visit.path) + (slot.name,))
                if name in layout.names:
                    keys.add(rule.key(name))
    return keys
