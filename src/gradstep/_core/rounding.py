"""Stochastic rounding and Kahan-compensated parameter stores: options of every rule.

Two storage options for training in bfloat16, offered by every registered optimizer
beside ``state_dtype`` (:mod:`gradstep._core.precision`):

- ``stochastic_rounding=True`` (with ``rounding_seed``): every value stored in
  **bfloat16**, a slot or the parameter itself, is rounded *stochastically*: the
  float32 value :math:`x` becomes one of its two bfloat16 neighbours, the one away
  from zero with probability (distance to the one towards zero) / (their spacing),
  so :math:`E[\\mathrm{sr}(x)] = x`. As torchao's ``bf16_stochastic_round``: 16
  uniform random bits :math:`r` are added below the bfloat16 mantissa of float32's
  bit pattern :math:`b`, then truncated, :math:`\\mathrm{sr}(x) = (b + r) \\gg 16`.
  Other storage dtypes round to the nearest as before.
- ``kahan_summation=True``: the parameter update is compensated (Kahan) with one
  extra slot ``compensation`` per parameter, stored in the parameter's dtype:
  :math:`y = u + c`, :math:`w' = \\mathrm{round}(w + y)`, :math:`c' = y - (w' - w)`,
  so what rounding drops from one step is added to the next (optimi's
  ``kahan_sum``). Meant for 16-bit parameters; float32 ones are compensated too.

**The random stream** is a counter-based hash, not a stateful generator: the bits
of element :math:`i` of tensor :math:`t` of slot :math:`s` at step :math:`k` are
:math:`h(\\mathit{key} \\oplus h(i))` with
:math:`\\mathit{key} = h(h(h(h(s) \\oplus \\mathit{seed}) \\oplus k) \\oplus t)`, where
:math:`h` is the 32-bit integer hash "lowbias32" (Wellons) and :math:`s` the
CRC-32 of the slot's name (``"params"`` for the parameters), :math:`k` the step
count of the stage that stores the value (mod :math:`2^{32}`), :math:`t` the
index of the parameter leaf; the top 16 bits are :math:`r`. The rounding therefore
does not depend on chunking, threads or engine (every engine computes the same
bits: NumPy here, the numba and Triton kernels, torch and JAX), and a run resumed
from a checkpoint (which holds the counts) rounds as the uninterrupted one.

Symbols: ``rounding_seed`` :math:`\\mathit{seed}` (an integer in
:math:`[0, 2^{32})`, default 0); both options default to False.

References: Gupta et al. (2015): Deep Learning with Limited Numerical Precision,
ICML; Zamirai et al. (2020): Revisiting BFloat16 Training, arXiv:2010.06192;
Kahan (1965): Further remarks on reducing truncation errors, CACM 8(1).

Differences: torchao draws its 16 bits from torch's global generator
(``torch.randint``), so its rounding is not reproducible across chunkings or
resumes; gradstep's hash is (same distribution, other bits). optimi keeps its
Kahan compensation in the parameter's dtype, as here. Masked stages
(:func:`gradstep.masked`) with stochastically rounded slots run on the eager engine.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np

from .elementwise import Elementwise, Slot
from .namespaces import namespace_of
from .transform import Chain, Transform, map_transform, shallow_copy, walk
from .validate import BOOL, Interval

#: the options :func:`with_rounding_options` adds to every registered factory
ROUNDING_OPTIONS = ("stochastic_rounding", "rounding_seed", "kahan_summation")
ROUNDING_RANGES = {
    "stochastic_rounding": BOOL,
    "rounding_seed": Interval(0, 2**32 - 1, integer=True),
    "kahan_summation": BOOL,
}

_M32 = 0xFFFFFFFF
MIX1, MIX2 = 0x7FEB352D, 0x846CA68B  # lowbias32's multipliers


def slot_id(name: str) -> int:
    """The stream's identifier of a slot (``"params"``: the parameters)."""
    return zlib.crc32(name.encode())


