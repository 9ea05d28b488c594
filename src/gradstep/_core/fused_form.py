"""Fused forms: the stages a shape-dependent transform equals on the tensors of some shapes.

A transform whose update reads tensor shapes (AdamP's projection, gradient
centralisation, CAME's factored moments) is not an elementwise stage, yet on tensors
of some shapes it computes what elementwise and per-tensor reduction stages compute:
centralisation leaves a vector as it is, CAME keeps a vector's full second moment,
AdamP never projects a vector. Such a transform offers ``fused_form()`` returning a
:class:`FusedForm`: those stages, built from the same element functions its own
update calls on those tensors (the math is written once), laid out over the same
state, and the test of which shapes they cover.

Both fused engines (numba's and Triton's) compile a chain with the forms of its
transforms in their place (:func:`~gradstep.engines.plan.flatten_stages`) and refuse
(:func:`refusal`), before they write anything, a step whose tensors a form does not
cover: the fronts run that step on the transform's own update, or, where every stage
computes each tensor from that tensor alone (:func:`~gradstep._core.separable.separable`),
only the tensors the forms do not cover, the others fused (the torch front's buckets,
the NumPy front's split step). No other engine or front reads forms.

A form may also carry a **host step** (:class:`HostWrite`): array code the fused
engines run on the slot arrays around their launch, the very code the transform's own
update runs (Sophia folds a Hessian estimate into its average on refresh steps): on
NumPy arrays on the numba engine, on the tensors (operations queued on their device)
on the Triton engine. The host step computes its values before anything is written,
and the engine stores them only once its checks have passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .transform import Transform


@dataclass(frozen=True)
class FusedForm:
    """``transform``: stages computing what the original computes on the tensors whose
    shapes ``accepts`` (a picklable function of a shape tuple); ``covers``: those
    tensors in words (``"tensors of rank < 2"``), for the refusal of the others.
    The stages' state paths are the original's: each stage's state is where the
    original keeps the same values. ``rounds_16bit``: the original returns a 16-bit
    gradient's updates rounded to its dtype (array code, not element functions,
    whose updates stay float32 within a step): the kernels would not round them, so
    16-bit parameters are not covered."""

    name: str
    transform: Transform
    accepts: Callable[[tuple[int, ...]], bool]
    covers: str
    rounds_16bit: bool = False
    #: ``host(state, params, g_leaves, ctx)``: a :class:`HostWrite` (``state`` the
    #: original's state, ``params`` the parameters' tree, ``ctx`` the step's inputs
    #: and overrides), or None on a step where it writes nothing
    host: Callable[..., HostWrite | None] | None = None
    #: the step inputs (keyword arguments) only the host step reads: the kernels'
    #: scalars never see them
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostWrite:
    """New values of slots of a form's state, written by the engine ``"before"`` or
    ``"after"`` its launch: ``values`` maps a path of keys in the original's state
    to the new leaves of that slot (one array per tensor, computed, not yet written).
    """

    when: str
    values: dict[tuple[str, ...], list]


def refusal(forms: list[FusedForm], shapes: list, itemsize: int | None = None) -> str | None:
    """Why tensors of ``shapes`` (whose parameters have ``itemsize`` bytes per element,
    None: unknown) cannot be stepped on ``forms`` in place of their transforms (a form
    that does not cover one of them), or None."""
    for form in forms:
        if form.rounds_16bit and itemsize == 2:
            return f"{form.name} runs fused on 32- and 64-bit parameters only"
        for shape in shapes:
            if not form.accepts(tuple(shape)):
                return (
                    f"{form.name} runs fused on {form.covers} only, not on a tensor of "
                    f"shape {tuple(shape)}"
                )
    return None


def fused_form_of(t: Transform) -> FusedForm | None:
    """``t``'s fused form, or None when it offers none."""
    offer = getattr(t, "fused_form", None)
    return offer() if callable(offer) else None


class Keyed(Transform):
    """Stages run one after another (as a chain), each with its state under the given
    key of this transform's state, or none (key ``None``: a stateless stage): a form
    whose stages share the state of the transform it stands for (a wrapper's inner
    state under ``"inner"``, its own finishing stage keeping nothing)."""

    def __init__(self, name: str, stages: tuple[Transform, ...], keys: tuple[str | None, ...]):
        if len(stages) != len(keys):
            raise ValueError(f"{name}: {len(stages)} stages for {len(keys)} state keys")
        self.name = name
        self.stages = tuple(stages)
        self.keys = tuple(keys)

    def children(self) -> tuple[Transform, ...]:
        return self.stages

    def child_state_keys(self) -> tuple[str | None, ...]:
        return self.keys

    def with_children(self, children: tuple[Transform, ...]) -> Keyed:
        return Keyed(self.name, tuple(children), self.keys)

    def init(self, params: Any) -> dict:
        out: dict[str, Any] = {}
        for stage, key in zip(self.stages, self.keys):
            if key is not None:
                out[key] = stage.init(params)
        return out

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        new = dict(state)
        for stage, key in zip(self.stages, self.keys):
            own = state[key] if key is not None else {}
            grads, own = stage.update(grads, own, params, **ctx)
            if key is not None:
                new[key] = own
        return grads, new


def unchanged(name: str) -> Transform:
    """A form with no stages (the update passes through), keeping no state."""
    return Keyed(name, (), ())


def rank_below(rank: int) -> Callable[[tuple[int, ...]], bool]:
    """The shape test of tensors of rank below ``rank`` (picklable)."""
    return _RankBelow(rank)


@dataclass(frozen=True)
class _RankBelow:
    rank: int

    def __call__(self, shape: tuple[int, ...]) -> bool:
        return len(shape) < self.rank


def every_shape(shape: tuple[int, ...]) -> bool:
    return True
