r"""Adafactor: Adam-like steps whose second moment of a matrix is stored as a row and
a column factor, with steps relative to the parameter scale.

Symbols: :math:`g` gradient, :math:`w` parameter, :math:`t` the 1-based step,
:math:`R` slot ``v_row`` (row factor), :math:`C` slot ``v_col`` (column factor),
:math:`V` slot ``v`` (full second moment of tensors that are not factored),
:math:`c` ``decay_rate``, :math:`\epsilon_1` ``epsilon1``, :math:`\epsilon_2`
``epsilon2``, :math:`d` ``clipping_threshold``, :math:`\eta` ``learning_rate``,
:math:`\mu` ``momentum``, :math:`\lambda` ``weight_decay``; :math:`\mathrm{RMS}(x) =
\sqrt{\mathrm{mean}(x^2)}` over one tensor.

.. math::

    \hat\beta_{2,t} = 1 - t^{-c}

For a factored tensor (rank >= 2; two of its axes, "rows" :math:`r` and "columns"
:math:`k`, are chosen by ``factored``) with :math:`G = g^2` (``epsilon1_placement=
"clamp"``) or :math:`G = g^2 + \epsilon_1` (``"add"``):

.. math::

    R \leftarrow \hat\beta_{2,t} R + (1-\hat\beta_{2,t})\,\mathrm{mean}_k(G),\quad
    C \leftarrow \hat\beta_{2,t} C + (1-\hat\beta_{2,t})\,\mathrm{mean}_r(G),\quad
    \hat V = R\,C / \mathrm{mean}_r(R)

other tensors keep :math:`V \leftarrow \hat\beta_{2,t} V + (1-\hat\beta_{2,t}) G` and
:math:`\hat V = V`. Then :math:`u = g / \sqrt{\hat V}` (with ``"clamp"``,
:math:`\mathrm{mean}_r(R)` is floored at :math:`\epsilon_1` and :math:`\hat V` at
:math:`\epsilon_1^2`), clipped by its RMS, scaled by the parameter scale and the
relative step size:

.. math::

    \hat u = u / \max(1, \mathrm{RMS}(u)/d),\quad
    \rho_t = \min(\eta, 1/\sqrt t),\quad
    w \leftarrow w - \max(\epsilon_2, \mathrm{RMS}(w))\,\rho_t\,\hat u - \eta\lambda w

``relative_step=False`` uses :math:`\rho_t = \eta`; ``multiply_by_parameter_scale=False``
drops the :math:`\max(\epsilon_2, \mathrm{RMS}(w))` factor; ``momentum`` keeps an
exponential average (no debiasing) of the scaled steps; ``weight_decay_scale="none"``
decays by :math:`\lambda w` instead of :math:`\eta\lambda w` (optax).

References:
  Shazeer & Stern (2018): Adafactor: Adaptive Learning Rates with Sublinear Memory
  Cost. ICML, arXiv:1804.04235.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.combine import masked
from .._core.elementwise import Elementwise, Slot
from .._core.factored import (
    FACTORED,
    factored_axes,
    factored_slots,
    inverse_root_factors,
    is_empty,
    map_widened,
    moving_average,
)
from .._core.fused_form import FusedForm, every_shape
from .._core.namespaces import element_for, namespace_of
from .._core.per_tensor import PerTensorReduction
from .._core.stages import rule
from .._core.transform import Chain, Transform
from .._core.validate import (
    BOOL,
    Interval,
    NoneOr,
    OneOf,
    decay_rate,
    hyperparams,
    nonnegative,
)
from .._core.xmath import ema, maximum, sqrt

EPSILON1_PLACEMENTS = ("clamp", "add")
DECAY_SCALES = ("learning_rate", "none")


#: the name this module gave the shared constraint (imported from here elsewhere)
OrNone = NoneOr


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(tuple(shape))


class ScaleByFactoredRms(Transform):
    """:math:`u = g / \\sqrt{\\hat V}` with the factored second moment (no clipping,
    no step size); see the module docstring. Written with the array namespace: it runs
    on NumPy, on torch tensors on their device and under ``jax.jit``."""

    per_parameter_state = ("v_row", "v_col", "v")  # lists indexed by parameter

    name = "scale_by_factored_rms"
    reads_shape = True  # a real view's trailing axis would change it

    def __init__(self, decay_rate: float, epsilon1, placement: str, factored: str, min_size: int):
        self.decay_rate = decay_rate
        self.epsilon1 = epsilon1
        self.placement = placement
        self.factored = factored
        self.min_size = min_size

    def init(self, params: Any) -> dict:
        rows, cols, full = factored_slots(params, self.factored, self.min_size)
        return {"count": np.zeros((), np.int64), "v_row": rows, "v_col": cols, "v": full}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        count_ns = namespace_of(state["count"])
        t = count_ns.count(state["count"]) + 1
        # 1 - beta2_t, exactly 1 at t = 1
        gain = float(t) ** (-self.decay_rate) if isinstance(t, int) else t**-self.decay_rate

        def step(ns, g, v_row, v_col, v):
            eps = ns.eps(g) if self.epsilon1 is None else self.epsilon1
            s = _Scalars(ns.scalar_caster(g), gain, eps)
            axes = factored_axes(np.shape(g), self.factored, self.min_size)
            if is_empty(g):
                return ns.astype(g, g), v_row, v_col, v
            sq = g * g + s.eps if self.placement == "add" else g * g
            v_row, v_col, v = moving_average(ns, sq, v_row, v_col, v, axes, s.keep, s.gain)
            if axes is None:
                return self._scaled_full(ns, g, v, s), v_row, v_col, v
            return self._scaled_factored(ns, g, v_row, v_col, axes[0], s), v_row, v_col, v

        out, slots = map_widened(step, grads, state, ("v_row", "v_col", "v"))
        return out, {"count": count_ns.count_array(t, state["count"]), **slots}

    def _scaled_full(self, ns, g, v, s):
        if self.placement == "add":
            return g * v**s.minus_half
        return g / ns.sqrt(ns.maximum(v, s.eps * s.eps))

    def _scaled_factored(self, ns, g, v_row, v_col, r, s):
        if self.placement == "add":
            # g scaled by each factor in turn, as optax does
            row_factor, col_factor = inverse_root_factors(ns, v_row, v_col, r, s.minus_half)
            return g * row_factor * col_factor
        row_norm = ns.mean(v_row, axis=r, keepdims=True)
        estimate = v_row * v_col / ns.maximum(row_norm, s.eps)
        return g / ns.sqrt(ns.maximum(estimate, s.eps * s.eps))


class _Scalars:
    """The step's scalars as element math on the tensor takes them (in its dtype on
    NumPy, so float32 math stays float32)."""

    def __init__(self, cast, gain, eps: float):
        self.gain = cast(gain)
        self.keep = cast(1.0 - gain)
        self.eps = cast(eps)
        self.minus_half = cast(-0.5)


def _rms(x: Any, ns: Any) -> Any:
    """:math:`\\mathrm{RMS}(x)` as a 0-d float64 array of ``x``'s library (0 when empty)."""
    size = _size(np.shape(x))
    return (ns.square_sum(x) / size) ** 0.5 if size else ns.astype(0.0, x)


