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
    lookups_apart: bool = False,
) -> list[str]:
    """The loop over a chunk's blocks, for a kernel storing the 8-bit slots ``eight``
    (``access``: the kernel's rows, :class:`~gradstep.engines.fused_codegen._Rows`;
    ``render``: one step's lines; ``hashed``: with the element's hashed index for
    stochastic rounding; ``lookups_apart``: the second form below).

    The loop quantises each block while it steps the next: one loop over a block's
    elements finds the codes of the block before it (from its new values, kept in a
    buffer, times the reciprocal of its new scale), dequantises the block's own codes
    (table lookups: gathers), runs the element steps and keeps the running largest
    magnitude of each new slot value (of the float32 bits, so a NaN wins as ``max``
    lets it). The quantising is integer work and the element steps wait for memory
    and the divider, so the processor overlaps them. Every row the steps write (the
    parameter, slots that are not 8-bit) goes to a block buffer, copied out after
    the loop with the codes of the block before, and every buffer is on the stack
    (:func:`~gradstep.engines._scalar_ops.block_buffer`): a loop that writes no
    row vectorises with no checks of overlap, which the compiler cannot make for
    table lookups against the raw addresses of the rows.

    Where the compiler does not gather (:mod:`~gradstep.engines._gather_tuning`), a
    lookup keeps the whole loop scalar, so the block's lookups run in loops of
    their own: the map values of its codes first, then the arithmetic (the element
    steps and the keys of the block before, :func:`~gradstep.engines._scalar_ops.q8_key`),
    then the codes of those keys.

    The first block (nothing before it), the last (its successor's turn never
    comes) and a short one are quantised in loops of their own, as are all blocks
    of a kernel with running float64 sums (whose loop does not vectorise). Each
    block first asks for the rows of the block :data:`PREFETCH_BLOCKS` ahead (one
    prefetch per cache line), which arrive while it computes."""
    slots = [(s.stage.index, s.slot, s.stage.stage.slots[s.slot].nonnegative) for s in eight]
    names = [f"{k}_{i}" for k, i, _ in slots]
    stages = {st.index: st for st in _stages_of(steps)}
    rows = sorted({(k, i) for k, st in stages.items() for i in range(len(st.slot_rows))})
    stored = _stored_rows(steps, access)  # (view, row, mask)
    src = []
    for s in names:
        src += [f"        buf{ab}{s} = block_buffer(z_float32)" for ab in "AB"]
        if lookups_apart:  # the block's map values, the block before's keys
            src += [f"        d{s} = block_buffer(z_float32)", f"        k{s} = block_buffer(KEY0)"]
        src += [f"        qc{s} = block_buffer(z_blockwise8)", f"        pinv{s} = np.float32(1)"]
    src += [f"        {v}o = block_buffer(z_{access.view_dtype(r)})" for v, r, _ in stored]
    src += [
        "        pm = 0",
        "        pstart = 0",
        f"        nb = (n + {BLOCK - 1}) // {BLOCK}",
        "        for blk in range(nb + 1):",
        f"            start = blk * {BLOCK}",
        f"            stop = min(start + {BLOCK}, n)",
        "            m = stop - start",
        "            odd = blk & 1",
    ]
    for s in names:
        src += [
            f"            buf{s} = bufB{s} if odd else bufA{s}",
            f"            pbuf{s} = bufA{s} if odd else bufB{s}",
        ]
    src += ["            if blk < nb:"]
    views = [("g", 0), ("w", 1)] + [(f"a{k}_{i}", stages[k].slot_rows[i]) for k, i in rows]
    pad = "    "
    src += [pad + line for line in _prefetches(views, access)]
    src += ["                gb = g[start:stop]", "                wb = w[start:stop]"]
    src += [f"                a{k}_{i}b = a{k}_{i}[start:stop]" for k, i in rows]
    src += [f"                scale{s} = b{s}[blk]" for s in names]
    src += [f"                top{s} = np.uint32(0)" for s in names]
    elements = _element_lines(steps, slots, stored, access, hashed, render)
    tables = ["Q8U" if nonnegative else "Q8S" for _, _, nonnegative in slots]
    quantise = [f"q8_code(pbuf{s}[i] * pinv{s}, {t}_CODES)" for s, t in zip(names, tables)]
    fused = not _sums(steps)
    if fused and not lookups_apart:  # the block before is whole (only the last may be short)
        src += [f"                if blk > 0 and m == {BLOCK}:"]
        src += ["                    for i in range(m):"]
        src += [f"                        qc{s}[i] = {q}" for s, q in zip(names, quantise)]
        src += ["                        " + line for line in elements]
        src += ["                else:"]
    elif fused:  # the same, with the table lookups in loops of their own
        looked_up = _element_lines(steps, slots, stored, access, hashed, render, True)
        src += [f"                if blk > 0 and m == {BLOCK}:"]
        src += ["                    for i in range(m):"]
        src += [f"                        d{s}[i] = {t}[a{s}b[i]]" for s, t in zip(names, tables)]
        src += ["                    for i in range(m):"]
        src += [f"                        k{s}[i] = q8_key(pbuf{s}[i] * pinv{s})" for s in names]
        src += ["                        " + line for line in looked_up]
        for s, t in zip(names, tables):  # one loop per slot: fewer live registers
            src += ["                    for i in range(m):"]
            src += [f"                        qc{s}[i] = q8_code_of_key(k{s}[i], {t}_CODES)"]
        src += ["                else:"]
    body = ["if blk > 0:"]
    for s, q in zip(names, quantise):  # one loop per slot: fewer live vectors
        body += ["    for i in range(pm):", f"        qc{s}[i] = {q}"]
    body += ["for i in range(m):"] + ["    " + line for line in elements]
    src += [("    " if fused else "") + "                " + line for line in body]
    for mask in sorted({mask for _, _, mask in stored}, key=str):
        # a masked stage's rows only for the tensors it covers (the others' may be
        # no array at all), all of whose elements it then writes
        pad = "                " if mask is None else "                    "
        src += [] if mask is None else [f"                if m{mask}:"]
        src += [pad + "for i in range(m):"]
        src += [f"{pad}    {v}b[i] = {v}o[i]" for v, _, by in stored if by == mask]
    for s in names:
        src += [
            f"                scale{s} = np.maximum(bits_float(top{s}), MIN_SCALE)",
            f"                b{s}[blk] = scale{s}",
        ]
    src += ["            else:"]
    for s, q in zip(names, quantise):
        src += ["                for i in range(pm):", f"                    qc{s}[i] = {q}"]
    src += ["            if blk > 0:"]
    src += [f"                pa{s} = a{s}[pstart : pstart + pm]" for s in names]
    src += ["                for i in range(pm):"]
    src += [f"                    pa{s}[i] = qc{s}[i]" for s in names]
    src += [f"            pinv{s} = np.float32(1) / scale{s}" for s in names]
    src += ["            pstart = start", "            pm = m"]
    return src


