"""Registry entries, one module per area; each module's ``SPECS`` lists its
optimizers. :mod:`gradstep.registry` assembles them into
:data:`~gradstep.registry.REGISTRY`; nothing here imports the registry."""

from __future__ import annotations

from collections.abc import Iterator

from .._core.registry import OptimizerSpec
from . import (
    averaging,
    classic,
    community,
    layerwise,
    learning_rate_free,
    memory_and_curvature,
    modern,
    mxnet,
    optax_tail,
    preconditioned,
    recent,
    torch_extra,
)

#: the entry modules, in the registry's order (a new area is one more module here)
MODULES = (
    classic,
    mxnet,
    layerwise,
    modern,
    averaging,
    community,
    torch_extra,
    recent,
    learning_rate_free,
    optax_tail,
    preconditioned,
    memory_and_curvature,
)


def specs() -> Iterator[OptimizerSpec]:
    """Every entry of every module, in order."""
    for module in MODULES:
        yield from module.SPECS