def _clip_norms(u):
    return (u,)


def _clip_combined(sums: tuple, flags: dict, h: dict, *, threshold: float) -> dict:
    r""":math:`\max(1, \mathrm{RMS}/d)` of a tensor from its float64 sum of squares
    and its size (RMS 0 when it is empty)."""
    return {"denom": maximum(1.0, sqrt(sums[0] / maximum(sums[1], 1.0)) / threshold)}


def _clipped(u, denom):
    return u / denom


class ClipByBlockRms(Transform):
    """``u / max(1, RMS(u) / threshold)`` for each tensor (stateless)."""

    name = "clip_by_block_rms"
    tensorwise = True  # each tensor's own RMS

    def __init__(self, threshold: float):
        self.threshold = threshold

    def init(self, params: Any) -> dict:
        return {}

    def _combine(self) -> functools.partial:
        return functools.partial(_clip_combined, threshold=self.threshold)

    def fused_form(self) -> FusedForm:
        """The same clip as a per-tensor reduction stage (a sum of squares and the
        tensor's size, then the element division), on tensors of any shape."""
        stage = PerTensorReduction(
            self.name,
            _clipped,
            norms=_clip_norms,
            combine=self._combine(),
            tensor_scalars=("denom",),
            sized=True,
        )
        return FusedForm(self.name, stage, every_shape, "tensors of any shape", rounds_16bit=True)

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        out = []
        for u in g_leaves:
            ns = namespace_of(u)
            square_sum = ns.square_sum(u)
            size = ns.astype(float(_size(np.shape(u))), square_sum)  # of the sum's library
            denom = element_for(self._combine(), ns)((square_sum, size), {}, {})["denom"]
            out.append(ns.wrap(element_for(_clipped, ns)(u, ns.scalar_caster(u)(denom))))
        return _tree.unflatten(td, out), state


