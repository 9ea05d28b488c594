"""The NumPy front's split step: tensors fused forms cover on the fused engine, the rest eagerly.

A transform whose update reads tensor shapes (AdamP's projection, CAME's factored
moments, gradient centralisation) has a fused form covering some shapes
(:mod:`gradstep._core.fused_form`); the fused engine refuses a step with any other
tensor in it. Where every stage computes each tensor from that tensor alone
(:func:`~gradstep._core.separable.separable`), a step over the whole list is the same
as one step over the tensors the forms cover and one over the others, so
:class:`gradstep.Optimizer` runs the first on the fused engine and the second on
the transform's own update, as the torch front runs them in separate buckets.

The state stays one tree for the whole list, the tree the transform's ``init``
makes: each part's step sees that tree with every list indexed by parameter (the
transforms' :attr:`~gradstep._core.transform.Transform.per_parameter_state`) cut to
its own tensors, and the two new trees are joined back. Leaves outside those lists
(step counts) advance alike in both parts; the joined tree keeps the eager part's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._core import tree as _tree
from ._core.combine import Masked, Partition
from ._core.elementwise import wide_updates
from ._core.separable import separable
from ._core.transform import Transform, per_parameter_paths, walk


@dataclass(frozen=True)
class Split:
    """``covered``: the indices of the parameter leaves the fused engine steps;
    ``others``: those the transform's own update steps; ``lists``: the state paths of
    the lists indexed by parameter (one array per parameter in each)."""

    covered: tuple[int, ...]
    others: tuple[int, ...]
    lists: tuple[tuple[str, ...], ...]

    def part_state(self, state: dict, part: tuple[int, ...]) -> dict:
        """``state`` for the parameters ``part`` alone: every container copied (the
        fused engine advances counts in its tree in place), every list indexed by
        parameter cut to ``part``'s arrays, which are ``state``'s own."""
        out = _containers_copied(state)
        n = len(self.covered) + len(self.others)
        for path in self.lists:
            leaves = _tree.leaves(_at(out, path))
            if len(leaves) != n:
                raise ValueError(
                    f"Optimizer.step: state entry {'/'.join(path)} has {len(leaves)} arrays "
                    f"for {n} parameters"
                )
            _at(out, path[:-1])[path[-1]] = [leaves[i] for i in part]
        return out

    def joined(self, state: dict, covered_state: dict, others_state: dict) -> dict:
        """The state of the whole list after both parts stepped: ``state``'s tree (the
        one before the step) with each list's arrays taken from the part that stepped
        them, everything else from the eager part's new state ``others_state``."""
        out = _containers_copied(others_state)
        for path in self.lists:
            node = _at(state, path)
            leaves = _tree.leaves(node)
            for part, new in ((self.covered, covered_state), (self.others, others_state)):
                for i, leaf in zip(part, _tree.leaves(_at(new, path))):
                    leaves[i] = leaf
            _at(out, path[:-1])[path[-1]] = _tree.unflatten(_tree.structure(node), leaves)
        return out


def split_of(transform: Transform, fused: Any, leaves: list, state: dict) -> Split | None:
    """How to split a step of ``transform`` over the parameter arrays ``leaves``
    between the numba engine ``fused`` (built for ``transform``, its forms in place)
    and the eager engine, or None where it cannot be split: the stages may couple
    tensors, masks or partitions select leaves by the whole tree, a form has a host
    step or step inputs (trees of the whole list), the forms cover every tensor or
    none, or the transform's state for a part is not that part of ``state``."""
    if not fused.forms or any(form.host or form.inputs for form in fused.forms):
        return None
    if not separable(transform):
        return None
    if any(isinstance(v.transform, (Masked, Partition)) for v in walk(transform)):
        return None
    flags = [fused.refusal([np.shape(w)], w.dtype) is None for w in leaves]
    if all(flags) or not any(flags):
        return None
    covered = tuple(i for i, ok in enumerate(flags) if ok)
    others = tuple(i for i, ok in enumerate(flags) if not ok)
    split = Split(covered, others, tuple(sorted(per_parameter_paths(transform)[0])))
    try:
        for part in (covered, others):
            own = transform.init([leaves[i] for i in part])
            if _tree.structure(own) != _tree.structure(split.part_state(state, part)):
                return None
    except (KeyError, TypeError, ValueError):
        return None
    return split


