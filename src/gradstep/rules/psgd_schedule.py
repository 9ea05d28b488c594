"""When PSGD-Kron updates its preconditioner: the update probability :math:`p(n)`
(constant, or annealed from 1 to 0.03) and the step counter's decisions, as a table
that a traced step can read (see :mod:`gradstep.rules.psgd_kron`)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np


def update_probability(n: int, probability: float | None) -> np.float32:
    """:math:`p(n)` of the module docstring for step ``n`` (0 on the first), in
    float32: ``probability`` itself, or the annealing schedule when it is None."""
    if probability is not None:
        return np.float32(probability)
    f32 = np.float32
    with np.errstate(over="ignore"):
        p = f32(1.0) * np.exp(-f32(0.001) * (f32(n) - f32(500.0)))
    return np.minimum(np.maximum(p, f32(0.03)), f32(1.0))


def updates_now(counter: int, n: int, probability: float | None) -> bool:
    """Whether step ``n`` updates the preconditioner, ``counter`` steps after the last
    update (the comparison of the reference, in float32)."""
    return bool(np.float32(counter + 1) >= np.float32(1.0) / update_probability(n, probability))


#: steps simulated by :func:`update_table`: the schedule is constant from about 4000 on
TABLE_STEPS = 6000


@functools.cache
def update_table(probability: float | None) -> tuple[np.ndarray, int, int]:
    """The update decisions of steps ``0 .. TABLE_STEPS - 1`` (the counter resets at
    each update, so the decisions are a function of the step alone), the last update
    among them and the period of the constant probability after them."""
    counter, table = 0, []
    for n in range(TABLE_STEPS):
        update = updates_now(counter, n, probability)
        counter = 0 if update else counter + 1
        table.append(update)
    threshold = np.float32(1.0) / update_probability(TABLE_STEPS, probability)
    period = int(np.ceil(threshold))
    last = max(n for n, u in enumerate(table) if u) if any(table) else -period
    return np.array(table), last, period


def updates_at(ns: Any, n: Any, probability: float | None) -> Any:
    """Whether step ``n`` updates: a Python bool for a host step count, an array of
    the library for a traced one (:func:`update_table` as a constant)."""
    table, last, period = update_table(probability)
    if not ns.is_traced(n):
        return bool(table[n]) if n < TABLE_STEPS else (n - last) % period == 0
    entries = ns.constant(table.astype(np.float32), n)
    index = ns.reshape(ns.minimum(n, TABLE_STEPS - 1), (1,))
    inside = ns.reshape(ns.take(entries, index, 0), ()) > 0.5
    return ns.where(n < TABLE_STEPS, inside, (n - last) % period == 0)
