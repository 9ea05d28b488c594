"""A group's whole CPU step as one numba launch without the per-parameter bookkeeping.

The general path rebuilds each parameter's view of its state every step (tens of
microseconds of Python per parameter), which on many small tensors costs more than
the kernel: Adam on 5,000 tensors of 1,000 elements took 3.3x torch's fused step.
After a step in which a group's parameters all ran in one bucket of the numba
engine, :class:`CpuFastStep` keeps that bucket and, each later step, checks in
C-level passes over lists that nothing it relies on moved (the counterpart of the
Triton engine's :class:`gradstep.torch._cuda.FastStep`): the same parameter objects
at the same addresses and shapes, every gradient a contiguous tensor, the same state
dictionaries and tensors at the same addresses, one step count for all. Anything
else returns False, and the group takes the general path, which rebuilds what
changed. The engine itself still checks every array it writes (dtype, shape,
contiguity, address) before the launch.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

from ._cuda import (
    FastStep,
    advance_count,
    carried_step,
    host_count,
    pointer_checks,
    same_addresses,
    share_entries,
    state_in_place,
    state_snapshot,
)
from ._members import _signature
from ._state import STEP


class CpuFastStep:
    """The numba engine's bucket ``bucket`` of every parameter of ``group``, relaunched."""

    def __init__(
        self, opt: Any, group: dict, rule: Any, members: list, bucket: Any, carried: Any = None
    ):
        self.group = group
        self.rule = rule
        self.bucket = bucket
        self.params = list(group["params"])
        self.state_map = opt.state
        # None for a parameter without state (plain SGD keeps none, as torch's)
        self.dicts = [opt.state.get(p) for p in self.params]
        layout = members[0].layout
        # one tensor of counts, viewed by every parameter's ``step``: one comparison
        # and one addition a step
        self.step_base = share_entries(self.dicts) if rule.track_step else None
        names = [n for n in layout.names if n not in layout.empty and n != STEP]
        self.keys = [rule.key(n) for n in names] + ([STEP] if rule.track_step else [])
        # values the class carries between steps (NAdam's mu_product): see carried_step
        self.carried = carried
        self.keys += list(carried.keys) if carried is not None else []
        self.expected = [[d[k] for d in self.dicts] for k in self.keys]
        self.state_ptrs = pointer_checks(self.keys, self.expected, carried)
        self.snapshot = state_snapshot(opt.state)
        self.w_ptrs = list(map(torch.Tensor.data_ptr, self.params))
        self.indices = list(range(len(self.params)))  # for same_addresses
        self.shapes = list(map(torch.Tensor.size, self.params))
        self.count_refs = [(c, k) for c, k, name in bucket.refs if name == STEP]

    @staticmethod
    def possible(opt: Any, group: dict, rule: Any, buckets: dict) -> bool:
        """What the Triton fast path requires, on C-contiguous CPU tensors (no
        ``channels_last`` views, which the general path makes) and no host steps."""
        if not FastStep.possible(opt, group, rule, buckets):
            return False
        (members,) = buckets.values()
        if not all(m.p.device.type == "cpu" and m.p.is_contiguous() for m in members):
            return False
        layout = members[0].layout
        keeps = rule.track_step or any(n not in layout.empty for n in layout.names)
        return not keeps or all(opt.state.get(m.p) is not None for m in members)

    def step(self, opt: Any, ctx: dict, amp: tuple | None = None) -> bool:
        """Launch this step; False (nothing changed) if the general path must run."""
        if self.carried is not None:
            return carried_step(self, self._launch, opt, ctx, amp)
        return self._launch(opt, ctx, amp)

    def _launch(self, opt: Any, ctx: dict, amp: tuple | None = None) -> bool:
        from ..engines.plan import Unsupported

        params = self.group["params"]
        if amp is not None or opt.state is not self.state_map:
            return False  # GradScaler's flag is read on the general path
        if len(params) != len(self.params) or not all(map(operator.is_, params, self.params)):
            return False
        if self.bucket.engine.hosts and opt.__dict__.get("_gs_inputs"):
            return False
        grads = [p.grad for p in params]
        try:
            if not all(map(torch.Tensor.is_contiguous, grads)):
                return False
        except (TypeError, RuntimeError):  # a missing or sparse gradient
            return False
        if not same_addresses(params, self.w_ptrs, self.indices):
            return False
        if list(map(torch.Tensor.size, params)) != self.shapes:
            return False
        if not state_in_place(self):
            return False
        # without a step count the front tells the rule "not the first step"
        count = 1 if self.step_base is None else host_count(self)
        if count is None:
            return False  # a step edited by hand: the general path regroups
        bucket = self.bucket
        for container, key in self.count_refs:
            container[key] = np.asarray(count, np.int64)
        try:  # NumPy views: one C call each where torch can give one (float32/64)
            views = list(map(torch.Tensor.numpy, grads))
        except (TypeError, RuntimeError):  # bfloat16, a negative bit, a graph
            views = list(map(bucket.view, grads))
        try:
            bucket.engine.step_leaves(bucket.w, views, bucket.w, bucket.tree, ctx)
        except Unsupported:  # refused before anything was written
            return False
        if self.step_base is not None:
            advance_count(self, count)
        torch.autograd.graph.increment_version(params)
        return True


def fast_step(opt: Any, group: dict, rule: Any, buckets: dict, fused: dict) -> Any:
    """The fast path of ``group``, whose step just ran as ``buckets``, where all of it
    ran in one bucket of a fused engine (in ``fused``, the runtime's buckets) built for
    these very tensors: the Triton engine's :class:`~gradstep.torch._cuda.FastStep` or
    the numba engine's :class:`CpuFastStep`; else None."""
    if len(buckets) != 1:
        return None
    (members,) = buckets.values()
    ids = tuple(id(m.p) for m in members)
    for engine, kind in (("TritonEngine", FastStep), ("FusedEngine", CpuFastStep)):
        bucket = fused.get((engine, id(rule)) + ids)
        if bucket is None or bucket.rule is not rule:
            continue
        # not a bucket left from an earlier step, and a Triton bucket that launched
        if bucket.signature != _signature(members) or not kind.possible(opt, group, rule, buckets):
            return None
        if getattr(bucket.engine, "_tables", True) is None:
            return None
        carried = opt._fast_carried(group, [m.state for m in members])
        if carried is False:
            return None
        return kind(opt, group, rule, members, bucket, carried)
    return None
