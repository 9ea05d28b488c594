"""Optimizer steps that ``torch.compile`` runs as they are, not traced.

A gradstep step launches compiled kernels through raw pointers (numba on the CPU,
Triton on CUDA) after checks in Python that TorchDynamo cannot trace: a training
function compiled with ``torch.compile`` that calls ``optimizer.step()`` failed
inside Dynamo. The step is already one fused launch per bucket, so there is nothing
for a compiler to gain by tracing it: every class of the torch front has its ``step``
marked with ``torch.compiler.disable``, and a compiled function runs it as a call
of its own (one graph break), with the same numbers as an eager call.
"""

from __future__ import annotations

from typing import Any

import torch


class StepNotTraced:
    """Mixin: the ``step`` each subclass defines is left out of ``torch.compile``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_gradstep_not_traced", False):
            disabled = torch.compiler.disable(step)
            disabled._gradstep_not_traced = True
            cls.step = disabled
