"""gradstep: gradient-descent optimizers written once as math, composable, and
proven equal to the libraries they come from.

The functional API: every optimizer is a transform with pure ``init`` and
``update``; the stateful NumPy front :class:`Optimizer` updates arrays in place.
"""

from . import schedules, transforms
from ._core import tree
from ._core.combine import masked, partition
from ._core.elementwise import Elementwise, Slot
from ._core.registry import OptimizerSpec
from ._core.transform import Transform, apply_updates, chain, identity
from .optimizer import Optimizer
from .registry import REGISTRY
from .rules import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    apply_momentum,
    apply_nesterov_momentum,
    momentum,
    nesterov_momentum,
    rmsprop,
    sgd,
)
from .transforms import norm_constraint, total_norm_constraint

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "Elementwise",
    "Optimizer",
    "OptimizerSpec",
    "Slot",
    "Transform",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "apply_momentum",
    "apply_nesterov_momentum",
    "apply_updates",
    "chain",
    "identity",
    "masked",
    "momentum",
    "nesterov_momentum",
    "norm_constraint",
    "partition",
    "rmsprop",
    "schedules",
    "sgd",
    "total_norm_constraint",
    "transforms",
    "tree",
]

# Public optimizers added by later rule families: one import and one __all__ line each,
# below this comment.
