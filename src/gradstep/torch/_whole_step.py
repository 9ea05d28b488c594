"""A non-finite skip decided over the whole step when a group runs in several calls.

``nonfinite_policy(rule, "skip")`` skips a step when any gradient is not finite
(``skip_large_updates`` also when their squared global norm reaches its bound). The
torch front steps a param group in one call per bucket (parameters of one device,
dtype and, for rules whose state depends on the shape such as Adafactor and Muon,
one shape). Each call's own skip would then see only its bucket's gradients and skip
part of the step. So, for a skip that sees every parameter (a ``SkipNonfinite``
reached through chains only) and a step split into several calls, the front takes
the decision once, over every gradient, exactly as the transform would:

- all finite: every call runs; each one's own check agrees;
- not finite, within ``max_consecutive_errors``: no call runs; the skip's two
  counters advance on every parameter and torch's ``step`` stays;
- not finite, past the limit: every call runs the inner rule (the calls with finite
  gradients reset their counters, so the counters are then set for all).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._core.skip import SkipNonfinite
from .._core.transform import Chain, Transform, walk

COUNT, TOTAL = "notfinite_count", "total_notfinite"


@dataclass(frozen=True)
class WholeStepSkip:
    """The outermost skip that sees every parameter: where its counters live."""

    path: tuple[str, ...]
    limit: int | None
    max_squared_norm: float | None = None  # skip_large_updates' bound

    def keys(self, rule, layout) -> tuple[str, str]:
        """The state keys of its two counters for parameters of ``layout``."""
        return (
            rule.key(layout.name(self.path + (COUNT,))),
            rule.key(layout.name(self.path + (TOTAL,))),
        )


def whole_step_skip(transform: Transform) -> WholeStepSkip | None:
    """The outermost ``SkipNonfinite`` whose enclosing transforms are all chains."""
    for visit in walk(transform):
        node = visit.transform
        if not isinstance(node, SkipNonfinite):
            continue
        if visit.path is not None and all(isinstance(p, Chain) for p in visit.parents):
            bound = getattr(node, "max_squared_norm", None)
            return WholeStepSkip(visit.path, node.max_consecutive_errors, bound)
    return None


def _read(value) -> int:
    return int(value.item() if isinstance(value, torch.Tensor) else value)


def _write(state: dict, key: str, value: int) -> None:
    old = state.get(key)
    if isinstance(old, torch.Tensor):
        old.fill_(value)
    else:
        state[key] = value


def decide(skip: WholeStepSkip, rule, members: list) -> tuple[bool, tuple[int, int] | None]:
    """``(run, counters)`` for a step over ``members`` (every call of the step):
    whether the calls run, and the counters to set on every member afterwards
    (``None``: the calls set them themselves)."""
    finite = all(bool(torch.isfinite(m.g).all()) for m in members)
    if finite and skip.max_squared_norm is not None:
        total = sum(float(torch.sum(torch.square(m.g.double()))) for m in members)
        finite = total < skip.max_squared_norm
    if finite:
        return True, None
    count_key, total_key = skip.keys(rule, members[0].layout)
    state = members[0].state
    run = _read(state.get(count_key, 0)) + 1
    total = _read(state.get(total_key, 0)) + 1
    within = skip.limit is None or run <= skip.limit
    return not within, (run, total)


def set_counters(skip: WholeStepSkip, rule, members: list, counters: tuple[int, int]) -> None:
    """Set the skip's counters on every member."""
    for m in members:
        count_key, total_key = skip.keys(rule, m.layout)
        _write(m.state, count_key, counters[0])
        _write(m.state, total_key, counters[1])
