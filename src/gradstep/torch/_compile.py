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


def _not_traced(step: Any) -> Any:
    """``step``, called through ``torch.compiler.disable`` while Dynamo traces (made
    then: ``torch.compiler.disable`` imports Dynamo, and with it Triton, which an
    import of gradstep.torch should not)."""
    disabled: list = []

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            if not disabled:
                disabled.append(torch.compiler.disable(step))
            return disabled[0](*args, **kwargs)
        return step(*args, **kwargs)

    wrapper._gradstep_not_traced = True
    return wrapper


class StepNotTraced:
    """Mixin: the ``step`` each subclass defines is left out of ``torch.compile``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_gradstep_not_traced", False):
            cls.step = _not_traced(step)
