"""A param group's transform, prepared for stepping.

Hyperparameters from the group, torch's ``maximize``, norms that can be reduced
across ranks, the state layout.
"""

from __future__ import annotations

import importlib.util
import numbers
from typing import Any

import numpy as np
import torch

from .._core import tree as _tree
from .._core.blockwise8 import ABSMAX_SUFFIX
from .._core.carried import carried_of
from .._core.combine import Masked
from .._core.elementwise import Elementwise, NormScaled
from .._core.memory_order import order_free
from .._core.per_tensor import PerTensorReduction
from .._core.separable import separable
from .._core.sharpness import SharpnessAware
from .._core.transform import Chain, Transform, map_transform, walk
from .._core.validate import OneOf, check
from ._state import Layout, MixedLayout, StateSplitError, shape_independent

ENGINES = ("auto", "fused", "eager", "triton")
#: group keys that are the front's own options, not hyperparameters of the transform
FRONT_OPTIONS = (
    "params", "lr", "maximize", "foreach", "engine", "master_weights", "capturable", "state_dtype",
    "min_8bit_size", "stochastic_rounding", "rounding_seed", "kahan_summation",
)  # fmt: skip
MASTER = "master_param"
_FUSED_DTYPES = (torch.float32, torch.float64)
#: what the numba engine reads and writes (bfloat16 as ml_dtypes' NumPy bfloat16)
_NUMBA_DTYPES = (
    _FUSED_DTYPES
    + (torch.float16,)
    + ((torch.bfloat16,) if importlib.util.find_spec("ml_dtypes") else ())
)
#: the parameter dtypes master weights keep a float32 (complex64) copy of
_LOW_PRECISION = (torch.float16, torch.bfloat16, torch.complex32)
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
#
# A sharded tensor's sums of squares are local; which ranks must add them depends on
# the tensor (a replicated one needs none), so each sum goes to the reducer with its
# tensor named: the parameter array the update was given (a masked stage reduces only
# part of the group), or, from the numba engine, the bucket's whole table in order.


def _param_leaves(stage: Transform, params: Any, grads: Any) -> list:
    """The parameter arrays of the tensors of ``grads``, for the reducer."""
    if params is None:
        raise ValueError(f"{stage.name}: a norm across ranks needs the parameters in update()")
    return _tree.leaves_like(_tree.structure(grads), params)


class _ReducedNorm(NormScaled):
    """A norm-scaled stage whose per-tensor sums go through ``reduce`` first."""

    reduce = None

    def reduction_context(self, params, grads, g_leaves, count, ctx):
        sums = self.sums(params, grads, g_leaves)
        if self.reduce is not None:
            sums = self.reduce.of(_param_leaves(self, params, grads), sums)
        return super().factors(sums, count, ctx)

    def factors(self, sums, count, ctx):
        """The numba engine's call: the sums of every tensor of the bucket, in order."""
        if self.reduce is not None:
            sums = self.reduce.bucket(sums)
        return super().factors(sums, count, ctx)


class _ReducedPerTensor(PerTensorReduction):
    """A per-tensor reduction (trust ratios) whose sums go through ``reduce`` before
    its ``combine``."""

    reduce = None

    def reduction_context(self, params, grads, g_leaves, count, ctx):
        leaves = None if self.reduce is None else _param_leaves(self, params, grads)
        return {**super().reduction_context(params, grads, g_leaves, count, ctx), "leaves": leaves}

    def sums_of_tensor(self, i, arrays, prepared, ns, context):
        sums = self.tensor_sums_of(arrays, prepared, ns)
        leaves = context["leaves"]
        return sums if leaves is None else self.reduce.one(leaves[i], sums)


def _instrument(t: Transform, hooks: list) -> Transform:
    """A copy of ``t`` whose reductions can be routed through a reducer."""

    def instrument(node: Transform) -> Transform:
        if type(node) is NormScaled:
            copy = _ReducedNorm(
                node.name, node.factor, node.hyperparams, node.per_tensor, of_params=node.of_params
            )
        elif type(node) is PerTensorReduction:
            copy = _ReducedPerTensor(**node._constructor_args())
        else:
            return node
        hooks.append(copy)
        return copy

    return map_transform(instrument, t)


def _local_ok(t: Transform) -> bool:
    """Every stage is elementwise math plus norms (so it can run on local shards)."""
    return all(
        isinstance(v.transform, (Chain, Masked))
        or type(v.transform) in (Elementwise, NormScaled, PerTensorReduction)
        for v in walk(t)
    )


