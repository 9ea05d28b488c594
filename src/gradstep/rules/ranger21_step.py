"""Ranger21's stages after AGC: the normalisation by the standard deviation and the step.

The math is in :mod:`gradstep.rules.ranger21`. It is written once, as element helpers
and scalar functions of float64 sums, and both ways of running it call them:

- the transforms' own updates (any shape; the eager engine, on NumPy, torch tensors on
  their device and JAX under ``jax.jit``) take the sums with the array library and
  the units' norms of each matrix;
- their fused forms (tensors of rank < 2, on the numba and Triton engines) are
  per-tensor reduction stages: one pass sums the terms of every tensor, ``combine``
  turns them into each tensor's scalars, and the main pass runs the element math.

The step couples the tensors (stable weight decay divides by the mean second moment
of all of them), so its form is a per-tensor reduction with ``totals``: each tensor's
scalars see the sums of every tensor. The second centralisation and normalisation of
the gradient entering the momentum are in the step's own reduction: the sums of the
gradient the step receives give them.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.elementwise import Slot, cast_scalars, resolve
from .._core.fused_form import FusedForm, every_shape, rank_below
from .._core.namespaces import element_for, namespace_of
from .._core.per_tensor import PerTensorReduction
from .._core.transform import Transform
from .._core.xmath import (
    absolute,
    element_helper,
    exp,
    log1p,
    maximum,
    minimum,
    sqrt,
    where,
)
from ..transforms.block_clipping import unit_axes, unit_norms
from ..transforms.centralization import centralized

#: added to a tensor's standard deviation before dividing by it
NORMALIZE_EPSILON = 1e-8
#: above this value of ``softplus_beta * x``, softplus is the identity (as torch's)
SOFTPLUS_THRESHOLD = 20.0


@element_helper
def std_divisor(total, squares, size, zero, one, two, epsilon):
    """``std + epsilon`` of a tensor of ``size`` elements from the float64 sum and sum
    of squares of its elements (the unbiased standard deviation), or ``one`` for a
    tensor of two elements or fewer. Scalar math with element operations (an
    element helper): it runs on host floats, columns, 0-d device tensors and traced."""
    variance = (squares - total * (total / maximum(size, one))) / maximum(size - one, one)
    return where(size > two, sqrt(maximum(variance, zero)) + epsilon, one)


#: :func:`std_divisor`'s constants (zero, one, two, epsilon)
_STD_CONSTANTS = (0.0, 1.0, 2.0, NORMALIZE_EPSILON)


def _divided(g, divisor):
    return g / divisor


def _std_terms(g):
    return g, g


def _std_combined(sums: tuple, flags: dict, h: dict) -> dict:
    return {"divisor": std_divisor(sums[0], sums[1], sums[2], *_STD_CONSTANTS)}


def _tensor_divisor(g: Any) -> Any:
    """:func:`std_divisor` of ``g`` as a 0-d array of its library (float64 sums)."""
    ns = namespace_of(g)
    sums = ns.wide_sum(g), ns.square_sum(g)
    size = ns.astype(float(np.prod(np.shape(g))), sums[1])
    return element_for(std_divisor, ns)(*sums, size, *_STD_CONSTANTS)


def std_normalized(g: Any) -> Any:
    """``g / (std(g) + 1e-8)`` (the unbiased standard deviation of all its elements)
    for a tensor of more than two elements; else ``g``."""
    if int(np.prod(np.shape(g))) <= 2:
        return g
    ns = namespace_of(g)
    return element_for(_divided, ns)(g, ns.scalar_caster(g)(_tensor_divisor(g)))


class NormalizeByStd(Transform):
    """Each tensor divided by its standard deviation (see :func:`std_normalized`)."""

    name = "normalize_by_std"
    per_element_state = True  # no state at all
    tensorwise = True

    def init(self, params: Any) -> dict:
        return {}

    def fused_form(self) -> FusedForm:
        """The same division as a per-tensor reduction stage (the sum and the sum of
        squares, and the size), on tensors of any shape."""
        stage = PerTensorReduction(
            self.name,
            _divided,
            norms=_std_terms,
            combine=_std_combined,
            tensor_scalars=("divisor",),
            sized=True,
            sum_kinds=("sums", "squares"),
        )
        return FusedForm(self.name, stage, every_shape, "tensors of any shape", rounds_16bit=True)

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        leaves, td = _tree.flatten(grads)
        out = [namespace_of(g).wrap(std_normalized(g)) for g in leaves]
        return _tree.unflatten(td, out), {}


# -- the step ---------------------------------------------------------------------


@element_helper
def ranger21_second_moment(g, v, v_max, keep, gain):
    """``v`` and its running maximum after one more gradient."""
    v = keep * v + gain * g * g
    return v, maximum(v_max, v)


@element_helper
def ranger21_scales(total_v, size, w_norm, one, bc2, lr, weight_decay, norm_loss, eps):
    """The stable decay's factor (from the mean bias-corrected second moment of all
    tensors, ``total_v`` summed over ``size`` elements) and the norm loss's factor
    (from the norm of the decayed parameter unit; ``norm_loss`` is twice its factor)."""
    decay = one - weight_decay * lr * (one / sqrt((one + total_v / bc2) / size))
    norm = absolute(decay) * w_norm
    return decay, one - lr * (norm_loss * (one - one / (norm + eps)))


@element_helper
def softplus_of(x, beta, threshold):
    """``log(1 + exp(beta x)) / beta``, ``x`` where ``beta x > threshold`` (torch's)."""
    scaled = x * beta
    smooth = log1p(exp(minimum(scaled, threshold))) / beta
    return where(scaled > threshold, x, smooth)


@element_helper
def ranger21_move(
    gm, w, v_max, m_odd, m_even, decay, shrink, root_bc2, eps, beta, threshold,
    weight, rest, small, pos, neg, inv_norm, step_size, odd, zero,
):  # fmt: skip
    """The parameter change and both moments (``odd``: the step updates ``m_odd``;
    ``small`` and ``odd`` are flags, 1 or 0; a ``threshold`` of -inf turns the
    softplus off)."""
    root = softplus_of(sqrt(v_max) / root_bc2 + eps, beta, threshold)
    mine = where(odd > zero, m_odd, m_even)
    other = where(odd > zero, m_even, m_odd)
    # torch's lerp: two formulas, chosen by the weight, for accuracy
    m = where(small > zero, mine + weight * (gm - mine), gm - (gm - mine) * rest)
    signed = (m * pos - other * neg) * inv_norm
    moved = w * decay * shrink - step_size * (signed / root)
    return moved - w, where(odd > zero, m, other), where(odd > zero, other, m)


def _step_element(
    g, w, v, v_max, m_odd, m_even, keep, gain, one, bc2, lr, weight_decay, norm_loss, eps,
    root_bc2, beta, threshold, weight, rest, small, pos, neg, inv_norm, step_size, odd,
    zero, divisor, total_v, size, w_norm,
):  # fmt: skip
    v, v_max = ranger21_second_moment(g, v, v_max, keep, gain)
    decay, shrink = ranger21_scales(
        total_v, size, w_norm, one, bc2, lr, weight_decay, norm_loss, eps
    )
    u, m_odd, m_even = ranger21_move(
        g / divisor, w, v_max, m_odd, m_even, decay, shrink, root_bc2, eps, beta,
        threshold, weight, rest, small, pos, neg, inv_norm, step_size, odd, zero,
    )  # fmt: skip
    return u, v, v_max, m_odd, m_even


def _step_terms(
    g, w, v, v_max, m_odd, m_even, keep, gain, one, bc2, lr, weight_decay, norm_loss, eps,
    root_bc2, beta, threshold, weight, rest, small, pos, neg, inv_norm, step_size, odd,
    zero,
):  # fmt: skip
    v, v_max = ranger21_second_moment(g, v, v_max, keep, gain)
    return g, g, v, w


def _step_combined(sums: tuple, flags: dict, h: dict, *, normalize: bool) -> dict:
    # a tensor's sums and size, then the same over every tensor
    total, squares, _, w_squares, size, _, _, total_v, _, total_size = sums
    return {
        "divisor": std_divisor(total, squares, size, *_STD_CONSTANTS) if normalize else 1.0,
        "total_v": total_v,
        "size": maximum(total_size, 1.0),
        "w_norm": sqrt(w_squares),
    }


class _HostScalars:
    """Scalar operations on a Python step count (the eager engines)."""

    where = staticmethod(lambda c, a, b: a if c else b)
    minimum = staticmethod(min)
    maximum = staticmethod(max)
    sqrt = staticmethod(math.sqrt)


def scalar_ops(count: Any) -> Any:
    """Python's operations for a Python count, else the count's array namespace (a
    traced count under ``jax.jit``, a count on a device)."""
    return _HostScalars if isinstance(count, int) else namespace_of(count)


def scheduled_learning_rate(
    lr: Any, t: Any, warmup: int, warmdown: int, total: int, min_lr: float
) -> Any:
    """:math:`\\hat\\eta_t` of :mod:`gradstep.rules.ranger21` (``t`` 1-based)."""
    ops = scalar_ops(t)
    warmed = lr * ops.minimum(1.0, t / warmup) if warmup > 0 else lr
    lr_t = ops.where(t <= warmup, warmed, lr)
    start = total - warmdown
    fraction = ops.minimum(ops.maximum(t + 1 - start, 1) / (warmdown + 1), 1.0)
    return ops.where(t < start, lr_t, ops.maximum(lr - (lr - min_lr) * fraction, min_lr))


def _step_prepare(h: dict, count: Any, *, options: dict) -> dict:
    """The step's scalars, in the order of :func:`_step_element`'s parameters."""
    o = options
    t = count + 1
    lr = h["learning_rate"]
    if o["use_schedule"]:
        lr = scheduled_learning_rate(
            lr, t, o["warmup"], o["warmdown"], o["num_iterations"], o["min_lr"]
        )
    b0, b1, b2 = o["beta0"], o["beta1"], o["beta2"]
    bc2 = 1.0 - b2**t
    weight = 1.0 - b1**2
    return {
        "keep": b2,
        "gain": 1.0 - b2,
        "one": 1.0,
        "bc2": bc2,
        "lr": lr,
        "weight_decay": h["weight_decay"],
        "norm_loss": 2.0 * o["norm_loss_factor"],
        "eps": o["epsilon"],
        "root_bc2": math.sqrt(bc2) if isinstance(bc2, float) else namespace_of(bc2).sqrt(bc2),
        "beta": o["softplus_beta"],
        # softplus is the identity above the threshold: -inf turns it off
        "threshold": SOFTPLUS_THRESHOLD if o["softplus"] else -math.inf,
        "weight": weight,
        "rest": 1.0 - weight,
        "small": weight < 0.5,
        "pos": 1.0 + b0,
        "neg": b0,
        "inv_norm": 1.0 / math.sqrt((1.0 + b0) ** 2 + b0**2),
        "step_size": lr / (1.0 - b1**t),
        "odd": t % 2 == 1,  # which moment this step updates
        "zero": 0.0,
    }


class Ranger21Step(Transform):
    """The update of Ranger21 after clipping, centralisation and normalisation: the
    moments, stable weight decay, norm loss and the step (the whole parameter
    change; see :mod:`gradstep.rules.ranger21`). Its slots are trees like the
    parameters."""

    name = "ranger21_step"
    reads_shape = True  # unit norms over slices
    slot_names = ("v", "v_max", "m_odd", "m_even")
    per_parameter_state = slot_names

    def __init__(self, learning_rate: Any, weight_decay: Any, options: dict[str, Any]):
        self.hyperparams = {"learning_rate": learning_rate, "weight_decay": weight_decay}
        self.options = dict(options)

    def hyperparameters(self) -> dict[str, Any]:
        declared = getattr(self, "declared_ranges", {})
        return {name: declared.get(name) for name in self.hyperparams}

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        state: dict[str, Any] = {"count": np.zeros((), np.int64)}
        for name in self.slot_names:
            state[name] = _tree.unflatten(td, [namespace_of(p).zeros_like(p) for p in leaves])
        return state

    def _prepare(self) -> functools.partial:
        return functools.partial(_step_prepare, options=self.options)

    def fused_form(self) -> FusedForm:
        """On vectors: one per-tensor reduction with totals (the gradient's sum and
        sum of squares, the new second moment's sum and the parameter's sum of
        squares, and every tensor's totals of them), then the step."""
        stage = PerTensorReduction(
            self.name,
            _step_element,
            norms=_step_terms,
            combine=functools.partial(_step_combined, normalize=self.options["normalize"]),
            tensor_scalars=("divisor", "total_v", "size", "w_norm"),
            sized=True,
            totals=True,
            sum_kinds=("sums", "squares", "sums", "squares"),
            slots=tuple(Slot(name) for name in self.slot_names),
            hyperparams=self.hyperparams,
            prepare=self._prepare(),
            uses_params=True,
            uses_count=True,
        )
        stage.declared_ranges = getattr(self, "declared_ranges", {})
        return FusedForm(self.name, stage, rank_below(2), "tensors of rank < 2", rounds_16bit=True)

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if params is None:
            raise ValueError(f"{self.name}: this transform needs params in update()")
        o = self.options
        g_leaves, td = _tree.flatten(grads)
        w_leaves = _tree.leaves_like(td, params)
        slots = {n: _tree.leaves_like(td, state[n]) for n in self.slot_names}
        count = namespace_of(state["count"]).count(state["count"])
        h = resolve(self.hyperparams, count, ctx, getattr(self, "declared_ranges", None))
        scalars = self._prepare()(h, count)
        # the second moments first: their mean over all tensors scales the decay
        moments, total_v, size = [], 0.0, 0
        for g, v, v_max in zip(g_leaves, slots["v"], slots["v_max"]):
            ns = namespace_of(g)
            c = cast_scalars(scalars, g)
            moments.append(element_for(ranger21_second_moment, ns)(g, v, v_max, c[0], c[1]))
            total_v = total_v + ns.wide_sum(moments[-1][0])
            size += int(np.prod(np.shape(g)))
        out, m_odd, m_even = [], [], []
        for i, (g, w) in enumerate(zip(g_leaves, w_leaves)):
            ns = namespace_of(g)
            c = cast_scalars(scalars, g)
            cast = ns.scalar_caster(g)
            w = ns.astype(w, g)
            gm = centralized(g) if o["centralize"] else g
            divisor = _tensor_divisor(gm) if o["normalize"] else 1.0
            w_norm = unit_norms(w, unit_axes(tuple(np.shape(w)), "torch", None))
            decay, shrink = element_for(ranger21_scales, ns)(
                cast(total_v), cast(max(size, 1)), w_norm, *c[2:8]
            )
            u, odd_m, even_m = element_for(ranger21_move, ns)(
                element_for(_divided, ns)(gm, cast(divisor)),
                w,
                moments[i][1],
                slots["m_odd"][i],
                slots["m_even"][i],
                decay,
                shrink,
                c[8],
                c[7],
                *c[9:],
            )
            out.append(ns.wrap(u))
            m_odd.append(ns.wrap(odd_m))
            m_even.append(ns.wrap(even_m))
        new_state = {
            "count": namespace_of(state["count"]).count_array(count + 1, state["count"]),
            "v": _tree.unflatten(td, [namespace_of(m[0]).wrap(m[0]) for m in moments]),
            "v_max": _tree.unflatten(td, [namespace_of(m[1]).wrap(m[1]) for m in moments]),
            "m_odd": _tree.unflatten(td, m_odd),
            "m_even": _tree.unflatten(td, m_even),
        }
        return _tree.unflatten(td, out), new_state
