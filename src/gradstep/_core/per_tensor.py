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

from .combine import mask_flags
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
      sum_kinds: for each array ``norms`` returns, ``"squares"`` (the sum of its
        squares: a norm) or ``"sums"`` (the sum of its values: a mean); None: all
        squares.
      totals: ``combine``'s sums (and the size, when ``sized``) are followed by the
        same quantities totalled over every tensor of the step: a stage that couples
        the tensors (Ranger21's stable weight decay, scaled by the mean second moment
        of all of them), whose step is one call over all of them.
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
        sum_kinds: tuple[str, ...] | None = None,
        totals: bool = False,
        **elementwise: Any,
    ):
        super().__init__(name, element, **elementwise)
        self.sized = sized
        self.totals = totals
        self.norms = norms
        self.combine = combine
        self.tensor_scalars = tuple(tensor_scalars)
        self.flags = dict(flags or {})
        names = super().scalar_names()
        if names[len(names) - len(self.tensor_scalars) :] != self.tensor_scalars:
            raise TypeError(
                f"{name}: the element function's last parameters must be {self.tensor_scalars}"
            )
        self._sum_kinds = None if sum_kinds is None else tuple(sum_kinds)
        if sum_kinds is not None and (
            len(self._sum_kinds) != self.n_terms()
            or not set(self._sum_kinds) <= {"squares", "sums"}
        ):
            raise ValueError(
                f"{name}: invalid sum_kinds={sum_kinds!r}; valid values: one of 'squares' "
                f"and 'sums' for each of the {self.n_terms()} arrays norms returns"
            )

    @property
    def sum_kinds(self) -> tuple[str, ...]:
        """How each array ``norms`` returns is summed: ``"squares"`` or ``"sums"``."""
        return self._sum_kinds or ("squares",) * self.n_terms()

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
            sum_kinds=self._sum_kinds,
            totals=self.totals,
        )

    def _rebuilt(self, name: str, element: Callable, args: dict[str, Any]) -> PerTensorReduction:
        return PerTensorReduction(name, element, **args)

    def tensor_flags(self, params: Any, grads: Any, n: int) -> list[dict[str, bool]]:
        """Each tensor's mask flags, ``{flag name: bool}``."""
        out: list[dict[str, bool]] = [{} for _ in range(n)]
        for flag, mask in self.flags.items():
            what = f"{self.name}: {flag} mask"
            values = [True] * n if mask is None else mask_flags(mask, params, grads, what)
            if len(values) != n:
                raise ValueError(f"{what} has {len(values)} leaves, params {n}")
            for i, v in enumerate(values):
                out[i][flag] = v
        return out

    def n_terms(self) -> int:
        """How many arrays ``norms`` returns (evaluated once on one-element NumPy
        arrays)."""
        one = np.ones(1)
        arrays = [one] * (1 + self.uses_params + len(self.slots))
        scalars = [1.0] * len(self.scalar_names())
        result = element_for(self.norms, namespace_of(one))(*arrays, *scalars)
        return len(result) if isinstance(result, tuple) else 1

    def with_totals(self, sums: list[tuple]) -> list[tuple]:
        """Each tensor's sums followed by their totals over every tensor, for a stage
        with ``totals`` (else ``sums`` as they are): what ``combine`` receives."""
        if not self.totals or not sums:
            return list(sums)
        total = tuple(sum(column) for column in zip(*sums))
        return [tuple(row) + total for row in sums]

    def tensor_scalar_values(
        self, sums: list[tuple[float, ...]], flags: list[dict[str, bool]], h: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The per-tensor scalars from each tensor's float64 sums (and size, for a
        ``sized`` stage): what an engine calls after its own reduction pass."""
        return [self.combine(s, f, h) for s, f in zip(self.with_totals(sums), flags)]

    def tensor_scalar_rows(
        self,
        sums: Any,
        flags: list[dict[str, bool]],
        count: int,
        ctx: dict[str, Any],
        sizes: Any = None,
    ) -> np.ndarray:
        """Each tensor's scalars, a row per tensor in the order of ``tensor_scalars``,
        from the rows of ``sums`` (each tensor's float64 sums, from an engine's own
        reduction pass) and, for a ``sized`` stage, the tensors' ``sizes``: what the
        eager engine computes from its own sums.

        ``combine`` runs once per group of tensors with the same flags, on columns
        (its element operations are NumPy's): the same float64 arithmetic as one
        call per tensor, without a Python call per tensor."""
        h = resolve(self.hyperparams, count, ctx)
        columns = np.asarray(sums, dtype=np.float64).reshape(len(flags), -1)
        if self.sized:
            if sizes is None:
                raise ValueError(f"{self.name}: a sized reduction needs the tensors' sizes")
            columns = np.column_stack([columns, np.asarray(sizes, dtype=np.float64)])
        if self.totals:
            totals = np.broadcast_to(columns.sum(axis=0), columns.shape)
            columns = np.column_stack([columns, totals])
        out = np.empty((len(flags), len(self.tensor_scalars)), np.float64)
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(flags):
            groups.setdefault(tuple(sorted(f.items())), []).append(i)
        for key, members in groups.items():
            values = self.combine(tuple(columns[members].T), dict(key), h)
            for k, name in enumerate(self.tensor_scalars):
                out[members, k] = values[name]
        return out

    # the eager engine's reduction phase (Elementwise.update runs the element phase)

    def reduction_context(self, params, grads, g_leaves, count, ctx):
        h = resolve(self.hyperparams, count, ctx)
        return {"h": h, "flags": self.tensor_flags(params, grads, len(g_leaves))}

    def tensor_sums_of(self, arrays: list, prepared: list, ns: Any) -> tuple[float, ...]:
        """One tensor's float64 sums of the ``norms`` arrays (of their squares or of
        their values, as ``sum_kinds`` says), and its size for a ``sized`` stage."""
        terms = element_for(self.norms, ns)(*arrays, *prepared)
        terms = terms if isinstance(terms, tuple) else (terms,)
        sums = tuple(
            sum_of_squares(x) if kind == "squares" else float(ns.wide_sum(x))
            for x, kind in zip(terms, self.sum_kinds)
        )
        return sums + (float(math.prod(tuple(arrays[0].shape))),) if self.sized else sums

    def sums_of_tensor(self, i: int, arrays: list, prepared: list, ns: Any, context: Any):
        """Tensor ``i``'s sums on the eager engine (a front may reduce them further)."""
        return self.tensor_sums_of(arrays, prepared, ns)

    def whole_step_context(self, context: Any, inputs: Callable, n: int) -> Any:
        """With ``totals``, every tensor's scalars computed before the first is
        stepped (``inputs(i)``: tensor ``i``'s ``(namespace, arguments, prepared
        scalars)``); else ``context`` as it is."""
        if not self.totals:
            return context
        rows = [
            self.sums_of_tensor(i, args, prepared, ns, context)
            for i, (ns, args, prepared) in enumerate(map(inputs, range(n)))
        ]
        values = self.tensor_scalar_values(rows, context["flags"], context["h"])
        return {**context, "values": values}

    def tensor_scalars_of(self, i, arrays, prepared, ns, context):
        if self.totals:
            return context["values"][i]
        sums = self.sums_of_tensor(i, arrays, prepared, ns, context)
        return self.combine(sums, context["flags"][i], context["h"])
