"""The stateful NumPy front: ``gradstep.Optimizer(params, transform)``.

It owns the transform's state and updates the caller's arrays in place, the way a
training loop wants::

    opt = gradstep.Optimizer(params, gradstep.adam(learning_rate=1e-3))
    for batch in data:
        opt.step(grad_fn(params, batch))
    opt.save("checkpoint.npz")

A checkpoint holds the whole state and the sticky hyperparameter overrides, so a run
resumed from it follows exactly the trajectory of the uninterrupted run.

By default a chain of elementwise stages runs on the fused engine (one compiled pass
over memory, :mod:`gradstep.engines.fused`); anything else, and arrays the fused
engine cannot take (dtypes other than float16/bfloat16/float32/float64), runs on the eager engine,
the reference. A chain whose shape-dependent stages have fused forms covering some
tensors (AdamP's projection, CAME's moments, centralisation: on vectors) and whose
every stage computes each tensor from that tensor alone steps the tensors the forms
cover on the fused engine and the others eagerly, one state tree for all
(:mod:`gradstep._split_step`). ``engine="eager"`` or ``"fused"`` chooses explicitly.
"""

from __future__ import annotations

import math
import operator
import os
import warnings
from typing import Any

import numpy as np

from ._checkpoint import STATE as _STATE
from ._checkpoint import bfloat16_restored, blockwise8_converted, check_state_values
from ._core import tree as _tree
from ._core.namespaces import is_floating
from ._core.transform import Transform
from ._core.validate import OneOf, as_number, check
from ._split_step import apply_updates, eager_updates, split_of, step_split

ENGINES = ("auto", "fused", "eager")

_HYPER = "hyperparams/"


