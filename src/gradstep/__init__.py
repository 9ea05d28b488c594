"""gradstep: gradient-descent optimizers written once as math, composable, and
proven equal to the libraries they come from.

The functional API: every optimizer is a transform with pure ``init`` and
``update``; the stateful NumPy front :class:`Optimizer` updates arrays in place.
"""

from . import modes, schedules, transforms
from ._closure import closure_step
from ._core import tree
from ._core.combine import masked, partition
from ._core.elementwise import Elementwise, Slot
from ._core.registry import OptimizerSpec
from ._core.transform import Transform, apply_updates, chain, identity
from .optimizer import Optimizer
from .registry import REGISTRY
from .rules import apply_momentum, apply_nesterov_momentum
from .transforms import norm_constraint, total_norm_constraint

__version__ = "0.1.0"

# what the package offers besides its optimizers; the optimizers follow
__all__ = [
    "REGISTRY",
    "Elementwise",
    "Optimizer",
    "OptimizerSpec",
    "Slot",
    "Transform",
    "apply_momentum",
    "apply_nesterov_momentum",
    "apply_updates",
    "chain",
    "closure_step",
    "identity",
    "masked",
    "modes",
    "norm_constraint",
    "partition",
    "schedules",
    "total_norm_constraint",
    "transforms",
    "tree",
]

# every registered optimizer is exported under its registry name: the registry is
# the one list of them
globals().update({spec.name: spec.factory for spec in REGISTRY})
__all__ += REGISTRY.names()


def __getattr__(name: str):
    # an entry registered after import (a plugin, a test's toy rule)
    if name in REGISTRY:
        return REGISTRY[name].factory
    raise AttributeError(f"module 'gradstep' has no attribute {name!r}")
