"""Checks of per-parameter state tensors against their parameters: at load time (a
checkpoint whose tensors do not fit is refused before anything changes) and on every
step (a state entry replaced by hand), before any engine reads or writes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .._core.rounding import ROUNDING_OPTIONS
from . import _distributed as _dist
from ._state import STEP

#: group options that change the state's form: a checkpoint's group without one has
#: the default once loaded (torch.optim takes the saved groups whole; those of
#: ``_own_storage.KEPT_OPTIONS`` are the loading group's own by then)
STORAGE_OPTIONS = ("master_weights", "state_dtype", "min_8bit_size", *ROUNDING_OPTIONS)


def expected_shapes(rule: Any, layout: Any, shape: tuple) -> dict[str, tuple]:
    """``{state key: shape}`` of the per-parameter entries a fresh state has for a
    parameter of ``shape`` (cached on the rule: one initialisation per shape)."""
    cache = rule.entry_shapes
    key = (id(layout), shape)
    shapes = cache.get(key)
    if shapes is None:
        probe = np.zeros(shape, np.float32)
        own, _ = layout.init_entries(probe)
        shapes = {
            rule.key(name): tuple(np.shape(value))
            for name, value in own.items()
            if name not in layout.empty
        }
        cache[key] = shapes
        cache[key + ("codes",)] = {
            rule.key(name)
            for name, value in own.items()
            if name not in layout.empty and np.asarray(value).dtype == np.uint8
        }
        # integer counters kept per parameter (a transform run per parameter keeps
        # its own: accumulation's mini_step, a skip's run of errors); not the step,
        # kept as torch keeps it (a float tensor)
        cache[key + ("ints",)] = {
            rule.key(name)
            for name, value in own.items()
            if name != STEP and np.issubdtype(np.asarray(value).dtype, np.signedinteger)
        }
    return shapes


def integer_keys(rule: Any, layout: Any, shape: tuple) -> set:
    """The state keys of integer counters in a fresh state for a parameter of
    ``shape`` (int64 scalars, kept as int64 tensors)."""
    expected_shapes(rule, layout, shape)
    return rule.entry_shapes[(id(layout), shape, "ints")]


def code_keys(rule: Any, layout: Any, shape: tuple) -> set:
    """The state keys of 8-bit codes (uint8; :mod:`gradstep._core.blockwise8`) in a
    fresh state for a parameter of ``shape``."""
    expected_shapes(rule, layout, shape)
    return rule.entry_shapes[(id(layout), shape, "codes")]


def check_member(
    owner: str,
    where: Callable[[], str],
    param: Any,
    w: Any,
    entries: dict,
    rule: Any,
    layout: Any,
) -> None:
    """Raise ``ValueError`` unless every state tensor of one parameter has the shape
    a fresh state would have, a real floating dtype and the parameter's device.

    ``entries`` maps layout names to the tensors one step reads (``w``: the tensor the
    step updates, the parameter or its float32 master copy, possibly a local shard);
    ``where()`` names the parameter in an error.
    """
    shapes = expected_shapes(rule, layout, tuple(w.shape))
    codes = code_keys(rule, layout, tuple(w.shape))
    ints = integer_keys(rule, layout, tuple(w.shape))
    for name, t in entries.items():
        if name in layout.empty:
            continue
        key = rule.key(name)
        expected = shapes.get(key)
        if expected is not None and tuple(t.shape) != expected:
            raise ValueError(
                f"{owner}: state[{key!r}] of {where()} has shape {tuple(t.shape)}, but the "
                f"parameter has shape {tuple(param.shape)} (its {key!r} must have shape "
                f"{expected}); the state does not belong to this parameter"
            )
        if key in codes:
            if t.dtype != torch.uint8:
                raise ValueError(
                    f"{owner}: state[{key!r}] of {where()} has dtype {t.dtype}; its 8-bit "
                    "codes must be torch.uint8"
                )
        elif key in ints:
            if t.is_complex() or t.is_floating_point() or t.dtype == torch.bool:
                raise ValueError(
                    f"{owner}: state[{key!r}] of {where()} has dtype {t.dtype}; it is a "
                    "count and must be an integer tensor (torch.int64)"
                )
        elif t.is_complex() or not t.is_floating_point():
            raise ValueError(
                f"{owner}: state[{key!r}] of {where()} has dtype {t.dtype}; it must be a real "
                f"floating-point tensor like its parameter ({param.dtype})"
            )
        if t.device != w.device:
            raise ValueError(
                f"{owner}: state[{key!r}] of {where()} is on {t.device}, but its parameter "
                f"is on {w.device}"
            )


def loaded_values(group: dict, saved_group: dict) -> dict:
    """The values ``group`` steps with once the checkpoint's ``saved_group`` is loaded
    into it: the checkpoint's, the group's own where the checkpoint lacks a key, and
    no storage option the checkpoint lacks (:data:`STORAGE_OPTIONS`: the defaults)."""
    values = {**group, **{k: v for k, v in saved_group.items() if k != "params"}}
    for key in STORAGE_OPTIONS:
        if key not in saved_group:
            values.pop(key, None)
    return values


def check_loaded_state(opt: Any, state_dict: dict) -> None:
    """Refuse a state dict whose per-parameter tensors do not fit their parameters
    (torch.optim only finds out at the next step, or never, reading past a buffer)."""
    saved_groups = state_dict.get("param_groups", [])
    saved_state = state_dict.get("state", {})
    owner = opt._owner
    for gi, (group, saved_group) in enumerate(zip(opt.param_groups, saved_groups)):
        rule = opt._loaded_rule(loaded_values(group, saved_group))
        if rule is None:
            continue
        for i, (p, pid) in enumerate(zip(group["params"], saved_group.get("params", []))):
            entry = saved_state.get(pid)
            if not entry:
                continue
            where = f"parameter {i} of param group {gi}"
            like = p.detach()
            if _dist.is_dtensor(like):
                continue  # sharded checkpoints are checked by the step
            if like.is_complex():  # its state is its real view's (complex where torch's is)
                like = torch.view_as_real(like)
            layout = rule.layout(like)
            shapes = expected_shapes(rule, layout, tuple(like.shape))
            codes = code_keys(rule, layout, tuple(like.shape))
            ints = integer_keys(rule, layout, tuple(like.shape))
            for key, value in entry.items():
                if key == "step" and isinstance(value, torch.Tensor) and value.numel() != 1:
                    raise ValueError(
                        f"{owner}: state['step'] of {where} has shape {tuple(value.shape)}; "
                        "it must be a single number"
                    )
                expected = shapes.get(key)
                if expected is None:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise ValueError(
                        f"{owner}: state[{key!r}] of {where} is a {type(value).__name__}; it "
                        f"must be a tensor of shape {expected} like its parameter "
                        f"{tuple(p.shape)}"
                    )
                shape = tuple(value.shape)
                if value.is_complex() and p.is_complex():
                    shape += (2,)  # the real view's shape
                if shape != expected:
                    wanted = f"{expected}"
                    if p.is_complex() and expected == tuple(like.shape):
                        wanted = f"{tuple(p.shape)} (complex) or {expected} (its real view)"
                    raise ValueError(
                        f"{owner}: state[{key!r}] of {where} has shape {tuple(value.shape)}, "
                        f"but the parameter has shape {tuple(p.shape)} (its {key!r} must "
                        f"have shape {wanted}); the checkpoint does not belong to these "
                        "parameters"
                    )
                if value.is_complex() and not p.is_complex():
                    raise ValueError(
                        f"{owner}: state[{key!r}] of {where} is complex ({value.dtype}) but "
                        f"the parameter is real ({p.dtype})"
                    )
                if key in codes:
                    if value.dtype != torch.uint8:
                        raise ValueError(
                            f"{owner}: state[{key!r}] of {where} has dtype {value.dtype}; "
                            "its 8-bit codes must be torch.uint8"
                        )
                elif key in ints:
                    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
                        raise ValueError(
                            f"{owner}: state[{key!r}] of {where} has dtype {value.dtype}; it "
                            "is a count and must be an integer tensor"
                        )
                elif not (value.is_floating_point() or value.is_complex()):
                    raise ValueError(
                        f"{owner}: state[{key!r}] of {where} has dtype {value.dtype}; it "
                        "must be a floating-point tensor"
                    )
