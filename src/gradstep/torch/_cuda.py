"""The torch front on CUDA: buckets of parameters stepped by the Triton engine.

CUDA tensors of a transform the Triton engine can compile run as one kernel launch
per bucket (parameters of one dtype, device and step count); everything else on
CUDA runs the transform's own ``update`` on the tensors, on the device. Triton is
an optional dependency: it is imported on the first CUDA step, and where it is
missing CUDA steps run eager with a one-time notice.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ._state import STEP

#: dtypes the Triton engine stores
TRITON_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_triton_state: dict[str, Any] = {}


def triton_available() -> bool:
    """Triton can be imported (checked once per process)."""
    if "ok" not in _triton_state:
        try:
            import triton  # noqa: F401
        except ImportError as error:
            _triton_state["ok"] = False
            _triton_state["why"] = str(error)
        else:
            _triton_state["ok"] = True
    return _triton_state["ok"]


def notice_no_triton() -> None:
    """Say once that CUDA steps run eager because Triton is missing."""
    if not _triton_state.get("noticed"):
        _triton_state["noticed"] = True
        warnings.warn(
            "gradstep.torch: Triton is not installed, so CUDA parameters are stepped by "
            "eager torch operations (one kernel per operation); `pip install triton` for "
            f"the fused GPU engine ({_triton_state.get('why', '')})",
            RuntimeWarning,
            stacklevel=4,
        )


def member_runs_on_triton(m: Any) -> bool:
    """One parameter's tensors suit the Triton engine: dense, contiguous, one device,
    the parameter's dtype for the gradient, one floating dtype for the state."""
    w, g = m.w, m.g
    if w.dtype not in TRITON_DTYPES or not w.is_contiguous():
        return False
    if g.layout != torch.strided or g.dtype != w.dtype or g.device != w.device:
        return False
    if not g.is_contiguous():
        return False
    return all(
        t.device == w.device and t.dtype in TRITON_DTYPES and t.is_contiguous()
        for t in m.entries.values()
    )


class TritonBucket:
    """A Triton-engine call over fixed parameters, with the state tree built once.

    The tree's leaves are the very state tensors of ``optimizer.state``, so the
    kernel updates them in place; the engine re-checks every tensor's address each
    step and rebuilds its tables when one moved.
    """

    def __init__(self, rule: Any, members: list, signature: tuple, shared: dict):
        from ..engines.triton import TritonEngine

        self.engine = TritonEngine(rule.run)
        self.signature = signature
        self.w = [m.w for m in members]
        entries = [dict(m.entries) for m in members]
        tree, self.refs = members[0].layout.build(entries, shared)
        self.tree = rule.wrap(tree)
        steps = [m.state.get(STEP) for m in members] if rule.track_step else []
        self.steps = steps if steps and all(_host_scalar(t) for t in steps) else None

    def step(self, members: list, ctx: dict, shared: dict, layout: Any) -> bool:
        """Step ``members``; True if their step counts were advanced here."""
        import numpy as np

        for container, key, name in self.refs:
            value = shared[name]
            container[key] = (
                np.asarray(int(value), np.int64)
                if name == STEP
                else np.asarray(value, layout.shared[name])
            )
        grads = [m.g for m in members]
        self.engine.step_leaves(self.w, grads, self.w, self.tree, ctx)
        if self.steps is None:
            return False
        torch._foreach_add_(self.steps, 1)
        return True


def _host_scalar(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dim() == 0
