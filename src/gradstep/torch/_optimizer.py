"""``TransformOptimizer``: any gradstep transform as a ``torch.optim.Optimizer``.

The optimizer keeps torch's conventions (per-parameter state created on the first
step, a ``step`` count per parameter, parameters without a gradient skipped,
``param_groups`` whose values every step reads) and runs the transform's math:

- CPU float32/float64 contiguous tensors go to the fused engine as zero-copy NumPy
  views (the kernel writes the parameters and the state in place);
- everything else (other dtypes, other devices, non-contiguous tensors, transforms
  the fused engine cannot compile) runs the transform's own ``update`` on torch
  tensors: the same element functions with torch operations;
- DTensor parameters (FSDP2) run on their local shards with norms reduced across
  ranks, or, for transforms that need whole tensors, on all-gathered tensors.

Parameters of one group are stepped together as far as they can share one call:
same engine, dtype and device, and the same step count (a parameter that missed
steps keeps its own count, as in torch).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from .._core.combine import Masked
from .._core.elementwise import Elementwise, NormScaled
from .._core.per_tensor import PerTensorReduction
from .._core.transform import Chain, Transform, map_transform, walk
from .._core.validate import BOOL, OneOf, check
from . import _cuda
from . import _distributed as _dist
from ._checks import check_loaded_state, check_member
from ._overlap import rounds as _rounds
from ._state import STEP, Layout, StateSplitError, shape_independent

ENGINES = ("auto", "fused", "eager", "triton")
#: group keys that are the front's own options, not hyperparameters of the transform
FRONT_OPTIONS = ("params", "lr", "maximize", "foreach", "engine", "master_weights", "capturable")
MASTER = "master_param"
_FUSED_DTYPES = (torch.float32, torch.float64)
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_FOREACH = OneOf((None, False, True))


def _negated(g, factor):
    return g * factor


def _negation(h: dict, count: int) -> dict:
    return {"factor": -1.0}


def maximize_stage() -> Elementwise:
    """``u <- -g``: torch's ``maximize=True``, placed before every other stage."""
    return Elementwise("maximize", _negated, prepare=_negation)


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim gives its ``step`` tensors."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


# -- reductions that see every rank ---------------------------------------------------


class _ReducedNorm(NormScaled):
    """A norm-scaled stage whose per-tensor sums go through ``reduce`` first."""

    reduce = None

    def factors(self, sums, count, ctx):
        if self.reduce is not None:
            sums = self.reduce(sums)
        return super().factors(sums, count, ctx)


class _ReducedCombine:
    """Wraps a per-tensor reduction's ``combine``: the i-th call is tensor i."""

    def __init__(self, combine):
        self.combine = combine
        self.__wrapped__ = combine  # what an engine that reduces on its own calls
        self.reduce = None
        self.calls = 0

    def __call__(self, sums, flags, h):
        i = self.calls
        self.calls += 1
        if self.reduce is not None:
            sums = self.reduce.one(i, sums)
        return self.combine(sums, flags, h)


def _instrument(t: Transform, hooks: list) -> Transform:
    """A copy of ``t`` whose reductions can be routed through a reducer."""

    def instrument(node: Transform) -> Transform:
        if type(node) is NormScaled:
            copy = _ReducedNorm(node.name, node.factor, node.hyperparams, node.per_tensor)
            hooks.append(copy)
            return copy
        if type(node) is PerTensorReduction:
            wrapper = _ReducedCombine(node.combine)
            hooks.append(wrapper)
            return node.replace(combine=wrapper)
        return node

    return map_transform(instrument, t)


def _local_ok(t: Transform) -> bool:
    """Every stage is elementwise math plus norms (so it can run on local shards)."""
    return all(
        isinstance(v.transform, (Chain, Masked))
        or type(v.transform) in (Elementwise, NormScaled, PerTensorReduction)
        for v in walk(t)
    )


def _global_norm(t: Transform) -> bool:
    return any(isinstance(v.transform, NormScaled) and not v.transform.per_tensor for v in walk(t))


def _fusable(t: Transform, per_tensor: bool = False) -> bool:
    """The numba engine can compile ``t`` (``per_tensor``: the Triton engine, which
    also runs per-tensor reductions such as LAMB's trust ratio)."""
    from ..engines.fused import NotFusable, flatten_stages

    try:
        flatten_stages(t, per_tensor=per_tensor)
    except NotFusable:
        return False
    return True


