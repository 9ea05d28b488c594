"""The global reduction stage kind: elementwise math around sums over every element of
every tensor, with scalar state carried from step to step (the distance estimates of
the learning-rate-free rules: Prodigy, D-Adaptation).

A step has three phases, and every engine runs them the same way:

1. **terms**: element math ``terms(g, [w], *slots, *scalars) -> (x1, x2, ...)``
   giving per-element quantities (a product ``g (w0 - w)``, an absolute value
   ``|s_new|``); each is summed over all elements of all tensors, in float64;
2. **combine**: ``combine(sums, h, scalars) -> (carried, reduced)``, plain scalar
   math of the sums, the step's hyperparameters ``h`` (which hold the carried
   state's values too) and the step's scalars: it returns the new carried state and
   the *reduced scalars*, the same for every tensor;
3. **element**: ``element(g, [w], *slots, *scalars, *reduced)``, as an elementwise
   stage's.

``prepare(h, count)`` sees the carried state's values in ``h``, so the step's scalars
can depend on them. ``combine`` must use element operations
(:mod:`gradstep._core.xmath`: ``where``, ``maximum``...) instead of branches on its
inputs: it runs on float64 host numbers (NumPy), on 0-d torch tensors on the
device (the Triton engine, without a host synchronisation) and traced (JAX).

The fused engines run the terms as a reduction pass (the stages before this one
recomputed, as for a norm clip) and the element phase in the main pass, the reduced
scalars written into the scalar vector between the two. A stage without reduced
scalars (and without a mask) needs nothing of the sums in its element phase: the
numba engine's main pass sums its terms itself and ``combine`` runs afterwards
(:func:`gradstep.engines.kernel_plan.foldable`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import tree as _tree
from .elementwise import Elementwise, cast_scalars, resolve
from .namespaces import NUMPY, element_for, namespace_of


def _fixed(values: dict, h: dict, count: int) -> dict:
    return values


def _hyperparameters_only(carried: tuple, h: dict, count: int) -> dict:
    return {k: v for k, v in h.items() if k not in carried}


class GlobalReduction(Elementwise):
    """An elementwise stage whose element function also takes scalars reduced over
    every tensor, and which carries scalar state.

    Args (besides :class:`~gradstep._core.elementwise.Elementwise`'s):
      terms: element math giving the arrays summed over everything (see the module
        docstring); it takes the per-element inputs and the ``prepare`` scalars.
      combine: ``combine(sums, h, scalars) -> (carried, reduced)``.
      reduced_scalars: the names of the element function's last parameters, which
        ``combine`` provides; the parameters before them come from ``prepare``.
      carried: ``{name: initial value}`` of the scalar state kept in the stage's state,
        in the parameters' floating dtype (float32 parameters: float32, as every other
        state); ``combine`` computes in float64 where the library has it.
    """

    def __init__(
        self,
        name: str,
        element: Callable,
        *,
        terms: Callable,
        combine: Callable,
        reduced_scalars: tuple[str, ...],
        carried: dict[str, float],
        **elementwise: Any,
    ):
        if elementwise.get("prepare") is None:  # the hyperparameters, without the state
            elementwise["prepare"] = functools.partial(_hyperparameters_only, tuple(carried))
        super().__init__(name, element, **elementwise)
        self.terms = terms
        self.combine = combine
        self.reduced_scalars = tuple(reduced_scalars)
        self.carried = dict(carried)
        names = super().scalar_names()
        if names[len(names) - len(self.reduced_scalars) :] != self.reduced_scalars:
            raise TypeError(
                f"{name}: the element function's last parameters must be {self.reduced_scalars}"
            )
        clash = set(self.carried) & ({"count"} | {s.name for s in self.slots})
        if clash:
            raise ValueError(f"{name}: carried state {sorted(clash)} clashes with other state")

    @property
    def takes_loss(self) -> bool:
        """A stage with the hyperparameter ``value`` is given the loss at the current
        parameters each step (Polyak's step): the torch front hands it a closure's loss."""
        return "value" in self.hyperparams

    def scalar_names(self) -> tuple[str, ...]:
        """The element function's scalars that ``prepare`` makes (the reduced ones
        follow them)."""
        names = super().scalar_names()
        return names[: len(names) - len(self.reduced_scalars)]

    def _constructor_args(self) -> dict[str, Any]:
        return dict(
            super()._constructor_args(),
            prepare=self.prepare,
            terms=self.terms,
            combine=self.combine,
            reduced_scalars=self.reduced_scalars,
            carried=self.carried,
        )

    def _rebuilt(self, name: str, element: Callable, args: dict[str, Any]) -> GlobalReduction:
        return GlobalReduction(name, element, **args)

    # -- what every engine calls ----------------------------------------------------

    def step_values(self, carried: dict[str, Any], count: Any, ctx: dict[str, Any]) -> dict:
        """``h``: the step's hyperparameters with the carried state's values."""
        ranges = self._scheduled_ranges(ctx)
        return {**resolve(self.hyperparams, count, ctx, ranges), **carried}

    def step_scalars(self, carried: dict[str, Any], count: Any, ctx: dict[str, Any]):
        """``(h, scalars)``: :meth:`step_values` and what ``prepare`` makes of them."""
        h = self.step_values(carried, count, ctx)
        return h, self.prepare(h, count)

    def n_terms(self) -> int:
        """How many arrays ``terms`` returns (evaluated once on one-element arrays)."""
        one = np.ones(1)
        arrays = [one] * (1 + self.uses_params + len(self.slots))
        result = self.terms(*arrays, *([1.0] * len(self.scalar_names())))
        if not isinstance(result, tuple):  # the kernels unpack the terms as a tuple
            raise TypeError(
                f"{self.name}: terms must return a tuple of arrays (e.g. (g * g,)), "
                f"not {type(result).__name__}"
            )
        return len(result)

    def scalars(self, count: int, ctx: dict[str, Any]) -> dict[str, Any]:
        """The ``prepare`` scalars at the initial carried state (engines use
        :meth:`step_scalars` with the state's)."""
        return self.step_scalars(self.carried, count, ctx)[1]

    def carried_of(self, state: dict) -> dict[str, Any]:
        """The carried state's values in the stage's state node."""
        return {name: state[name] for name in self.carried}

    # -- the eager engine ---------------------------------------------------------------

    def init(self, params: Any) -> dict:
        """Slots as an elementwise stage's; the carried state as NumPy 0-d arrays of
        the parameters' floating dtype (float64 without parameters)."""
        state = super().init(params)
        leaves = _tree.leaves(params)
        dtype = np.float64
        if leaves:
            like = namespace_of(leaves[0]).float_dtype(leaves[0])
            dtype = np.float32 if str(like).endswith("float32") else np.float64
        for name, value in self.carried.items():
            state[name] = np.asarray(value, dtype=dtype)
        return state

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        if self.uses_params:
            if params is None:
                raise ValueError(f"{self.name}: this transform needs params in update()")
            w_leaves = _tree.leaves_like(td, params)
        slot_leaves = [_tree.leaves_like(td, state[s.name]) for s in self.slots]
        count = int(state["count"]) if self.counted else 0
        # NumPy state (float32 for float32 parameters) is computed with in float64, as
        # the fused engines do
        carried = {
            k: np.float64(v) if isinstance(v, np.ndarray | np.generic) else v
            for k, v in self.carried_of(state).items()
        }
        # carried state of another library (0-d tensors a previous step stored) is
        # prepared with that library's operations, on its device
        library = next((namespace_of(v) for v in carried.values() if hasattr(v, "dtype")), NUMPY)
        h = self.step_values(carried, count, ctx)
        scalars = element_for(self.prepare, library)(h, count)
        sums: list = []
        for i, g in enumerate(g_leaves):
            ns = namespace_of(g)
            args = [g] + ([w_leaves[i]] if self.uses_params else []) + [s[i] for s in slot_leaves]
            # the math runs in float32 or wider, whatever the storage ("opmath"), as
            # the element phase's and the fused kernels' (16-bit rows read widened)
            args = [ns.widened(a) for a in args]
            terms = element_for(self.terms, ns)(*args, *cast_scalars(scalars, args[0]))
            terms = terms if isinstance(terms, tuple) else (terms,)
            part = [ns.wide_sum(x) for x in terms]
            sums = part if not sums else [a + b for a, b in zip(sums, part)]
        if not g_leaves:
            return grads, dict(state)
        ns = namespace_of(sums[0])
        carried = {k: _like(v, sums[0]) for k, v in carried.items()}
        h = {**h, **carried}
        new_carried, reduced = element_for(self.combine, ns)(tuple(sums), h, scalars)
        # the element phase: this stage with the step's scalars fixed
        phase = Elementwise(
            self.name,
            self.element,
            slots=self.slots,
            prepare=functools.partial(_fixed, {**scalars, **reduced}),
            uses_params=self.uses_params,
            uses_count=self.counted,
            clear_nan_slots=self.clear_nan_slots,
        )
        inner = {k: v for k, v in state.items() if k not in self.carried}
        updates, new_state = Elementwise.update(phase, grads, inner, params)
        for name in self.carried:
            new_state[name] = _stored(new_carried[name], state[name])
        return updates, new_state


def _like(value: Any, like: Any) -> Any:
    """A carried value as a 0-d array of ``like``'s library, dtype and device."""
    if isinstance(like, np.generic | np.ndarray):
        return np.float64(value)
    return namespace_of(like).astype(value, like)


def _stored(value: Any, old: Any) -> Any:
    """A new carried value in the form the state keeps it (NumPy 0-d arrays keep their
    dtype; a library's 0-d arrays stay that library's)."""
    if isinstance(old, np.ndarray) and namespace_of(value).name == "numpy":
        return np.asarray(value, dtype=old.dtype)
    return value
