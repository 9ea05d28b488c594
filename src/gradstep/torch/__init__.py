"""gradstep optimizers as ``torch.optim.Optimizer`` classes.

- :class:`TransformOptimizer` runs any gradstep transform (a rule, a chain with
  clipping, ...) as a torch optimizer.
- The classes torch.optim also has (:class:`SGD`, :class:`Adam`, :class:`AdamW`,
  :class:`Adagrad`, :class:`RMSprop`, :class:`Adadelta`, :class:`Adamax`) take torch's
  arguments and defaults, keep torch's state keys and reproduce torch's trajectories,
  so switching is one import: ``from gradstep.torch import Adam``.
- Every other registered optimizer has a class named after it in CamelCase
  (``gradstep.torch.NesterovMomentum``, ``gradstep.torch.Lamb``, ...) taking the
  arguments of its gradstep factory; :func:`optimizer_class` finds the class of a
  registry name.

CPU float32/float64 tensors run the fused engine through zero-copy NumPy views; other
dtypes and devices run the same element functions with torch operations.
"""

from __future__ import annotations

from typing import Any

from ..engines import torch_namespace  # noqa: F401  (registers torch's array namespace)
from ._base import TorchOptimizer
from ._classes import SGD, Adadelta, Adafactor, Adagrad, Muon, RMSprop
from ._classes_adam import Adam, Adamax, AdamW, NAdam, RAdam
from ._classes_extra import ASGD, Rprop, SparseAdam
from ._generated import (
    TORCH_CLASSES,
    RegistryOptimizer,
    all_classes,
    class_name,
    optimizer_class,
)
from ._lbfgs import LBFGS
from ._optimizer import TransformOptimizer
from ._schedule_free import AdamWScheduleFree, SGDScheduleFree

__all__ = [
    "ASGD",
    "SGD",
    "SGDScheduleFree",
    "TORCH_CLASSES",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "AdamWScheduleFree",
    "Adamax",
    "LBFGS",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "RegistryOptimizer",
    "Rprop",
    "SparseAdam",
    "TorchOptimizer",
    "TransformOptimizer",
    "all_classes",
    "class_name",
    "optimizer_class",
]


def __getattr__(name: str) -> Any:
    # classes of registry entries are made on first use, so entries registered by any
    # catalog module have one
    from ..registry import REGISTRY

    for spec in REGISTRY:
        if spec.name not in TORCH_CLASSES and class_name(spec.name) == name:
            return optimizer_class(spec.name)
    raise AttributeError(f"module 'gradstep.torch' has no attribute {name!r}")


def __dir__() -> list[str]:
    from ..registry import REGISTRY

    return sorted(set(__all__) | {class_name(s.name) for s in REGISTRY})
