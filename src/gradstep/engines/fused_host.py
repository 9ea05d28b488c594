"""Host steps of fused forms: values computed before a fused engine's launch, written around it.

A fused form's host step (:class:`~gradstep._core.fused_form.HostWrite`) is the
transform's own array code (Sophia's fold of a Hessian estimate into its average),
run on the slot arrays the kernels read and write: NumPy arrays on the numba engine,
the tensors themselves on the Triton engine (torch operations queued on their
device, as the eager update runs them). :func:`host_writes` runs every host step of
a step and checks that each value fits the array it replaces (``fit``: the engine's
test), before the engine writes anything; :func:`write_host_values` copies them in
place, before or after the launch. The step inputs only host steps read leave the
kernels' ``ctx``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import tree as _tree
from .plan import Unsupported


def host_writes(
    hosts: list, state: dict, params: Any, g_leaves: list, ctx: dict, fit: Any = None
) -> tuple:
    """The host steps' writes of this step, as ``[(when, [(target, value), ...])]``,
    and ``ctx`` without their inputs. ``fit(target, value)``: the value as it is
    written into ``target``, or None where it does not fit (default: a writeable
    NumPy array of the value's shape and a dtype it casts to). Raises (the host
    step's own errors, or :class:`Unsupported` for a value that does not fit its
    array) before anything is written."""
    fit = fit or numpy_fit
    writes = []
    inputs = set()
    for form, path in hosts:
        inputs.update(form.inputs)
        node = state
        for key in path:
            node = node[key]
        write = form.host(node, params, g_leaves, ctx)
        if write is None:
            continue
        pairs = []
        for keys, values in write.values.items():
            slot = node
            for key in keys:
                slot = slot[key]
            targets = _tree.leaves(slot)
            if len(targets) != len(values):
                raise Unsupported(f"{form.name}: {len(values)} values for {len(targets)} arrays")
            for target, value in zip(targets, values):
                fitted = fit(target, value)
                if fitted is None:
                    kind = getattr(target, "dtype", type(target).__name__)
                    raise Unsupported(
                        f"{form.name}: its host step computes "
                        f"{getattr(value, 'dtype', type(value).__name__)} values of shape "
                        f"{tuple(np.shape(value))} for a state array of {kind} (the "
                        "transform's own update runs the step)"
                    )
                pairs.append((target, fitted))
        writes.append((write.when, pairs))
    return writes, {k: v for k, v in ctx.items() if k not in inputs}


def numpy_fit(target: Any, value: Any) -> Any:
    """The numba engine's test of a host value: ``value`` as an array, or None where
    ``target`` is not a writeable NumPy array of its shape and a dtype it casts to."""
    value = np.asarray(value)
    if (
        isinstance(target, np.ndarray)
        and target.flags.writeable
        and value.shape == target.shape
        and np.can_cast(value.dtype, target.dtype, "same_kind")
    ):
        return value
    return None


def write_host_values(writes: list, when: str, copy: Any = None) -> None:
    """Copy the values of the writes made ``when`` (``"before"`` or ``"after"`` the
    launch) into their arrays (``copy(target, value)``; default NumPy's)."""
    for moment, pairs in writes:
        if moment == when:
            for target, value in pairs:
                if copy is None:
                    np.copyto(target, value, casting="same_kind")
                else:
                    copy(target, value)
