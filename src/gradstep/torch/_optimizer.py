"""``TransformOptimizer``: any gradstep transform as a ``torch.optim.Optimizer``.

The optimizer keeps torch's conventions (per-parameter state created on the first
step, a ``step`` count per parameter, parameters without a gradient skipped,
``param_groups`` whose values every step reads) and runs the transform's math:

- CPU tensors go to the numba engine as zero-copy NumPy views, CUDA tensors to the
  Triton engine (``channels_last`` ones as C-contiguous views of their memory:
  :func:`gradstep.torch._members._storage_view`), both writing in place;
- anything else runs the transform's own ``update``: the same element functions;
- DTensor parameters (FSDP2) run on their local shards with norms reduced across
  ranks, or, for transforms that need whole tensors, on all-gathered tensors.

A group's step is one step of its transform over all its parameters: one engine call
per bucket (dtype, device, state layout) for a transform updating each tensor alone,
else one call of its own update over all of them (global norms, skips, accumulation).
A parameter that missed steps keeps its own count, as in torch, and steps apart.
"""

from __future__ import annotations

from typing import Any

import torch

from .._core.precision import MIN_8BIT_RANGE, StateDtype
from .._core.rounding import ROUNDING_OPTIONS, ROUNDING_RANGES
from .._core.transform import Transform
from .._core.validate import BOOL, OneOf, check
from . import _cuda
from ._checks import check_member
from ._compile import StepNotTraced
from ._cpu_fast import fast_step
from ._engines import EngineRuns
from ._members import _first_param, _Member, _Runtime, whole_steps
from ._overlap import rounds as _rounds
from ._param_state import ParamState, step_on_device, stored
from ._rule import (
    _FOREACH,
    _LOW_PRECISION,
    ENGINES,
    FRONT_OPTIONS,
    MASTER,
    _freeze,
    _Rule,
    baked_values,
)
from ._structure import edited_build, handed_over_values, structure


