"""Elementwise transforms: the math of a rule written once, run by every engine.

An elementwise stage declares

- its **slots**: named per-element state (``mu``, ``nu``, ...), each an array shaped
  like its parameter, filled with a constant or a copy of the parameter at ``init``;
- its **hyperparameters**: numbers, or schedules (callables of the step count);
- a **prepare** step: plain Python that turns the hyperparameters and the step count
  into the scalars the element math needs (bias corrections, ``1 - beta``, ...);
- an **element function** of plain arithmetic on per-element values and those
  scalars: ``element(g, [w], *slots, *scalars) -> u`` or ``(u, *new_slots)``.

The eager engine (this module) calls the element function on whole arrays; the fused
engine calls the same function on scalars inside one generated loop. Scalars are cast
to each array's dtype, so float32 math stays float32. 16-bit arrays (parameters,
gradients, slots stored in float16/bfloat16) are widened to float32 for the math and
each new slot is rounded to its storage dtype (:mod:`gradstep._core.precision`).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import blockwise8
from . import tree as _tree
from .blockwise8 import BLOCKWISE8, absmax_name
from .namespaces import element_for, is_floating, namespace_of, nan_to_zero, value_dtype
from .transform import Transform
from .xmath import complex_ready

# set by the stateful fronts while they run a transform's update: the updates of
# 16-bit gradients stay float32 between stages and reach the parameter unrounded, so
# the new parameter is rounded once (as the fused kernels do); a functional caller gets
# them in the gradient's dtype (p + u keeps a bfloat16 parameter bfloat16)
_WIDE_UPDATES = contextvars.ContextVar("gradstep_wide_updates", default=False)


@contextlib.contextmanager
def wide_updates():
    """Within the block, elementwise stages return the updates of 16-bit gradients in
    float32 (their math dtype) instead of the gradient's dtype."""
    token = _WIDE_UPDATES.set(True)
    try:
        yield
    finally:
        _WIDE_UPDATES.reset(token)


def stored_update(u: Any, given: Any, read: Any, ns: Any) -> Any:
    """The update ``u`` of the gradient ``given`` as a stage returns it, ``read``
    being the gradient its math read (``ns.widened(given)``): a widened 16-bit
    gradient's update in the gradient's own dtype, except for the stateful fronts
    (:func:`wide_updates`), which take it in float32 and round the new parameter
    once."""
    if read is not given and not _WIDE_UPDATES.get():
        return ns.stored_like(ns.wrap(u), given)
    return ns.wrap(u)


@dataclass(frozen=True)
class Slot:
    """A named per-element state array.

    ``fill`` is the initial value: a number, or ``"params"`` for a copy of the
    parameter. ``nonnegative``: every element is >= 0 (a second moment, an
    accumulated square); a checkpoint that says otherwise is refused at load.
    ``dtype``: the storage dtype's name (:mod:`gradstep._core.precision`); None
    stores the slot in its parameter's dtype; ``"blockwise8"`` keeps uint8 codes
    under the slot's name and float32 block scales beside them
    (:mod:`gradstep._core.blockwise8`; the signed map, or the unsigned one for a
    ``nonnegative`` slot; a tensor below ``min_8bit_size`` elements keeps float
    values and an empty scale array instead). ``stochastic_seed``: when stored in bfloat16, rounded
    stochastically with this seed's stream (:mod:`gradstep._core.rounding`); None:
    to the nearest.
    """

    name: str
    fill: float | str = 0.0
    nonnegative: bool = False
    dtype: str | None = None
    stochastic_seed: int | None = None
    min_8bit_size: int = blockwise8.MIN_8BIT_SIZE

    def initial(self, param: Any) -> Any:
        """The slot's initial array for ``param``, of its library and shape, in the
        slot's storage dtype (else the parameter's; float64 for a NumPy parameter that
        is not floating-point)."""
        if self.dtype == BLOCKWISE8:
            raise TypeError(
                f"slot {self.name!r} is stored in 8-bit blocks: codes and block scales, "
                "two arrays (gradstep._core.blockwise8.initial)"
            )
        ns = namespace_of(param)
        value = ns.copy(param) if self.fill == "params" else ns.full_like(param, self.fill)
        return value if self.dtype is None else ns.stored(value, self.dtype)


