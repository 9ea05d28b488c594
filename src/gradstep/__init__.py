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
from .rules.adafactor import adafactor
from .rules.delay import dcasgd
from .rules.ftml import ftml
from .rules.ftrl import ftrl
from .rules.lamb import lamb
from .rules.langevin import sgld
from .rules.lars import lars
from .rules.lbfgs import lbfgs
from .rules.lbsgd import lbsgd
from .rules.lion import lion
from .rules.muon import muon
from .rules.nadam import nadam
from .rules.radam import radam
from .rules.schedule_free import schedule_free_adamw, schedule_free_sgd
from .rules.sign import signsgd, signum
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
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "apply_momentum",
    "apply_nesterov_momentum",
    "apply_updates",
    "chain",
    "closure_step",
    "dcasgd",
    "ftml",
    "ftrl",
    "identity",
    "lamb",
    "lars",
    "lbfgs",
    "lbsgd",
    "lion",
    "masked",
    "modes",
    "momentum",
    "muon",
    "nadam",
    "nesterov_momentum",
    "norm_constraint",
    "partition",
    "radam",
    "rmsprop",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "schedules",
    "sgd",
    "sgld",
    "signsgd",
    "signum",
    "total_norm_constraint",
    "transforms",
    "tree",
]
