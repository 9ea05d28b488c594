"""The fused kernels' loop over a chunk's blocks, for kernels storing 8-bit slots.

An 8-bit slot (:mod:`gradstep._core.blockwise8`) is stored block by block: a block's
new values are kept in a small buffer until its new scale is known, then quantised.
:func:`block_loop` renders that loop as numba Python for
:mod:`gradstep.engines.fused_codegen`, which renders the element steps themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._core.blockwise8 import BLOCK
from . import kernel_plan as kp
from .plan import Stage

#: blocks ahead whose rows are prefetched while a block is worked on
PREFETCH_BLOCKS = 1
#: bytes of one cache line (one prefetch each)
LINE = 64


def block_loop(
    steps: list,
    eight: list[kp.StoreSlot],
    access: Any,
    hashed: bool,
    render: Callable[[Any, Any], list[str]],
) -> list[str]:
    """The loop over a chunk's blocks, for a kernel storing the 8-bit slots ``eight``
    (``access``: the kernel's rows, :class:`~gradstep.engines.fused_codegen._Rows`;
    ``render``: one step's lines; ``hashed``: with the element's hashed index for
    stochastic rounding).

    Each block runs short loops that numba vectorises (at the full vector width:
    :func:`~gradstep.engines._scalar_ops.prefer_wide_vectors`), over every 8-bit slot
    at once: the codes copied in (``q8b{stage}_{slot}``), dequantised into
    ``buf{stage}_{slot}`` (table lookups: gathers), the steps of each element with the
    running largest magnitude of each new slot value (of the float32 bits, so a NaN
    wins as ``max`` lets it), the new codes (one loop per slot), then the codes
    copied out. Tables are read and buffers written in loops that write no
    pointer-table row, so the compiler can tell them apart from the rows (which it
    cannot for raw addresses). Before its loops, a block asks for the rows of the
    block :data:`PREFETCH_BLOCKS` ahead (one prefetch per cache line): the loops of
    a block other than the element steps read no row, so without it the memory
    waits while they run and the element steps then wait for the memory."""
    slots = [(s.stage.index, s.slot, s.stage.stage.slots[s.slot].nonnegative) for s in eight]
    inner = "                "
    src = ["        prefer_wide_vectors()"]  # inside the chunk loop: its outlined body too
    src += [f"        buf{k}_{i} = np.empty({BLOCK}, np.float32)" for k, i, _ in slots]
    src += [f"        q8b{k}_{i} = np.empty({BLOCK}, np.uint8)" for k, i, _ in slots]
    src += [
        f"        for blk in range((n + {BLOCK - 1}) // {BLOCK}):",
        f"            start = blk * {BLOCK}",
        f"            stop = min(start + {BLOCK}, n)",
        "            m = stop - start",
    ]
    stages = {st.index: st for st in _stages_of(steps)}
    rows = sorted({(k, i) for k, st in stages.items() for i in range(len(st.slot_rows))})
    views = [("g", 0), ("w", 1)] + [(f"a{k}_{i}", stages[k].slot_rows[i]) for k, i in rows]
    src += _prefetches(views, access)
    src += ["            gb = g[start:stop]", "            wb = w[start:stop]"]
    src += [f"            a{k}_{i}b = a{k}_{i}[start:stop]" for k, i in rows]
    src += ["            for i in range(m):"]
    src += [f"{inner}q8b{k}_{i}[i] = a{k}_{i}b[i]" for k, i, _ in slots]
    src += [f"            scale{k}_{i} = b{k}_{i}[blk]" for k, i, _ in slots]
    src += ["            for i in range(m):"]
    src += [
        f"{inner}buf{k}_{i}[i] = {'Q8U' if nonnegative else 'Q8S'}[q8b{k}_{i}[i]] * scale{k}_{i}"
        for k, i, nonnegative in slots
    ]
    src += [f"            top{k}_{i} = np.uint32(0)" for k, i, _ in slots]
    src += ["            for i in range(m):"]
    src += [f"{inner}x = {access.load(0, 'gb[i]')}", f"{inner}wi = {access.load(1, 'wb[i]')}"]
    if hashed:
        src.append(f"{inner}hi = mix32(np.uint32(off + start + i))")
    # each slot's new value (its old one where a stage does not cover the tensor), held
    # in a variable for the running largest magnitude: read back from its buffer after
    # other stores, it would be loaded again (the compiler cannot tell the buffers apart)
    src += [f"{inner}new{k}_{i} = buf{k}_{i}[i]" for k, i, _ in slots]
    src += [inner + line for step in steps for line in render(step, access)]
    src += [
        f"{inner}top{k}_{i} = max_u32(top{k}_{i}, magnitude_bits(new{k}_{i}))" for k, i, _ in slots
    ]
    for k, i, _ in slots:
        src += [
            f"            scale{k}_{i} = np.maximum(bits_float(top{k}_{i}), MIN_SCALE)",
            f"            b{k}_{i}[blk] = scale{k}_{i}",
        ]
    for k, i, nonnegative in slots:  # one loop per slot: fewer live vectors
        src += [
            "            for i in range(m):",
            f"{inner}q8b{k}_{i}[i] = q8_code(buf{k}_{i}[i] / scale{k}_{i}, "
            f"{'Q8U' if nonnegative else 'Q8S'}_CODES)",
        ]
    src += ["            for i in range(m):"]
    src += [f"{inner}a{k}_{i}b[i] = q8b{k}_{i}[i]" for k, i, _ in slots]
    return src


def _prefetches(views: list[tuple[str, int]], access: Any) -> list[str]:
    """Lines asking for the cache lines of the chunk's views ``(name, row)`` in the
    block :data:`PREFETCH_BLOCKS` ahead (the chunk's last element where it ends)."""
    src = [f"            ahead = min(start + {PREFETCH_BLOCKS * BLOCK}, n - 1)"]
    by_step: dict[int, list[str]] = {}
    for name, row in views:
        by_step.setdefault(LINE // access.itemsize(row), []).append(name)
    for step, names in sorted(by_step.items()):
        src.append(f"            for line in range(0, {BLOCK}, {step}):")
        src += [f"                prefetch({name}, min(ahead + line, n - 1))" for name in names]
    return src


def _stages_of(steps: list) -> list[Stage]:
    """The stages whose slots ``steps`` load or store."""
    out = []
    for step in steps:
        if isinstance(step, kp.IfCovered):
            out += _stages_of(list(step.steps))
        elif isinstance(step, (kp.LoadSlot, kp.StoreSlot)):
            out.append(step.stage)
    return out