def baked_values(t: Transform) -> dict[str, Any]:
    """The number each overridable hyperparameter has in ``t`` (None where it is a
    schedule or differs between stages)."""
    out: dict[str, Any] = {}
    conflict: set[str] = set()
    for visit in walk(t):
        if not isinstance(visit.transform, Elementwise):
            continue
        for name, value in visit.transform.hyperparams.items():
            if callable(value) or not isinstance(value, numbers.Real):
                value = None
            if name in out and out[name] != value:
                conflict.add(name)
            out.setdefault(name, value)
    return {k: (None if k in conflict else v) for k, v in out.items()}


def _number(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"a tensor hyperparameter must have one element, got shape {v.shape}")
        return float(v)
    return v


def _freeze(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return ("tensor", float(v)) if v.numel() == 1 else ("tensor", id(v))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if callable(v):
        return ("callable", id(v))
    return v


# -- one group's rule ------------------------------------------------------------------


class _Rule:
    """A group's transform, prepared for stepping."""

    def __init__(
        self,
        transform: Transform,
        dynamic: dict[str, tuple[str, ...]],
        maximize: bool,
        rename: dict[str, str],
        track_step: bool,
        check_ranges: bool = True,
    ):
        self.transform = transform
        self.check_ranges = check_ranges
        self.shape_independent = shape_independent(transform)
        self._layouts: dict = {}
        self._wanted: dict = {}
        self.ranges = transform.hyperparameters()
        self.dynamic = {
            k: names for k, names in dynamic.items() if all(n in self.ranges for n in names)
        }
        self.rename = rename
        self.track_step = track_step
        self.hooks: list = []
        run = _instrument(transform, self.hooks)
        self.maximize = maximize
        if maximize:
            run = Chain((maximize_stage(), run), name=transform.name)
            self.inner_name = run.stage_names[1]
        self.run = run
        self.fusable = _fusable(run)
        self.triton_fusable = _fusable(run, per_tensor=True)
        self.local_ok = _local_ok(transform)
        self.global_norm = _global_norm(transform)
        self._checked: dict[int, tuple] = {}
        self.entry_shapes: dict[tuple, dict] = {}  # see _checks.expected_shapes

    def layout(self, like: Any) -> Layout:
        """The state layout for parameters like ``like`` (one for all when the state's
        structure does not depend on the shape)."""
        key = None if self.shape_independent else (tuple(like.shape), str(like.dtype))
        layout = self._layouts.get(key)
        if layout is None:
            probe = None
            if key is not None:
                dtype = {torch.float32: np.float32}.get(like.dtype, np.float64)
                probe = np.zeros(tuple(like.shape), dtype)
            try:
                layout = Layout(self.transform, probe)
            except StateSplitError as error:
                raise TypeError(f"gradstep.torch: {error}") from None
            self._layouts[key] = layout
        return layout

    def wanted(self, layout: Layout) -> list[str]:
        """The state keys a parameter of ``layout`` must have."""
        keys = self._wanted.get(id(layout))
        if keys is None:
            keys = [self.key(n) for n in layout.names if n not in layout.empty]
            keys += [self.key(n) for n in layout.shared_names()]
            self._wanted[id(layout)] = keys
        return keys

    def key(self, name: str) -> str:
        """The state key of the layout entry ``name``."""
        return self.rename.get(name, name)

    def wrap(self, tree: Any) -> Any:
        return {"maximize": {}, self.inner_name: tree} if self.maximize else tree

    def unwrap(self, tree: Any) -> Any:
        return tree[self.inner_name] if self.maximize else tree

    def ctx(self, group: dict, owner: str) -> dict[str, Any]:
        """This step's hyperparameter values from the group, checked when they change."""
        out: dict[str, Any] = {}
        labels: dict[str, str] = {}
        for key, names in self.dynamic.items():
            value = group.get(key)
            if value is None:
                continue
            if len(names) == 1:
                values = [value]
            else:
                values = list(value)
                if len(values) != len(names):
                    raise ValueError(f"{owner}: {key} must have {len(names)} values, got {value!r}")
            for i, (name, v) in enumerate(zip(names, values)):
                if callable(v) and not isinstance(v, torch.Tensor):
                    continue  # a schedule is part of the transform itself
                out[name] = _number(v)
                labels[name] = key if len(names) == 1 else f"{key}[{i}]"
        signature = tuple(out.items())
        if self.check_ranges and self._checked.get(id(group)) != signature:
            for name, value in out.items():
                constraint = self.ranges.get(name)
                if constraint is not None:
                    check(owner, labels[name], value, constraint)
            self._checked[id(group)] = signature
        return out


# -- the parameters of one call --------------------------------------------------------


class _Member:
    """One parameter in one step: the tensors its math reads and writes."""

    __slots__ = ("p", "state", "master", "fresh", "mode", "w", "g", "entries", "layout")

    def __init__(self, p, grad, state, master: bool, fresh: bool, rule: _Rule):
        self.p = p
        self.state = state
        self.master = master
        self.fresh = fresh
        store = state[MASTER] if master else p
        if not _dist.is_dtensor(p):
            self.mode = "plain"
            convert = _same
        elif rule.local_ok:
            self.mode = "local"
            convert = _dist.local
        else:
            self.mode = "gather"
            convert = _dist.full
        self.w = convert(store.detach())
        g = convert(grad)
        self.g = g.to(torch.float32) if master else g
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
        """All its tensors can be seen as NumPy arrays (CPU float32/float64)."""
        w, g = self.w, self.g
        if w.device.type != "cpu" or w.dtype not in _FUSED_DTYPES:
            return False
        if g.layout != torch.strided or g.dtype != w.dtype or g.device != w.device:
            return False
        return all(
            t.device.type == "cpu" and t.dtype not in (torch.bfloat16,) and not t.is_complex()
            for t in self.entries.values()
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

    def fusable(self) -> bool:
        """The numba engine can run it: :meth:`dense` CPU float32/float64."""
        return self.w.device.type == "cpu" and self.dense(_FUSED_DTYPES)


def _same(t):
    return t


def _first_param(group: dict) -> Any:
    params = group["params"]
    return params[0].detach() if params else torch.zeros(2)


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
    return torch.from_numpy(array).to(like.device)


def _to_torch(value: Any, like: torch.Tensor) -> Any:
    """A result of a rule whose math converts its inputs to NumPy, as a tensor."""
    if isinstance(value, (np.ndarray, np.generic)):
        return torch.as_tensor(np.asarray(value), device=like.device)
    return value


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().resolve_neg().numpy()


class _FusedBucket:
    """A fused-engine call over fixed parameters, with its NumPy views kept."""

    def __init__(self, rule: _Rule, members: list[_Member], signature: tuple):
        from ..engines.fused import FusedEngine

        self.engine = FusedEngine(rule.run)
        self.signature = signature
        self.w = [_numpy(m.w) for m in members]
        entries = [{n: _numpy(t) for n, t in m.entries.items()} for m in members]
        shared = _shared_values(rule, members[0])
        tree, self.refs = members[0].layout.build(entries, shared)
        self.tree = rule.wrap(tree)
        # the step counts, advanced through views (cheaper than a torch op each)
        steps = [m.state.get(STEP) for m in members] if rule.track_step else []
        self.steps = None
        if steps and all(_cpu_scalar(t) for t in steps):
            self.steps = [_numpy(t) for t in steps]

    def step(self, rule: _Rule, members: list[_Member], ctx: dict) -> None:
        shared = _shared_values(rule, members[0])
        layout = members[0].layout
        for container, key, name in self.refs:
            value = shared[name]
            container[key] = (
                np.asarray(int(value), np.int64)
                if name == STEP
                else np.asarray(value, layout.shared[name])
            )
        grads = [_numpy(m.g) for m in members]
        self.engine.step_leaves(self.w, grads, self.w, self.tree, ctx)


def _signature(members: list[_Member]) -> tuple:
    return tuple(
        (id(m.p), m.w.data_ptr(), tuple(m.w.shape), id(m.state.get(STEP)))
        + tuple((n, t.data_ptr(), tuple(t.shape)) for n, t in m.entries.items())
        for m in members
    )


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


# -- the optimizer --------------------------------------------------------------------


class TransformOptimizer(torch.optim.Optimizer):
    r"""Any gradstep transform as a ``torch.optim.Optimizer``.

    Args:
      params: parameters or param-group dicts, as for every torch optimizer.
      transform: the gradstep transform (e.g. ``gradstep.adam(1e-3)`` or a chain).
      **group_defaults: default values for every group: ``lr`` (the transform's
        ``learning_rate``: what torch's lr schedulers write), any other
        hyperparameter of the transform under its gradstep name (``beta1``,
        ``weight_decay``, ...), and the front options ``maximize`` (False),
        ``foreach`` (None; False steps each tensor in its own call), ``engine``
        (``"auto"``, ``"fused"`` to require the fused engine, ``"eager"``,
        ``"triton"`` to require the Triton engine), ``master_weights`` (False; True
        keeps a float32 copy and float32 state for float16/bfloat16 parameters) and
        ``capturable`` (False; True keeps the step count on the parameters' CUDA
        device and computes every per-step scalar there, so that ``step()`` can be
        captured in a CUDA graph).

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
    #: GradScaler passes ``grad_scale``/``found_inf`` to step() rather than unscaling
    #: (the Triton engine unscales and skips inside its kernel)
    _step_supports_amp_scaling = True
    # group values are checked against the transform's ranges (False: the class
    # applies the checks of the library it mimics instead)
    _check_ranges = True
    # a second occurrence of a parameter in one step, whose state that step created,
    # starts from a fresh state again (torch's SGD momentum buffer)
    _repeat_starts_afresh = False
    _build_keys: tuple[str, ...] = ()
    _gradstep_names = True

    def __init__(self, params: Any, transform: Transform, **group_defaults: Any):
        if not isinstance(transform, Transform):
            raise TypeError(
                f"TransformOptimizer: expected a gradstep transform, got {type(transform).__name__}"
            )
        self._transform = transform
        super().__init__(params, self._transform_defaults(transform, group_defaults))

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
            if key not in defaults and key != "master_weights":
                raise ValueError(
                    f"TransformOptimizer: unknown option {key!r}; valid options: "
                    f"{', '.join(list(defaults) + ['master_weights'])}"
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
        check(owner, "engine", self._engine(group), OneOf(ENGINES))
        rule = self._rule(group)
        rule.ctx(group, owner)
        for p in group["params"]:
            if p.is_complex() or not p.is_floating_point():
                raise TypeError(
                    f"{owner}: parameters must be real floating-point tensors, got {p.dtype}"
                )

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
        if entry is not None and entry[2] is group:
            key, rule = entry[0], entry[1]
            if key == self._rule_key(group, rule.dynamic):
                return rule
        transform, dynamic = self._build(group)
        rule = _Rule(
            transform,
            dynamic,
            bool(group.get("maximize", False)),
            self._rename,
            self._track_step,
            self._check_ranges,
        )
        rule.layout(_first_param(group))  # a state that cannot split fails here
        if len(rt.rules) > 4 * len(self.param_groups) + 8:
            live = {id(g) for g in self.param_groups}
            rt.rules = {k: v for k, v in rt.rules.items() if k in live}
            rt.fused = {}
        rt.rules[id(group)] = (self._rule_key(group, rule.dynamic), rule, group)
        return rule

    def _rule_key(self, group: dict, dynamic: dict) -> tuple:
        keys = [k for k in self._build_keys if k not in dynamic]
        return (bool(group.get("maximize", False)),) + tuple(_freeze(group.get(k)) for k in keys)

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

    # -- state -------------------------------------------------------------------------

    def _ensure_state(self, p, state: dict, rule: _Rule, master: bool) -> bool:
        """Create what the rule needs in ``state``; True if anything was missing."""
        if master and MASTER not in state:
            state[MASTER] = p.detach().to(torch.float32, copy=True)
        like = (state[MASTER] if master else p).detach()
        gathered = _dist.is_dtensor(like) and not rule.local_ok
        base = _dist.full(like) if gathered else like
        layout = rule.layout(base)
        missing = [k for k in rule.wanted(layout) if k not in state]
        if missing:
            own, shared = layout.init_entries(_init_view(base))
            for name, value in own.items():
                key = rule.key(name)
                if key in state or name in layout.empty:
                    continue
                value = _as_tensor(value, base)
                if gathered and tuple(value.shape) == tuple(like.shape):
                    value = _dist.distribute_like(value, like)  # sharded as its parameter
                state[key] = value
            for name, value in shared.items():
                key = rule.key(name)
                if name != STEP and key not in state:
                    if np.size(value) != 1:
                        raise TypeError(
                            f"{self._owner}: {rule.transform!r} keeps state shared by all "
                            f"parameters ({name!r} of shape {np.shape(value)}), which "
                            "torch's per-parameter state cannot hold"
                        )
                    # a Python number: torch would cast a tensor to the parameter's dtype
                    state[key] = np.asarray(value).item()
        if rule.track_step and STEP not in state:
            state[STEP] = torch.tensor(0.0, dtype=scalar_dtype())
        return bool(missing)

    def _init_all_state(self) -> None:
        """Create every parameter's state now (torch's Adagrad does so in __init__)."""
        for group in self.param_groups:
            rule = self._rule(group)
            master = bool(group.get("master_weights", False))
            for p in group["params"]:
                self._ensure_state(p, self.state[p], rule, master and p.dtype in _LOW_PRECISION)

    def _loaded_rule(self, values: dict) -> _Rule | None:
        """The rule a group with ``values`` (a checkpoint's group) steps with, or None
        where its state cannot be split per parameter."""
        try:
            transform, dynamic = self._build(values)
            rule = _Rule(
                transform,
                dynamic,
                bool(values.get("maximize", False)),
                self._rename,
                self._track_step,
                self._check_ranges,
            )
            rule.layout(_first_param(values))
        except (TypeError, ValueError, KeyError):
            return None
        return rule

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # a checkpoint whose tensors do not fit the parameters is refused before
        # anything changes
        check_loaded_state(self, state_dict)
        # torch casts every state tensor to its parameter's dtype: keep float32 master
        # weights and state of low-precision parameters in float32
        keep = []
        saved = state_dict.get("param_groups", [])
        for group, saved_group in zip(self.param_groups, saved):
            if not saved_group.get("master_weights", False):
                continue
            for p, pid in zip(group["params"], saved_group["params"]):
                entry = state_dict.get("state", {}).get(pid)
                if entry is None or p.dtype not in _LOW_PRECISION:
                    continue
                for key, value in entry.items():
                    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
                        if key != STEP:
                            keep.append((p, key, value))
        super().load_state_dict(state_dict)
        for p, key, value in keep:
            self.state[p][key] = value.to(device=p.device, copy=True)
        self.__dict__.pop("_gs_runtime", None)

    # -- stepping ----------------------------------------------------------------------

    def step(self, closure: Any = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` (optional)
        re-evaluates the loss first and its value is returned."""
        if hasattr(self._transform, "step_with_closure"):
            return self._closure_step(closure)
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
        with torch.no_grad():
            for group in self.param_groups:
                self._step_group(group, amp)
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

    def _step_group(self, group: dict, amp: tuple | None = None) -> None:
        rule = self._rule(group)
        ctx = rule.ctx(group, self._owner)
        fast = self._runtime().fast.get(id(group))
        if fast is not None and fast.group is group and fast.rule is rule:
            if fast.step(self, ctx, amp):
                return
            del self._runtime().fast[id(group)]
        if amp is not None and not _unscaled(group, amp):
            return  # GradScaler found an infinite gradient: the step changes nothing
        stepped = []
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.layout != torch.strided:
                reason = self._sparse_error(group)
                if reason is not None:
                    raise RuntimeError(reason)
                grad = grad.to_dense()
            stepped.append((p, grad))
        rounds = _rounds(stepped)
        if len(rounds) == 1:
            buckets = self._step_round(group, rule, ctx, stepped, set())
            self._remember_fast_step(group, rule, buckets)
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

    def _step_round(self, group: dict, rule: _Rule, ctx: dict, entries: list, started: set) -> dict:
        """Step ``entries`` (``(parameter, gradient)``, no two sharing memory); returns
        the buckets it ran. ``started`` holds the ids of the parameters whose state an
        earlier round of this step created."""
        engine = self._engine(group)
        per_tensor = group.get("foreach") is False
        master_option = bool(group.get("master_weights", False))
        buckets: dict[tuple, list[_Member]] = {}
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
                _step_on_device(p, state, interpreted=engine == "triton")
            if state and p not in self.state:
                self.state[p] = state  # torch keeps no entry for a rule without state
            m = _Member(p, grad, state, master, fresh, rule)
            check_member(self._owner, lambda p=p: self._where(p), p, m.w, m.entries, rule, m.layout)
            key = (m.mode, m.w.device, m.w.dtype, id(m.layout)) + m.shared_key(rule)
            if per_tensor:
                key += (id(p),)
            buckets.setdefault(key, []).append(m)
        if rule.global_norm and len(buckets) > 1:
            raise ValueError(
                f"{self._owner}: a global norm over parameters that cannot be stepped "
                "together (different dtypes, devices or step counts, or foreach=False); "
                "put them in separate param groups"
            )
        for members in buckets.values():
            self._run(rule, members, ctx, engine, group.get("foreach"))
            self._after_step(group, members)
        return buckets

    def _remember_fast_step(self, group: dict, rule: _Rule, buckets: dict) -> None:
        """After a group's step ran as one Triton launch, keep what the next steps
        need to repeat it without the per-parameter bookkeeping."""
        if type(self)._after_step is not TransformOptimizer._after_step:
            return
        if not _cuda.FastStep.possible(self, group, rule, buckets):
            return
        rt = self._runtime()
        (members,) = buckets.values()
        key = ("triton", id(rule)) + tuple(id(m.p) for m in members)
        bucket = rt.fused.get(key)
        if isinstance(bucket, _cuda.TritonBucket) and bucket.engine._tables is not None:
            rt.fast[id(group)] = _cuda.FastStep(self, group, rule, members, bucket)

    def _where(self, p: Any) -> str:
        """``parameter i of param group j`` for ``p``, for error messages."""
        for j, group in enumerate(self.param_groups):
            for i, q in enumerate(group["params"]):
                if q is p:
                    return f"parameter {i} of param group {j}"
        return "a parameter"  # pragma: no cover - p is always in a group

    def _after_step(self, group: dict, members: list[_Member]) -> None:
        """Keep state entries torch has and the rule derives (none here)."""

    def _run(
        self, rule: _Rule, members: list[_Member], ctx: dict, engine: str, foreach: Any = None
    ) -> None:
        mode = members[0].mode
        reducer = None
        if mode == "local" and rule.hooks:
            groups = [_dist.shard_groups(m.p) for m in members]
            reducer = _dist.Reducer(groups, members[0].w.device)
        for hook in rule.hooks:
            hook.reduce = reducer
            if isinstance(hook, _ReducedCombine):
                hook.calls = 0
        try:
            device = members[0].w.device.type
            if device == "cuda" or engine == "triton":
                counted = self._run_device(rule, members, ctx, engine, foreach)
                return self._finish_step(rule, members, counted)
            fused = (
                engine != "eager"
                and rule.fusable
                and mode != "gather"
                and all(m.fusable() for m in members)
            )
            if engine == "fused" and not fused:
                raise RuntimeError(
                    f"{self._owner}: the fused engine was required (fused=True or "
                    f"engine='fused') but {_why_not_fused(rule, members)}"
                )
            counted = False
            if fused:
                counted = self._run_fused(rule, members, ctx)
            elif engine != "eager" and all(m.numpy_ok() for m in members):
                counted = self._run_eager(rule, members, ctx, numpy=True)
            else:
                counted = self._run_eager(rule, members, ctx, numpy=False)
        finally:
            for hook in rule.hooks:
                hook.reduce = None
        self._finish_step(rule, members, counted)

    def _finish_step(self, rule: _Rule, members: list[_Member], counted: bool) -> None:
        """Advance the step counts the engine did not, and copy master weights back."""
        if rule.track_step and not counted:
            for m in members:
                m.state[STEP] += 1
        for m in members:
            if m.master:
                m.p.copy_(m.state[MASTER])

    def _run_device(
        self, rule: _Rule, members: list[_Member], ctx: dict, engine: str, foreach: Any
    ) -> bool:
        """Step CUDA ``members`` (or any, for ``engine="triton"``): the Triton engine
        where it can, else the transform's own update on the tensors; True if the
        engine advanced the step counts."""
        # sharded parameters whose norms must be reduced across ranks run eager
        mode = members[0].mode
        usable = rule.triton_fusable and (mode == "plain" or (mode == "local" and not rule.hooks))
        usable = usable and all(_cuda.member_runs_on_triton(m) for m in members)
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
        if not (wanted and usable):
            # True where the transform set the steps itself (a skipped step keeps them)
            return self._run_eager(rule, members, ctx, numpy=False)
        rt = self._runtime()
        key = ("triton", id(rule)) + tuple(id(m.p) for m in members)
        signature = _signature(members)
        bucket = rt.fused.get(key)
        shared = _shared_values(rule, members[0])
        if bucket is None or bucket.signature != signature:
            bucket = rt.fused[key] = _cuda.TritonBucket(rule, members, signature, shared)
        counted = bucket.step(members, ctx, shared, members[0].layout)
        try:
            torch.autograd.graph.increment_version([m.p for m in members if not m.master])
        except (TypeError, RuntimeError):  # pragma: no cover - tensor subclasses
            pass
        return counted

    def _run_fused(self, rule: _Rule, members: list[_Member], ctx: dict) -> bool:
        """Step ``members`` on the fused engine; True if it advanced their steps."""
        rt = self._runtime()
        key = (id(rule),) + tuple(id(m.p) for m in members)
        signature = _signature(members)
        bucket = rt.fused.get(key)
        if bucket is None or bucket.signature != signature:
            bucket = rt.fused[key] = _FusedBucket(rule, members, signature)
        bucket.step(rule, members, ctx)
        try:
            torch.autograd.graph.increment_version([m.p for m in members if not m.master])
        except (TypeError, RuntimeError):  # pragma: no cover - tensor subclasses
            pass
        if bucket.steps is None:
            return False
        for view in bucket.steps:
            view += 1
        return True

    def _run_eager(self, rule: _Rule, members: list[_Member], ctx: dict, numpy: bool) -> bool:
        """The transform's own ``update``: on NumPy views of CPU float32/float64
        tensors (``numpy``), else on the torch tensors themselves. True if it set the
        members' steps (from the new state's count: a step the transform skipped,
        e.g. ``nonfinite_policy(..., "skip")``, leaves the count, so it leaves
        torch's ``step`` too)."""
        layout = members[0].layout
        view = _numpy if numpy else _same
        ws = [view(m.w) for m in members]
        entries = [{n: view(t) for n, t in m.entries.items()} for m in members]
        shared = _shared_values(rule, members[0])
        tree, _ = layout.build(entries, shared)
        try:
            updates, new = rule.run.update([view(m.g) for m in members], rule.wrap(tree), ws, **ctx)
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
        counted = rule.track_step and STEP in new_shared
        skipped = getattr(rule.transform, "skipped", None)
        if rule.track_step and not counted and skipped is not None:
            # a transform without a count of its own that skipped this step: torch's
            # step, counted by the front, stays too
            counted = bool(skipped(rule.unwrap(new)))
        elif counted:
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


def _unscaled(group: dict, amp: tuple) -> bool:
    """The general path's share of GradScaler's work: False if the step must be
    skipped (an infinite gradient; this reads the flag on the host), else divide the
    group's gradients by the scale in place, as ``GradScaler.unscale_`` would."""
    grad_scale, found_inf = amp
    if found_inf is not None and float(found_inf) != 0:
        return False
    if grad_scale is not None:
        inv = grad_scale.double().reciprocal().float()
        for p in group["params"]:
            if p.grad is not None:
                p.grad.mul_(inv.to(p.grad.device))
    return True


def _capturing() -> bool:
    """A CUDA graph is being captured on the current stream."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _step_on_device(p: torch.Tensor, state: dict, interpreted: bool) -> None:
    """capturable=True: the step count is a float32 tensor on the parameter's device,
    as torch.optim keeps it (CPU parameters: torch refuses them at step time, except
    here under ``engine="triton"``, Triton's interpreter, which the tests use)."""
    if p.device.type == "cpu" and not interpreted:
        raise RuntimeError(
            "capturable=True needs parameters on a CUDA device (the step count is kept "
            f"there for CUDA-graph capture), got a parameter on {p.device}"
        )
    step = state.get(STEP)
    if isinstance(step, torch.Tensor) and (step.device != p.device or step.dtype != torch.float32):
        state[STEP] = step.to(device=p.device, dtype=torch.float32)


def _why_not_fused(rule: _Rule, members: list[_Member]) -> str:
    if not rule.fusable:
        return f"the transform {rule.transform!r} has stages the fused engine cannot compile"
    if members[0].mode == "gather":
        return "sharded parameters of this transform need whole tensors"
    for m in members:
        if not m.fusable():
            return (
                f"a parameter is {m.w.dtype} on {m.w.device} "
                f"({'contiguous' if m.w.is_contiguous() else 'not contiguous'}); the fused "
                "engine takes contiguous CPU float32/float64 tensors"
            )
    return "the parameters cannot be run by it"  # pragma: no cover
