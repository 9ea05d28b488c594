"""A toy per-tensor reduction with ``sum_kinds`` and ``totals`` (each tensor moved by
scalars from its own sum, sum of squares and size and every tensor's totals of
them; two groups of mask flags), its data and its eager reference: shared by the
engines' tests (tests/core/test_per_tensor_totals.py and the Triton engine's)."""

from __future__ import annotations

import numpy as np

import gradstep
from gradstep._core.per_tensor import PerTensorReduction
from gradstep._core.xmath import maximum, sqrt

SHAPES = [(0,), (1,), (7,), (100003,), (3, 5)]
#: which tensors are centred on their own mean (the others scaled by their own RMS)
CENTRED = [True, False, True, False, False]


def _moved(g, scale, shift):
    return g * scale + shift


def _terms(g):
    return g, g  # summed, then squared


def combined(sums: tuple, flags: dict, h: dict) -> dict:
    # a tensor's sum, sum of squares and size, then the same over every tensor; plain
    # arithmetic and element operations, as engines call it on columns of tensors
    total, squares, size, all_total, all_squares, all_size = sums
    mean_all = all_total / maximum(all_size, 1.0)
    rms_all = sqrt(all_squares / maximum(all_size, 1.0))
    if flags["centred"]:  # its own mean replaced by everyone's, at everyone's scale
        scale = h["strength"] / (rms_all + 0.5)
        return {"scale": scale, "shift": (mean_all - total / maximum(size, 1.0)) * scale}
    own_rms = sqrt(squares / maximum(size, 1.0))
    return {"scale": h["strength"] / (own_rms + 0.5), "shift": mean_all}


def _no_scalars(h: dict, count: int) -> dict:
    return {}


def centring_stage(
    totals: bool = True, centred=CENTRED, sum_kinds=("sums", "squares"), strength=0.75
) -> PerTensorReduction:
    """The toy stage: each tensor moved by scalars from its own sums and, with
    ``totals``, every tensor's (without, a ``combined`` missing the totals)."""
    combine = combined if totals else _own_only
    return PerTensorReduction(
        "centring",
        _moved,
        norms=_terms,
        combine=combine,
        tensor_scalars=("scale", "shift"),
        flags={"centred": centred},
        sized=True,
        totals=totals,
        sum_kinds=sum_kinds,
        hyperparams={"strength": strength},
        prepare=_no_scalars,
    )


def _own_only(sums: tuple, flags: dict, h: dict) -> dict:
    return combined(tuple(sums) * 2, flags, h)


def chain(totals: bool = True, centred=CENTRED, strength=0.75):
    return gradstep.chain(centring_stage(totals, centred, strength=strength), gradstep.sgd(0.1))


def data(dtype, shapes=SHAPES, steps=2):
    rng = np.random.default_rng(5)
    params = [rng.normal(size=s).astype(dtype) for s in shapes]
    grads = [
        [(np.sin(3 * p + k) * (1 + i) + 0.25 * i).astype(dtype) for i, p in enumerate(params)]
        for k in range(steps)
    ]
    return params, grads


def eager_steps(transform, params, grads_per_step):
    """The eager engine's parameters after each step (the reference)."""
    params = [p.copy() for p in params]
    state = transform.init(params)
    for grads in grads_per_step:
        updates, state = transform.update(grads, state, params)
        params = [p + u for p, u in zip(params, updates)]
    return params


def tolerance(dtype) -> dict:
    # the scalars come from float64 sums added in different orders; a float32 update
    # rounds them to float32 (and an element whose shift cancels it, to its ulp)
    return {"rtol": 2e-6, "atol": 2e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