class TransformOptimizer(StepNotTraced, ParamState, EngineRuns, torch.optim.Optimizer):
    r"""Any gradstep transform as a ``torch.optim.Optimizer``.

    Args:
      params: parameters or param-group dicts, as for every torch optimizer.
      transform: the gradstep transform (e.g. ``gradstep.adam(1e-3)`` or a chain).
      **group_defaults: default values for every group: ``lr`` (the transform's
        ``learning_rate``: what torch's lr schedulers write), any other
        hyperparameter of the transform under its gradstep name (``beta1``,
        ``weight_decay``, ...), and the front options ``maximize`` (False),
        ``foreach`` (None; False steps each tensor in its own call, except under
        a transform that couples the tensors, whose step stays one), ``engine``
        (``"auto"``, ``"fused"`` to require the fused engine, ``"eager"``,
        ``"triton"`` to require the Triton engine), ``master_weights`` (False; True
        keeps a float32 copy and float32 state for float16/bfloat16 parameters) and
        ``capturable`` (False; True keeps the step count on the parameters' CUDA
        device and computes every per-step scalar there, so that ``step()`` can be
        captured in a CUDA graph) and ``state_dtype`` (None: each state tensor in
        its parameter's dtype; a dtype such as ``torch.bfloat16``, or ``{slot name:
        dtype}``: the storage of the rule's slots, :mod:`gradstep._core.precision`;
        a param group may set its own), ``stochastic_rounding``, ``rounding_seed``
        and ``kahan_summation`` (False, 0, False: bfloat16 stores rounded
        stochastically, the parameter update Kahan-compensated;
        :mod:`gradstep._core.rounding`; a param group may set its own).

    Complex parameters step as their real views (``torch.view_as_real``), as in
    torch.optim; a transform whose math reads tensor shapes refuses them at the step.

    A group's values are handed to the transform on every step by name, so a
    scheduler or a hand edit of ``group["lr"]`` takes effect on the next step; the
    defaults are the values the transform was built with.

    Example:
      >>> import torch, gradstep
      >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
      >>> opt = gradstep.torch.TransformOptimizer([w], gradstep.sgd(0.1))
      >>> w.grad = torch.tensor([1.0, 1.0]); opt.step(); w.data
      tensor([ 0.9000, -2.1000])
    """

    _rename: dict[str, str] = {}
    _track_step = True
    # group values are checked against the transform's ranges (False: the class
    # applies the checks of the library it mimics instead)
    _check_ranges = True
    # a second occurrence of a parameter in one step, whose state that step created,
    # starts from a fresh state again (torch's SGD momentum buffer)
    _repeat_starts_afresh = False
    _build_keys: tuple[str, ...] = ()
    _gradstep_names = True
    # complex parameters: True steps each as its real view (torch.view_as_real), state
    # complex like it, as torch.optim does, unless the rule reads tensor shapes
    # (Transform.reads_shape); False: torch's RuntimeError at the step (as torch's class)
    _complex: bool = True

    def __init__(self, params: Any, transform: Transform, **group_defaults: Any):
        if not isinstance(transform, Transform):
            raise TypeError(
                f"TransformOptimizer: expected a gradstep transform, got {type(transform).__name__}"
            )
        self._transform = transform
        super().__init__(params, self._transform_defaults(transform, group_defaults))

    @property
    def _step_supports_amp_scaling(self) -> bool:
        """GradScaler hands ``grad_scale``/``found_inf`` to step() instead of unscaling
        the gradients itself: where the Triton engine runs, which unscales and skips
        inside its kernel. Elsewhere GradScaler's own single unscaling pass is the
        cheaper one (groups are judged by their first parameter)."""
        if not _cuda.triton_available():
            return False
        return all(
            group.get("engine") == "triton" or group["params"][0].is_cuda
            for group in self.param_groups
            if group["params"]
        )

    # -- groups ------------------------------------------------------------------------

    @property
    def _owner(self) -> str:
        return type(self).__name__

    def _transform_defaults(self, transform: Transform, given: dict) -> dict:
        known = transform.hyperparameters()
        baked = baked_values(transform)
        defaults: dict[str, Any] = {}
        if "learning_rate" in known:
            defaults["lr"] = baked.get("learning_rate")
        for name in known:
            if name != "learning_rate":
                defaults[name] = baked.get(name)
        defaults.update(maximize=False, foreach=None, engine="auto", capturable=False)
        for key, value in given.items():
            if key == "learning_rate":
                raise ValueError(
                    "TransformOptimizer: give the learning rate as lr=... (the key torch's "
                    "schedulers write)"
                )
            extensions = ["master_weights", "state_dtype", "min_8bit_size", *ROUNDING_OPTIONS]
            if key not in defaults and key not in extensions:
                raise ValueError(
                    f"TransformOptimizer: unknown option {key!r}; valid options: "
                    f"{', '.join(list(defaults) + extensions)}"
                )
            defaults[key] = value
        return defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "learning_rate" in param_group and self._gradstep_names:
            if "lr" in param_group:
                raise ValueError(f"{self._owner}: a group gives both lr and learning_rate")
            param_group = dict(param_group)
            param_group["lr"] = param_group.pop("learning_rate")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._check_group(group)

    def _check_group(self, group: dict) -> None:
        owner = self._owner
        if self._check_ranges:  # classes mimicking torch take any truthy maximize
            check(owner, "maximize", group.get("maximize", False), BOOL)
        check(owner, "foreach", group.get("foreach"), _FOREACH)
        check(owner, "master_weights", group.get("master_weights", False), BOOL)
        check(owner, "capturable", group.get("capturable", False), BOOL)
        check(owner, "state_dtype", group.get("state_dtype"), StateDtype())
        for option, valid in {**ROUNDING_RANGES, "min_8bit_size": MIN_8BIT_RANGE}.items():
            if option in group:  # storage options: validated when a group sets them
                check(owner, option, group[option], valid)
        check(owner, "engine", self._engine(group), OneOf(ENGINES))
        rule = self._rule(group)
        rule.ctx(group, owner)
        # complex parameters step as real views or are refused at the step; integer ones
        # (a counter kept as a Parameter) are taken and never stepped, as in torch.optim

    def _engine(self, group: dict) -> str:
        return group.get("engine", "auto")

    def _build(self, group: dict) -> tuple[Transform, dict[str, tuple[str, ...]]]:
        """The group's transform and which group keys feed which hyperparameters."""
        dynamic = {"lr": ("learning_rate",)}
        for key in group:
            if key not in FRONT_OPTIONS:
                dynamic[key] = (key,)
        return self._transform, dynamic

    def _sparse_error(self, group: dict) -> str | None:
        """Why this group cannot take sparse gradients (None: it takes them densified)."""
        return (
            f"{self._owner} does not support sparse gradients: its rule keeps dense "
            "per-element state, and a sparse gradient's missing entries would still move "
            "it; densify the gradient (p.grad = p.grad.to_dense()) if zeros are meant"
        )

    def _rule(self, group: dict) -> _Rule:
        rt = self._runtime()
        entry = rt.rules.get(id(group))
        built = None
        if entry is not None and entry[2] is group:
            key, rule = entry[0], entry[1]
            if key == self._rule_key(group, rule.dynamic):
                built = edited_build(self._build, group, rule, self._owner)
                if built is None:
                    return rule
            rt.drop_rule(rule)
        transform, dynamic = built or self._build(group)
        fixed = type(self)._build is TransformOptimizer._build  # a given transform, as it is
        built_structure = None if fixed else structure(transform, dynamic)
        transform = stored(transform, group, self._owner)
        flags = self._rename, self._track_step, self._check_ranges
        rule = _Rule(transform, dynamic, bool(group.get("maximize", False)), *flags)
        rule.layout(_first_param(group))  # a state that cannot split fails here
        rule.built_structure = built_structure
        rule.handed_values = handed_over_values(group, rule.dynamic)
        if len(rt.rules) > 4 * len(self.param_groups) + 8:
            live = {id(g) for g in self.param_groups}
            rt.rules = {k: v for k, v in rt.rules.items() if k in live}
            rt.fused = {}
        rt.rules[id(group)] = (self._rule_key(group, rule.dynamic), rule, group)
        return rule

    def _rule_key(self, group: dict, dynamic: dict) -> tuple:
        keys = [k for k in self._build_keys if k not in dynamic]
        storage = tuple(_freeze(group.get(k)) for k in ROUNDING_OPTIONS)
        return (
            (bool(group.get("maximize", False)),)
            + tuple(_freeze(group.get(k)) for k in keys)
            + storage
        )

    def _runtime(self) -> _Runtime:
        rt = self.__dict__.get("_gs_runtime")
        if rt is None:
            rt = self.__dict__["_gs_runtime"] = _Runtime()
        return rt

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_transform"] = self._transform
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # torch's load_state_dict calls this with only state and param_groups: the
        # transform stays (unpickling an old pickle without one gives None)
        state.setdefault("_transform", self.__dict__.get("_transform"))
        super().__setstate__(state)
        self.__dict__.pop("_gs_runtime", None)

    # -- stepping ----------------------------------------------------------------------

    def step(self, closure: Any = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` (optional)
        re-evaluates the loss first and its value is returned."""
        return self._step(closure)

    def _step(self, closure: Any = None) -> Any:
        # the step itself: subclasses call it, not super().step(), which torch wraps
        # with the step hooks once it has made an instance of this class (the hooks
        # would run twice)
        if hasattr(self._transform, "step_with_closure") and not self._closure_updates():
            return self._closure_step(closure)
        if closure is not None and self._closure_updates() > 1:
            return self._repeated_closure_step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if _capturing():
            for group in self.param_groups:
                if not group.get("capturable", False):
                    raise RuntimeError(
                        f"{self._owner}: CUDA graph capture of step() needs capturable=True "
                        "(this group keeps its step count on the host)"
                    )
        # GradScaler hands over its scale and its found-inf flag instead of unscaling
        # the gradients itself (_step_supports_amp_scaling); None outside AMP
        amp = None
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        if grad_scale is not None or found_inf is not None:
            amp = (grad_scale, found_inf)
        # differentiable=True: the step is recorded by autograd, as torch.optim's
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable", False))):
            for group in self.param_groups:
                if loss is not None and group.get("value") is None and self._rule(group).takes_loss:
                    # a rule stepped by the loss (Polyak's step): the closure's loss is
                    # this step's value, unless the group gives one
                    self._step_group(group, amp, {"value": float(loss.detach())})
                else:
                    self._step_group(group, amp)
        return loss

    def _closure_updates(self) -> int:
        """How many updates a closure-driven step makes (``updates_per_closure`` of
        the groups' transforms, e.g. 2 for SAM's ascent and descent); 0 if none says."""
        return max(
            (getattr(self._rule(g).transform, "updates_per_closure", 0) for g in self.param_groups),
            default=0,
        )

    def _repeated_closure_step(self, closure: Any) -> Any:
        """Evaluate ``closure`` and update, as many times as the transform's step
        takes (SAM: the ascent, then the descent with the gradient at the perturbed
        point); returns the loss of the first evaluation."""
        loss = None
        for k in range(self._closure_updates()):
            with torch.enable_grad():
                value = closure()
            loss = value if k == 0 else loss
            self.step()
        return loss

    def _closure_step(self, closure: Any) -> Any:
        """A rule that re-evaluates the loss itself (L-BFGS): all parameters as one
        vector, state under torch.optim.LBFGS's keys, as ``gradstep.torch.LBFGS``."""
        from ._lbfgs import closure_step

        owner = self._owner
        if closure is None:
            raise RuntimeError(
                f"{owner}: {self._transform!r} requires a closure that "
                "re-evaluates the loss: opt.step(closure)"
            )
        if len(self.param_groups) != 1:
            raise ValueError(
                f"{owner}: {self._transform!r} steps all parameters as one "
                "vector; give them in one param group"
            )
        group = self.param_groups[0]
        if group.get("maximize"):
            raise ValueError(f"{owner}: maximize=True is not supported by {self._transform!r}")
        return closure_step(
            owner, self._transform, group["params"], self.state, closure, group["lr"]
        )

    def _step_group(self, group: dict, amp: tuple | None = None, extra: dict | None = None) -> None:
        rule = self._rule(group)
        ctx = rule.ctx(group, self._owner, keep_tensors=bool(group.get("differentiable")))
        if extra:
            ctx = {**ctx, **extra}
        fast = self._runtime().fast.get(id(group))
        if fast is not None and fast.group is group and fast.rule is rule:
            if fast.step(self, ctx, amp):
                return
            del self._runtime().fast[id(group)]
        # GradScaler's flag: read by the Triton kernel where it can, else here on the host
        kernel_amp = amp if amp is not None and self._amp_in_kernel(group, rule) else None
        if amp is not None and kernel_amp is None and not _cuda.unscaled(_grads(group), amp):
            return  # GradScaler found an infinite gradient: the step changes nothing
        stepped = []
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if not (p.is_complex() or p.is_floating_point()):
                raise TypeError(
                    f"{self._owner}: a parameter of {p.dtype} has a gradient; only "
                    "floating-point and complex parameters are stepped"
                )
            if p.is_complex() and (not self._complex or rule.shape_stage is not None):
                raise RuntimeError(rule.complex_refusal(self._owner, self._complex))
            if grad.layout != torch.strided:
                reason = self._sparse_error(group)
                if reason is not None:
                    raise RuntimeError(reason)
                grad = grad.to_dense()
            stepped.append((p, grad))
        rounds = _rounds(stepped)
        if len(rounds) == 1:
            buckets = self._step_round(group, rule, ctx, stepped, set(), kernel_amp)
            self._remember_fast_step(group, rule, buckets)
            return
        if kernel_amp is not None and not _cuda.unscaled(_grads(group), kernel_amp):
            return
        # the same tensor twice, or overlapping views: stepped one occurrence after
        # the other, as torch.optim's loop does (every state is checked first, so a
        # refused step changes nothing)
        if rule.global_norm:
            raise ValueError(
                f"{self._owner}: a global norm over a parameter list that holds the same "
                "tensor twice (or overlapping views of one) is not defined; give each "
                "tensor once"
            )
        for p, grad in stepped:
            state = self.state.get(p)
            if state:
                master = bool(group.get("master_weights", False)) and p.dtype in _LOW_PRECISION
                if not master or MASTER in state:
                    m = _Member(p, grad, state, master, False, rule)
                    check_member(
                        self._owner, lambda p=p: self._where(p), p, m.w, m.entries, rule, m.layout
                    )
        started: set[int] = set()
        for entries in rounds:
            self._step_round(group, rule, ctx, entries, started)

    def _step_round(
        self, group: dict, rule: _Rule, ctx: dict, entries: list, started: set, amp=None
    ) -> dict:
        """Step ``entries`` (``(parameter, gradient)``, no two sharing memory); returns
        the buckets it ran. ``started`` holds the ids of the parameters whose state an
        earlier round of this step created; ``amp``: GradScaler's values, which the
        step reads on the device (see :meth:`_amp_in_kernel`)."""
        differentiable = bool(group.get("differentiable", False))
        # differentiable=True runs the rule's own math on the tensors under autograd
        engine = "eager" if differentiable else self._engine(group)
        per_tensor = group.get("foreach") is False
        master_option = bool(group.get("master_weights", False))
        buckets: dict[tuple, list[_Member]] = {}
        order: list[_Member] = []  # the group's order, which one step keeps
        for p, grad in entries:
            master = master_option and p.dtype in _LOW_PRECISION
            state = self.state.get(p)
            if state is None:
                state = {}
            fresh = self._ensure_state(p, state, rule, master)
            if id(p) in started and self._repeat_starts_afresh:
                # torch's SGD makes the momentum buffer of a parameter that had none
                # at the start of the step from the gradient, for every occurrence
                for name in rule.layout(p.detach()).names:
                    value = state.get(rule.key(name))
                    if isinstance(value, torch.Tensor):
                        value.zero_()
                fresh = True
            elif fresh:
                started.add(id(p))
            if group.get("capturable", False):
                step_on_device(p, state, interpreted=engine == "triton")
            if state and p not in self.state:
                self.state[p] = state  # torch keeps no entry for a rule without state
            m = _Member(p, grad, state, master, fresh, rule, differentiable)
            check_member(self._owner, lambda p=p: self._where(p), p, m.w, m.entries, rule, m.layout)
            key = (m.mode, m.w.device, m.w.dtype, id(m.layout), rule.form_covers(m.w.shape))
            key += m.shared_key(rule)
            if per_tensor:
                key += (id(p),)
            buckets.setdefault(key, []).append(m)
            order.append(m)
        runs = [(members, False) for members in buckets.values()]
        if len(runs) > 1 and not rule.separable:
            # the transform may couple the tensors: one step over the whole group
            # (as far as one tree can hold them), not one per bucket
            runs = whole_steps(rule, order)
        if rule.global_norm and len(runs) > 1:
            raise ValueError(
                f"{self._owner}: a global norm over parameters that cannot be stepped "
                "together (different devices or step counts); put them in separate param "
                "groups"
            )
        for members, whole in runs:
            self._run(rule, members, ctx, engine, group.get("foreach"), whole, amp)
            self._after_step(group, members)
        return buckets

    def _amp_in_kernel(self, group: dict, rule: _Rule) -> bool:
        """:func:`_cuda.kernel_reads_amp`, for a class deriving no state after steps."""
        derives = type(self)._after_step is not TransformOptimizer._after_step
        return not derives and _cuda.kernel_reads_amp(group, rule, self._engine(group))

    def _remember_fast_step(self, group: dict, rule: _Rule, buckets: dict) -> None:
        """After a one-launch step (Triton, numba), keep what repeats it cheaply."""
        rt = self._runtime()
        fast = fast_step(self, group, rule, buckets, rt.fused)
        if fast is not None:
            rt.fast[id(group)] = fast

    def _fast_carried(self, group: dict, dicts: list[dict]) -> Any:
        """Keeper of the values this class carries between steps (``_cuda.carried_step``):
        None if it carries none, False where a fast path cannot keep them."""
        return None if type(self)._after_step is TransformOptimizer._after_step else False

    def _where(self, p: Any) -> str:
        """``parameter i of param group j`` for ``p``, for error messages."""
        for j, group in enumerate(self.param_groups):
            for i, q in enumerate(group["params"]):
                if q is p:
                    return f"parameter {i} of param group {j}"
        return "a parameter"  # pragma: no cover - p is always in a group

    def _after_step(self, group: dict, members: list[_Member]) -> None:
        """Keep state entries torch has and the rule derives (none here)."""


def _grads(group: dict) -> list:
    return [p.grad for p in group["params"] if p.grad is not None]


def _capturing() -> bool:
    """A CUDA graph is being captured on the current stream."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
