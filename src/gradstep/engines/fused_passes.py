"""The fused engine's kernel launches: the reduction passes, then the step kernel."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from .._core.namespaces import NUMPY
from .fused_codegen import global_terms
from .kernel_plan import foldable
from .plan import Stage


class _LaunchError(Exception):
    """Loading, compiling or calling a kernel failed (the cause is attached)."""


# -- launching: numba's workqueue threading layer is not thread-safe ------------------

_LAUNCH_LOCK = threading.Lock()
_THREADSAFE_LAYER: list[bool] = []  # known after the first parallel launch


def _launch(kernel, *args) -> None:
    """Call a parallel kernel; serialised across threads unless numba's threading
    layer is known to be thread-safe (tbb, omp): concurrent launches on the
    ``workqueue`` layer abort the process."""
    if _THREADSAFE_LAYER and _THREADSAFE_LAYER[0]:
        kernel(*args)
        return
    with _LAUNCH_LOCK:
        kernel(*args)
        if not _THREADSAFE_LAYER:
            import numba

            try:
                _THREADSAFE_LAYER.append(numba.threading_layer() in ("tbb", "omp"))
            except ValueError:  # no parallel region ran yet
                pass


def launch(kernel, *args) -> None:
    """:func:`_launch`, any failure raised as :class:`_LaunchError` (its cause attached)."""
    try:
        _launch(kernel, *args)
    except Exception as error:
        raise _LaunchError from error


def chunk_totals(kernel, layout: dict, args: tuple, terms: int) -> np.ndarray:
    """Run the reduction ``kernel`` (its arguments before ``acc``: ``args``); return
    its float64 totals per chunk, ``(chunks, terms)``."""
    acc = np.zeros(len(layout["chunks"]) * terms, np.float64)
    launch(kernel, *args, acc)
    return acc.reshape(-1, terms)


def tensor_sums(totals: np.ndarray, layout: dict) -> np.ndarray:
    """Per-chunk ``totals`` added up per tensor: ``(tensors, terms)``."""
    owner, n = layout["chunks"][:, 0], len(layout["w"])
    columns = [
        np.bincount(owner, weights=totals[:, t], minlength=n) for t in range(totals.shape[1])
    ]
    return np.stack(columns, axis=1)


def tensor_sizes(layout: dict) -> np.ndarray:
    """The number of elements of each tensor of ``layout`` (kept with it)."""
    if "sizes" not in layout:
        layout["sizes"] = np.array([math.prod(shape) for shape in layout["shapes"]], np.int64)
    return layout["sizes"]


def reductions(
    stages: list[Stage],
    kernels: Any,
    layout: dict,
    counts: list[int],
    ctx: dict,
    scal: np.ndarray,
    tscal: np.ndarray,
    steps: dict,
    tmask: tuple,
) -> dict:
    """Run every reduction pass in chain order, filling the scalars they make into
    ``scal`` (a global reduction's) and ``tscal`` (a norm, cautious or per-tensor
    stage's columns); return the new carried state of each global reduction stage
    (the :func:`~gradstep.engines.kernel_plan.foldable` ones are the step kernel's:
    :func:`step`). Nothing but these tables is written: a failure leaves the arrays
    unchanged."""
    args = (layout["chunks"], layout["ptrs"], scal, tscal, *tmask)
    carried = {}
    for st, count in zip(stages, counts):
        kernel = getattr(kernels, f"reduce{st.index}", None)
        if st.is_global and foldable(st):
            continue
        if st.is_global:
            sums = chunk_totals(kernel, layout, args, global_terms(st)).sum(axis=0)
            carried[st.index] = _combine(st, sums, steps, scal)
        elif st.is_reduction:
            sums = tensor_sums(chunk_totals(kernel, layout, args, 1), layout)[:, 0]
            if st.is_cautious:  # counts of the elements kept, as the eager engine's
                sizes = tensor_sizes(layout).tolist()
                like = np.zeros((), tscal.dtype)
                factors = st.stage.factors_of_counts(sums, sizes, NUMPY, like)
            else:
                factors = st.stage.factors(list(sums), count, ctx)
            tscal[:, st.reduction_column] = factors
        elif st.is_per_tensor:
            sums = tensor_sums(chunk_totals(kernel, layout, args, global_terms(st)), layout)
            rows = st.stage.tensor_scalar_rows(
                sums, layout["flags"][st.index], count, ctx, sizes=tensor_sizes(layout)
            )
            width = len(st.stage.tensor_scalars)
            tscal[:, st.reduction_column : st.reduction_column + width] = rows
    return carried


def _combine(st: Stage, sums: np.ndarray, steps: dict, scal: np.ndarray) -> dict:
    """Global reduction ``st``'s new carried state from its ``sums``; its reduced
    scalars go into ``scal``."""
    h, prepared = steps[st.index]
    carried, reduced = st.stage.combine(tuple(map(np.float64, sums)), h, prepared)
    start = st.scalar_offset + len(prepared)
    scal[start : start + len(reduced)] = list(reduced.values())
    return carried


def step(
    stages: list[Stage], kernels: Any, layout: dict, scal, tscal, steps: dict, tmask: tuple
) -> dict:
    """Launch the step kernel; return the new carried state of the global reduction
    stages whose sums it takes (:func:`~gradstep.engines.kernel_plan.foldable`: their
    terms read the values a reduction pass would, in the same order per chunk)."""
    folded = [st for st in stages if st.is_global and foldable(st)]
    args = (layout["chunks"], layout["ptrs"], scal, tscal, *tmask)
    if not folded:
        launch(kernels.step, *args)
        return {}
    widths = [global_terms(st) for st in folded]
    totals = chunk_totals(kernels.step, layout, args, sum(widths)).sum(axis=0)
    carried, first = {}, 0
    for st, width in zip(folded, widths):
        carried[st.index] = _combine(st, totals[first : first + width], steps, scal)
        first += width
    return carried
