"""How a bucket of parameters is stepped: numba, Triton or the transform's own update."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._core.elementwise import wide_updates
from . import _cuda
from . import _distributed as _dist
from ._members import (
    EngineBucket,
    _Member,
    _numpy,
    _real_view,
    _same,
    _shared_values,
    _signature,
    _to_torch,
)
from ._rule import (
    MASTER,
    _Rule,
    scalar_dtype,
)
from ._state import STEP


class EngineRuns:
    """The engine-running half of :class:`~gradstep.torch._optimizer.TransformOptimizer`."""

    def _run(
        self,
        rule: _Rule,
        members: list[_Member],
        ctx: dict,
        engine: str,
        foreach: Any = None,
        whole: bool = False,
        amp: tuple | None = None,
    ) -> None:
        """Step ``members``: one engine bucket, or (``whole``) parameters of several
        dtypes or state layouts in one step of the transform's own update.
        ``amp``: GradScaler's ``(grad_scale, found_inf)``, for the Triton kernel to
        read; every other path reads them on the host."""
        device = members[0].w.device.type
        if amp is not None and (whole or not (device == "cuda" or engine == "triton")):
            if not _cuda.unscaled([m.g for m in members], amp):
                return  # an infinite gradient: the step changes nothing
            amp = None
        mode = members[0].mode
        reducer = None
        if mode == "local" and rule.hooks:
            groups = [_dist.shard_groups(m.p) for m in members]
            reducer = _dist.Reducer(groups, members[0].w.device)
        rule.route_reductions(reducer)
        try:
            if whole:
                if engine in ("fused", "triton"):
                    raise RuntimeError(self._whole_refusal(rule, members, engine))
                numpy = engine != "eager" and all(m.numpy_ok() for m in members)
                counted = self._run_eager(rule, members, ctx, numpy=numpy)
            elif device == "cuda" or engine == "triton":
                counted = self._run_device(rule, members, ctx, engine, foreach, amp)
                if counted is None:
                    return  # skipped
            else:
                counted = self._run_host(rule, members, ctx, engine)
        finally:
            rule.route_reductions(None)
        self._finish_step(rule, members, counted)

    def _run_host(self, rule: _Rule, members: list[_Member], ctx: dict, engine: str) -> bool:
        """Step CPU ``members``: the numba engine where it can, else the transform's own
        update on NumPy views or on the tensors; True if it advanced the steps."""
        mode = members[0].mode
        extra = self.__dict__.get("_gs_inputs")
        fused = (
            engine != "eager"
            and rule.fusable
            and mode != "gather"
            and not (rule.reducer is not None and rule.reduces_per_tensor)
            and all(m.fusable() for m in members)
            # extra inputs: only a host step of the numba engine reads them
            and (not extra or _inputs_of(extra) <= rule.host_inputs)
        )
        if engine == "fused" and not fused:
            raise RuntimeError(
                _torch_fused_refusal(members)
                + f"{self._owner}: the fused engine was required (fused=True or "
                f"engine='fused') but {_why_not_fused(rule, members)}"
            )
        if fused:
            inputs = _step_inputs(self._owner, extra, members, _numpy) if extra else {}
            counted = self._run_fused_or_refused(rule, members, {**ctx, **inputs}, engine)
            if counted is not None:
                return counted
        if engine != "eager" and all(m.numpy_ok() for m in members):
            return self._run_eager(rule, members, ctx, numpy=True)
        return self._run_eager(rule, members, ctx, numpy=False)

    def _whole_refusal(self, rule: _Rule, members: list[_Member], engine: str) -> str:
        """Why a required fused engine cannot run a step that couples parameters of
        several dtypes or state layouts."""
        fusable = rule.fusable if engine == "fused" else rule.triton_fusable
        why = (
            f"the transform {rule.transform!r} has stages the fused engine cannot compile"
            if not fusable
            else f"the transform {rule.transform!r} couples the group's parameters (a "
            "reduction or decision over all of them), which differ in dtype or state "
            "layout: their one step runs on the transform's own update; put them in "
            "separate param groups"
        )
        prefix = _torch_fused_refusal(members) if engine == "fused" else ""
        return (
            prefix + f"{self._owner}: the fused engine was required (fused=True or "
            f"engine={engine!r}) but {why}"
        )

    def _finish_step(self, rule: _Rule, members: list[_Member], counted: bool) -> None:
        """Advance the step counts the engine did not, and copy master weights back."""
        if rule.track_step and not counted:
            for m in members:
                m.state[STEP] += 1
        for m in members:
            if m.master:
                m.p.copy_(m.state[MASTER])

    def _run_device(
        self, rule: _Rule, members: list[_Member], ctx: dict, engine: str, foreach: Any, amp=None
    ) -> bool | None:
        """Step CUDA ``members`` (or any, for ``engine="triton"``): the Triton engine
        where it can, else the transform's own update on the tensors; True if the
        engine advanced the step counts, None if GradScaler's ``amp`` (read on the
        host where the kernel does not take it) skipped the step."""
        # sharded parameters whose norms must be reduced across ranks run eager
        mode = members[0].mode
        usable = rule.triton_fusable and (mode == "plain" or (mode == "local" and not rule.hooks))
        usable = usable and all(_cuda.member_runs_on_triton(m) for m in members)
        extra = self.__dict__.get("_gs_inputs")
        # extra inputs: only a host step of the engine reads them (Sophia's estimate)
        takes_inputs = not extra or _inputs_of(extra) <= rule.triton_host_inputs
        usable = usable and takes_inputs
        wanted = engine in ("fused", "triton") or (engine == "auto" and foreach is not True)
        if wanted and usable and not _cuda.triton_available():
            if engine != "auto":
                raise RuntimeError(
                    f"{self._owner}: the fused GPU engine was required (fused=True or "
                    f"engine={engine!r}) but Triton is not installed (pip install triton)"
                )
            _cuda.notice_no_triton()
            usable = False
        if engine in ("fused", "triton") and not usable:
            why = (
                "Triton is missing"
                if rule.triton_fusable
                else f"the transform {rule.transform!r} has stages the fused engine cannot compile"
            )
            if rule.triton_fusable and members[0].mode == "gather":
                why = "sharded parameters of this transform need whole tensors"
            elif rule.triton_fusable and not takes_inputs:
                why = f"no stage of it reads the step's inputs {sorted(_inputs_of(extra))}"
            elif rule.triton_fusable:
                m = next(m for m in members if not _cuda.member_runs_on_triton(m))
                why = (
                    f"a parameter is {m.w.dtype} on {m.w.device} "
                    f"({'contiguous' if m.w.is_contiguous() else 'not contiguous'}), or its "
                    "gradient or state differs from it in device, dtype or layout"
                )
            raise RuntimeError(
                f"{self._owner}: the fused GPU engine was required (fused=True or "
                f"engine={engine!r}) but {why}"
            )
        grads = [m.g for m in members]
        if not (wanted and usable):
            if amp is not None and not _cuda.unscaled(grads, amp):
                return None
            # True where the transform set the steps itself (a skipped step keeps them)
            return self._run_eager(rule, members, ctx, numpy=False)
        from ..engines.plan import Unsupported
        from ..engines.triton import TritonEngine

        if amp is not None and members[0].layout.shared_names():
            # scalar state carried between steps (a global reduction's) moves even
            # on a launch that skips its update: the flag is read first
            if not _cuda.unscaled(grads, amp):
                return None
            amp = None
        inputs = _step_inputs(self._owner, extra, members, _same) if extra else {}
        try:  # the host steps' inputs, as tensors on the parameters' device
            return self._run_bucket(TritonEngine, rule, members, {**ctx, **inputs}, _same, amp)
        except Unsupported as error:  # refused before anything was written
            if engine in ("fused", "triton"):
                raise RuntimeError(
                    f"{self._owner}: the fused GPU engine was required (fused=True or "
                    f"engine={engine!r}) but {error}"
                ) from error
            if amp is not None and not _cuda.unscaled(grads, amp):
                return None
            return self._run_eager(rule, members, ctx, numpy=False)

    def _run_fused_or_refused(self, rule, members, ctx, engine: str) -> bool | None:
        """:meth:`_run_fused`, or None where the engine refuses these arrays at the
        step (its ``Unsupported``, nothing changed: 16-bit parameters of a fused form
        that rounds its own updates, CAME's) and the engine is not required
        (``engine="fused"`` raises)."""
        from ..engines.plan import Unsupported

        try:
            return self._run_fused(rule, members, ctx)
        except Unsupported:
            if engine == "fused":
                raise
            return None

    def _run_fused(self, rule: _Rule, members: list[_Member], ctx: dict) -> bool:
        """Step ``members`` on the numba engine; True if it advanced their steps."""
        from ..engines.fused import FusedEngine

        return self._run_bucket(FusedEngine, rule, members, ctx, _numpy)

    def _run_bucket(
        self, engine: type, rule: _Rule, members: list[_Member], ctx, view, amp=None
    ) -> bool:
        """Step ``members`` with a fused ``engine`` over ``view``s of their tensors,
        reusing the bucket built for the same parameters and state tensors. ``amp``
        (the Triton engine): GradScaler's values, read by the kernel, and the step
        counts advanced unless it skipped (:func:`_cuda.count_unless_skipped`)."""
        rt = self._runtime()
        key = (engine.__name__, id(rule)) + tuple(id(m.p) for m in members)
        signature = _signature(members)
        bucket = rt.fused.get(key)
        if bucket is None or bucket.rule is not rule or bucket.signature != signature:
            bucket = rt.fused[key] = EngineBucket(engine(rule.run), rule, members, signature, view)
        if amp is None:
            counted = bucket.step(rule, members, ctx)
        else:
            bucket.step(rule, members, ctx, _cuda.amp_pair(amp[0], amp[1], members[0].w))
            counted = rule.track_step
            if counted:
                states = [m.state for m in members]
                _cuda.count_unless_skipped(states, amp[1], bucket.engine, ctx)
        try:
            torch.autograd.graph.increment_version([m.p for m in members if not m.master])
        except (TypeError, RuntimeError):  # pragma: no cover - tensor subclasses
            pass
        return counted

    def _run_eager(self, rule: _Rule, members: list[_Member], ctx: dict, numpy: bool) -> bool:
        """The transform's own ``update``: on NumPy views of CPU float32/float64
        tensors (``numpy``), else on the torch tensors themselves. True if it set the
        members' steps (from the new state's count: a step the transform skipped,
        e.g. ``nonfinite_policy(..., "skip")``, leaves the count, so it leaves
        torch's ``step`` too)."""
        layout = rule.group_layout([m.layout for m in members])
        view = _numpy if numpy else _same
        ws = [view(m.w) for m in members]
        entries = [{n: view(t) for n, t in m.entries.items()} for m in members]
        shared = _shared_values(rule, members[0])
        inputs, tree_entries = ws, entries
        if members[0].differentiable:
            # autograd keeps what the math reads; the tensors written in place below
            # must not be among them (torch's differentiable paths clone the same way)
            inputs = [w.clone() for w in ws]
            tree_entries = [{n: t.clone() for n, t in e.items()} for e in entries]
        tree, _ = layout.build(tree_entries, shared)
        if rule.reducer is not None:
            rule.reducer.identify(inputs)  # the parameters by which stages name tensors
        extra = self.__dict__.get("_gs_inputs")
        if extra:
            ctx = {**ctx, **_step_inputs(self._owner, extra, members, view)}
        try:
            with wide_updates():  # 16-bit parameters: the new value rounded once
                updates, new = rule.run.update(
                    [view(m.g) for m in members], rule.wrap(tree), inputs, **ctx
                )
        except (TypeError, ValueError, AttributeError, RuntimeError) as error:
            if numpy:
                raise
            w = members[0].w
            raise TypeError(
                f"{self._owner}: {rule.transform!r} failed on {w.dtype} tensors on {w.device} "
                f"(its eager math may be NumPy-only; CPU float32/float64 parameters run it "
                f"on NumPy): {error}"
            ) from error
        for w, u in zip(ws, updates):
            if numpy:
                np.add(w, u, out=w, casting="same_kind")
            else:
                w.add_(_to_torch(u, w))
        own, new_shared = layout.read(rule.unwrap(new), len(members))
        for targets, values in zip(entries, own):
            for name, value in values.items():
                target = targets[name]
                if value is target:
                    continue
                if numpy:
                    np.copyto(target, value, casting="same_kind")
                else:
                    target.copy_(_to_torch(value, target))
        for name in layout.shared_names():
            value = np.asarray(new_shared[name]).item()
            for m in members:
                m.state[rule.key(name)] = value
        # a count kept per parameter was advanced (or left) by the transform itself,
        # and copied into each ``step`` above
        own_count = any(STEP in values for values in own)
        counted = rule.track_step and (STEP in new_shared or own_count)
        skipped = getattr(rule.transform, "skipped", None)
        if rule.track_step and not counted and skipped is not None:
            # a transform without a count of its own that skipped this step: torch's
            # step, counted by the front, stays too
            counted = bool(skipped(rule.unwrap(new)))
        elif counted and not own_count:
            count = float(np.asarray(new_shared[STEP]))
            for m in members:
                step = m.state[STEP]
                if isinstance(step, torch.Tensor):
                    step.fill_(count)
                else:
                    m.state[STEP] = torch.tensor(count, dtype=scalar_dtype())
        if numpy:
            try:
                torch.autograd.graph.increment_version([m.p for m in members if not m.master])
            except (TypeError, RuntimeError):  # pragma: no cover - tensor subclasses
                pass
        if members[0].mode == "gather":
            for m in members:
                store = m.state[MASTER] if m.master else m.p
                _dist.local(store).copy_(_dist.local_chunk(m.w, store))
                for name, value in m.entries.items():
                    target = m.state.get(rule.key(name))
                    if _dist.is_dtensor(target):
                        _dist.local(target).copy_(_dist.local_chunk(value, target))
        return counted


def _torch_fused_refusal(members: list[_Member]) -> str:
    """torch's own words where torch's fused kernels refuse a parameter's device or
    dtype (followed by gradstep's reason), else nothing."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        devices = _get_fused_kernels_supported_devices()
    except ImportError:  # pragma: no cover - older torch
        devices = ["cuda", "cpu"]
    for m in members:
        if m.p.device.type not in devices or not m.p.is_floating_point():
            return (
                "`fused=True` requires all the params to be floating point Tensors of "
                f"supported devices: {devices} but {m.p.dtype} and {m.p.device.type}. "
            )
    return ""


def _why_not_fused(rule: _Rule, members: list[_Member]) -> str:
    if not rule.fusable:
        return f"the transform {rule.transform!r} has stages the fused engine cannot compile"
    if members[0].mode == "gather":
        return "sharded parameters of this transform need whole tensors"
    if rule.reducer is not None and rule.reduces_per_tensor:
        return "the per-tensor norms of sharded parameters are reduced across ranks"
    for m in members:
        if not m.fusable():
            return (
                f"{m.why_not_fusable()}; the fused engine takes contiguous CPU "
                "float32/float64/float16/bfloat16 parameters with gradients of their dtype "
                "and state tensors on their device"
            )
    return "the parameters cannot be run by it"  # pragma: no cover


def _inputs_of(extra: dict) -> set:
    """The names of a step's extra inputs (``hvp`` where the front may build it)."""
    return set(extra["names"]) | ({"hvp"} if extra["hvp"] else set())


#: the complex dtype whose real view has the dtype
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _step_inputs(owner: str, extra: dict, members: list[_Member], view: Any) -> dict:
    """A step's extra inputs for the bucket ``members`` (see ``RegistryOptimizer.step``):
    each named input as a list in the members' order, and ``hvp``, the Hessian-vector
    products of the members' gradients where those carry a graph (``create_graph``)."""
    out: dict[str, Any] = {}
    for name in extra["names"]:
        values = []
        for m in members:
            value = extra["values"].get(id(m.p), {}).get(name)
            if value is None:
                raise ValueError(
                    f"{owner}.step(): no {name} given for a parameter of shape {tuple(m.p.shape)}"
                )
            if m.p.is_complex():  # a complex parameter's input: its real view too
                dtype = _COMPLEX.get(m.w.dtype, m.p.dtype)
                value = _real_view(torch.as_tensor(value, dtype=dtype, device=m.w.device))
            values.append(view(torch.as_tensor(value, dtype=m.w.dtype, device=m.w.device)))
        out[name] = values
    if extra["hvp"] and all(m.p.grad is not None and m.p.grad.requires_grad for m in members):
        grads = [m.p.grad for m in members]
        params = [m.p for m in members]

        def hvp(vectors: Any) -> list:
            probes = [_to_torch(z, p) for z, p in zip(vectors, params)]
            # a complex parameter's probe is its real view: the product's real view is
            # the real Hessian's product with it (torch's gradient is dL/dx + i dL/dy)
            probes = [
                torch.view_as_complex(z.contiguous()) if p.is_complex() else z
                for z, p in zip(probes, params)
            ]
            products = torch.autograd.grad(grads, params, probes, retain_graph=True)
            return [view(_real_view(h)) for h in products]

        out["hvp"] = hvp
    return out
