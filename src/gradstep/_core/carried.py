"""Values a front keeps in its own state and hands to a rule's ``prepare`` for a step.

A few torch.optim-style classes keep numbers that a step reads and updates with
that step's hyperparameters: NAdam's momentum-schedule product ``mu_product`` (each
step multiplies in its own beta1), ASGD's step size ``eta`` and averaging weight
``mu`` (computed after a step from that step's learning rate), the schedule-free
classes' ``lr_max`` and ``weight_sum`` (totals over every earlier step's learning
rate, which the stage reports back updated). The rules derive them from the step
count and today's hyperparameters: the same numbers while those stay fixed, others
once a scheduler has changed them. A stage that can take such numbers exposes a
:class:`Carried` as its ``carried`` attribute; the torch class sets it around the
engine call of parameters that hold the same values (:func:`holding`), and the
stage's ``prepare`` reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class Carried:
    """The values a front hands to one stage for the step it is running (none
    outside such a step: the stage derives them), and ``reported``: what the stage
    computed from them for the front to keep (None until it has)."""

    def __init__(self) -> None:
        self.values: dict[str, float] | None = None
        self.reported: dict[str, float] | None = None

    def get(self, name: str) -> float | None:
        """The value handed for ``name``, or None: derive it."""
        return None if self.values is None else self.values.get(name)


@contextlib.contextmanager
def holding(stages: list[Carried], values: dict[str, float]) -> Iterator[None]:
    """Hand ``values`` to every stage of ``stages`` for the duration of the block."""
    for stage in stages:
        stage.values, stage.reported = values, None
    try:
        yield
    finally:
        for stage in stages:
            stage.values = None


def carried_of(transform: Any) -> list[Carried]:
    """The :class:`Carried` of every stage of the tree ``transform`` that has one."""
    from .transform import walk

    found = (getattr(v.transform, "carried", None) for v in walk(transform))
    return [c for c in found if isinstance(c, Carried)]