def _global_norm(t: Transform) -> bool:
    return any(
        (isinstance(v.transform, NormScaled) and not v.transform.per_tensor)
        or isinstance(v.transform, SharpnessAware)  # its perturbation's norm is global
        for v in walk(t)
    )


def _fusable(
    t: Transform, axis_norms: bool = False, forms: list | None = None, hosts: list | None = None
) -> bool:
    """The fused engines (numba's and Triton's: the same chains, and for Triton's
    ``axis_norms``, Lasagne's norms over axes) can compile ``t``: its stages, and the
    rows of its 8-bit slots (none in a masked stage). ``forms``, ``hosts``: lists that
    take the fused forms put in place (the engine refuses the shapes a form does not
    cover before it writes anything) and their host steps (which both engines run
    around their launch), as :func:`~gradstep.engines.plan.flatten_stages`; None: no
    form is used, or forms with a host step are refused."""
    from ..engines.plan import NotFusable, flatten_stages, place_scales

    try:
        stages = flatten_stages(t, per_tensor=True, axis_norms=axis_norms, forms=forms, hosts=hosts)
        place_scales(stages, 0)
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
        return float(v.detach())
    return v


def _freeze(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return ("tensor", float(v.detach())) if v.numel() == 1 else ("tensor", id(v))
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
        # a stage takes the loss as ``value`` (e.g. gradstep.polyak_sgd): torch's
        # step(closure) hands it the closure's loss
        self.takes_loss = any(getattr(v.transform, "takes_loss", False) for v in walk(transform))
        self.separable = separable(transform)
        # the stages that take values the class keeps between steps (NAdam's product,
        # ASGD's step size, schedule-free totals): found once, not on every step
        self.carried = carried_of(transform)
        # the first stage whose math reads each tensor's shape (None: none does, and a
        # complex parameter steps as its real view with the rule's own meaning)
        self.shape_stage = next(
            (v.transform for v in walk(transform) if getattr(v.transform, "reads_shape", False)),
            None,
        )
        self._layouts: dict = {}
        self._mixed: dict = {}
        self._wanted: dict = {}
        self.ranges = transform.hyperparameters()
        self.dynamic = {
            k: names for k, names in dynamic.items() if all(n in self.ranges for n in names)
        }
        self.rename = rename
        self.track_step = track_step
        # no stage reads the step count: without a count of its own (track_step
        # False) the rule's first step is like the others
        self.same_first_step = not any(
            getattr(v.transform, "counted", False) for v in walk(transform)
        )
        self.hooks: list = []
        self.reducer = None
        run = _instrument(transform, self.hooks)
        self.maximize = maximize
        if maximize:
            run = Chain((maximize_stage(), run), name=transform.name)
            self.inner_name = run.stage_names[1]
        self.run = run
        hosts: list = []
        self.forms: list = []  # the fused forms the fused engines put in place
        self.fusable = _fusable(run, forms=self.forms, hosts=hosts)  # the numba engine's
        # the step inputs (Sophia's hessian=, hvp=) each fused engine's host steps read
        self.host_inputs = frozenset(name for form, _ in hosts for name in form.inputs)
        triton_hosts: list = []  # the Triton engine runs the same host steps
        self.triton_fusable = _fusable(run, axis_norms=True, forms=[], hosts=triton_hosts)
        self.triton_host_inputs = frozenset(n for form, _ in triton_hosts for n in form.inputs)
        # no stage reads shapes or positions: the rule may step a dense tensor of any
        # memory layout as the C-contiguous view of its memory (_members._storage_view)
        self.layout_free = self.shape_independent and not self.forms and order_free(transform)
        # trust ratios of sharded tensors reduce their sums across ranks per tensor,
        # which only the transform's own update does
        self.reduces_per_tensor = any(isinstance(h, _ReducedPerTensor) for h in self.hooks)
        self.local_ok = _local_ok(transform)
        self.global_norm = _global_norm(transform)
        self._checked: dict[int, tuple] = {}
        self.entry_shapes: dict[tuple, dict] = {}  # see _checks.expected_shapes

    def complex_refusal(self, owner: str, allowed: bool) -> str:
        """Why a complex parameter is refused: torch's words where the class is one
        torch refuses them in (``allowed`` False), else the stage reading shapes."""
        refused = f"{owner} does not support complex parameters"
        if not allowed or self.shape_stage is None:
            return refused
        return (
            f"{refused}: {self.transform.name}'s stage {self.shape_stage.name!r} reads each "
            "tensor's shape (factored moments, matrix preconditioners, per-axis blocks), "
            "which the real view a complex parameter is stepped as (torch.view_as_real, a "
            "trailing axis of 2) would change; step the real view itself as a real "
            "parameter if that is what is meant"
        )

    def route_reductions(self, reducer: Any) -> None:
        """Send the sums of the reduction stages through ``reducer`` (a
        :class:`~gradstep.torch._distributed.Reducer`; None: keep them local)."""
        self.reducer = reducer
        for hook in self.hooks:
            hook.reduce = reducer

    def form_covers(self, shape: tuple) -> bool | None:
        """Whether the fused forms cover a tensor of ``shape`` (None where that cannot
        split a step: no forms, or stages that couple the tensors). Tensors covered and
        not covered go to separate buckets, so a group's vectors run fused beside the
        matrices its forms leave to the transform's own update."""
        if not (self.forms and self.separable):
            return None
        return all(form.accepts(tuple(shape)) for form in self.forms)

    def layout(self, like: Any) -> Layout:
        """The state layout for parameters like ``like`` (one for all when the state's
        structure does not depend on the shape)."""
        key = None if self.shape_independent else (tuple(like.shape), str(like.dtype))
        layout = self._layouts.get(key)
        if layout is None:
            example = None  # any small array stands for every parameter
            if key is not None:
                dtype = {torch.float32: np.float32}.get(like.dtype, np.float64)
                example = np.zeros(tuple(like.shape), dtype)
            try:
                layout = Layout(self.transform, example)
            except StateSplitError as error:
                raise TypeError(f"gradstep.torch: {error}") from None
            # shapes whose state has one structure (CAME's vectors of any length) share
            # one layout, so their parameters share one engine bucket
            same = (x for x in self._layouts.values() if x.same_structure(layout))
            layout = self._layouts[key] = next(same, layout)
        return layout

    def group_layout(self, layouts: list[Layout]) -> Layout | MixedLayout | None:
        """The layout of one state tree for parameters of ``layouts`` (theirs where
        they share one; None where their trees cannot be joined into one)."""
        first = layouts[0]
        if all(x is first for x in layouts):
            return first
        key = tuple(id(x) for x in layouts)
        if key not in self._mixed:
            try:
                self._mixed[key] = MixedLayout(layouts)
            except StateSplitError:
                self._mixed[key] = None
        return self._mixed[key]

    def wanted(self, layout: Layout) -> list[str]:
        """The state keys a parameter of ``layout`` must have."""
        keys = self._wanted.get(id(layout))
        if keys is None:
            keys = [self.key(n) for n in layout.names if n not in layout.empty]
            keys += [self.key(n) for n in layout.shared_names()]
            self._wanted[id(layout)] = keys
        return keys

    def key(self, name: str) -> str:
        """The state key of the layout entry ``name`` (an 8-bit slot's block scales
        follow its codes' torch name: ``exp_avg_absmax``)."""
        key = self.rename.get(name)
        if key is None and name.endswith(ABSMAX_SUFFIX):
            slot = self.rename.get(name[: -len(ABSMAX_SUFFIX)])
            key = None if slot is None else slot + ABSMAX_SUFFIX
        return name if key is None else key

    def wrap(self, tree: Any) -> Any:
        return {"maximize": {}, self.inner_name: tree} if self.maximize else tree

    def unwrap(self, tree: Any) -> Any:
        return tree[self.inner_name] if self.maximize else tree

    def ctx(self, group: dict, owner: str, keep_tensors: bool = False) -> dict[str, Any]:
        """This step's hyperparameter values from the group, checked when they change
        (``keep_tensors``: values given as tensors are handed over as they are, so
        that autograd sees them: ``differentiable=True``)."""
        out: dict[str, Any] = {}
        labels: dict[str, str] = {}
        tensors: dict[str, Any] = {}
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
                if keep_tensors and isinstance(v, torch.Tensor):
                    tensors[name] = v
        signature = tuple(out.items())
        if self.check_ranges and self._checked.get(id(group)) != signature:
            for name, value in out.items():
                constraint = self.ranges.get(name)
                if constraint is not None:
                    check(owner, labels[name], value, constraint)
            self._checked[id(group)] = signature
        if keep_tensors:
            out.update(tensors)
        return out
