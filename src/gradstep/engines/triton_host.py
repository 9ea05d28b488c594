"""Host steps of fused forms on the Triton engine: the transform's own torch code, on the device.

A fused form's host step (:mod:`gradstep._core.fused_form`; Sophia's fold of a
Hessian estimate into its average) is array code the engine runs around its launch.
On the Triton engine it runs on the state tensors themselves, so its operations are
queued on their device like the kernel's: the step reads nothing on the host. The
values are computed and checked (:func:`device_fit`) before anything is written, and
copied into their slots before or after the launch (:func:`write_device_values`);
under GradScaler a step the kernel skips (an infinite gradient) keeps the old slots,
decided on the device too.
"""

from __future__ import annotations

from typing import Any

import torch

from .fused_host import host_writes


def device_writes(hosts: list, state: dict, params: Any, g_leaves: list, ctx: dict) -> tuple:
    """:func:`~gradstep.engines.fused_host.host_writes` over tensors: the writes of
    this step and ``ctx`` without the host steps' inputs."""
    return host_writes(hosts, state, params, g_leaves, ctx, fit=device_fit)


def device_fit(target: Any, value: Any) -> torch.Tensor | None:
    """``value`` where it fits ``target``, a tensor of its shape on its device of a
    dtype it casts to (floating to floating), else None."""
    if not (isinstance(target, torch.Tensor) and isinstance(value, torch.Tensor)):
        return None
    if value.shape != target.shape or value.device != target.device:
        return None
    if not torch.can_cast(value.dtype, target.dtype):
        return None
    return value


def write_device_values(writes: list, when: str, skip: torch.Tensor | None = None) -> None:
    """Copy the values of the writes made ``when`` into their tensors, on the
    device. ``skip``: a 0-d tensor, nonzero where the launch skips the step
    (GradScaler's ``found_inf``): each tensor then keeps its value."""
    for moment, pairs in writes:
        if moment != when:
            continue
        for target, value in pairs:
            if skip is not None:
                value = torch.where(skip != 0, target, value.to(target.dtype))
            target.copy_(value)