def _element_lines(steps, slots, stored, access, hashed, render, looked_up=False) -> list[str]:
    """The body of the loop over a block's elements (the element ``i``): each 8-bit
    slot's value dequantised into ``new{stage}_{slot}`` (its value for the steps, and
    its new value once a step stores it; ``looked_up``: its map value read from the
    block's buffer ``d{stage}_{slot}``, not from the map), the steps, then each new
    value into the block's buffer and its magnitude into the block's largest."""
    src = [f"x = {access.load(0, 'gb[i]')}", f"wi = {access.load(1, 'wb[i]')}"]
    if hashed:
        src.append("hi = mix32(np.uint32(off + start + i))")
    for k, i, nonnegative in slots:
        table = "Q8U" if nonnegative else "Q8S"
        value = f"d{k}_{i}[i]" if looked_up else f"{table}[a{k}_{i}b[i]]"
        src.append(f"new{k}_{i} = {value} * scale{k}_{i}")
    src += [line for step in steps for line in render(step, access)]
    src += [f"buf{k}_{i}[i] = new{k}_{i}" for k, i, _ in slots]
    src += [f"top{k}_{i} = max_u32(top{k}_{i}, magnitude_bits(new{k}_{i}))" for k, i, _ in slots]
    return src


def _stored_rows(steps: list, access: Any, mask: int | None = None) -> list:
    """``(view, row, mask)`` of each row ``steps`` write other than 8-bit codes: the
    parameter and slots that are not 8-bit (``mask``: the masked stage that writes it
    for the tensors it covers, or None)."""
    out = []
    for step in steps:
        if isinstance(step, kp.IfCovered):
            out += _stored_rows(list(step.steps), access, step.stage)
        elif isinstance(step, kp.StoreParam):
            out.append(("w", 1, mask))
        elif isinstance(step, kp.StoreSlot) and not access.quantised(step.stage, step.slot):
            k, i = step.stage.index, step.slot
            out.append((f"a{k}_{i}", step.stage.slot_rows[i], mask))
    return out


def _sums(steps: list) -> bool:
    """Whether ``steps`` add to a chunk's running totals."""
    return any(
        _sums(list(s.steps)) if isinstance(s, kp.IfCovered) else isinstance(s, kp.Accumulate)
        for s in steps
    )


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
