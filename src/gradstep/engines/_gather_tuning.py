"""Vector table lookups (gathers) for the 8-bit kernels' loops on AMD Zen processors.

The 8-bit kernels (:mod:`gradstep.engines.fused_blocks`) look codes and their values
up in tables inside the loop that steps a block. The loop vectorises only if the
compiler may emit gathers. LLVM's cost model for AMD Zen processors with AVX2 (Zen 1
to 3) says gathers are slow and keeps the whole loop scalar, divisions and square
roots included, which made the 8-bit Adam step about 5x the float32 step on a Zen 3
machine; with gathers allowed it was about 1.4x faster (see docs/precision.md). On
Intel processors LLVM also avoids gathers, but there on purpose: the microcode fix
for "Gather Data Sampling" makes them slow, so they are left alone.

:func:`gathers_where_fast` adds the function attributes that allow gathers to the
function being compiled, on a Zen host only, and only when the user has not chosen
numba's target processor (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``, which are kept
as given). Results do not change: a gather loads the same values as the scalar loads
it replaces.
"""

from __future__ import annotations

import functools

import llvmlite.binding as llvm
from numba import config, types
from numba.extending import intrinsic


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