def float_dtype(x: Any) -> np.dtype:
    """The floating dtype in which element math on the NumPy array ``x`` runs."""
    dtype = value_dtype(x)
    return dtype if is_floating(dtype) else np.dtype(np.float64)


def cast_scalars(scalars: dict[str, Any], x: Any) -> list:
    """Scalars as the element math on ``x`` takes them: NumPy scalars of ``x``'s
    dtype, so float32 stays float32 (booleans stay booleans); Python numbers for
    torch and JAX, whose arrays keep their dtype against them."""
    cast = namespace_of(x).scalar_caster(x)
    return [cast(v) for v in scalars.values()]


def resolve(
    hyperparams: dict[str, Any],
    count: int,
    ctx: dict[str, Any],
    ranges: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Each hyperparameter's value for this step.

    A value given in ``ctx`` under the same name wins; a schedule is evaluated at
    ``count`` (the number of updates made so far, 0 on the first). A schedule's value
    must be finite and, where ``ranges`` declares one for its name, in that range: a
    ``ValueError`` names the hyperparameter, the step and the value otherwise. Only
    host numbers are checked (cheap); a traced or device value is the engine's to
    guard (see :mod:`gradstep.engines.jax`).
    """
    out = {}
    for name, value in hyperparams.items():
        if name in ctx:
            value = ctx[name]
        if callable(value):
            value = check_scheduled(name, value(count), count, (ranges or {}).get(name))
        out[name] = value
    return out


def check_scheduled(name: str, value: Any, count: Any, constraint: Any = None) -> Any:
    """``value``, the schedule of ``name`` at ``count``, after checking it is a finite
    number within ``constraint`` (any ``contains``-able range; ``None``: finite)."""
    number = value
    if type(number) is np.ndarray and number.ndim == 0:
        number = number[()]
    if not isinstance(number, (float, int, np.floating, np.integer)) or isinstance(
        number, (bool, np.bool_)
    ):
        return value  # not a host number: nothing to check cheaply
    if not math.isfinite(number) or (
        constraint is not None and not constraint.contains(_plain(number))
    ):
        valid = "a finite number" if constraint is None else constraint.describe()
        raise ValueError(
            f"the schedule of {name} gave {name}={_plain(number)!r} at step {count}; "
            f"valid values: {valid}"
        )
    return value


def _plain(x: Any) -> float | int:
    return int(x) if isinstance(x, (int, np.integer)) else float(x)


def _no_scalars(h: dict[str, Any], count: int) -> dict[str, Any]:
    return {}


def _no_prepare(h: dict[str, Any], count: int) -> dict[str, Any]:
    return h


class Elementwise(Transform):
    """A stage whose update of each element depends only on that element.

    Args:
      name: the stage's name in a chain's state.
      element: the element function (see the module docstring).
      slots: the per-element state.
      hyperparams: ``{name: number or schedule}``.
      prepare: ``prepare(h, count) -> {scalar_name: value}``; the scalar names, in
        order, are the element function's trailing parameters. Defaults to passing
        the hyperparameters themselves.
      uses_params: the element function takes the parameter ``w`` after ``g``.
      uses_count: ``prepare`` needs the step count (a ``count`` field is kept in the
        state; it is also kept whenever a hyperparameter is a schedule).
      clear_nan_slots: after each update, NaN elements of the new slots become 0
        (Dandelion's ``clear_nan``).
    """

    def __init__(
        self,
        name: str,
        element: Callable,
        *,
        slots: tuple[Slot, ...] = (),
        hyperparams: dict[str, Any] | None = None,
        prepare: Callable | None = None,
        uses_params: bool = False,
        uses_count: bool = False,
        clear_nan_slots: bool = False,
    ):
        self.name = name
        self.element = element
        self.slots = tuple(slots)
        self.hyperparams = dict(hyperparams or {})
        self.prepare = prepare or _no_prepare
        self.uses_params = uses_params
        self.counted = uses_count or any(callable(v) for v in self.hyperparams.values())
        self.clear_nan_slots = clear_nan_slots

    # -- description used by engines and tests -------------------------------------

    @property
    def array_args(self) -> tuple[str, ...]:
        """Names of the per-element inputs, in the element function's order."""
        return ("g",) + (("w",) if self.uses_params else ()) + tuple(s.name for s in self.slots)

    @property
    def per_parameter_state(self) -> tuple[str, ...]:
        """Every slot is a list indexed by parameter (an 8-bit slot two: its codes and
        its block scales)."""
        names: list[str] = []
        for slot in self.slots:
            names.append(slot.name)
            if slot.dtype == BLOCKWISE8:
                names.append(absmax_name(slot.name))
        return tuple(names)

    def scalar_names(self) -> tuple[str, ...]:
        """Names of the element function's scalar parameters."""
        params = list(inspect.signature(self.element).parameters)
        return tuple(params[len(self.array_args) :])

    def hyperparameters(self) -> dict[str, Any]:
        declared = getattr(self, "declared_ranges", {})
        return {name: declared.get(name) for name in self.hyperparams}

    def scalars(self, count: int, ctx: dict[str, Any]) -> dict[str, Any]:
        """This step's scalars for the element function."""
        ranges = self._scheduled_ranges(ctx)
        out = self.prepare(resolve(self.hyperparams, count, ctx, ranges), count)
        if not self._names_checked:
            self._check_scalar_names(out)
        return out

    _names_checked = False

    def _check_scalar_names(self, prepared: dict[str, Any]) -> None:
        """Every engine hands ``prepare``'s scalars to the element function by
        position: their names must be its trailing parameters, in order (the
        parameters after them are per-tensor or reduced scalars)."""
        names = self.scalar_names()
        keys = tuple(prepared)
        if names[: len(keys)] != keys:
            raise TypeError(
                f"{self.name}: prepare returns the scalars {list(keys)}, but the element "
                f"function's scalar parameters are {list(names)}: engines pass them by "
                "position, so the names and their order must agree"
            )
        self._names_checked = True

    def _scheduled_ranges(self, ctx: dict[str, Any]) -> dict[str, Any] | None:
        """The declared ranges, when a schedule is about to be evaluated (else None:
        looking them up costs more than the plain numbers need)."""
        for name, value in self.hyperparams.items():
            if callable(ctx.get(name, value)):
                return self.hyperparameters()
        return None

    def replace(self, **changes: Any) -> Elementwise:
        """A copy with some constructor arguments changed."""
        args = {**self._constructor_args(), **changes}
        return self._rebuilt(args.pop("name"), args.pop("element"), args)

    def _constructor_args(self) -> dict[str, Any]:
        """The arguments that rebuild this stage (subclasses add their own)."""
        return dict(
            name=self.name,
            element=self.element,
            slots=self.slots,
            hyperparams=self.hyperparams,
            prepare=self.prepare if self.prepare is not _no_prepare else None,
            uses_params=self.uses_params,
            uses_count=self.counted,
            clear_nan_slots=self.clear_nan_slots,
        )

    def _rebuilt(self, name: str, element: Callable, args: dict[str, Any]) -> Elementwise:
        return Elementwise(name, element, **args)

    # -- the transform protocol (eager engine) -------------------------------------

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        state: dict[str, Any] = {}
        if self.counted:
            state["count"] = np.zeros((), dtype=np.int64)
        for slot in self.slots:
            if slot.dtype == BLOCKWISE8:
                pairs = [
                    blockwise8.initial(p, slot.fill, not slot.nonnegative, slot.min_8bit_size)
                    for p in leaves
                ]
                state[slot.name] = _tree.unflatten(td, [codes for codes, _ in pairs])
                state[absmax_name(slot.name)] = _tree.unflatten(td, [a for _, a in pairs])
            else:
                state[slot.name] = _tree.unflatten(td, [slot.initial(p) for p in leaves])
        return state

    # -- the reduction phase of stages that need one (none here) ----------------------

    def reduction_context(
        self, params: Any, grads: Any, g_leaves: list, count: int, ctx: dict[str, Any]
    ) -> Any:
        """What a reduction stage computes once per update before its per-tensor
        scalars (global norms, masks); plain elementwise stages need nothing."""
        return None

    def tensor_scalars_of(
        self, i: int, arrays: list, prepared: list, ns: Any, context: Any
    ) -> dict[str, Any]:
        """Scalars of tensor ``i`` that follow the step's scalars in the element
        function's arguments (a per-tensor reduction's result); none here."""
        return {}

    def whole_step_context(self, context: Any, inputs: Callable, n: int) -> Any:
        """``context`` completed with what needs every tensor's inputs before the
        first is stepped (``inputs(i)``: tensor ``i``'s ``(namespace, arguments,
        prepared scalars)``); nothing here."""
        return context

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        if self.uses_params:
            if params is None:
                raise ValueError(f"{self.name}: this transform needs params in update()")
            w_leaves = _tree.leaves_like(td, params)
        slot_leaves = [_tree.leaves_like(td, state[s.name]) for s in self.slots]
        # 8-bit slots: their block scales (None for the others)
        scale_leaves = [
            _tree.leaves_like(td, state[absmax_name(s.name)]) if s.dtype == BLOCKWISE8 else None
            for s in self.slots
        ]
        first_slot = 1 + self.uses_params
        count = int(state["count"]) if self.counted else 0
        scalars = self.scalars(count, ctx)
        cast_cache: dict[Any, list] = {}

        def inputs(i: int) -> tuple:
            g = g_leaves[i]
            ns = namespace_of(g)
            stored = [sl[i] for sl in slot_leaves]
            args = [g] + ([w_leaves[i]] if self.uses_params else []) + stored
            # the math runs in float32 or wider, whatever the storage ("opmath")
            args = [ns.widened(a) for a in args]
            for k, scales in enumerate(scale_leaves):
                if scales is not None and blockwise8.is_codes(stored[k]):
                    signed = not self.slots[k].nonnegative
                    args[first_slot + k] = blockwise8.dequantised(stored[k], scales[i], signed)
            key = (ns.name, getattr(args[0], "dtype", None))
            if key not in cast_cache:
                cast_cache[key] = cast_scalars(scalars, args[0])
            return ns, args, cast_cache[key]

        context = self.reduction_context(params, grads, g_leaves, count, ctx)
        context = self.whole_step_context(context, inputs, len(g_leaves))
        updates = []
        new_slots: list[list] = [[] for _ in self.slots]
        new_scales: list[list] = [[] for _ in self.slots]
        for i, given in enumerate(g_leaves):
            ns, args, prepared = inputs(i)
            stored = [sl[i] for sl in slot_leaves]
            g = args[0]
            own = self.tensor_scalars_of(i, args, prepared, ns, context)
            result = element_for(self.element, ns)(*args, *prepared, *cast_scalars(own, g))
            if self.slots:
                u, *slot_values = result
                for k, value in enumerate(slot_values):
                    if self.clear_nan_slots:
                        value = nan_to_zero(value, ns)
                    if any(value is a for a in args):
                        # a slot that keeps an input (w_prev <- w) must not alias it:
                        # the front updates parameters in place
                        value = ns.copy(value)
                    if scale_leaves[k] is not None and blockwise8.is_codes(stored[k]):
                        value = ns.stored(ns.wrap(value), "float32")
                        codes, scales = blockwise8.quantised(value, not self.slots[k].nonnegative)
                        new_slots[k].append(codes)
                        new_scales[k].append(scales)
                        continue
                    if scale_leaves[k] is not None:  # below min_8bit_size: float, no scales
                        new_scales[k].append(scale_leaves[k][i])
                    seed = self.slots[k].stochastic_seed
                    if seed is None:
                        new_slots[k].append(ns.stored_like(ns.wrap(value), stored[k]))
                    else:  # stochastically rounded where stored in bfloat16
                        new_slots[k].append(
                            _stored_stochastically(
                                value, stored[k], seed, count, i, self.slots[k].name
                            )
                        )
            else:
                u = result
            updates.append(stored_update(u, given, g, ns))

        new_state: dict[str, Any] = {}
        if self.counted:
            new_state["count"] = np.asarray(count + 1, dtype=np.int64)
        for slot, values, scales in zip(self.slots, new_slots, new_scales):
            new_state[slot.name] = _tree.unflatten(td, values)
            if slot.dtype == BLOCKWISE8:
                new_state[absmax_name(slot.name)] = _tree.unflatten(td, scales)
        return _tree.unflatten(td, updates), new_state


def _stored_stochastically(value, like, seed, count, tensor, name):
    from .rounding import slot_id, stored_stochastically, stream_keys

    key = int(stream_keys(seed, count, tensor, slot_id(name)))
    return stored_stochastically(namespace_of(like).wrap(value), like, key)


@complex_ready
def _scaled_by_factor(g, factor):
    return g * factor


@complex_ready
def _params_scaled_by_factor(u, w, factor):
    # the update that takes w to the scaled new parameter (w + u) * factor
    return (w + u) * factor - w


def sum_of_squares(x: Any) -> float:
    """The sum of squares of ``x``, accumulated in float64."""
    return namespace_of(x).sum_of_squares(x)


class NormScaled(Elementwise):
    """A scale whose factor comes from the L2 norm of the incoming updates.

    A reduction phase computes each tensor's sum of squares (float64); ``factor(norm,
    h)`` turns the norm (of each tensor when ``per_tensor``, else of all of them
    together) into a multiplier; the element phase multiplies. Engines run the
    reduction their own way and hand the sums to :meth:`factors`.

    ``of_params``: the norms are those of the new parameters (:meth:`normed`; a
    constraint applied after the step), and the element function
    ``element(u, w, factor)`` gives the update to ``(w + u) * factor``.
    """

    def __init__(
        self,
        name: str,
        factor: Callable,
        hyperparams: dict,
        per_tensor: bool,
        *,
        of_params: bool = False,
    ):
        element = _params_scaled_by_factor if of_params else _scaled_by_factor
        super().__init__(
            name, element, hyperparams=hyperparams, prepare=_no_scalars, uses_params=of_params
        )
        self.factor = factor
        self.per_tensor = per_tensor
        self.of_params = of_params

    def normed(self, g: Any, w: Any, ns: Any) -> Any:
        """What the reduction squares for the update ``g`` of ``w``: ``g``, or the new
        parameter ``w + g`` in the math dtype (16-bit widened, as the kernels add)."""
        return ns.widened(w) + ns.widened(g) if self.of_params else g

    def sums(self, params: Any, grads: Any, g_leaves: list) -> list[float]:
        """Each tensor's float64 sum of the squares of :meth:`normed`."""
        ws = _tree.leaves_like(_tree.flatten(grads)[1], params) if self.of_params else g_leaves
        return [sum_of_squares(self.normed(g, w, namespace_of(g))) for g, w in zip(g_leaves, ws)]

    def factors(self, sums: list[float], count: int, ctx: dict[str, Any]) -> list[float]:
        """The multiplier of each tensor, from the tensors' sums of squares."""
        h = resolve(self.hyperparams, count, ctx, self._scheduled_ranges(ctx))
        if self.per_tensor:
            return [self.factor(s**0.5, h) for s in sums]
        return [self.factor(sum(sums) ** 0.5, h)] * len(sums)

    def scalar_names(self) -> tuple[str, ...]:
        return ()  # the factor is a per-tensor scalar from the reduction

    def reduction_context(self, params, grads, g_leaves, count, ctx):
        return self.factors(self.sums(params, grads, g_leaves), count, ctx)

    def tensor_scalars_of(self, i, arrays, prepared, ns, context):
        return {"factor": context[i]}
