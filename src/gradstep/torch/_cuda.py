"""The torch front on CUDA: buckets of parameters stepped by the Triton engine.

CUDA tensors of a transform the Triton engine can compile run as one kernel launch
per bucket (parameters of one dtype, device and step count); everything else on
CUDA runs the transform's own ``update`` on the tensors, on the device. Triton is
an optional dependency: it is imported on the first CUDA step, and where it is
missing CUDA steps run eager with a one-time notice.
"""

from __future__ import annotations

import itertools
import operator
import warnings
from typing import Any

import torch

from .._core.carried import holding
from ..engines.plan import stochastic_rows
from ..engines.triton_tables import amp_pair  # imports no Triton
from ._state import STEP

#: dtypes the Triton engine stores
TRITON_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

_triton_state: dict[str, Any] = {}


def triton_available() -> bool:
    """Triton can be imported (checked once per process)."""
    if "ok" not in _triton_state:
        try:
            import triton  # noqa: F401
        except ImportError as error:
            _triton_state["ok"] = False
            _triton_state["why"] = str(error)
        else:
            _triton_state["ok"] = True
    return _triton_state["ok"]


def notice_no_triton() -> None:
    """Say once that CUDA steps run eager because Triton is missing."""
    if not _triton_state.get("noticed"):
        _triton_state["noticed"] = True
        warnings.warn(
            "gradstep.torch: Triton is not installed, so CUDA parameters are stepped by "
            "eager torch operations (one kernel per operation); `pip install triton` for "
            f"the fused GPU engine ({_triton_state.get('why', '')})",
            RuntimeWarning,
            stacklevel=4,
        )


#: what state tensors the Triton engine reads: its storage dtypes, and the uint8 codes
#: of 8-bit state (gradstep._core.blockwise8; its tables allow uint8 only there)
TRITON_STATE_DTYPES = TRITON_DTYPES + (torch.uint8,)


def member_runs_on_triton(m: Any) -> bool:
    """One parameter's tensors suit the Triton engine: dense and contiguous on one
    device, the gradient in the parameter's dtype, the state in any floating dtype
    (or 8-bit codes)."""
    return m.dense(TRITON_DTYPES, TRITON_STATE_DTYPES)