def step_split(
    split: Split,
    fused: Any,
    transform: Transform,
    paths: list[str],
    p_leaves: list,
    g_leaves: list,
    state: dict,
    overrides: dict,
) -> tuple[dict, str | None]:
    """Step the parameters ``p_leaves`` (gradients ``g_leaves``, checked) in place:
    the ``split.others`` on ``transform``'s own update, then the ``split.covered`` on
    the engine ``fused``, or on the transform's own update too where the engine
    refuses them (the reason is returned, None if it ran). Returns the new state.

    Nothing is written until both parts are computed: the eager part computes its
    updates and state aside, the engine checks every array before it writes, and
    only then are the eager part's updates added."""
    from .engines.plan import Unsupported

    def eager(part: tuple[int, ...]) -> tuple[list, dict]:
        ps = [p_leaves[i] for i in part]
        return eager_updates(
            transform,
            [paths[i] for i in part],
            ps,
            [g_leaves[i] for i in part],
            split.part_state(state, part),
            ps,
            overrides,
        )

    others_updates, others_state = eager(split.others)
    ps = [p_leaves[i] for i in split.covered]
    try:
        covered_state = fused.step_leaves(
            ps,
            [g_leaves[i] for i in split.covered],
            ps,
            split.part_state(state, split.covered),
            overrides,
        )
        refused = None
    except Unsupported as reason:  # refused before anything was written
        refused = str(reason)
        covered_updates, covered_state = eager(split.covered)
        apply_updates([p_leaves[i] for i in split.covered], covered_updates)
    apply_updates([p_leaves[i] for i in split.others], others_updates)
    return split.joined(state, covered_state, others_state), refused


def eager_updates(
    transform: Transform,
    paths: list[str],
    p_leaves: list,
    grads: Any,
    state: dict,
    params: Any,
    overrides: dict,
) -> tuple[list, dict]:
    """``transform``'s updates of the parameter arrays ``p_leaves`` (named ``paths``;
    ``params`` their tree, ``grads`` the gradients' tree of its structure) and its
    new state, checked to be addable in place; nothing is written."""
    with wide_updates():  # 16-bit parameters: the new value rounded once
        updates, new_state = transform.update(grads, state, params, **overrides)
    u_leaves = [np.asarray(u) for u in _tree.leaves_like(_tree.structure(params), updates)]
    for path, p, u in zip(paths, p_leaves, u_leaves):
        if u.shape != p.shape or not np.can_cast(u.dtype, p.dtype, "same_kind"):
            raise ValueError(
                f"Optimizer.step: the update of {path or '<root>'} has shape {u.shape} "
                f"and dtype {u.dtype}; its parameter {p.shape} and {p.dtype}"
            )
        if not p.flags.writeable:
            raise ValueError(f"Optimizer.step: parameter {path or '<root>'} is read-only")
    return u_leaves, new_state


def apply_updates(p_leaves: list, u_leaves: list) -> None:
    """Add checked updates (:func:`eager_updates`) to their parameters in place."""
    for p, u in zip(p_leaves, u_leaves):
        np.add(p, u, out=p, casting="same_kind")


def _at(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _containers_copied(tree: Any) -> Any:
    """``tree`` with every dict, list and tuple copied; its leaves shared."""
    if isinstance(tree, dict):
        return {k: _containers_copied(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return _tree.unflatten(_tree.structure(tree), _tree.leaves(tree))
    return tree
