"""The parameters of one step, the calls they are stepped in, and the numba engine's bucket."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import _distributed as _dist
from ._rule import (
    _FUSED_DTYPES,
    _NUMBA_DTYPES,
    MASTER,
    _Rule,
)
from ._state import STEP


class _Member:
    """One parameter in one step: the tensors its math reads and writes."""

    __slots__ = (
        "p",
        "state",
        "master",
        "fresh",
        "mode",
        "w",
        "g",
        "entries",
        "layout",
        "differentiable",
    )

    def __init__(
        self, p, grad, state, master: bool, fresh: bool, rule: _Rule, differentiable=False
    ):
        self.p = p
        self.state = state
        self.master = master
        self.fresh = fresh
        # differentiable=True: the step is recorded by autograd on the tensors themselves
        self.differentiable = differentiable
        store = state[MASTER] if master else p
        if p.is_complex():
            # a complex parameter is stepped as its real view, as torch.optim does
            self.mode = "plain"
            convert = _real_view
        elif not _dist.is_dtensor(p):
            self.mode = "plain"
            convert = (None if master else _storage_view(store, grad, state, rule)) or _same
        elif rule.local_ok:
            self.mode = "local"
            convert = _dist.local
        else:
            self.mode = "gather"
            convert = _dist.full
        self.w = convert(store if differentiable else store.detach())
        g = convert(grad)
        g = g.to(torch.float32) if master else g
        if (
            self.mode == "plain"
            and not differentiable
            and g.layout == torch.strided
            and not g.is_contiguous()
            and self.w.is_contiguous()
        ):
            # a gradient assigned by hand in another layout (a transposed tensor):
            # the engines read C-contiguous memory, so they get a copy in that layout,
            # as torch's fused step reads one (the gradient is never written)
            g = g.contiguous()
        self.g = g
        self.layout = layout = rule.layout(self.w)
        self.entries = {
            name: (
                self.w.new_empty((0,)) if name in layout.empty else convert(state[rule.key(name)])
            )
            for name in layout.names
        }

    def shared_key(self, rule: _Rule) -> tuple:
        if rule.track_step:
            step = float(self.state[STEP])
        else:
            step = 0.0 if self.fresh else 1.0
        others = tuple(float(self.state[rule.key(n)]) for n in self.layout.shared_names())
        return (step,) + others

    def numpy_ok(self) -> bool:
        """All its tensors can be seen as NumPy arrays (CPU float32/float64, with state
        in any storage dtype of the numba engine)."""
        w, g = self.w, self.g
        if w.device.type != "cpu" or w.dtype not in _FUSED_DTYPES:
            return False
        if g.layout != torch.strided or g.dtype != w.dtype or g.device != w.device:
            return False
        return all(
            t.device.type == "cpu" and t.dtype in _STATE_DTYPES for t in self.entries.values()
        )

    def dense(self, dtypes: tuple, state_dtypes: tuple | None = None) -> bool:
        """Parameter, gradient and state are contiguous dense tensors on one device,
        the parameter of one of ``dtypes``, the gradient of its dtype, the state of
        ``state_dtypes`` (None: the parameter's dtype): what a fused engine runs."""
        w, g = self.w, self.g
        if w.dtype not in dtypes or not w.is_contiguous():
            return False
        if g.layout != torch.strided or g.dtype != w.dtype or g.device != w.device:
            return False
        if not g.is_contiguous():
            return False
        return all(
            t.device == w.device
            and (t.dtype == w.dtype if state_dtypes is None else t.dtype in state_dtypes)
            and t.is_contiguous()
            for t in self.entries.values()
        )

    def why_not_fusable(self) -> str:
        """What keeps :meth:`fusable` False, in words."""
        w, g = self.w, self.g
        if w.device.type != "cpu" or w.dtype not in _NUMBA_DTYPES or not w.is_contiguous():
            contiguous = "contiguous" if w.is_contiguous() else "not contiguous"
            return f"a parameter is {w.dtype} on {w.device} ({contiguous})"
        if g.layout != torch.strided or g.dtype != w.dtype or g.device != w.device:
            return (
                f"a gradient is {g.dtype} on {g.device} ({g.layout}) for a parameter of "
                f"{w.dtype} on {w.device}"
            )
        if not g.is_contiguous():  # pragma: no cover - made contiguous in __init__
            return "a gradient is not contiguous"
        for name, t in self.entries.items():
            if t.device != w.device or t.dtype not in _STATE_DTYPES or not t.is_contiguous():
                contiguous = "contiguous" if t.is_contiguous() else "not contiguous"
                return f"a state tensor ({name}) is {t.dtype} on {t.device} ({contiguous})"
        return "a parameter cannot be run by it"  # pragma: no cover

    def fusable(self) -> bool:
        """The numba engine can run it: :meth:`dense` CPU tensors of its storage dtypes
        (float32, float64, float16, bfloat16; the state in any of them)."""
        return self.w.device.type == "cpu" and self.dense(_NUMBA_DTYPES, _STATE_DTYPES)


# what state tensors the numba engine reads: its storage dtypes, and the uint8 codes of
# 8-bit state (gradstep._core.blockwise8; the checks allow uint8 only there)
_STATE_DTYPES = _NUMBA_DTYPES + (torch.uint8,)


def whole_steps(rule: _Rule, members: list[_Member]) -> list[tuple[list[_Member], bool]]:
    """``(members, whole)`` runs that make one step of a transform that may couple its
    tensors: the members that can share one state tree (one mode, device and step
    count, in the group's order; the shared values are the first one's, as the
    transform's ``init`` of the whole list takes its first parameter's) in one run;
    ``whole`` where an
    engine's bucket cannot hold them (dtypes or state layouts differ), so that the
    transform's own update runs once over all of them. Members whose layouts cannot
    be joined into one tree stay in their buckets."""
    classes: dict[tuple, list[_Member]] = {}
    for m in members:
        classes.setdefault((m.mode, m.w.device, m.shared_key(rule)[0]), []).append(m)
    runs = []
    for group in classes.values():
        if len({(m.w.dtype, id(m.layout)) for m in group}) == 1:
            runs.append((group, False))  # one engine bucket holds them all
        elif rule.group_layout([m.layout for m in group]) is not None:
            runs.append((group, True))
        else:
            parts: dict[tuple, list[_Member]] = {}
            for m in group:
                parts.setdefault((m.w.dtype, id(m.layout)), []).append(m)
            runs.extend((part, False) for part in parts.values())
    return runs


def _same(t):
    return t


def _storage_view(store, grad, state: dict, rule: _Rule) -> Any:
    """For a parameter that is dense but not C-contiguous (``channels_last``, a
    transposed weight), a conversion to the permutation of its axes under which it,
    its gradient and its per-element state are C-contiguous views of their memory;
    None where there is none or the rule's math depends on shapes or positions
    (:attr:`_Rule.layout_free`). The engines, which walk C-contiguous memory, then
    step such parameters as they step any other, in place; an element's neighbours
    differ, which an elementwise rule does not see."""
    if not rule.layout_free or store.dim() < 2 or store.is_contiguous():
        return None
    if grad is None or grad.layout != torch.strided or grad.shape != store.shape:
        return None
    order = sorted(range(store.dim()), key=lambda d: -store.stride(d))
    slots = [v for v in state.values() if isinstance(v, torch.Tensor) and v.shape == store.shape]
    if not all(t.permute(order).is_contiguous() for t in [store, grad, *slots]):
        return None
    shape = store.shape
    return lambda t: t.permute(order) if t.shape == shape else t


def _real_view(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor's real and imaginary parts as a real tensor with a trailing
    dimension of 2 (a view; a conjugated gradient is resolved first)."""
    return torch.view_as_real(t.resolve_conj()) if t.is_complex() else t


def _first_param(group: dict) -> Any:
    """The group's first parameter that can step (an integer one never does)."""
    for p in group["params"]:
        if p.is_floating_point() or p.is_complex():
            return p.detach()
    return torch.zeros(2)


def _init_view(t: Any) -> Any:
    """What a transform's ``init`` is given for ``t``: a NumPy view of CPU
    float32/float64 tensors (every rule can initialise NumPy arrays), else ``t``."""
    if (
        isinstance(t, torch.Tensor)
        and not _dist.is_dtensor(t)
        and t.device.type == "cpu"
        and t.dtype in _FUSED_DTYPES
        and t.layout == torch.strided
    ):
        return _numpy(t)
    return t


def _as_tensor(value: Any, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    array = np.asarray(value)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, copy=True)
    if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16: torch takes its bits
        return torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16).to(like.device)
    return torch.from_numpy(array).to(like.device)


def _to_torch(value: Any, like: torch.Tensor) -> Any:
    """A result of a rule whose math converts its inputs to NumPy, as a tensor."""
    if isinstance(value, (np.ndarray, np.generic)):
        return torch.as_tensor(np.asarray(value), device=like.device)
    return value


def _numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:  # NumPy's bfloat16 is ml_dtypes': a view of the bits
        from .._core.namespaces import numpy_dtype

        return t.detach().view(torch.uint16).numpy().view(numpy_dtype("bfloat16"))
    return t.detach().resolve_neg().numpy()


class EngineBucket:
    """One fused engine's call over fixed parameters (the numba engine on NumPy views,
    the Triton engine on the tensors), with the state tree built once: its leaves are
    views of the state tensors in ``optimizer.state``, which the engine updates in
    place (checking every address each step)."""

    def __init__(self, engine: Any, rule: _Rule, members: list[_Member], signature: tuple, view):
        self.engine = engine
        # found by the rule's id: kept here, so that no later rule takes its address
        # while the bucket lives, and checked on every use
        self.rule = rule
        self.signature = signature
        self.view = view
        self.w = [view(m.w) for m in members]
        entries = [{n: view(t) for n, t in m.entries.items()} for m in members]
        tree, self.refs = members[0].layout.build(entries, _shared_values(rule, members[0]))
        self.tree = rule.wrap(tree)
        # the step counts, advanced through NumPy views (a torch op each costs more)
        steps = [m.state.get(STEP) for m in members] if rule.track_step else []
        self.steps = None
        if steps and all(_cpu_scalar(t) for t in steps):
            self.steps = [_numpy(t) for t in steps]

    def step(self, rule: _Rule, members: list[_Member], ctx: dict, amp: Any = None) -> bool:
        """Step ``members``; True if their step counts were advanced here. ``amp``:
        the Triton kernels' GradScaler pair, with which the step may skip itself on
        the device, so the caller advances the counts (False)."""
        shared = _shared_values(rule, members[0])
        layout = members[0].layout
        for container, key, name in self.refs:
            value = shared[name]
            container[key] = (
                np.asarray(int(value), np.int64)
                if name == STEP
                else np.asarray(value, layout.shared[name])
            )
        grads = [self.view(m.g) for m in members]
        extra = {} if amp is None else {"amp": amp}
        self.engine.step_leaves(self.w, grads, self.w, self.tree, ctx, **extra)
        # scalar state the engine changed in the tree (a global reduction's carried
        # state) goes back to the members, as the eager path stores it
        for container, key, name in self.refs:
            if name == STEP:
                continue
            value = np.asarray(container[key]).item() if _on_host(container[key]) else None
            if value is None:
                value = container[key].item()  # a device value: one read per step
            if value != shared[name]:
                for m in members:
                    m.state[rule.key(name)] = value
        if self.steps is None or amp is not None:
            return False
        for view in self.steps:
            view += 1
        return True


def _signature(members: list[_Member]) -> tuple:
    return tuple(
        (id(m.p), m.w.data_ptr(), tuple(m.w.shape), id(m.state.get(STEP)))
        + tuple((n, t.data_ptr(), tuple(t.shape)) for n, t in m.entries.items())
        for m in members
    )


def _on_host(x: Any) -> bool:
    return not isinstance(x, torch.Tensor) or x.device.type == "cpu"


def _cpu_scalar(t: Any) -> bool:
    return (
        isinstance(t, torch.Tensor)
        and t.device.type == "cpu"
        and t.dim() == 0
        and t.dtype in _FUSED_DTYPES
        and not _dist.is_dtensor(t)
    )


def _shared_values(rule: _Rule, m: _Member) -> dict[str, Any]:
    return dict(zip([STEP] + m.layout.shared_names(), m.shared_key(rule)))


class _Runtime:
    """What a TransformOptimizer derives from its groups and state (never saved)."""

    def __init__(self) -> None:
        self.rules: dict[int, tuple] = {}
        self.fused: dict[tuple, Any] = {}
        self.fast: dict[int, Any] = {}  # group id -> _cuda.FastStep

    def drop_rule(self, rule: Any) -> None:
        """Forget what was built for ``rule``, which a new build replaces (engine
        buckets are keyed by the rule's id, and would pile up where a scheduler's
        edits rebuild it every step)."""
        self.fused = {k: v for k, v in self.fused.items() if v.rule is not rule}
        self.fast = {k: v for k, v in self.fast.items() if v.rule is not rule}