class ScaleByParamBlockRms(Transform):
    """``u * max(floor, RMS(w))`` for each tensor, ``w`` the parameter before the step."""

    name = "scale_by_param_block_rms"

    def __init__(self, floor: float):
        self.floor = floor

    def init(self, params: Any) -> dict:
        return {}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if params is None:
            raise ValueError(f"{self.name}: this transform needs params in update()")
        g_leaves, td = _tree.flatten(grads)
        w_leaves = _tree.leaves_like(td, params)
        out = []
        for u, w in zip(g_leaves, w_leaves):
            ns = namespace_of(u)
            scale = ns.maximum(self.floor, _rms(w, ns))
            out.append(ns.wrap(u * ns.scalar_caster(u)(scale)))
        return _tree.unflatten(td, out), state


def _scaled(g, factor):
    return g * factor


def _relative_step_prepare(h: dict, count: int, *, relative) -> dict:
    lr = h["learning_rate"]
    return {"factor": -min(lr, (count + 1) ** -0.5) if relative else -lr}


def _relative_step(learning_rate: Any, relative: bool) -> Elementwise:
    """``u <- -rho_t u`` with ``rho_t = min(lr, 1/sqrt(t))`` or ``lr``."""

    prepare = functools.partial(_relative_step_prepare, relative=relative)

    return Elementwise(
        "learning_rate",
        _scaled,
        hyperparams={"learning_rate": learning_rate},
        prepare=prepare,
        uses_count=relative,
    )


def _ema(g, mu, keep, gain):
    mu = ema(mu, g, keep, gain)
    return mu, mu


def _momentum_prepare(h: dict, count: int) -> dict:
    return {"keep": h["momentum"], "gain": 1.0 - h["momentum"]}


def _momentum(momentum: Any) -> Elementwise:
    return Elementwise(
        "momentum",
        _ema,
        slots=(Slot("mu"),),
        hyperparams={"momentum": momentum},
        prepare=_momentum_prepare,
    )


def _decayed(g, w, factor):
    return g + factor * w


def _weight_decay_prepare(values: dict, count: int, *, scale) -> dict:
    lr = values["learning_rate"] if scale == "learning_rate" else 1.0
    return {"factor": -values["weight_decay"] * lr}


def _weight_decay(weight_decay: Any, learning_rate: Any, scale: str, mask: Any) -> Transform:
    """``u <- u - lr * lambda * w`` (or ``- lambda * w``), after the step-size stage."""
    h = {"weight_decay": weight_decay}
    if scale == "learning_rate":
        h["learning_rate"] = learning_rate

    prepare = functools.partial(_weight_decay_prepare, scale=scale)

    stage = Elementwise("weight_decay", _decayed, hyperparams=h, prepare=prepare, uses_params=True)
    return masked(stage, mask)


_RANGES = dict(
    learning_rate=nonnegative(schedulable=True),
    decay_rate=nonnegative(),
    epsilon1=OrNone(nonnegative()),
    epsilon2=nonnegative(),
    clipping_threshold=OrNone(Interval(0.0, lo_open=True)),
    weight_decay=nonnegative(schedulable=True),
    relative_step=BOOL,
    multiply_by_parameter_scale=BOOL,
    momentum=OrNone(decay_rate(schedulable=True)),
    factored=OneOf(FACTORED),
    min_dim_size_to_factor=Interval(0, integer=True),
    epsilon1_placement=OneOf(EPSILON1_PLACEMENTS),
    weight_decay_scale=OneOf(DECAY_SCALES),
)