def _scalar(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 0


#: torch's C++ comparison of data pointers (in CUDA builds; the CUDA graph trees of
#: torch.compile use it on their hot path): one pass over a list without a Python call
#: per tensor, about ten times cheaper than ``data_ptr`` per tensor
_ptrs_equal = getattr(torch._C, "_tensors_data_ptrs_at_indices_equal", None)


def same_addresses(tensors: list, ptrs: list[int], indices: list[int]) -> bool:
    """Whether each of ``tensors`` (as many as ``ptrs``) has its data at the address
    in ``ptrs``; ``indices``: ``list(range(len(ptrs)))``, kept by the caller."""
    if _ptrs_equal is not None:
        return _ptrs_equal(tensors, ptrs, indices)
    return list(map(torch.Tensor.data_ptr, tensors)) == ptrs


class FastStep:
    """A group's whole step as one Triton launch, with the per-parameter work cut to
    C-level passes over lists.

    Built after a step in which every parameter of the group had a gradient and all
    ran in one Triton bucket. Each later step checks, before launching, that nothing
    the launch relies on moved: the same parameter objects at the same addresses,
    every gradient dense and contiguous, or laid out as its parameter where that is
    not in C order (torch already guarantees its shape, dtype and device), the same
    state tensors at the same addresses, the same step count. Anything else returns
    False and the group takes the general path, which rebuilds what changed.
    """

    def __init__(
        self, opt: Any, group: dict, rule: Any, members: list, bucket: Any, carried: Any = None
    ):
        layout = members[0].layout
        self.group = group
        self.rule = rule
        self.bucket = bucket
        self.params = list(group["params"])
        self.state_map = opt.state
        self.dicts = [m.state for m in members]
        keys = [rule.key(n) for n in layout.names if n not in layout.empty]
        self.step_base = None
        if rule.track_step:
            keys.append(STEP)
            self.step_base = share_entries(self.dicts)
        # values the class carries between steps (NAdam's mu_product): see carried_step
        self.carried = carried
        keys += list(carried.keys) if carried is not None else []
        self.expected = [[d[k] for d in self.dicts] for k in keys]
        self.keys = keys
        self.w_ptrs = [p.data_ptr() for p in self.params]
        self.indices = list(range(len(self.params)))  # for same_addresses
        self.g_ptrs: list[int] | None = None  # the last step's gradients' addresses
        # parameters in another memory format (channels_last) run as C-contiguous
        # views of their memory: each gradient must then be laid out as its parameter
        in_c_order = all(p.is_contiguous() for p in self.params)
        self.w_strides = None if in_c_order else [p.stride() for p in self.params]
        self.state_ptrs = pointer_checks(self.keys, self.expected, carried)
        self.snapshot = state_snapshot(opt.state)
        engine = bucket.engine
        self.engine = engine
        self.tables = engine._tables
        # capturable: the step count lives on the device and every scalar is computed
        # there from it, so the launch needs nothing from the host
        self.on_device = bool(group.get("capturable")) and self.step_base is not None
        # a count already on the parameters' device (moved there by a GradScaler step
        # without capturable, below) is read there too, never on the host
        self._amp_in_kernel: bool | None = None  # decided once (_amp_fits_kernel)
        self.count_on_device = self.on_device or (
            self.step_base is not None
            and self.step_base.device.type != "cpu"
            and self.step_base.device == self.params[0].device
            and self._amp_fits_kernel({})
        )
        if self.on_device:
            problem = engine.device_scalars_problem()
            if problem is not None:
                raise RuntimeError(
                    f"{type(opt).__name__}: capturable=True needs every per-step scalar "
                    f"computed on the device, but {problem}"
                )

    def _amp_fits_kernel(self, ctx: dict) -> bool:
        """Every per-step scalar of this chain can be computed on the device from a
        device step count (decided once)."""
        if self._amp_in_kernel is None:
            self._amp_in_kernel = count_fits_device(self.engine, ctx)
        return self._amp_in_kernel

    def _count_to_device(self) -> None:
        """Keep the step count on the parameters' device as float32 (torch's fused
        Adam's ``step``), still one tensor that every parameter's ``step`` views."""
        base = _device_count(self.step_base, self.params[0].device)
        if base is not self.step_base:
            for i, d in enumerate(self.dicts):
                d[STEP] = base[i]
            self.step_base = base
            row = self.keys.index(STEP)
            self.expected[row] = [d[STEP] for d in self.dicts]
            self.state_ptrs[row] = None  # advanced by torch operations, never by address
        self.count_on_device = True

    @staticmethod
    def possible(opt: Any, group: dict, rule: Any, buckets: dict) -> bool:
        """Whether the group's step can be kept. Both fused engines' buckets run the
        rule's chain as built (``rule.run``), with its maximising stage and its
        reduction hooks, which are inert unless routed across ranks."""
        if len(buckets) != 1 or group.get("master_weights") or rule.reducer is not None:
            return False
        (members,) = buckets.values()
        layout = members[0].layout
        return (
            len(members) == len(group["params"])
            # complex parameters: the general path resolves a conjugated gradient
            and not any(m.p.is_complex() for m in members)
            and members[0].mode == "plain"
            and not layout.shared_names()
            and (not rule.track_step or all(_scalar(m.state.get(STEP)) for m in members))
        )

    def step(self, opt: Any, ctx: dict, amp: tuple | None = None) -> bool:
        """Launch this step; False (nothing changed) if the general path must run."""
        if self.carried is not None:
            return carried_step(self, self._launch, opt, ctx, amp)
        return self._launch(opt, ctx, amp)

    def _launch(self, opt: Any, ctx: dict, amp: tuple | None = None) -> bool:
        """:meth:`step`, the values a class carries aside.

        ``amp``: GradScaler's ``(grad_scale, found_inf)``: the kernel unscales the
        gradients and skips the update on an infinite one. Where the chain's scalars
        can follow a device step count (:func:`count_fits_device`) the count lives on
        the device (moved there by the first such step without ``capturable``) and
        advances by ``1 - found_inf``, so the step reads nothing on the host; else the
        count stays on the host and the flag is read there.
        """
        params = self.group["params"]
        if len(params) != len(self.params) or opt.state is not self.state_map:
            return False
        if self.engine.hosts and _host_inputs_given(opt, params):
            return False  # the general path checks them and runs the host steps
        if not all(map(operator.is_, params, self.params)):
            return False
        grads = [p.grad for p in params]
        try:
            if self.w_strides is None:
                if not all(map(torch.Tensor.is_contiguous, grads)):
                    return False
            elif list(map(torch.Tensor.stride, grads)) != self.w_strides:
                return False  # a gradient not laid out as its parameter (channels_last)
        except (TypeError, RuntimeError):  # a missing or sparse gradient
            return False
        g_ptrs = self.g_ptrs  # the caching allocator mostly hands out the same memory
        if g_ptrs is None or not same_addresses(grads, g_ptrs, self.indices):
            g_ptrs = self.g_ptrs = list(map(torch.Tensor.data_ptr, grads))
        if not same_addresses(params, self.w_ptrs, self.indices):
            return False
        if not state_in_place(self):
            return False
        if self.engine._tables is not self.tables:
            return False
        pair = None if amp is None else amp_pair(amp[0], amp[1], params[0])
        if amp is not None and amp[1] is not None and not self.count_on_device:
            if self.step_base is None:  # no count: the kernel's skip is the whole story
                ones = [1] * len(self.engine.stages)
                self.engine.launch(self.tables, g_ptrs, ones, ctx, amp=pair)
                torch.autograd.graph.increment_version(params)
                return True
            if self._amp_fits_kernel(ctx):
                if not bool((self.step_base == self.step_base[0]).all()):
                    return False  # a step edited by hand (the count is still on the host)
                self._count_to_device()
        if self.count_on_device:
            # read on the device: the views share one tensor, so all counts agree
            self.engine.launch(
                self.tables, g_ptrs, self.step_base[0], ctx, on_device=True, amp=pair
            )
            if pair is None:
                self.step_base.add_(1)
            else:
                self.step_base.add_(1 - pair[1].to(self.step_base.dtype))
            torch.autograd.graph.increment_version(params)
            return True
        # without a step count the front tells the rule only "not the first step"
        count = 1 if self.step_base is None else host_count(self)
        if count is None:
            return False  # a step edited by hand: the general path regroups
        if amp is not None and amp[1] is not None and float(amp[1]) != 0:
            return True  # an infinite gradient: the step changes nothing
        self.engine.launch(self.tables, g_ptrs, [count] * len(self.engine.stages), ctx, amp=pair)
        if self.step_base is not None:
            advance_count(self, count)
        torch.autograd.graph.increment_version(params)
        return True


def host_count(fast: Any) -> int | None:
    """The step count every parameter of a fast path holds (views of
    ``fast.step_base``), or None where they differ (a step edited by hand).

    A count on the host is remembered with the tensor's version: while no torch
    operation wrote it (the version is unchanged) and its first entry still holds
    the remembered count, the step reads nothing more (a NumPy reduction costs
    microseconds a step)."""
    base = fast.step_base
    memo = fast.__dict__.get("_count_memo")  # (base, NumPy view, count, version)
    if memo is not None and memo[0] is base and base._version == memo[3] and memo[1][0] == memo[2]:
        return memo[2]
    on_host = base.device.type == "cpu"
    counts = base.numpy() if on_host else base.cpu().numpy()
    count = counts[0]
    if not (counts == count).all():
        return None
    fast._count_memo = (base, counts, int(count), base._version) if on_host else None
    return int(count)


def advance_count(fast: Any, count: int) -> None:
    """Add one to every count of a fast path that just stepped from ``count``
    (:func:`host_count`'s value): through the remembered NumPy view where the counts
    are on the host (no torch operation, so the version stays as remembered), else by
    a torch operation."""
    memo = fast.__dict__.get("_count_memo")
    if memo is not None and memo[0] is fast.step_base and memo[2] == count:
        view = memo[1]
        view += 1  # in place, in the tensor's memory
        fast._count_memo = (memo[0], memo[1], count + 1, memo[3])
    else:
        fast.step_base.add_(1)


def state_snapshot(state: dict) -> tuple[list, list]:
    """The optimizer's ``state`` mapping as it is: its keys and values, in order."""
    return list(state.keys()), list(state.values())


def state_in_place(fast: Any) -> bool:
    """A fast path's parameters still have the state dictionaries it recorded
    (``fast.dicts``, in ``fast.state_map``), holding the same tensors (``fast.expected``,
    one row per key of ``fast.keys``) at the same addresses (``fast.state_ptrs``):
    C-level passes over lists."""
    # the whole mapping as recorded (``fast.snapshot``): the same parameters hold the
    # same dicts, checked without hashing a tensor per parameter (a Python call each)
    keys, values = fast.snapshot
    state = fast.state_map
    if len(state) != len(keys) or not all(map(operator.is_, state.values(), values)):
        return False  # a state dict replaced, or entries added (another group's first step)
    if not all(map(operator.is_, state.keys(), keys)):
        return False
    for key, row, ptrs in zip(fast.keys, fast.expected, fast.state_ptrs):
        if not all(map(operator.is_, map(dict.get, fast.dicts, itertools.repeat(key)), row)):
            return False
        if ptrs is not None and not same_addresses(row, ptrs, fast.indices):
            return False
    return True


def pointer_checks(keys: list[str], rows: list[list], carried: Any) -> list[list[int] | None]:
    """The data pointers of each state row a kernel writes by address, to check every
    step; None for the rows advanced by torch operations (the step counts, the values
    ``carried``, a class's keeper, holds), whose tensors are checked by identity alone."""
    by_torch = {STEP, *(carried.keys if carried is not None else ())}
    return [
        None if key in by_torch else list(map(torch.Tensor.data_ptr, row))
        for key, row in zip(keys, rows)
    ]


def _host_inputs_given(opt: Any, params: list) -> bool:
    """The step carries inputs for a host step (Sophia's ``hessian=``, or gradients
    with a graph for its ``hvp=``; see ``RegistryOptimizer.step``)."""
    extra = opt.__dict__.get("_gs_inputs")
    if not extra:
        return False
    return bool(extra["names"]) or (
        extra["hvp"] and any(p.grad is not None and p.grad.requires_grad for p in params)
    )


def carried_step(fast: Any, launch: Any, opt: Any, ctx: dict, amp: tuple | None) -> bool:
    """A fast path's step (``launch(opt, ctx, amp)``) for a class that carries values
    between steps in its parameters' states (``fast.carried``: their keeper, e.g.
    NAdam's mu_product): the values are handed to the rule's stages around the
    launch, and advanced after it with the new step count. False (nothing changed)
    where the parameters hold different values (one missed steps), the count lives on
    the device, or GradScaler's flag is given: the general path handles those."""
    if amp is not None or getattr(fast, "count_on_device", False) or fast.step_base is None:
        return False
    values = fast.carried.values()
    if values is None:
        return False
    with holding(fast.rule.carried, values):
        if not launch(opt, ctx, None):
            return False
    fast.carried.advance(fast.group, int(fast.step_base[0]))
    return True


def share_entries(dicts: list[dict], key: str = STEP) -> torch.Tensor:
    """Make every parameter's ``key`` entry (a 0-d tensor; the ``step`` by default) a
    view of one tensor, so that a step advances them all with one operation (a torch
    operation per 0-d tensor costs microseconds each). Each stays a 0-d tensor of its
    dtype, as torch.optim keeps it."""
    steps = [d[key] for d in dicts]
    base = steps[0]._base
    if (
        base is not None
        and base.shape == (len(steps),)
        and all(s._base is base and s.storage_offset() == i for i, s in enumerate(steps))
    ):
        return base  # already shared (a CUDA graph may hold this very tensor)
    if len({(s.device, s.dtype) for s in steps}) != 1:
        steps = [s.to(device=steps[0].device, dtype=steps[0].dtype) for s in steps]
    base = torch.stack([s.detach() for s in steps])
    for i, d in enumerate(dicts):
        d[key] = base[i]
    return base


def kernel_reads_amp(group: dict, rule: Any, engine: str) -> bool:
    """A general-path step of ``group`` (``engine`` its engine option) can leave
    GradScaler's flag to the Triton kernel: the group runs there, and a skipped step
    may create the state (as torch's fused Adam does) without changing what the next
    step computes, since the rule's first step differs from later ones only by the
    count kept in the state (or not at all)."""
    if group.get("differentiable") or group.get("master_weights") or rule.hooks:
        return False
    if not (rule.track_step or rule.same_first_step) or not rule.triton_fusable:
        return False
    params = group["params"]
    if engine == "auto" and group.get("foreach") is True:
        return False
    if engine != "triton" and not (engine in ("auto", "fused") and params and params[0].is_cuda):
        return False
    return triton_available()


def count_fits_device(engine: Any, ctx: dict) -> bool:
    """Every per-step scalar of ``engine``'s chain can be computed on the device from
    a device step count (no host value, no stochastic-rounding stream keyed by a
    host count), so a step count may live there. After a launch (its tables)."""
    return engine.device_scalars_problem(ctx) is None and not (
        stochastic_rows(engine.stages, engine._tables.row_dtypes)
    )


def unscaled(grads: list, amp: tuple) -> bool:
    """GradScaler's work where no kernel does it: False if the step must be skipped
    (an infinite gradient; this reads the flag on the host), else divide ``grads``
    by the scale in place, as ``GradScaler.unscale_`` would."""
    grad_scale, found_inf = amp
    if found_inf is not None and float(found_inf) != 0:
        return False
    if grad_scale is not None:
        inv = grad_scale.double().reciprocal().float()
        for g in grads:
            g.mul_(inv.to(g.device))
    return True


def count_unless_skipped(states: list[dict], found_inf: Any, engine: Any, ctx: dict) -> None:
    """Advance the step counts of a launch that skipped itself if ``found_inf`` (None:
    nothing found) is set, as torch's fused Adam: on the parameters' device as
    float32, by ``1 - found_inf``, where the chain's scalars can follow a device
    count (:func:`count_fits_device`); else the flag is read on the host, once."""
    if found_inf is not None and count_fits_device(engine, ctx):
        device = engine._tables.device
        advance = 1 - found_inf.to(device=device, dtype=torch.float32)
        for state in states:
            state[STEP] = _device_count(state[STEP], device)
            state[STEP].add_(advance)
    elif found_inf is None or float(found_inf) == 0:
        for state in states:
            state[STEP] += 1


def _device_count(step: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A step count tensor whose values are all equal, as float32 on ``device``. A
    host count is written there by a fill of its value, not copied: a copy from
    pageable host memory would synchronise the host with the device."""
    if step.device.type == "cpu" and device.type != "cpu":
        value = float(step.reshape(-1)[0]) if step.numel() else 0.0
        return torch.full(step.shape, value, dtype=torch.float32, device=device)
    return step.to(device=device, dtype=torch.float32)
