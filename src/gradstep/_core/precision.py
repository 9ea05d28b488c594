"""State precision: the dtype each state slot is stored in, an option of every rule.

A rule's math is written once, in its element function; how its state is *stored*
is not the rule's business. Every slot (:class:`~gradstep._core.elementwise.Slot`)
has a storage dtype: by default its parameter's (as torch and optax keep state), or
one chosen with :func:`with_state_dtype`, which every registered optimizer offers
as its ``state_dtype`` argument (and, where optax names the option, as optax's
name: ``mu_dtype`` for the first moment of the Adam family and Lion,
``accumulator_dtype`` for the momentum of ``momentum``/``nesterov_momentum``, optax's
``sgd(momentum=...)``).

The storage dtype changes only what is kept between steps. The arithmetic of a step
always runs in float32 or wider ("opmath", as torch's kernels do): every engine
widens 16-bit inputs (parameters, gradients, slots) to float32 when it reads them,
runs the element function, and rounds each new slot to its storage dtype (to the
nearest, ties to even) when it writes it. The stateful fronts keep the updates of
16-bit parameters in float32, so the new parameter is rounded once
(:func:`gradstep._core.elementwise.wide_updates`); a functional ``update`` returns them
in the gradient's dtype.

Storage dtypes: ``"float16"``, ``"bfloat16"`` (NumPy arrays use ``ml_dtypes``'
bfloat16), ``"float32"``, ``"float64"``; given by name or as a NumPy, torch or JAX
dtype.

``"blockwise8"`` (also spelled ``"int8"``): 8-bit blockwise-quantised state, as
bitsandbytes' and torchao's 8-bit optimizers keep it: uint8 codes into a dynamic
quantisation map and one float32 scale per block of 256 elements, stored beside
the codes as ``<slot>_absmax`` (:mod:`gradstep._core.blockwise8`). It is valid for
slots that start from a constant (moments, momenta, accumulators: the Adam family,
Lion, momentum SGD, RMSprop, Adagrad, ...) of elementwise stages; a slot that
starts as a copy of the parameter (a previous or averaged parameter) refuses it
with a ``ValueError``, as do rules whose state is not elementwise slots (Adafactor's
factored moments, global reductions such as Prodigy's). The eager engine
(NumPy, torch, JAX arrays), the JAX engine (under ``jax.jit``), the numba engine and
the Triton engine (CUDA tensors) run it, the fused engines with the same codes.
``min_8bit_size`` (default 4096, bitsandbytes' option and default): a tensor of
fewer elements keeps its 8-bit slots in float32 (float64 for float64 parameters),
with an empty scale array; offered beside ``state_dtype`` by every registered
optimizer, refused (``ValueError``) with a value other than the default where no
slot is 8-bit.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .blockwise8 import MIN_8BIT_SIZE
from .rounding import ROUNDING_OPTIONS, ROUNDING_RANGES, ParameterStore, with_rounding
from .transform import Transform, map_transform, shallow_copy, walk
from .validate import Constraint, Interval, as_number, check, refuse_ignored, remember_recipe

#: the dtypes a slot can be stored in (blockwise8: :mod:`gradstep._core.blockwise8`)
STORAGE_DTYPES = ("float16", "bfloat16", "float32", "float64", "blockwise8")
#: other names of storage dtypes (given as strings)
ALIASES = {"int8": "blockwise8"}
#: the 16-bit ones, whose arithmetic runs in float32
HALF_DTYPES = ("float16", "bfloat16")

#: optax's names for the dtype of one slot, by registry name: ``{option: slot}``
OPTAX_OPTIONS: dict[str, dict[str, str]] = {
    "adam": {"mu_dtype": "mu"},
    "adamw": {"mu_dtype": "mu"},
    "nadam": {"mu_dtype": "mu"},
    "lion": {"mu_dtype": "mu"},
    "momentum": {"accumulator_dtype": "velocity"},
    "nesterov_momentum": {"accumulator_dtype": "velocity"},
}


#: the valid values of ``min_8bit_size``: a number of elements
MIN_8BIT_RANGE = Interval(0, None, integer=True)

#: the keyword-only arguments :func:`with_precision_option` adds
PRECISION_OPTIONS = frozenset({"state_dtype", "min_8bit_size", *ROUNDING_OPTIONS}).union(
    *OPTAX_OPTIONS.values()
)


def dtype_name(value: Any) -> str:
    """The storage dtype's name for ``value`` (a name, or a NumPy/torch/JAX dtype);
    ``ValueError`` for anything else."""
    name = None
    if isinstance(value, str):
        # an alias by name only: torch.int8 or np.int8 is not 8-bit blockwise state
        name = ALIASES.get(value, value.removeprefix("torch."))
    elif type(value).__module__ == "torch":  # torch.dtype, without importing torch
        name = str(value).removeprefix("torch.")
    else:
        try:
            import numpy as np

            name = np.dtype(value).name
        except TypeError:
            name = None
    if name not in STORAGE_DTYPES:
        raise ValueError(
            f"invalid state dtype {value!r}; valid values: {', '.join(STORAGE_DTYPES)}"
            f" (or {', '.join(ALIASES)})"
        )
    return name


def is_storage_dtype(value: Any) -> bool:
    try:
        dtype_name(value)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class StateDtype(Constraint):
    """``None`` (each slot in its parameter's dtype), one storage dtype for every slot,
    or a mapping ``{slot name: storage dtype}``."""

    per_slot: bool = True

    def contains(self, value: Any) -> bool:
        if value is None:
            return True
        if self.per_slot and isinstance(value, Mapping):
            return all(isinstance(k, str) and is_storage_dtype(v) for k, v in value.items())
        return is_storage_dtype(value)

    def describe(self) -> str:
        one = f"None or a dtype ({', '.join(STORAGE_DTYPES)})"
        return one + (" or a mapping {slot name: dtype}" if self.per_slot else "")

    def invalid_example(self) -> Any:
        return "complex64"


def _stateful_elsewhere(t: Transform) -> bool:
    """``t`` keeps per-element state outside the slots of the elementwise protocol."""
    from .elementwise import Elementwise

    if isinstance(t, Elementwise):
        return type(t).init is not Elementwise.init
    import numpy as np

    from . import tree as _tree

    if t.children():
        # a wrapper's own entries (sharpness-aware's cached gradient) are not slots;
        # its children's entries are checked when the walk visits them
        keys = t.child_state_keys()
        if None in keys:
            return False
        try:
            state = t.init(np.zeros(2, np.float32))
        except Exception:  # a wrapper that cannot say: its children speak for it
            return False
        if not isinstance(state, Mapping):
            return False
        own = [v for k, v in state.items() if k not in keys]
        return any(getattr(leaf, "ndim", 0) > 0 for leaf in _tree.leaves(own))
    try:
        state = t.init(np.zeros(2, np.float32))
    except Exception:  # a transform that cannot say: assume it keeps state
        return True
    return any(getattr(leaf, "ndim", 0) > 0 for leaf in _tree.leaves(state))


def with_state_dtype(
    transform: Transform,
    state_dtype: Any,
    owner: str = "state_dtype",
    min_8bit_size: Any = MIN_8BIT_SIZE,
) -> Transform:
    """``transform`` with its slots stored in ``state_dtype``: one dtype for every slot
    or ``{slot name: dtype}`` (a name stands for the slots of that name in every
    stage); its 8-bit slots quantise tensors of ``min_8bit_size`` elements or more
    (smaller ones keep float32). ``None`` returns ``transform`` itself.

    Raises ``ValueError`` for a slot name the transform does not have, for a
    transform that keeps per-element state outside the elementwise slots (which this
    option could not reach: it would be accepted and ignored), for an invalid
    ``min_8bit_size`` and for one other than the default without an 8-bit slot.
    """
    from .elementwise import Elementwise

    check(owner, "min_8bit_size", min_8bit_size, MIN_8BIT_RANGE)
    min_8bit_size = int(min_8bit_size)
    if state_dtype is None:
        _check_min_8bit_size_used(transform, min_8bit_size, owner)
        return transform
    if not StateDtype().contains(state_dtype):
        raise ValueError(
            f"{owner}: invalid state_dtype={state_dtype!r}; valid values: {StateDtype().describe()}"
        )
    wanted: dict | None = None  # per slot name
    everything: str | None = None  # for every slot
    if isinstance(state_dtype, Mapping):
        wanted = {name: dtype_name(v) for name, v in state_dtype.items()}
    else:
        everything = dtype_name(state_dtype)
    slots: set[str] = set()
    for visit in walk(transform):
        t = visit.transform
        if _stateful_elsewhere(t):
            raise ValueError(
                f"{owner}: invalid state_dtype={state_dtype!r} for {transform!r}: its stage "
                f"{getattr(t, 'name', type(t).__name__)!r} keeps state outside elementwise "
                "slots; valid values: None"
            )
        if isinstance(t, Elementwise):
            slots.update(s.name for s in t.slots)
    if wanted is not None:
        unknown = sorted(set(wanted) - slots)
        if unknown:
            raise ValueError(
                f"{owner}: invalid state_dtype={state_dtype!r}: no slot named {unknown[0]!r}; "
                f"valid slot names: {', '.join(sorted(slots)) or 'none (it keeps no state)'}"
            )

    def store(t: Transform) -> Transform:
        if not isinstance(t, Elementwise) or not t.slots or isinstance(t, ParameterStore):
            return t  # (a Kahan compensation is kept in its parameter's dtype)
        new = tuple(_stored(s, _chosen(s, wanted, everything), min_8bit_size) for s in t.slots)
        _check_blockwise8(t, new, state_dtype, owner)
        if new == t.slots:
            return t
        clone = shallow_copy(t)
        clone.slots = new
        return clone

    out = map_transform(store, transform)
    _check_folded_slots(out, state_dtype, owner)
    _check_min_8bit_size_used(out, min_8bit_size, owner)
    return out


def _check_folded_slots(transform: Transform, state_dtype: Any, owner: str) -> None:
    """A slot that a wrapper folds values into outside the element functions
    (``Transform.folds_slots``) cannot be 8-bit: the wrapper would read codes as
    numbers."""
    for visit in walk(transform):
        folded = sorted(visit.transform.folds_slots)
        if folded:
            dtypes = slot_dtypes(visit.transform)
            for name in folded:
                if dtypes.get(name) == "blockwise8":
                    raise ValueError(
                        f"{owner}: invalid state_dtype={state_dtype!r}: slot {name!r} of "
                        f"{visit.transform.name!r} is updated outside its element function, "
                        "which 8-bit blocks cannot take; valid values for it: float16, "
                        "bfloat16, float32, float64"
                    )


def _stored(slot: Any, dtype: str | None, min_8bit_size: int) -> Any:
    """``slot`` stored in ``dtype`` (an 8-bit one with ``min_8bit_size``)."""
    if dtype == "blockwise8":
        return dataclasses.replace(slot, dtype=dtype, min_8bit_size=min_8bit_size)
    return dataclasses.replace(slot, dtype=dtype)


def _check_min_8bit_size_used(transform: Transform, min_8bit_size: int, owner: str) -> None:
    """``min_8bit_size`` other than the default is refused where no slot is 8-bit (it
    would be accepted and ignored)."""
    if min_8bit_size != MIN_8BIT_SIZE and "blockwise8" not in slot_dtypes(transform).values():
        raise ValueError(
            f"{owner}: invalid min_8bit_size={min_8bit_size!r} without 8-bit state; valid "
            f"values: {MIN_8BIT_SIZE} (the default) unless state_dtype holds a slot in "
            "'int8' (blockwise8)"
        )


def _check_blockwise8(t: Transform, slots: tuple, state_dtype: Any, owner: str) -> None:
    """8-bit blocks hold moments and accumulators, not a copy of the parameter (a
    previous or averaged parameter: 8 bits relative to a block's largest would lose
    it). Stages that keep their own state (global reductions) never get here."""
    for slot in slots:
        if slot.dtype == "blockwise8" and slot.fill == "params":
            raise ValueError(
                f"{owner}: invalid state_dtype={state_dtype!r}: slot {slot.name!r} of "
                f"{getattr(t, 'name', type(t).__name__)!r} starts as a copy of the "
                "parameter, which 8-bit blocks cannot hold; valid values for it: float16, "
                "bfloat16, float32, float64"
            )


def _chosen(slot: Any, wanted: dict | None, everything: str | None) -> str | None:
    return everything if wanted is None else wanted.get(slot.name, slot.dtype)


def slot_dtypes(transform: Transform) -> dict[str, str | None]:
    """``{slot name: storage dtype or None}`` of every elementwise slot of ``transform``."""
    from .elementwise import Elementwise

    out: dict[str, str | None] = {}
    for visit in walk(transform):
        if isinstance(visit.transform, Elementwise):
            for s in visit.transform.slots:
                out.setdefault(s.name, s.dtype)
    return out


# -- the option on every registered optimizer ------------------------------------------


#: options that only say how weight decay is applied (coupled, decoupled, ...): with
#: ``weight_decay=0`` they change nothing, unless the transform keeps a stage whose
#: weight decay a step may set (by name), which the option may place
WEIGHT_DECAY_OPTIONS = (
    "decoupled_weight_decay",
    "decouple",
    "weight_decay_mode",
    "decay_in_compensation",
)


def _sets_weight_decay(transform: Transform) -> bool:
    """Whether a stage of ``transform`` holds a ``weight_decay`` a step may set."""
    return any(
        "weight_decay" in (getattr(v.transform, "hyperparams", None) or {}) for v in walk(transform)
    )


def _check_weight_decay_options(
    factory: Callable, result: Transform, owner: str, args: tuple, kwargs: dict
) -> None:
    """Refuse a weight-decay option given (other than its default) with
    ``weight_decay=0`` where ``result`` keeps no weight decay a step could set:
    accepted, it would be ignored (nadam's and adagrad's rule, for every registered
    optimizer). A rule that keeps one (a step's ``weight_decay=...``) decides itself
    whether the option places it."""
    sig = inspect.signature(factory)
    if "weight_decay" not in sig.parameters:
        return
    given = sig.bind(*args, **kwargs).arguments
    decay = as_number(given.get("weight_decay", sig.parameters["weight_decay"].default))
    if callable(decay) or isinstance(decay, bool) or not isinstance(decay, (int, float)):
        return
    if decay != 0 or _sets_weight_decay(result):
        return
    for option in WEIGHT_DECAY_OPTIONS:
        default = sig.parameters[option].default if option in sig.parameters else None
        if option not in given or given[option] == default:
            continue
        refuse_ignored(
            owner,
            option,
            given[option],
            f"with weight_decay={given.get('weight_decay', 0)!r}",
            f"{option} only applies with weight_decay > 0",
        )


def _precise(factory: Callable, precision: dict, *args: Any, **kwargs: Any) -> Transform:
    """``factory(*args, **kwargs)`` with ``precision`` (``{"state_dtype": ...}`` and
    optax-named slot options, already resolved to a ``state_dtype``) applied."""
    result = factory(*args, **kwargs)
    dtype = precision.get("state_dtype")
    stochastic = precision.get("stochastic_rounding", False)
    kahan = precision.get("kahan_summation", False)
    min_8bit_size = precision.get("min_8bit_size", MIN_8BIT_SIZE)
    owner = getattr(factory, "__name__", "state_dtype")
    _check_weight_decay_options(factory, result, owner, args, kwargs)
    if kahan and hasattr(result, "step_with_closure"):
        raise ValueError(
            f"{owner}: invalid kahan_summation=True for {result!r}: it steps with a closure "
            "and moves the parameters itself, which a compensated parameter update cannot "
            "follow; valid values: False"
        )
    if dtype is None and not (stochastic or kahan):
        _check_min_8bit_size_used(result, min_8bit_size, owner)
        return result
    out = with_state_dtype(result, dtype, owner=owner, min_8bit_size=min_8bit_size)
    if dtype is not None and not slot_dtypes(out):
        refuse_ignored(owner, "state_dtype", dtype, f"for {result!r}, which keeps no state", "None")
    seed = precision.get("rounding_seed", 0)
    out = with_rounding(out, stochastic, seed, kahan, owner=owner)
    out.declared_ranges = getattr(result, "declared_ranges", {})
    remember_recipe(out, functools.partial(_precise, factory, precision), args, kwargs)
    return out


def with_precision_option(factory: Callable, name: str) -> Callable:
    """``factory`` (a registered optimizer's) also taking the keyword-only
    ``state_dtype``, ``min_8bit_size``, the rounding options and the optax-named
    options of :data:`OPTAX_OPTIONS` for ``name``.
    """
    if getattr(factory, "_precision_option", False):
        return factory
    sig = inspect.signature(factory)
    if "state_dtype" in sig.parameters:
        return factory
    aliases = {k: v for k, v in OPTAX_OPTIONS.get(name, {}).items() if k not in sig.parameters}
    owner = getattr(factory, "__name__", name)

    @functools.wraps(factory)
    def precise(
        *args: Any,
        state_dtype: Any = None,
        min_8bit_size: int = MIN_8BIT_SIZE,
        stochastic_rounding: bool = False,
        rounding_seed: int = 0,
        kahan_summation: bool = False,
        **kwargs: Any,
    ) -> Any:
        per_slot = {option: kwargs.pop(option) for option in list(aliases) if option in kwargs}
        rounding_seed, min_8bit_size = as_number(rounding_seed), as_number(min_8bit_size)
        rounding = dict(
            stochastic_rounding=stochastic_rounding,
            rounding_seed=rounding_seed,
            kahan_summation=kahan_summation,
        )
        for option, value in rounding.items():
            if not ROUNDING_RANGES[option].contains(value):
                raise ValueError(
                    f"{owner}: invalid {option}={value!r}; valid values: "
                    f"{ROUNDING_RANGES[option].describe()}"
                )
        rounding["rounding_seed"] = int(rounding_seed)
        if rounding["rounding_seed"] != 0 and not stochastic_rounding:
            refuse_ignored(
                owner,
                "rounding_seed",
                rounding_seed,
                "without stochastic_rounding=True",
                "0 (the default) unless stochastic_rounding=True",
            )
        check(owner, "min_8bit_size", min_8bit_size, MIN_8BIT_RANGE)
        rounding["min_8bit_size"] = int(min_8bit_size)
        constraint = StateDtype()
        if not constraint.contains(state_dtype):
            raise ValueError(
                f"{owner}: invalid state_dtype={state_dtype!r}; valid values: "
                f"{constraint.describe()}"
            )
        for option, value in per_slot.items():
            if not StateDtype(per_slot=False).contains(value):
                raise ValueError(
                    f"{owner}: invalid {option}={value!r}; valid values: "
                    f"{StateDtype(per_slot=False).describe()}"
                )
        chosen = {aliases[o]: v for o, v in per_slot.items() if v is not None}
        if chosen:
            if isinstance(state_dtype, Mapping):
                state_dtype = {**state_dtype, **chosen}
            elif state_dtype is None:
                state_dtype = chosen
            else:
                raise ValueError(f"{owner}: give state_dtype or {', '.join(per_slot)}, not both")
        return _precise(factory, {"state_dtype": state_dtype, **rounding}, *args, **kwargs)

    keyword = inspect.Parameter.KEYWORD_ONLY
    params = list(sig.parameters.values())
    extra = [inspect.Parameter("state_dtype", keyword, default=None)]
    extra += [inspect.Parameter("min_8bit_size", keyword, default=MIN_8BIT_SIZE)]
    extra += [
        inspect.Parameter(o, keyword, default=0 if o == "rounding_seed" else False)
        for o in ROUNDING_OPTIONS
    ]
    extra += [inspect.Parameter(a, keyword, default=None) for a in aliases]
    variadic = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    params = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    precise.__signature__ = sig.replace(parameters=params + extra + variadic)
    precise.declared_ranges = {
        **getattr(factory, "declared_ranges", {}),
        "state_dtype": StateDtype(),
        "min_8bit_size": MIN_8BIT_RANGE,
        **ROUNDING_RANGES,
        **{a: StateDtype(per_slot=False) for a in aliases},
    }
    precise._precision_option = True
    return precise
