"""The plan both fused engines compile: a transform's elementwise stages, placed.

Each stage gets its rows of the pointer table, its place in the scalar vector and its
columns of the per-tensor factor table. A global reduction stage's reduced scalars
(the same for every tensor) follow its ``prepare`` scalars in the scalar vector: the
engine writes them there between its reduction pass and the main pass.

The cautious wrapper (:class:`~gradstep._core.cautious.Cautious`) becomes two plan
entries around its inner stages: :class:`CautiousStart` keeps the value it receives
(the gradient the mask compares with) in a kernel variable, and :class:`CautiousEnd`,
a per-tensor reduction stage, masks and rescales. Its reduction pass counts the
elements kept per tensor; :func:`~gradstep._core.cautious.cautious_factor` turns the
counts into its column of the factor table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._core.axis_norm import MAX_RUNS, AxisNormScaled
from .._core.blockwise8 import BLOCKWISE8
from .._core.cautious import Cautious, cautious_element, cautious_factor
from .._core.combine import Masked
from .._core.elementwise import Elementwise, NormScaled
from .._core.fused_form import FusedForm, Keyed, fused_form_of
from .._core.global_reduction import GlobalReduction
from .._core.mechanic import Mechanize
from .._core.per_tensor import PerTensorReduction
from .._core.rounding import ParameterStore
from .._core.transform import Chain, Transform, map_transform, walk
from .._core.xmath import HELPERS, OPERATIONS


class NotFusable(Exception):
    """The transform contains something the fused engine cannot compile."""


class Unsupported(Exception):
    """These arrays cannot be updated by the fused engine (the reason is the message);
    nothing was changed."""


@dataclass
class Stage:
    """One elementwise stage of the flattened chain."""

    index: int
    stage: Elementwise
    state_path: tuple[str, ...] | None  # None: a stateless stage of a fused form
    mask: Any = None  # the Masked wrapper's mask, or None
    slot_rows: list[int] = field(default_factory=list)  # rows of the pointer table
    scalar_offset: int = 0  # position of its scalars in the scalar vector
    reduction_column: int = -1  # column of the per-tensor factor table
    # 8-bit slots (gradstep._core.blockwise8): slot index -> row of its block scales
    scale_rows: dict[int, int] = field(default_factory=dict)

    partner: int = -1  # a cautious end's start (its kept gradient ``gc{partner}``)
    # a global reduction whose terms read the input of stage ``terms_from`` (a
    # wrapper's own stage after its inner stages: Mechanic's): its reduction pass runs
    # only the stages before that one
    terms_from: int = -1
    # a norm over axes: its first row of the pointer table's slice rows (segment_rows)
    segment_row: int = -1

    @property
    def is_reduction(self) -> bool:
        return isinstance(self.stage, NormScaled)

    @property
    def is_axis_norm(self) -> bool:
        """A factor per slice of each tensor, from the slice's norm over axes
        (Lasagne's norm constraint): only the Triton engine runs it."""
        return isinstance(self.stage, AxisNormScaled)

    @property
    def is_cautious_start(self) -> bool:
        return isinstance(self.stage, CautiousStart)

    @property
    def is_cautious(self) -> bool:
        """A cautious end: a per-tensor factor from a count of the elements kept."""
        return isinstance(self.stage, CautiousEnd)

    @property
    def is_per_tensor(self) -> bool:
        """A stage whose element function also takes per-tensor scalars computed
        from sums of squares (LAMB's and LARS's trust ratios)."""
        return isinstance(self.stage, PerTensorReduction)

    @property
    def is_global(self) -> bool:
        """A stage whose element function also takes scalars reduced over every
        element of every tensor, with scalar state (Prodigy's distance estimate)."""
        return isinstance(self.stage, GlobalReduction)

    @property
    def n_scalars(self) -> int:
        """How many scalars of the scalar vector its element function takes (its
        ``prepare`` scalars, then a global reduction's reduced scalars)."""
        if self.is_reduction or self.is_axis_norm:
            return 0
        extra = len(self.stage.reduced_scalars) if self.is_global else 0
        return len(self.stage.scalar_names()) + extra


def _received(g):
    return g


class CautiousStart(Elementwise):
    """The plan's mark where a cautious wrapper's inner stages begin (its element
    function passes the value through; the kernels keep it as ``gc{index}``)."""

    def __init__(self, wrapper: Cautious):
        super().__init__(wrapper.name, _received)


def _no_factor(norm, h):  # pragma: no cover - the factors come from cautious_factor
    raise NotImplementedError


class CautiousEnd(NormScaled):
    """The plan's mask after a cautious wrapper's inner stages: the element function
    :func:`~gradstep._core.cautious.cautious_element` of the inner output, the kept
    gradient and the tensor's factor."""

    def __init__(self, wrapper: Cautious):
        super().__init__(wrapper.name, _no_factor, {}, per_tensor=True)
        self.element = cautious_element
        self.normalization = wrapper.normalization
        self.min_fraction = wrapper.min_fraction

    def factors_of_counts(self, counts: Any, sizes: list[int], ns: Any, like: Any) -> list:
        """Each tensor's factor from its number of elements kept (in ``like``'s
        dtype, as the eager engine counts) and its size."""
        return [
            ns.astype(1.0, like)
            if n == 0
            else cautious_factor(
                ns.astype(c, like), n, ns, like, self.normalization, self.min_fraction
            )
            for c, n in zip(counts, sizes)
        ]


def flatten_stages(
    transform: Transform,
    per_tensor: bool = False,
    forms: list[FusedForm] | None = None,
    axis_norms: bool = False,
    hosts: list | None = None,
) -> list[Stage]:
    """The elementwise stages of ``transform`` in order, or :class:`NotFusable`.

    Chains, one level of masks and cautious wrappers (not masked, not nested, with no
    mask inside) are compiled; any other transform is not. ``per_tensor``: the caller
    also runs per-tensor reduction stages (both fused engines do; callers that only
    locate elementwise slots leave it off). ``forms``: a list to which the fused
    forms (:mod:`gradstep._core.fused_form`) put in place of their transforms are
    appended; the caller must then refuse the tensors a form does not cover (None:
    no form is used). ``axis_norms``: the caller runs norms over axes of each
    tensor (:class:`~gradstep._core.axis_norm.AxisNormScaled`; the Triton engine
    does). ``hosts``: a list to which each form with a host step is appended, as
    ``(form, state path of its transform)``, for the caller to run around its launch
    (None: the caller runs none, and such a form is not fusable)."""
    if forms is not None:
        transform = map_transform(functools.partial(_with_form, forms), transform)
    out: list[Stage] = []
    open_cautious: list = []  # (wrapper, its start's index) while its stages come
    open_mechanic: list = []  # (wrapper, its first inner stage's index, its path)
    for visit in walk(transform):
        t = visit.transform
        masks = [p.mask for p in visit.parents if isinstance(p, Masked)]
        if len(masks) > 1:
            raise NotFusable("nested masks")
        mask = masks[0] if masks else None
        if open_cautious and not any(p is open_cautious[0][0] for p in visit.parents):
            _close(out, *open_cautious.pop())
        if open_mechanic and not any(p is open_mechanic[0][0] for p in visit.parents):
            _close_mechanic(out, *open_mechanic.pop())
        wrapped = [p for p in visit.parents if isinstance(p, (Cautious, Mechanize))]
        if isinstance(t, Mechanize):
            if mask is not None or wrapped:
                raise NotFusable(f"a masked or nested Mechanic wrapper {t.name!r}")
            open_mechanic.append((t, len(out), visit.path))
            continue
        if isinstance(t, Cautious):
            if mask is not None or wrapped:
                raise NotFusable(f"a masked or nested cautious wrapper {t.name!r}")
            out.append(Stage(len(out), CautiousStart(t), visit.path))
            open_cautious.append((t, len(out) - 1, visit.path))
            continue
        if open_cautious and isinstance(t, Masked):
            raise NotFusable(f"a mask inside the cautious wrapper {open_cautious[0][0].name!r}")
        if isinstance(t, (Chain, Masked, Keyed)):
            _place_host(t, forms, hosts, mask, visit.path)
            continue
        if isinstance(t, NormScaled):
            if mask is not None:
                raise NotFusable(f"masked reduction stage {t.name}")
            out.append(Stage(len(out), t, visit.path))
        elif type(t) is Elementwise:
            if mask is not None and any(s.stochastic_seed is not None for s in t.slots):
                # its stream is keyed by the index among the masked leaves
                raise NotFusable(f"masked stage {t.name!r} with stochastic rounding")
            _check_element_function(t)
            out.append(Stage(len(out), t, visit.path, mask))
        elif type(t) is ParameterStore and mask is None and not visit.parents[1:]:
            out.append(Stage(len(out), t, visit.path))
        elif per_tensor and isinstance(t, PerTensorReduction) and mask is None:
            _check_element_function(t)
            _check_element_function(t, t.norms)
            out.append(Stage(len(out), t, visit.path))
        elif axis_norms and isinstance(t, AxisNormScaled) and mask is None:
            _check_element_function(t)
            _check_element_function(t, t.factor)
            out.append(Stage(len(out), t, visit.path))
        elif type(t) is GlobalReduction and mask is None:
            _check_element_function(t)
            _check_element_function(t, t.terms)
            out.append(Stage(len(out), t, visit.path))
        else:
            raise NotFusable(f"{type(t).__name__} {t.name!r} is not an elementwise stage")
    if open_cautious:
        _close(out, *open_cautious.pop())
    if open_mechanic:
        _close_mechanic(out, *open_mechanic.pop())
    for st in out:
        if st.state_path is None and (st.stage.slots or st.stage.counted):
            raise NotFusable(f"stage {st.stage.name!r} keeps state but has no place in the state")
    return out


def _with_form(forms: list[FusedForm], t: Transform) -> Transform:
    """``t``'s fused form in its place (recorded in ``forms``), or ``t``."""
    form = fused_form_of(t)
    if form is None:
        return t
    forms.append(form)
    return form.transform


def _place_host(t: Transform, forms: list | None, hosts: list | None, mask, path) -> None:
    """Record the host step of the form ``t`` (if it is one with a host step) in
    ``hosts``, or :class:`NotFusable` where the caller runs none or ``t`` is masked."""
    form = next((f for f in forms or () if f.transform is t and f.host is not None), None)
    if form is None:
        return
    if hosts is None:
        raise NotFusable(f"{form.name!r} needs a host step around the launch")
    if mask is not None:
        raise NotFusable(f"masked {form.name!r} with a host step")
    hosts.append((form, path))


def _close(out: list[Stage], wrapper: Cautious, start: int, path: tuple) -> None:
    """The end of a cautious wrapper's stages: its mask, paired with its start."""
    out.append(Stage(len(out), CautiousEnd(wrapper), path, partner=start))


def _close_mechanic(out: list[Stage], wrapper: Mechanize, first: int, path: tuple) -> None:
    """The end of a Mechanic wrapper's inner stages: its own stage, whose terms read
    the gradient the first of them received."""
    if first == len(out):
        raise NotFusable(f"the Mechanic wrapper {wrapper.name!r} wraps no stage")
    out.append(Stage(len(out), wrapper.fused_stage(), path, terms_from=first))


def place_stages(stages: list[Stage], first_scalar: int = 0) -> tuple[int, int, int]:
    """Give each stage its rows of the pointer table (rows 0 and 1 are the gradient
    and the parameter), its place in the scalar vector and its columns of the
    per-tensor factor table; return the numbers of rows, scalars and columns."""
    row, offset, column = 2, first_scalar, 0
    for st in stages:
        st.slot_rows = list(range(row, row + len(st.stage.slots)))
        row += len(st.stage.slots)
        if st.is_reduction:
            st.reduction_column = column
            column += 1
            continue
        st.scalar_offset = offset
        offset += st.n_scalars
        if st.is_per_tensor:
            st.reduction_column = column
            column += len(st.stage.tensor_scalars)
    return row, offset, column


#: pointer-table rows of a norm over axes, per tensor: the address of its slices'
#: float64 sums, of their factors, then ``(a, b, c)`` of each run (AxisNormScaled.runs)
SEGMENT_ROWS = 2 + 3 * MAX_RUNS


def place_segments(stages: list[Stage], first_row: int) -> int:
    """Give each norm over axes its :data:`SEGMENT_ROWS` rows of the pointer table,
    from ``first_row`` on; return the number of rows."""
    row = first_row
    for st in stages:
        if st.is_axis_norm:
            st.segment_row = row
            row += SEGMENT_ROWS
    return row


def place_scales(stages: list[Stage], first_row: int) -> int:
    """Give each 8-bit slot (``dtype="blockwise8"``) a row of the pointer table for
    its block scales, from ``first_row`` on; return the number of rows."""
    row = first_row
    for st in stages:
        for i, slot in enumerate(st.stage.slots):
            if slot.dtype == BLOCKWISE8:
                if st.mask is not None:
                    raise NotFusable(f"8-bit state in the masked stage {st.stage.name!r}")
                st.scale_rows[i] = row
                row += 1
    return row


def _check_element_function(t: Elementwise, fn: Any = None) -> None:
    fn = t.element if fn is None else fn
    if not hasattr(fn, "__code__"):
        raise NotFusable(f"{t.name!r}: {fn!r} is not a plain function")
    code = fn.__code__
    unknown = set(code.co_names) - set(OPERATIONS) - set(HELPERS)
    if unknown or code.co_freevars:
        raise NotFusable(
            f"element function of {t.name!r} uses names other than element operations: "
            f"{sorted(unknown | set(code.co_freevars))}"
        )


def slot_names(st: Stage) -> list[str]:
    """The generated kernels' names of stage ``st``'s slot values: ``s{stage}_{slot}``."""
    return [f"s{st.index}_{i}" for i in range(len(st.stage.slots))]


def call_args(st: Stage, tensor_scalars: bool = False) -> list[str]:
    """The arguments a generated kernel passes to stage ``st``'s element function:
    the update ``x``, the parameter ``wi`` if it takes it, its slots, its scalars
    ``c{stage}_{k}`` and (``tensor_scalars``) its per-tensor scalars ``t{stage}_{k}``."""
    e, k = st.stage, st.index
    args = ["x"] + (["wi"] if e.uses_params else []) + slot_names(st)
    args += [f"c{k}_{i}" for i in range(st.n_scalars)]
    if tensor_scalars:
        args += [f"t{k}_{i}" for i in range(len(e.tensor_scalars))]
    return args


def terms_args(st: Stage) -> list[str]:
    """The arguments a generated reduction kernel passes to a global reduction
    stage's ``terms``: as :func:`call_args` without the reduced scalars."""
    args = call_args(st)
    return args[: len(args) - len(st.stage.reduced_scalars)]


def stage_nodes(stages: list[Stage], state: dict) -> tuple[list[dict], list[int]]:
    """Each stage's node of the state tree, and its step count (0 where it keeps none)."""
    nodes = []
    for st in stages:
        node = state if st.state_path is not None else {}
        for key in st.state_path or ():
            node = node[key]
        nodes.append(node)
    return nodes, [int(node["count"]) if "count" in node else 0 for node in nodes]


def advance_counts(stages: list[Stage], nodes: list[dict], counts: list[int]) -> None:
    """After a step: the count of every stage that keeps one, advanced by one."""
    for st, node, count in zip(stages, nodes, counts):
        if st.stage.counted:
            node["count"] = np.asarray(count + 1, dtype=np.int64)


def stochastic_rows(stages: list[Stage], rows: list[str]) -> dict[int, tuple[int, int, str]]:
    """The pointer-table rows stored with stochastic rounding (bfloat16 rows of a slot
    or parameter store with a seed): ``{row: (seed, stage index, stream name)}``."""
    out = {}
    for st in stages:
        if isinstance(st.stage, ParameterStore):
            if st.stage.seed is not None and rows[1] == "bfloat16":
                out[1] = (st.stage.seed, st.index, "params")
            continue
        for slot, row in zip(st.stage.slots, st.slot_rows):
            if slot.stochastic_seed is not None and rows[row] == "bfloat16":
                out[row] = (slot.stochastic_seed, st.index, slot.name)
    return out


def stream_key_table(stages, rows, counts, shape) -> np.ndarray | None:
    """The stochastic-rounding stream key of each (row, tensor), or None when no row
    is rounded stochastically (:mod:`gradstep._core.rounding`)."""
    from .._core.rounding import check_rounds_something, slot_id, stream_keys

    sr = stochastic_rows(stages, rows)
    if not sr:
        if any(isinstance(st.stage, ParameterStore) and st.stage.seed is not None for st in stages):
            check_rounds_something([rows[1]])
        return None

    keys = np.zeros(shape, np.uint32)
    tensors = np.arange(shape[1])
    for row, (seed, stage, name) in sr.items():
        keys[row] = stream_keys(seed, counts[stage], tensors, slot_id(name))
    return keys