class Optimizer:
    """Apply ``transform`` to ``params`` (a tree of NumPy arrays) in place.

    Attributes:
      params: the caller's tree; its arrays are updated in place by :meth:`step`. An
        array replaced in it by one of the same shape and dtype is the one updated
        from then on.
      state: the transform's state (a dict with named fields).
      hyperparams: overrides passed to every step by name, e.g.
        ``opt.hyperparams["learning_rate"] = 0.01``; saved with the state.

    A step either completes or changes nothing: gradients are matched to the
    parameters by structure and keys and checked before anything is written, and the
    eager engine computes the new state aside and commits it with the parameters (a
    step split between the engines computes its eager part aside, then runs the fused
    part, which checks every array before it writes, then commits the eager part).
    Copies (``copy.deepcopy``, ``pickle``) are independent optimizers over copied
    arrays.
    """

    def __init__(self, params: Any, transform: Transform, *, engine: str = "auto"):
        check("Optimizer", "engine", engine, OneOf(ENGINES))
        if not isinstance(transform, Transform):
            raise TypeError(f"Optimizer: expected a transform, got {type(transform).__name__}")
        leaves, self._treedef = _tree.flatten(params)
        paths = _tree.leaf_paths(params)
        for path, leaf in zip(paths, leaves):
            if not isinstance(leaf, np.ndarray) or not is_floating(leaf.dtype):
                got = type(leaf).__name__
                if isinstance(leaf, np.ndarray):
                    got = f"an array of {leaf.dtype}"
                raise TypeError(
                    f"Optimizer: parameter {path or '<root>'!s} must be a floating-point "
                    f"numpy array to be updated in place, got {got}"
                )
            if not leaf.flags.writeable:
                raise ValueError(f"Optimizer: parameter {path or '<root>'} is read-only")
        _check_distinct("Optimizer", leaves, paths)
        self.params = params
        self._param_leaves = leaves
        self._paths = paths
        self._kinds = [(leaf.shape, leaf.dtype) for leaf in leaves]
        self.transform = transform
        self.state = transform.init(params)
        self.hyperparams: dict[str, Any] = {}
        self._fused = self._split = None
        if engine != "eager":
            self._fused, self._split = _fused_engine(transform, engine, leaves, self.state)
        self._ran: str | None = None
        self._notified = False

    @property
    def engine(self) -> str:
        """``"fused"``, ``"eager"`` or ``"fused+eager"`` (the tensors fused forms cover
        on the fused engine, the others eagerly): the engine the last step ran on
        (before any step, the one the next step will try)."""
        if self._ran is not None:
            return self._ran
        return "eager" if self._fused is None else "fused+eager" if self._split else "fused"

    def step(self, grads: Any = None, *, closure: Any = None, **ctx: Any) -> Any:
        """Update the parameters in place from ``grads`` (same structure as params).

        ``grads`` is matched to the parameters by structure: dict entries by key,
        sequences by position; a missing or unknown entry raises naming its path.
        ``ctx`` overrides hyperparameters for this step only; like
        :attr:`hyperparams`, each name must be a hyperparameter of the transform and
        each value within its declared range.

        Optimizers that re-evaluate the loss (:func:`gradstep.lbfgs`) take a
        ``closure`` instead of ``grads``: ``closure()`` returns ``(loss, grads)`` at the
        parameters' current values; the step returns the loss at its start (see
        :func:`gradstep.closure_step`).
        """
        if closure is not None:
            if grads is not None:
                raise ValueError("Optimizer.step: give grads or a closure, not both")
            from ._closure import closure_step

            return closure_step(self, closure, **ctx)
        if grads is None:
            raise ValueError("Optimizer.step: grads are required (or a closure)")
        overrides = self._check_overrides({**self.hyperparams, **ctx})
        p_leaves = self._current_params()
        g_leaves = _tree.matching_leaves(self._treedef, grads, "Optimizer.step: gradients")
        if not _ARRAYS.issuperset(map(type, g_leaves)):
            g_leaves = _numbers_as_arrays(p_leaves, g_leaves)
        if self._split is not None:
            self._check_grads(p_leaves, g_leaves)
            self.state, refused = step_split(
                self._split,
                self._fused,
                self.transform,
                self._paths,
                p_leaves,
                g_leaves,
                self.state,
                overrides,
            )
            if refused is not None:
                self._notify(refused)
            self._ran = "eager" if refused else "fused+eager"
            return
        if self._fused is not None:
            from .engines.plan import Unsupported

            # the engine checks every array it touches before it writes anything;
            # a refusal is explained here by path
            try:
                self.state = self._fused.step_leaves(
                    p_leaves, g_leaves, self.params, self.state, overrides
                )
                self._ran = "fused"
                return
            except Unsupported as reason:
                self._check_grads(p_leaves, g_leaves)
                self._notify(str(reason))
            except ValueError:
                self._check_grads(p_leaves, g_leaves)
                raise
        self._check_grads(p_leaves, g_leaves)
        grads = _tree.unflatten(self._treedef, g_leaves)
        u_leaves, new_state = eager_updates(
            self.transform, self._paths, p_leaves, grads, self.state, self.params, overrides
        )
        # everything checked: commit the parameters and the new state together
        apply_updates(p_leaves, u_leaves)
        self.state = new_state
        self._ran = "eager"

    def _current_params(self) -> list:
        """The arrays now in :attr:`params`; replacements are checked to fit the state."""
        leaves, td = _tree.flatten(self.params)
        if len(leaves) == len(self._param_leaves) and all(
            map(operator.is_, leaves, self._param_leaves)
        ):
            return leaves
        if td != self._treedef:
            _tree.matching_leaves(self._treedef, self.params, "Optimizer: params")
            raise ValueError("Optimizer: params changed structure")  # pragma: no cover
        for path, leaf, (shape, dtype) in zip(self._paths, leaves, self._kinds):
            if not (
                isinstance(leaf, np.ndarray)
                and leaf.shape == shape
                and leaf.dtype == dtype
                and leaf.flags.writeable
            ):
                raise ValueError(
                    f"Optimizer: parameter {path or '<root>'} was replaced by "
                    f"{_describe(leaf)}; the state is for a writable array of shape "
                    f"{shape} and dtype {dtype}"
                )
        _check_distinct("Optimizer", leaves, self._paths)
        self._param_leaves = leaves
        return leaves

    def _check_grads(self, p_leaves: list, g_leaves: list) -> None:
        for i, (p, g) in enumerate(zip(p_leaves, g_leaves)):
            if p.shape != self._kinds[i][0] or p.dtype != self._kinds[i][1]:
                shape, dtype = self._kinds[i]
                raise ValueError(
                    f"Optimizer: parameter {self._paths[i] or '<root>'} now has shape "
                    f"{p.shape} and dtype {p.dtype}; the state is for {shape} and {dtype}"
                )
            if type(g) is not np.ndarray:
                g = g_leaves[i] = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(
                    f"gradient {self._paths[i] or '<root>'} has shape {g.shape}, "
                    f"its parameter {p.shape}"
                )
            if g.dtype.kind not in "fiu" and not is_floating(g.dtype):
                raise ValueError(
                    f"gradient {self._paths[i] or '<root>'} has dtype {g.dtype}; a real "
                    f"gradient is needed for the {p.dtype} parameter"
                )

    def __getstate__(self) -> dict:
        # the engine is rebuilt for the copy's own arrays (compiled kernels and
        # pointers belong to this process and these arrays)
        state = dict(self.__dict__)
        state["_fused"] = self._fused is not None
        state["_notified"] = False
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_split", None)
        self._fused = None
        if state["_fused"]:
            leaves = self._param_leaves
            if self._split is not None:  # the engine steps the covered tensors
                leaves = [leaves[i] for i in self._split.covered]
            self._fused = _fused_engine(self.transform, "fused", leaves)[0]

    def _notify(self, reason: str) -> None:
        if not self._notified:
            self._notified = True
            warnings.warn(
                f"gradstep.Optimizer: running the eager engine instead of the fused one: {reason}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _check_overrides(
        self, overrides: dict[str, Any], owner: str = "Optimizer.step"
    ) -> dict[str, Any]:
        """``overrides`` checked, 0-d arrays as the numbers they hold (:func:`as_number`)."""
        if not overrides:
            return overrides
        known = self.transform.hyperparameters()
        overrides = {name: as_number(value) for name, value in overrides.items()}
        for name, value in overrides.items():
            if name not in known:
                raise ValueError(
                    f"{owner}: unknown hyperparameter {name!r}; this optimizer's "
                    f"hyperparameters: {', '.join(sorted(known)) or 'none'}"
                )
            if known[name] is not None:
                check(owner, name, value, known[name])
        return overrides

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """A flat ``{name: array}`` copy of the state and the hyperparameter overrides.

        State names are paths such as ``"state/scale_by_adam/mu/layer1/weight"``.
        """
        out = {
            _STATE + path: np.array(leaf, copy=True)
            for path, leaf in zip(_tree.leaf_paths(self.state), _tree.leaves(self.state))
        }
        for name, value in self.hyperparams.items():
            if callable(value):
                raise TypeError(
                    f"state_dict: hyperparameter {name} is a function; only numbers can be saved"
                )
            out[_HYPER + name] = np.asarray(value)
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; names and shapes must match, and dtypes, except
        that floating-point state saved in another precision is converted to this
        optimizer's storage dtype (a checkpoint of ``state_dtype="bfloat16"`` resumes
        in float32 and back; one of 8-bit state is dequantised into a floating-point
        optimizer, and floating-point state is quantised into an 8-bit one).

        Everything is checked before anything changes: hyperparameter overrides must
        be known names with finite values in their declared range, step counts must
        be non-negative, slots declared non-negative (second moments) must be.
        """
        owner = "load_state_dict"
        state_dict = blockwise8_converted(self.transform, state_dict)
        template = self.transform.init(self.params)
        paths = _tree.leaf_paths(template)
        expected = {_STATE + p for p in paths}
        given = {k for k in state_dict if k.startswith(_STATE)}
        unknown = [k for k in state_dict if not k.startswith((_STATE, _HYPER))]
        if unknown:
            raise ValueError(f"{owner}: unexpected entry {unknown[0]!r}")
        if expected != given:
            missing, extra = sorted(expected - given), sorted(given - expected)
            raise ValueError(
                f"{owner}: state does not fit this optimizer; missing {missing}, unexpected {extra}"
            )
        leaves = []
        for path, ref in zip(paths, _tree.leaves(template)):
            value = np.asarray(state_dict[_STATE + path])
            dtype = np.asarray(ref).dtype
            if value.shape == np.shape(ref) and is_floating(value.dtype) and is_floating(dtype):
                # a state saved in another precision (state_dtype) is stored in this
                # optimizer's: rounded to the nearest, ties to even
                value = value.astype(dtype, copy=False)
            if value.shape != np.shape(ref) or value.dtype != dtype:
                raise ValueError(
                    f"{owner}: {path} has shape {value.shape} and dtype "
                    f"{value.dtype}; expected {np.shape(ref)} and {np.asarray(ref).dtype}"
                )
            # a copy laid out as a fresh state is (a checkpoint saved from parameters
            # in another memory order resumes on the fused engine)
            fresh = np.empty_like(np.asarray(ref))
            fresh[...] = value
            leaves.append(fresh)
        state = _tree.unflatten(_tree.structure(template), leaves)
        check_state_values(owner, self.transform, state)
        hyperparams = {}
        for key, value in state_dict.items():
            if key.startswith(_HYPER):
                value = np.asarray(value)
                if value.shape != () or value.dtype.kind not in "biuf":
                    raise ValueError(f"{owner}: {key} must be a number, got {value!r}")
                value = value.item()
                if not math.isfinite(value):
                    raise ValueError(f"{owner}: invalid {key}={value!r}; it must be finite")
                hyperparams[key[len(_HYPER) :]] = value
        self._check_overrides(hyperparams, owner)
        self.state = state
        self.hyperparams = hyperparams

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to an ``.npz`` file."""
        with open(path, "wb") as f:
            np.savez(f, **self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            self.load_state_dict({k: bfloat16_restored(data[k]) for k in data.files})


_ARRAYS = {np.ndarray}
_NUMBERS = (int, float, np.integer, np.floating)


def _numbers_as_arrays(p_leaves: list, g_leaves: list) -> list:
    """The gradients with plain numbers (Python's or NumPy's real scalars) for 0-d
    parameters as 0-d arrays of the parameter's dtype, as a Python float would be."""
    return [
        np.asarray(g, p.dtype)
        if isinstance(g, _NUMBERS) and not isinstance(g, bool) and p.ndim == 0
        else g
        for p, g in zip(p_leaves, g_leaves)
    ]


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        ro = "" if x.flags.writeable else "read-only "
        return f"a {ro}array of shape {x.shape} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


def _check_distinct(owner: str, leaves: list, paths: list[str]) -> None:
    """Refuse a parameter given twice, or parameters whose memory overlaps (views of
    one array): the step would update those elements twice."""
    seen: dict[int, int] = {}
    spans = []
    for i, leaf in enumerate(leaves):
        j = seen.setdefault(id(leaf), i)
        if j != i:
            raise ValueError(
                f"{owner}: parameters {paths[j] or '<root>'} and {paths[i] or '<root>'} are "
                "the same array; give each parameter once"
            )
        if leaf.size:
            lo, hi = _byte_bounds(leaf)
            spans.append((lo, hi, i))
    spans.sort()
    active: list[tuple[int, int]] = []  # (end, index) of spans that may still overlap
    for lo, hi, i in spans:
        active = [(end, j) for end, j in active if end > lo]
        for _, j in active:
            if np.shares_memory(leaves[i], leaves[j]):
                a, b = sorted((i, j))
                raise ValueError(
                    f"{owner}: parameters {paths[a] or '<root>'} and {paths[b] or '<root>'} "
                    "share memory (views of one array); give each element once"
                )
        active.append((hi, i))


def _byte_bounds(a: np.ndarray) -> tuple[int, int]:
    """The first byte and one past the last byte ``a`` can touch."""
    lo = hi = a.__array_interface__["data"][0]
    for n, stride in zip(a.shape, a.strides):
        if stride < 0:
            lo += stride * (n - 1)
        else:
            hi += stride * (n - 1)
    return lo, hi + a.itemsize


def _fused_engine(transform: Transform, engine: str, leaves: list, state: Any = None):
    """``(engine, split)``: the numba engine for ``transform`` over the parameter arrays
    ``leaves`` and None; where a fused form in it does not cover some of their shapes
    and the step can be split (:func:`~gradstep._split_step.split_of`, given the
    ``state``), the engine for the covered ones and that split; else ``(None,
    None)``, or with ``engine="fused"`` a ValueError."""
    from .engines.fused import FusedEngine
    from .engines.plan import NotFusable

    fused = None
    try:
        fused = FusedEngine(transform)
        reason = fused.refusal([np.shape(w) for w in leaves], leaves[0].dtype if leaves else None)
    except NotFusable as refused:
        reason = str(refused)
    if reason is None:
        return fused, None
    if engine == "fused":
        raise ValueError(f"Optimizer: engine='fused' cannot run this transform: {reason}")
    split = None if fused is None or state is None else split_of(transform, fused, leaves, state)
    return (None, None) if split is None else (fused, split)