@hyperparams(**_RANGES)
def adafactor(
    learning_rate: Any = 0.01,
    decay_rate: float = 0.8,
    epsilon1: float | None = None,
    epsilon2: float = 1e-3,
    clipping_threshold: float | None = 1.0,
    weight_decay: Any = 0.0,
    *,
    relative_step: bool = True,
    multiply_by_parameter_scale: bool = True,
    momentum: Any = None,
    factored: str = "last_two",
    min_dim_size_to_factor: int = 0,
    epsilon1_placement: str = "clamp",
    weight_decay_scale: str = "learning_rate",
    mask: Any = None,
) -> Chain:
    r"""Adafactor (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule: the cap of the relative step
        size (and the decay's scale). Default 0.01 (torch).
      decay_rate: :math:`c` >= 0 in :math:`\hat\beta_{2,t} = 1 - t^{-c}`. Default 0.8
        (torch's ``beta2_decay=-0.8``).
      epsilon1: :math:`\epsilon_1` >= 0, or ``None`` (default) for the machine epsilon
        of each parameter's dtype (torch).
      epsilon2: :math:`\epsilon_2` >= 0, floor of the parameter scale. Default 1e-3.
      clipping_threshold: :math:`d` > 0, or ``None`` for no clipping. Default 1.
      weight_decay: :math:`\lambda` >= 0, or a schedule; decoupled. Default 0.
      relative_step: cap the step size by :math:`1/\sqrt t` (torch, Keras, the
        paper). Default True.
      multiply_by_parameter_scale: scale by :math:`\max(\epsilon_2,
        \mathrm{RMS}(w))`. Default True.
      momentum: :math:`\mu` in [0, 1) (or a schedule) for an undebiased average of
        the steps, or ``None`` (default) for none.
      factored: which two axes of a rank >= 2 tensor are factored: ``"last_two"``
        (torch, Keras, default), ``"largest_two"`` (optax) or ``"none"``.
      min_dim_size_to_factor: integer >= 0; a tensor is factored only when both
        chosen axes have at least this many elements (optax uses 128). Default 0.
      epsilon1_placement: ``"clamp"`` (torch, default: floors the estimate) or
        ``"add"`` (optax, Keras, the paper: :math:`g^2 + \epsilon_1`).
      weight_decay_scale: ``"learning_rate"`` (torch, default: :math:`\eta\lambda w`)
        or ``"none"`` (optax: :math:`\lambda w`).
      mask: a tree of booleans (or a function of the parameters) selecting the
        leaves to decay; ``None`` decays all.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.full((2, 3), 2.0)
      >>> gradstep.Optimizer(w, gradstep.adafactor(0.1)).step(np.ones((2, 3))); w
      array([[1.8, 1.8, 1.8],
             [1.8, 1.8, 1.8]])

    Differences: torch (the defaults) floors the estimate with :math:`\epsilon_1`
    rather than adding it. optax factors the two largest axes when the smaller is
    at least 128 (``factored="largest_two", min_dim_size_to_factor=128``), adds
    :math:`\epsilon_1 = 10^{-30}`, has no relative step (``relative_step=False``;
    its ``learning_rate=None`` is ``learning_rate=1.0`` here), decays by
    :math:`\lambda w` (``weight_decay_scale="none"``), offers ``decay_offset`` (not
    here) and computes :math:`\hat\beta_{2,t}` in float32 even for float64
    parameters. Keras: ``"last_two"``, ``"add"`` with :math:`\epsilon_1 =
    10^{-30}`, and the :math:`1/\sqrt t` cap even with ``relative_step=False``.
    """
    if mask is not None and not weight_decay:
        raise ValueError(
            "adafactor: invalid mask with weight_decay=0; valid values: a mask only "
            "selects the leaves to decay, so give a weight_decay > 0 or no mask"
        )
    if not multiply_by_parameter_scale and epsilon2 != 1e-3:
        raise ValueError(
            f"adafactor: invalid epsilon2={epsilon2!r} with multiply_by_parameter_scale="
            "False; valid values: the default (epsilon2 only floors the parameter scale)"
        )
    if not weight_decay and weight_decay_scale != "learning_rate":
        raise ValueError(
            f"adafactor: invalid weight_decay_scale={weight_decay_scale!r} with "
            "weight_decay=0; valid values: the default (there is no decay to scale)"
        )
    if factored == "none" and min_dim_size_to_factor:
        raise ValueError(
            f"adafactor: invalid min_dim_size_to_factor={min_dim_size_to_factor!r} with "
            "factored='none'; valid values: 0 (nothing is factored)"
        )
    return rule(
        "adafactor",
        ScaleByFactoredRms(
            decay_rate, epsilon1, epsilon1_placement, factored, min_dim_size_to_factor
        ),
        ClipByBlockRms(clipping_threshold) if clipping_threshold is not None else None,
        ScaleByParamBlockRms(epsilon2) if multiply_by_parameter_scale else None,
        _relative_step(learning_rate, relative_step),
        _momentum(momentum) if momentum is not None else None,
        _weight_decay(weight_decay, learning_rate, weight_decay_scale, mask)
        if weight_decay
        else None,
    )
