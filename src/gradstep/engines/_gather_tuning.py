"""Whether this host's compiler vectorises table lookups (gathers): the 8-bit kernels' loop form.

The 8-bit kernels (:mod:`gradstep.engines.fused_blocks`) look codes and their values
up in tables while they step a block. A loop holding a lookup vectorises only if the
compiler emits gathers for it, and LLVM emits them only where its cost model says
they pay: not on Intel processors affected by "Gather Data Sampling" (whose
microcode fix makes gathers slow), not on AMD Zen 1 to 3, not on Arm without SVE.
There a loop with a lookup runs scalar, divisions and square roots included.

:func:`compiler_gathers` asks the compiler (it compiles a small loop of lookups and
reads its assembly). Where it gathers, the kernels keep the lookups in the loop that
steps a block; where it does not, they keep them in loops of their own, so that the
arithmetic vectorises. Measured on a Zen 3 host (8-bit Adam on 20M float32
parameters, medians of the best of 21 steps, docs/precision.md): the lookups apart
took 74-79 ms on one thread and 50-52 ms on two, against 119-143 ms with the
lookups in the loop; forcing gathers there (LLVM's ``fast-gather`` feature) made
the loop 77-81 ms on one thread but 61-62 ms on two, so gradstep leaves LLVM's
choice alone.
"""

from __future__ import annotations

import functools
import re

import numpy as np
from numba import njit

from .._core.blockwise8 import BLOCK
from ._scalar_ops import block_buffer

#: an x86 gather instruction (vgatherdps, vpgatherdd, ...) in assembly text
_GATHER = re.compile(r"^\s+v(p)?gather", re.MULTILINE)


def _lookups(table, codes):  # the probe: one table lookup per element, stack buffers
    values = block_buffer(np.float32(0))
    for i in range(BLOCK):
        values[i] = table[codes[i]]
    return values[BLOCK - 1]


@functools.cache
def compiler_gathers() -> bool:
    """Whether numba's compiler vectorises a loop of table lookups on this host with
    gathers (compiled once per process, on first use)."""
    probe = njit("float32(float32[::1], uint8[::1])", error_model="numpy")(_lookups)
    return any(_GATHER.search(text) for text in probe.inspect_asm().values())