def mix32(x: Any) -> Any:
    """lowbias32 on uint32 NumPy values (wrapping multiplication)."""
    x = np.asarray(x, np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(MIX1)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(MIX2)
        return x ^ (x >> np.uint32(16))


def stream_keys(seed: int, count: int, tensors: Any, slot: int) -> np.ndarray:
    """The stream's key of each tensor index in ``tensors`` (uint32)."""
    head = mix32(mix32(mix32(slot) ^ np.uint32(seed)) ^ np.uint32(int(count) & _M32))
    return mix32(head ^ np.asarray(tensors, np.uint32))


def random_bits(key: Any, n: int, start: int = 0) -> np.ndarray:
    """The 32 random bits of elements ``start .. start + n - 1`` under ``key``."""
    index = np.arange(start, start + n, dtype=np.uint32)
    return mix32(np.uint32(key) ^ mix32(index))


def round_bf16_stochastic(x: Any, bits: Any) -> np.ndarray:
    """float32 ``x`` rounded stochastically to bfloat16 with the random ``bits`` (their
    top 16 used); NaN stays NaN (as rounding to the nearest)."""
    from .namespaces import numpy_dtype

    x = np.ascontiguousarray(x, np.float32)
    b = x.view(np.uint32)
    with np.errstate(over="ignore"):
        rounded = ((b + (np.asarray(bits, np.uint32) >> np.uint32(16))) >> np.uint32(16)).astype(
            np.uint16
        )
    out = rounded.view(numpy_dtype("bfloat16"))
    nan = np.isnan(x)
    if nan.any():
        out = np.where(nan, x.astype(numpy_dtype("bfloat16")), out)
    return out.reshape(x.shape)


def is_bfloat16(x: Any) -> bool:
    return str(getattr(x, "dtype", "")).removeprefix("torch.") == "bfloat16"


def stored_stochastically(value: Any, like: Any, key: int) -> Any:
    """``value`` in ``like``'s dtype: stochastically rounded when that is bfloat16
    (the stream of ``key``), else to the nearest."""
    ns = namespace_of(like)
    if not is_bfloat16(like):
        return ns.stored_like(value, like)
    rounder = getattr(ns, "stored_bf16_stochastic", None)
    if rounder is None:
        raise ValueError(f"stochastic rounding is not available for {ns.name} arrays")
    return rounder(value, key)


# -- the parameter store: the last stage of a chain with these options ------------------


def _compensated(g, w, c):
    # the stage's declared signature (update, parameter, compensation); the engines
    # implement the store itself (ParameterStore.update, the kernels' generators)
    return g, c


class ParameterStore(Elementwise):
    """The stage that stores the new parameter: stochastically rounded (bfloat16
    parameters, ``seed`` not None) and/or Kahan-compensated (slot ``compensation``).

    Its update is the change of the parameter, :math:`\\mathrm{round}(w + y) - w`,
    in the math dtype (float32 for 16-bit parameters, whatever the gradient's dtype:
    rounded to 16 bits it would lose the rounding it carries); a front, or
    ``apply_updates``, that adds it to :math:`w` gets the rounded value back
    (exactly, except where an update cancels a weight to within :math:`2^{-16}` of
    it). The fused engines store :math:`\\mathrm{round}(w + y)`
    directly.
    """

    def __init__(self, seed: int | None, kahan: bool, rounds_slots: bool = False):
        slots = (Slot("compensation", 0.0),) if kahan else ()
        super().__init__(
            "parameter_store",
            _compensated if kahan else _plain,
            slots=slots,
            uses_params=True,
            uses_count=True,
        )
        self.seed = seed
        self.kahan = kahan
        self.rounds_slots = rounds_slots  # some slot is stored in bfloat16

    def _rebuilt(self, name, element, args):
        return ParameterStore(self.seed, self.kahan, self.rounds_slots)

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        from . import tree as _tree

        if params is None:
            raise ValueError(f"{self.name}: this transform needs params in update()")
        g_leaves, td = _tree.flatten(grads)
        w_leaves = _tree.leaves_like(td, params)
        c_leaves = _tree.leaves_like(td, state["compensation"]) if self.kahan else None
        count = int(state["count"])
        keys = None
        if self.seed is not None:
            keys = stream_keys(self.seed, count, np.arange(len(g_leaves)), slot_id("params"))
        if self.seed is not None and not self.rounds_slots:
            check_rounds_something([str(getattr(w, "dtype", "")) for w in w_leaves])
        updates, compensation = [], []
        for i, (g, w) in enumerate(zip(g_leaves, w_leaves)):
            ns = namespace_of(g)
            if not self.kahan and not (keys is not None and is_bfloat16(w)):
                updates.append(g)  # nothing to round here but the front's one rounding
                continue
            u, w_wide = ns.widened(g), ns.widened(w)
            y = u + ns.widened(c_leaves[i]) if self.kahan else u
            target = w_wide + y
            if keys is not None and is_bfloat16(w):
                rounded = stored_stochastically(target, w, int(keys[i]))
            else:
                rounded = ns.stored_like(target, w)
            change = ns.widened(rounded) - w_wide
            if self.kahan:
                compensation.append(ns.stored_like(ns.wrap(y - change), c_leaves[i]))
            updates.append(ns.wrap(change))
        new_state = {"count": np.asarray(count + 1, dtype=np.int64)}
        if self.kahan:
            new_state["compensation"] = _tree.unflatten(td, compensation)
        return _tree.unflatten(td, updates), new_state


def check_rounds_something(param_dtypes: list[str]) -> None:
    """``ValueError`` unless some parameter is bfloat16 (called when no slot is
    stored in bfloat16: stochastic rounding would be accepted and do nothing)."""
    names = {d.removeprefix("torch.") for d in param_dtypes}
    if "bfloat16" not in names:
        raise ValueError(
            "stochastic_rounding=True rounds values stored in bfloat16; the parameters "
            f"are {', '.join(sorted(names))} and no slot is stored in bfloat16 (give "
            "state_dtype='bfloat16'); valid values: False"
        )


def _plain(g, w):
    return g


def _marked(t: Transform, seed: int) -> Transform:
    if not isinstance(t, Elementwise) or not t.slots:
        return t
    clone = shallow_copy(t)
    clone.slots = tuple(dataclasses.replace(s, stochastic_seed=seed) for s in t.slots)
    clone.counted = True  # the stream is keyed by the step count
    return clone


def with_rounding(
    transform: Transform, stochastic: bool, seed: int, kahan: bool, owner: str = ""
) -> Transform:
    """``transform`` with its bfloat16 stores rounded stochastically (``stochastic``)
    and/or its parameter update Kahan-compensated (``kahan``)."""
    if not (stochastic or kahan):
        return transform
    if any(isinstance(v.transform, ParameterStore) for v in walk(transform)):
        raise ValueError(
            f"{owner}: {transform!r} already has its storage options (stochastic_rounding, "
            "kahan_summation); give them once"
        )
    rounds_slots = False
    if stochastic:
        from .precision import _stateful_elsewhere

        for visit in walk(transform):
            t = visit.transform
            if _stateful_elsewhere(t):
                raise ValueError(
                    f"{owner}: invalid stochastic_rounding=True for {transform!r}: its stage "
                    f"{getattr(t, 'name', type(t).__name__)!r} keeps state outside "
                    "elementwise slots; valid values: False"
                )
            if isinstance(t, Elementwise):
                rounds_slots |= any(s.dtype == "bfloat16" for s in t.slots)
        transform = map_transform(lambda t: _marked(t, seed), transform)
    store = ParameterStore(seed if stochastic else None, kahan, rounds_slots)
    if type(transform) is Chain:
        return Chain(transform.stages + (store,), transform.name)
    return Chain((transform, store))
