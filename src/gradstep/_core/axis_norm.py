"""A stage that scales each slice of a tensor by a factor of that slice's L2 norm."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .elementwise import _params_scaled_by_factor, _scaled_by_factor
from .transform import Transform

#: runs of kept axes a kernel describes a tensor's slices by (see :meth:`AxisNormScaled.runs`)
MAX_RUNS = 3


class AxisNormScaled(Transform):
    """``x * factor(n)``, ``n`` the L2 norm of the slice of ``x`` over the axes the
    stage names for the tensor (Lasagne's per-unit norms: each column of a dense
    weight, each filter of a convolution).

    ``factor(norm, h)`` is an element function of the norm and the hyperparameters
    ``h``, run by every engine on its own arrays; ``update`` (the eager path) is
    ``array_fn`` over the leaves, which must compute the same thing, written against
    the array namespace (torch tensors on their device, traced under ``jax.jit``).
    Engines that run it as a device pass read :meth:`runs` and ``element`` (the
    multiplication).

    ``of_params``: ``x`` is the new parameter ``w + u`` instead of the update ``u``
    (Lasagne's max-norm constraint applied after the step): the norms are those of
    the new parameter's slices, and the update becomes ``(w + u) * factor - w``
    (``element`` then takes ``w`` too: ``element(u, w, factor)``).
    """

    counted = False  # keeps no step count
    slots: tuple = ()  # and no state
    reads_shape = True  # norms over axes: a real view's trailing axis would change them
    element = staticmethod(_scaled_by_factor)

    def __init__(
        self,
        name: str,
        factor: Callable,
        hyperparams: dict,
        norm_axes: Sequence[int] | None,
        default_axes: Callable[[int], tuple[int, ...]],
        array_fn: Callable,
        *,
        of_params: bool = False,
    ):
        self.name = name
        self.factor = factor
        self.hyperparams = hyperparams
        self.norm_axes = None if norm_axes is None else tuple(norm_axes)
        self.default_axes = default_axes
        self.array_fn = array_fn
        self.of_params = of_params
        if of_params:
            self.element = _params_scaled_by_factor

    def init(self, params: Any) -> dict:
        return {}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if self.of_params:
            return on_new_params(self.name, self.array_fn, grads, params), state
        from . import tree as _tree

        leaves, td = _tree.flatten(grads)
        return _tree.unflatten(td, self.array_fn(leaves)), state

    def axes(self, ndim: int) -> tuple[int, ...]:
        """The axes a tensor of ``ndim`` dimensions is reduced over (non-negative);
        ValueError for an axis it does not have."""
        axes = self.norm_axes if self.norm_axes is not None else self.default_axes(ndim)
        if any(not -ndim <= a < ndim for a in axes):
            raise ValueError(
                f"{self.name}: invalid norm_axes={tuple(axes)} for a tensor of {ndim} "
                f"dimensions; valid values: axes from {-ndim} to {ndim - 1}"
            )
        return tuple(sorted({a % ndim for a in axes}))

    def runs(self, shape: Sequence[int]) -> tuple[list[tuple[int, int, int]], int]:
        """How a contiguous tensor of ``shape`` maps its flat element index ``i`` to
        its slice: ``sum(((i // a) % b) * c for a, b, c in runs)``, one term per run
        of consecutive kept axes (row-major order); and the number of slices.
        Raises ValueError beyond :data:`MAX_RUNS` runs."""
        shape = tuple(int(s) for s in shape)
        reduced = set(self.axes(len(shape)))
        kept = [d for d in range(len(shape)) if d not in reduced]
        groups: list[list[int]] = []
        for d in kept:
            if groups and groups[-1][-1] == d - 1:
                groups[-1].append(d)
            else:
                groups.append([d])
        if len(groups) > MAX_RUNS:
            raise ValueError(
                f"{self.name}: the axes kept of a tensor of shape {shape} form "
                f"{len(groups)} runs (at most {MAX_RUNS})"
            )
        runs = []
        for group in groups:
            last = group[-1]
            stride = _product(shape[last + 1 :])
            size = _product(shape[group[0] : last + 1])
            weight = _product(shape[e] for e in kept if e > last)
            runs.append((max(stride, 1), max(size, 1), weight))
        return runs, _product(shape[d] for d in kept)


def on_new_params(name: str, array_fn: Callable, updates: Any, params: Any) -> Any:
    """The updates that take ``params`` to ``array_fn`` of the new parameters
    ``params + updates`` (a constraint applied after the step), as a tree like
    ``updates``. ``array_fn`` is written against the array namespace: the results
    are arrays of the parameters' library, on their device.
    """
    from . import tree as _tree

    if params is None:
        raise ValueError(f"{name}: target='params' needs params in update()")
    u_leaves, td = _tree.flatten(updates)
    w_leaves = _tree.leaves_like(td, params)
    new_w = array_fn([w + u for w, u in zip(w_leaves, u_leaves)])
    return _tree.unflatten(td, [nw - w for nw, w in zip(new_w, w_leaves)])


def _product(values: Any) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out
