"""The per-tensor reduction stage kind: elementwise math with per-tensor scalars
computed from each tensor's sums of squares (the trust ratios of LARS and LAMB).

It is a stage kind every engine must know (the eager engine runs it through
:meth:`Elementwise.update`; the JAX engine and the torch front have their own
handling), so it lives in the core; the rules that build it are in
:mod:`gradstep.rules.layerwise`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .combine import _labels_for
from .elementwise import Elementwise, resolve, sum_of_squares
from .namespaces import element_for, namespace_of


class PerTensorReduction(Elementwise):
    """An elementwise stage whose element function also takes per-tensor scalars.

    Args (besides :class:`~gradstep._core.elementwise.Elementwise`'s):
      norms: ``norms(g, [w], *slots, *scalars) -> (x1, x2, ...)``: element math
        giving the arrays whose sums of squares the stage needs (one tensor at a
        time; float64 sums).
      combine: ``combine(sums, flags, h) -> {name: value}``: plain Python turning one
        tensor's sums, its mask flags and the step's hyperparameters into that
        tensor's scalars, in the order of ``tensor_scalars``.
      tensor_scalars: the names of the element function's last parameters, which
        ``combine`` provides; the parameters before them come from ``prepare``.
      flags: ``{name: mask}``: each mask a tree of booleans, a function of the
        parameters returning one, or ``None`` (true for every tensor); ``combine``
        receives ``{name: bool}`` for its tensor.
      sized: ``combine``'s sums end with the tensor's number of elements (a mean
        square, an RMS); the engines that build it (the eager one, the numba one)
        append it.
    """

    def __init__(
        self,
        name: str,
        element: Callable,
        *,
        norms: Callable,
        combine: Callable,
        tensor_scalars: tuple[str, ...],
        flags: dict[str, Any] | None = None,
        sized: bool = False,
        **elementwise: Any,
    ):
        super().__init__(name, element, **elementwise)
        self.sized = sized
        self.norms = norms
        self.combine = combine
        self.tensor_scalars = tuple(tensor_scalars)
        self.flags = dict(flags or {})
        names = super().scalar_names()
        if names[len(names) - len(self.tensor_scalars) :] != self.tensor_scalars:
            raise TypeError(
                f"{name}: the element function's last parameters must be {self.tensor_scalars}"
            )

    def scalar_names(self) -> tuple[str, ...]:
        """The element function's scalars that ``prepare`` makes (the per-tensor ones
        follow them)."""
        names = super().scalar_names()
        return names[: len(names) - len(self.tensor_scalars)]

    def _constructor_args(self) -> dict[str, Any]:
        return dict(
            super()._constructor_args(),
            prepare=self.prepare,
            norms=self.norms,
            combine=self.combine,
            tensor_scalars=self.tensor_scalars,
            flags=self.flags,
            sized=self.sized,
        )

    def _rebuilt(self, name: str, element: Callable, args: dict[str, Any]) -> PerTensorReduction:
        return PerTensorReduction(name, element, **args)

    def tensor_flags(self, params: Any, grads: Any, n: int) -> list[dict[str, bool]]:
        """Each tensor's mask flags, ``{flag name: bool}``."""
        out: list[dict[str, bool]] = [{} for _ in range(n)]
        for flag, mask in self.flags.items():
            values = [True] * n if mask is None else _labels_for(mask, params, grads)
            if len(values) != n:
                raise ValueError(f"{self.name}: {flag} mask has {len(values)} leaves, params {n}")
            for i, v in enumerate(values):
                out[i][flag] = bool(v)
        return out

    def n_terms(self) -> int:
        """How many arrays ``norms`` returns (evaluated once on one-element NumPy
        arrays)."""
        one = np.ones(1)
        arrays = [one] * (1 + self.uses_params + len(self.slots))
        scalars = [1.0] * len(self.scalar_names())
        result = element_for(self.norms, namespace_of(one))(*arrays, *scalars)
        return len(result) if isinstance(result, tuple) else 1

    def tensor_scalar_values(
        self, sums: list[tuple[float, ...]], flags: list[dict[str, bool]], h: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The per-tensor scalars from each tensor's float64 sums of squares (what an
        engine calls after its own reduction pass)."""
        return [self.combine(s, f, h) for s, f in zip(sums, flags)]

    def tensor_scalar_rows(
        self,
        sums: Any,
        flags: list[dict[str, bool]],
        count: int,
        ctx: dict[str, Any],
        sizes: list[int] | None = None,
    ) -> list[list[Any]]:
        """Each tensor's scalars, in the order of ``tensor_scalars``, from the rows of
        ``sums`` (each tensor's float64 sums of squares, from an engine's own
        reduction pass) and, for a ``sized`` stage, the tensors' ``sizes``: what the
        eager engine computes from its own sums."""
        h = resolve(self.hyperparams, count, ctx)
        rows = [tuple(float(x) for x in row) for row in sums]
        if self.sized:
            if sizes is None:
                raise ValueError(f"{self.name}: a sized reduction needs the tensors' sizes")
            rows = [row + (float(n),) for row, n in zip(rows, sizes)]
        values = self.tensor_scalar_values(rows, flags, h)
        return [[v[name] for name in self.tensor_scalars] for v in values]

    # the eager engine's reduction phase (Elementwise.update runs the element phase)

    def reduction_context(self, params, grads, g_leaves, count, ctx):
        h = resolve(self.hyperparams, count, ctx)
        return h, self.tensor_flags(params, grads, len(g_leaves))

    def tensor_sums_of(self, arrays: list, prepared: list, ns: Any) -> tuple[float, ...]:
        """One tensor's float64 sums of squares of the ``norms`` arrays."""
        terms = element_for(self.norms, ns)(*arrays, *prepared)
        sums = tuple(sum_of_squares(x) for x in terms)
        return sums + (float(math.prod(tuple(arrays[0].shape))),) if self.sized else sums

    def tensor_scalars_of(self, i, arrays, prepared, ns, context):
        h, flags = context
        return self.combine(self.tensor_sums_of(arrays, prepared, ns), flags[i], h)
