"""How the 8-bit kernels' table lookups vectorise on this host: gathers or not.

The 8-bit kernels (:mod:`gradstep.engines.fused_blocks`) look codes and their values
up in tables while they step a block. A loop holding a lookup vectorises only if the
compiler emits gathers for it, and LLVM emits them only where its cost model says
they pay: not on Intel processors affected by "Gather Data Sampling" (whose
microcode fix makes gathers slow), not on AMD Zen 1 to 3, not on Arm without SVE.
There a loop with a lookup runs scalar, divisions and square roots included.

Two choices follow, measured on a Zen 3 host (8-bit Adam on 20M parameters, one
thread, the block loop's two forms with and without gathers: about 88 ms with the
lookups inside the loop and gathers, 94 ms with the lookups apart and no gathers,
102 ms apart with gathers, 127 ms inside without; see docs/precision.md):

- On AMD Zen, gathers are faster than the scalar loop they replace, so
  :func:`gathers_where_fast` allows them there (function attributes), unless the
  user has chosen numba's target processor (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``,
  kept as given). Results do not change: a gather loads the values scalar loads
  would.
- :func:`compiler_gathers` asks the compiler whether it gathers, with those
  attributes (it compiles a small loop of lookups and reads its assembly). Where it
  does, the kernels keep the lookups in the loop that steps a block; where it does
  not, they keep them in loops of their own, so that the arithmetic vectorises.
"""

from __future__ import annotations

import functools
import re

import llvmlite.binding as llvm
import numpy as np
from numba import config, njit, types
from numba.extending import intrinsic

from .._core.blockwise8 import BLOCK
from ._scalar_ops import block_buffer


def gather_attributes(cpu: str, features: str, user_target: bool) -> tuple[str, ...]:
    """The LLVM function attributes that let a loop gather on the processor ``cpu``
    (LLVM's name for it) with the feature string ``features``; none where gathers
    are not known to pay or the user chose the target (``user_target``)."""
    if user_target or not cpu.startswith("znver") or "+avx2" not in features.split(","):
        return ()
    wanted = f"{features},+fast-gather,-prefer-no-gather"
    return (f'"target-cpu"="{cpu}"', f'"target-features"="{wanted}"')


@functools.cache
def host_gather_attributes() -> tuple[str, ...]:
    """:func:`gather_attributes` for this process's host processor."""
    user_target = bool(config.CPU_NAME or config.CPU_FEATURES)
    return gather_attributes(
        llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(), user_target
    )


@intrinsic
def gathers_where_fast(typingctx):
    """Lets the calling function's loops gather on a host where that pays
    (:func:`host_gather_attributes`); a no-op elsewhere. Called inside the loop over
    chunks, so that the loop body numba outlines for threads gets the attributes too."""

    def codegen(context, builder, sig, args):
        for attribute in host_gather_attributes():
            # string attributes, which llvmlite's attribute set does not list as known
            set.add(builder.function.attributes, attribute)
        return context.get_dummy_value()

    return types.none(), codegen


def _lookups(table, codes):  # the probe: one table lookup per element, stack buffers
    gathers_where_fast()  # as the kernels will be compiled
    values = block_buffer(np.float32(0))
    for i in range(BLOCK):
        values[i] = table[codes[i]]
    return values[BLOCK - 1]


#: an x86 gather instruction (vgatherdps, vpgatherdd, ...) in assembly text
_GATHER = re.compile(r"^\s+v(p)?gather", re.MULTILINE)


@functools.cache
def compiler_gathers() -> bool:
    """Whether numba's compiler vectorises a loop of table lookups on this host with
    gathers, with the attributes the kernels get (:func:`gathers_where_fast`):
    compiled once per process, on first use."""
    probe = njit("float32(float32[::1], uint8[::1])", error_model="numpy")(_lookups)
    return any(_GATHER.search(text) for text in probe.inspect_asm().values())
