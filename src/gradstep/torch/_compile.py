"""Optimizer steps that ``torch.compile`` runs as they are, not traced.

A gradstep step launches compiled kernels through raw pointers (numba on the CPU,
Triton on CUDA) after checks in Python that TorchDynamo cannot trace: a training
function compiled with ``torch.compile`` that calls ``optimizer.step()`` failed
inside Dynamo. The step is already one fused launch per bucket, so there is nothing
for a compiler to gain by tracing it: every class of the torch front has its ``step``
wrapped so that, while Dynamo traces, it calls the step through
``torch.compiler.disable`` (one graph break, the same numbers as an eager call).
Outside tracing the step is called directly: the disabling wrapper's frame handling
would cost every eager step time, and Triton's interpreter cannot run kernels that
call helper functions under it.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.optim.optimizer as _optim_module


def _hooks_of(opt: Any) -> bool:
    """Whether a step of ``opt`` has work for torch's step wrapper: a step hook
    (global or the optimizer's own) or a running profiler, which labels the step."""
    return bool(
        opt._optimizer_step_pre_hooks
        or opt._optimizer_step_post_hooks
        or _optim_module._global_optimizer_pre_hooks
        or _optim_module._global_optimizer_post_hooks
        or torch.autograd._profiler_enabled()
    )


def _not_traced(step: Any) -> Any:
    """``step``, called through ``torch.compiler.disable`` while Dynamo traces (made
    then: ``torch.compiler.disable`` imports Dynamo, and with it Triton, which an
    import of gradstep.torch should not), and through torch's own step wrapper
    (``Optimizer.profile_hook_step``: step hooks, the profiler's label) whenever it
    has work to do. Without hooks or a profiler the step is called directly: the
    wrapper's ``record_function`` costs about ten microseconds a step, as much as
    the rest of a one-tensor step's host work on a GPU. Marked ``hooked`` so that
    torch does not wrap it again."""
    hooked = torch.optim.Optimizer.profile_hook_step(step)
    disabled: list = []

    @functools.wraps(step)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            if not disabled:
                disabled.append(torch.compiler.disable(hooked))
            return disabled[0](self, *args, **kwargs)
        if _hooks_of(self):
            return hooked(self, *args, **kwargs)
        out = step(self, *args, **kwargs)
        self._optimizer_step_code()  # the Python tracer's entry point, as torch's wrapper
        return out

    wrapper._gradstep_not_traced = True
    wrapper.hooked = True
    return wrapper


class StepNotTraced:
    """Mixin: the ``step`` each subclass defines is left out of ``torch.compile``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_gradstep_not_traced", False):
            cls.step = _not_traced(step)
