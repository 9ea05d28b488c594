"""Values a front keeps in its own state and hands to a rule's ``prepare`` for a step.

A few torch.optim classes keep, per parameter, a number that the step reads and that
each step updates with that step's hyperparameters: NAdam's momentum-schedule
product ``mu_product`` (each step multiplies in its own beta1), ASGD's step size
``eta`` and averaging weight ``mu`` (computed after a step from that step's
learning rate). The rules derive them from the step count and today's
hyperparameters, which is the same number while those stay fixed, and another once
a scheduler has changed them. A stage that can take such a number exposes a
:class:`Carried` as its ``carried`` attribute; the torch class sets it around the
engine call of parameters that hold the same values (:meth:`Carried.holding`), and
the stage's ``prepare`` reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class Carried:
    """The values a front hands to one stage for the step it is running (none
    outside such a step: the stage derives them)."""

    def __init__(self) -> None:
        self.values: dict[str, float] | None = None

    def get(self, name: str) -> float | None:
        """The value handed for ``name``, or None: derive it."""
        return None if self.values is None else self.values.get(name)


@contextlib.contextmanager
def holding(stages: list[Carried], values: dict[str, float]) -> Iterator[None]:
    """Hand ``values`` to every stage of ``stages`` for the duration of the block."""
    for stage in stages:
        stage.values = values
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
