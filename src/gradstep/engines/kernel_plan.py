"""The kernels both fused engines generate, as abstract steps each code generator renders.

:mod:`~gradstep.engines.plan` places the stages; this module decides once, for the
numba generator (:mod:`~gradstep.engines.fused_codegen`) and the Triton one
(:mod:`~gradstep.engines.triton_codegen`), what their kernels do with that placement:

- which kernels a chain has (:func:`kernels`) and what each reads per tensor
  (:func:`kernel_inputs`); a global reduction whose element function takes none of
  its reduced scalars may have its sums taken by the step kernel itself
  (:func:`foldable`: the numba engine's ``fold``);
- how each row of the pointer table is loaded and stored (:func:`row_kinds`);
- the steps of the element loop (:func:`element_steps`, :func:`reduction_steps`):
  each stage's element function, the Kahan-compensated parameter store, where each
  slot row is written (a masked stage's within its test of the mask, every other
  stage's after all stages have run) and what a reduction kernel sums.

Expressions in the steps (``x + s3_0``) are written in the syntax numba's Python and
Triton's language share; the names are those of :func:`~gradstep.engines.plan.call_args`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._core.blockwise8 import BLOCKWISE8, MIXED_PREFIX
from .._core.rounding import ParameterStore
from .element_source import element_sources, function_source
from .plan import SEGMENT_ROWS, Stage, call_args, slot_names, stochastic_rows, terms_args

# how a row is loaded and stored (:func:`row_kinds`)
PLAIN = "plain"  # in the math dtype: no conversion
CAST = "cast"  # another float width: converted
HALF = "16-bit"  # float16 or bfloat16 bits, rounded to nearest when stored
STOCHASTIC = "stochastic-bf16"  # bfloat16 bits, rounded stochastically with the row's key
QUANTISED = "blockwise8"  # 8-bit codes, with a row of float32 block scales
# per tensor 8-bit codes (with block scales) or values in the math dtype: a row of
# storage dtype ``"blockwise8|float32"`` (``min_8bit_size``: small tensors' state is
# not quantised); the kernel tests the tensor's flag, ``tmask[len(stages), j]``
MIXED8 = "blockwise8|math"


def row_kinds(stages: list[Stage], rows: list[str], math: str) -> list[str]:
    """How each pointer-table row, of storage dtype ``rows[row]``, is loaded into and
    stored from ``math``: :data:`PLAIN`, :data:`CAST`, :data:`HALF`,
    :data:`STOCHASTIC` (loaded as :data:`HALF`), :data:`QUANTISED` or :data:`MIXED8`."""
    sr = stochastic_rows(stages, rows)
    kinds = []
    for row, dtype in enumerate(rows):
        if row in sr:
            kinds.append(STOCHASTIC)
        elif dtype == BLOCKWISE8:
            kinds.append(QUANTISED)
        elif dtype.startswith(MIXED_PREFIX):
            kinds.append(MIXED8)
        elif dtype in ("float16", "bfloat16"):
            kinds.append(HALF)
        else:
            kinds.append(PLAIN if dtype == math else CAST)
    return kinds


@dataclass
class Kernel:
    """One generated kernel: a loop over chunks running ``body``.

    ``write``: the step, storing the slots and the parameter (and summing per chunk
    the ``terms`` arrays of the ``folded`` global reductions, one after the other);
    else a reduction summing per chunk, for a global or per-tensor reduction
    ``target``, each of the ``terms`` arrays its ``terms`` (or ``norms``) returns,
    for a cautious end ``counted``, the elements its mask keeps, and otherwise the
    squares of ``x`` (of the new parameter ``wi + x`` for a norm stage of the
    parameters, ``new_params``)."""

    name: str
    body: list[Stage]
    write: bool
    target: Stage | None = None
    counted: Stage | None = None
    terms: int = 1
    # a norm over axes: the squares of ``x`` added to its slices' sums (no totals)
    segmented: Stage | None = None
    folded: tuple[tuple[Stage, int], ...] = ()  # (stage, how many arrays it sums)
    new_params: bool = False  # a norm of the new parameter: the squares of wi + x

    @property
    def loaded(self) -> list[Stage]:
        """The stages whose slots and scalars the kernel reads."""
        extra = self.target if self.target is not None else self.segmented
        return self.body + ([extra] if extra is not None else [])


def foldable(st: Stage) -> bool:
    """Whether the step kernel can sum global reduction stage ``st``'s terms itself:
    its element function takes none of the reduced scalars (the sums change only the
    carried state, which this step does not read), and no mask leaves tensors out. The
    terms see the same values a reduction pass would: the update after the stages
    before it, and its slots before they are updated (not for a stage whose terms
    read an earlier stage's input: :attr:`~gradstep.engines.plan.Stage.terms_from`)."""
    return st.is_global and not st.stage.reduced_scalars and st.mask is None and st.terms_from < 0


def kernels(stages: list[Stage], terms: dict[int, int], fold: bool = False) -> list[Kernel]:
    """The step kernel, then a reduction kernel for each norm, cautious, per-tensor
    and global reduction stage, over the stages before it (before its
    :attr:`~gradstep.engines.plan.Stage.terms_from`); ``terms``: how many arrays
    each per-tensor or global reduction stage sums; ``fold``: the step kernel sums
    the :func:`foldable` global reductions' terms, which get no reduction kernel."""
    folded = tuple((st, terms[st.index]) for st in stages if fold and foldable(st))
    n_folded = sum(n for _, n in folded)
    out = [Kernel("step", stages, write=True, terms=n_folded or 1, folded=folded)]
    for st in stages:
        name, before = f"reduce{st.index}", stages[: st.index]
        if st.terms_from >= 0:  # its terms read the input of stage terms_from
            before = stages[: st.terms_from]
        if st.is_axis_norm:
            out.append(Kernel(name, before, False, segmented=st))
        elif st.is_reduction:
            counted = st if st.is_cautious else None
            out.append(Kernel(name, before, False, counted=counted, new_params=st.stage.of_params))
        elif any(st is f for f, _ in folded):
            continue
        elif st.is_per_tensor or st.is_global:
            out.append(Kernel(name, before, False, target=st, terms=terms[st.index]))
    return out


@dataclass(frozen=True)
class Input:
    """A value a kernel reads once per tensor (a ``scalar``: once): ``name`` from
    ``table`` at ``position``.

    ``table``: ``"scalar"`` (the scalar vector), ``"key"`` (a row's stream key),
    ``"slot"`` (the data of a slot row), ``"scales"`` (an 8-bit slot's block scales,
    of row ``position``), ``"mask"`` (whether masked stage ``position`` covers the
    tensor), ``"factor"`` (a column of the per-tensor factor table), or of a norm
    over axes ``"sums"``/``"factors"`` (the address of the tensor's slices' float64
    sums or factors, in row ``position``) and ``"run"`` (an integer of row
    ``position``)."""

    name: str
    table: str
    position: int


def kernel_inputs(kernel: Kernel, stages: list[Stage], rows: list[str]) -> list[Input]:
    """What ``kernel`` reads besides the gradient and the parameter: the stream keys
    of the rows a step rounds stochastically, then for each stage it loads its slot
    rows, block-scale rows, mask, factor, scalars and per-tensor scalars."""
    out = []
    if kernel.write:
        out += [Input(f"k{row}", "key", row) for row in sorted(stochastic_rows(stages, rows))]
    for st in kernel.loaded:
        k = st.index
        out += [Input(f"a{k}_{i}", "slot", row) for i, row in enumerate(st.slot_rows)]
        out += [
            Input(f"b{k}_{i}", "scales", row)
            for i, row in st.scale_rows.items()
            if rows[st.slot_rows[i]].startswith(BLOCKWISE8)  # else: no tensor quantised
        ]
        if st.mask is not None:
            out.append(Input(f"m{k}", "mask", k))
        if st.is_reduction:
            out.append(Input(f"f{k}", "factor", st.reduction_column))
        if st.is_axis_norm:
            row = st.segment_row
            if st is kernel.segmented:
                out.append(Input(f"sa{k}", "sums", row))
            else:
                out.append(Input(f"sf{k}", "factors", row + 1))
            out += [Input(f"r{k}_{i}", "run", row + 2 + i) for i in range(SEGMENT_ROWS - 2)]
        out += [Input(f"c{k}_{i}", "scalar", st.scalar_offset + i) for i in range(st.n_scalars)]
        if st.is_per_tensor and st is not kernel.target:
            out += [
                Input(f"t{k}_{i}", "factor", st.reduction_column + i)
                for i in range(len(st.stage.tensor_scalars))
            ]
    return out


# -- the steps of the element loop ---------------------------------------------------


@dataclass(frozen=True)
class Let:
    """``name = value``."""

    name: str
    value: str


@dataclass(frozen=True)
class LoadSlot:
    """``s{stage}_{slot}`` = the slot's value at the element, in the math dtype."""

    stage: Stage
    slot: int


@dataclass(frozen=True)
class StoreSlot:
    """The slot's row at the element = ``s{stage}_{slot}``, stored as its row's kind."""

    stage: Stage
    slot: int


@dataclass(frozen=True)
class Convert:
    """``name`` = ``value`` converted for pointer-table row ``row``: ``to_storage``,
    as the row stores it (in its storage type); else from its storage type to the
    math dtype."""

    name: str
    row: int
    value: str
    to_storage: bool


@dataclass(frozen=True)
class StoreParam:
    """The parameter at the element = ``value``, stored as row 1's kind, or as it is
    when ``rounded`` (already in its storage type)."""

    value: str
    rounded: bool


@dataclass(frozen=True)
class IfCovered:
    """``steps`` only for the tensors the masked stage ``stage`` (an index) covers."""

    stage: int
    steps: tuple


@dataclass(frozen=True)
class SliceOf:
    """``seg{stage}`` = the slice of the element for the norm over axes ``stage``,
    from its runs ``r{stage}_{3i}, r{stage}_{3i+1}, r{stage}_{3i+2}``; and, unless
    ``summed``, ``f{stage}`` = its factor (else the square of ``value`` is added to
    its sum: the update ``x``, or the new parameter ``wi + x`` of a norm of the
    parameters)."""

    stage: Stage
    summed: bool
    value: str = "x"


@dataclass(frozen=True)
class Accumulate:
    """Add to the chunk's float64 totals ``total{first + t}`` each of ``values``:
    ``how`` is ``"squares"``, ``"sums"``, or ``"positive"`` (1 where the value is
    positive)."""

    how: str
    values: tuple[str, ...]
    first: int = 0


def element_steps(body: list[Stage], write: bool, folded: tuple = ()) -> list:
    """The steps for one element of ``body``'s stages, from the update ``x`` and the
    parameter ``wi`` (in the math dtype); ``write``: then store the slots not yet
    stored and the parameter ``wi + x`` (or a parameter store's ``wr``). Each stage
    of ``folded`` sums its terms (totals after the previous one's) once its slots are
    loaded, before its element function (``folded``: :attr:`Kernel.folded`)."""
    n_terms = {id(st): n for st, n in folded}
    steps, first = [], 0
    for st in body:
        stage_steps = _stage_steps(st, write)
        if id(st) in n_terms:
            loads = len(st.slot_rows)
            sums = _terms_steps(st, first, f"q{st.index}_", n_terms[id(st)])
            first += n_terms[id(st)]
            stage_steps = stage_steps[:loads] + sums + stage_steps[loads:]
        steps += stage_steps
    if write:
        steps += [
            StoreSlot(st, i) for st in body if st.mask is None for i in range(len(st.slot_rows))
        ]
        if any(isinstance(st.stage, ParameterStore) for st in body):
            steps.append(StoreParam("wr", rounded=True))
        else:
            steps.append(StoreParam("wi + x", rounded=False))
    return steps


def _stage_steps(st: Stage, write: bool) -> list:
    k = st.index
    if st.is_cautious:
        return [Let("x", f"_e{k}(x, gc{st.partner}, f{k})")]
    if st.is_axis_norm or st.is_reduction:  # a norm of the new parameter: w too
        args = f"x, wi, f{k}" if st.stage.of_params else f"x, f{k}"
        found = [SliceOf(st, summed=False)] if st.is_axis_norm else []
        return found + [Let("x", f"_e{k}({args})")]
    if st.is_cautious_start:
        return [Let(f"gc{k}", "x")]
    if isinstance(st.stage, ParameterStore):
        return parameter_store_steps(st)
    slots = slot_names(st)
    args = ", ".join(call_args(st, tensor_scalars=st.is_per_tensor))
    steps = [LoadSlot(st, i) for i in range(len(st.slot_rows))]
    steps.append(Let(", ".join(["x"] + slots), f"_e{k}({args})"))
    if st.stage.clear_nan_slots:
        steps += [Let(s, f"nan_to_zero({s})") for s in slots]
    if st.mask is None:
        return steps
    # a masked stage reads and writes its slots only for the tensors it covers
    if write:
        steps += [StoreSlot(st, i) for i in range(len(st.slot_rows))]
    return [IfCovered(k, tuple(steps))]


def parameter_store_steps(st: Stage) -> list:
    """The new parameter ``wr`` (in its storage type) from ``wi + x``, Kahan-compensated
    with the stage's slot ``c`` when it keeps one: ``x = x + c; wr = round(wi + x);
    wn = wr in the math dtype; c = x - (wn - wi)``; ``x`` becomes the change ``wn - wi``."""
    c = f"s{st.index}_0"
    kahan = st.stage.kahan
    steps = [LoadSlot(st, 0), Let("x", f"x + {c}")] if kahan else []
    steps += [Convert("wr", 1, "wi + x", to_storage=True), Convert("wn", 1, "wr", to_storage=False)]
    if kahan:
        steps.append(Let(c, "x - (wn - wi)"))
    return steps + [Let("x", "wn - wi")]


def reduction_steps(kernel: Kernel) -> list:
    """The steps after :func:`element_steps` in a reduction kernel: what it sums."""
    if kernel.segmented is not None:
        st = kernel.segmented
        return [SliceOf(st, summed=True, value="wi + x" if st.stage.of_params else "x")]
    if kernel.counted is not None:  # the elements a cautious mask keeps (u g > 0)
        return [Accumulate("positive", (f"x * gc{kernel.counted.partner}",))]
    target = kernel.target
    if target is None and kernel.new_params:  # in the math dtype, as NormScaled.normed
        return [Let("xn", "wi + x"), Accumulate("squares", ("xn",))]
    if target is None:
        return [Accumulate("squares", ("x",))]
    loads = [LoadSlot(target, i) for i in range(len(target.slot_rows))]
    if target.is_global:
        return loads + _terms_steps(target, 0, "q", kernel.terms)
    names = [f"q{t}" for t in range(kernel.terms)]
    comma = "," if kernel.terms == 1 else ""
    return loads + [
        Let(", ".join(names) + comma, f"_n{target.index}({', '.join(call_args(target))})"),
        *(
            Accumulate(how, (name,), t)
            for t, (name, how) in enumerate(zip(names, target.stage.sum_kinds))
        ),
    ]


def _terms_steps(st: Stage, first: int, prefix: str, n: int) -> list:
    """Global reduction ``st``'s ``n`` terms (its slots loaded) added to the totals
    from ``total{first}`` on."""
    names = [f"{prefix}{t}" for t in range(n)]
    comma = "," if n == 1 else ""
    return [
        Let(", ".join(names) + comma, f"_n{st.index}({', '.join(terms_args(st))})"),
        Accumulate("sums", tuple(names), first),
    ]


def module_functions(stages: list[Stage]) -> list[str]:
    """The ``def`` sources of a kernel module, for its generator to decorate: the
    element helpers and each stage's element function ``_e{index}``
    (:func:`~gradstep.engines.element_source.element_sources`; a parameter store is
    the kernels' own steps), then each per-tensor reduction's ``norms`` and each
    global reduction's ``terms`` as ``_n{index}``. Raises
    :class:`~gradstep.engines.element_source.SourceError`."""
    sources = element_sources([st for st in stages if not isinstance(st.stage, ParameterStore)])
    sources += [
        function_source(st.stage.norms, f"_n{st.index}") for st in stages if st.is_per_tensor
    ]
    sources += [function_source(st.stage.terms, f"_n{st.index}") for st in stages if st.is_global]
    return sources
