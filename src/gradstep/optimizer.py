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
engine cannot take (dtypes other than float32/float64), runs on the eager engine,
the reference. ``engine="eager"`` or ``"fused"`` chooses explicitly.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ._core import tree as _tree
from ._core.transform import Transform
from ._core.validate import OneOf, check

ENGINES = ("auto", "fused", "eager")

_STATE = "state/"
_HYPER = "hyperparams/"


class Optimizer:
    """Apply ``transform`` to ``params`` (a tree of NumPy arrays) in place.

    Attributes:
      params: the caller's tree; its arrays are updated in place by :meth:`step`.
      state: the transform's state (a dict with named fields).
      hyperparams: overrides passed to every step by name, e.g.
        ``opt.hyperparams["learning_rate"] = 0.01``; saved with the state.
    """

    def __init__(self, params: Any, transform: Transform, *, engine: str = "auto"):
        check("Optimizer", "engine", engine, OneOf(ENGINES))
        if not isinstance(transform, Transform):
            raise TypeError(f"Optimizer: expected a transform, got {type(transform).__name__}")
        leaves, self._treedef = _tree.flatten(params)
        for path, leaf in zip(_tree.leaf_paths(params), leaves):
            if not isinstance(leaf, np.ndarray) or not np.issubdtype(leaf.dtype, np.floating):
                raise TypeError(
                    f"Optimizer: parameter {path or '<root>'!s} must be a floating-point "
                    f"numpy array to be updated in place, got {type(leaf).__name__}"
                )
            if not leaf.flags.writeable:
                raise ValueError(f"Optimizer: parameter {path or '<root>'} is read-only")
        self.params = params
        self._param_leaves = leaves
        self.transform = transform
        self.state = transform.init(params)
        self.hyperparams: dict[str, Any] = {}
        self._fused = None if engine == "eager" else _fused_engine(transform, engine)
        self._notified = False

    @property
    def engine(self) -> str:
        """``"fused"`` or ``"eager"``: the engine the steps run on."""
        return "eager" if self._fused is None else "fused"

    def step(self, grads: Any = None, *, closure: Any = None, **ctx: Any) -> Any:
        """Update the parameters in place from ``grads`` (same structure as params).

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
        overrides = {**self.hyperparams, **ctx}
        self._check_overrides(overrides)
        g_leaves = _tree.leaves_like(self._treedef, grads)
        if self._fused is not None:
            from .engines.fused import Unsupported

            try:
                self.state = self._fused.step_leaves(
                    self._param_leaves, g_leaves, self.params, self.state, overrides
                )
                return
            except Unsupported as reason:
                self._notify(str(reason))
        grads = _tree.unflatten(self._treedef, g_leaves)
        for i, (p, g) in enumerate(zip(self._param_leaves, g_leaves)):
            if np.shape(g) != p.shape:
                raise ValueError(f"gradient {i} has shape {np.shape(g)}, its parameter {p.shape}")
        updates, self.state = self.transform.update(grads, self.state, self.params, **overrides)
        for p, u in zip(self._param_leaves, _tree.leaves_like(self._treedef, updates)):
            np.add(p, u, out=p, casting="same_kind")

    def _notify(self, reason: str) -> None:
        if not self._notified:
            self._notified = True
            warnings.warn(
                f"gradstep.Optimizer: running the eager engine instead of the fused one: {reason}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _check_overrides(self, overrides: dict[str, Any]) -> None:
        if not overrides:
            return
        known = self.transform.hyperparameters()
        for name, value in overrides.items():
            if name not in known:
                raise ValueError(
                    f"Optimizer.step: unknown hyperparameter {name!r}; this optimizer's "
                    f"hyperparameters: {', '.join(sorted(known)) or 'none'}"
                )
            if known[name] is not None:
                check("Optimizer.step", name, value, known[name])

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
        """Restore a :meth:`state_dict`; names, shapes and dtypes must match."""
        template = self.transform.init(self.params)
        paths = _tree.leaf_paths(template)
        expected = {_STATE + p for p in paths}
        given = {k for k in state_dict if k.startswith(_STATE)}
        if expected != given:
            missing, extra = sorted(expected - given), sorted(given - expected)
            raise ValueError(
                f"load_state_dict: state does not fit this optimizer; missing {missing}, "
                f"unexpected {extra}"
            )
        leaves = []
        for path, ref in zip(paths, _tree.leaves(template)):
            value = np.asarray(state_dict[_STATE + path])
            if value.shape != np.shape(ref) or value.dtype != np.asarray(ref).dtype:
                raise ValueError(
                    f"load_state_dict: {path} has shape {value.shape} and dtype "
                    f"{value.dtype}; expected {np.shape(ref)} and {np.asarray(ref).dtype}"
                )
            leaves.append(np.array(value, copy=True))
        self.state = _tree.unflatten(_tree.structure(template), leaves)
        self.hyperparams = {
            k[len(_HYPER) :]: np.asarray(v).item()
            for k, v in state_dict.items()
            if k.startswith(_HYPER)
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to an ``.npz`` file."""
        with open(path, "wb") as f:
            np.savez(f, **self.state_dict())

    def load(self, path: str | os.PathLike) -> None:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            self.load_state_dict({k: data[k] for k in data.files})


def _fused_engine(transform: Transform, engine: str):
    from .engines.fused import FusedEngine, NotFusable

    try:
        return FusedEngine(transform)
    except NotFusable as reason:
        if engine == "fused":
            raise ValueError(
                f"Optimizer: engine='fused' cannot run this transform: {reason}"
            ) from None
        return None
