r"""Monitoring: measurements of the updates and parameters kept in the state, for a
training loop to log.

:func:`monitor` passes the updates through unchanged and stores, under
``state["measurements"][name]``, each measure of the updates reaching it (placed
after a clip, it sees the clipped updates). A measure is

- a built-in name: ``"update_norm"`` (:math:`\|u\|`, the global L2 norm),
  ``"update_rms"`` (:math:`\|u\| / \sqrt n`), ``"update_max"`` (:math:`\max|u|`),
  ``"param_norm"`` (:math:`\|w\|`), ``"update_param_ratio"`` (:math:`\|u\|/\|w\|`:
  the relative step size);
- a function of the updates (a tree) returning an array or a tree of arrays,
  written with array operations (traceable under :func:`jax.jit`);
- a stateful measure such as :func:`measure_with_ema`, whose output is the
  measurement.

:func:`measure_with_ema` averages a measure over steps:

.. math::

    a_t = \beta a_{t-1} + (1 - \beta) m_t,\qquad \hat a_t = a_t / (1 - \beta^t)

(:math:`\beta` ``decay``; :math:`\hat a_t` with ``debias``, :math:`a_t` otherwise).
Its *output* is :math:`\hat a_t`, not the updates: use it inside :func:`monitor`.

Norms are accumulated in float64 where the library has it (JAX: its default float).
The monitor is not an elementwise stage: an optimizer containing one runs on the
eager path of the NumPy front. On :class:`gradstep.torch.TransformOptimizer` the
measures cover the parameters of one call (usually one parameter: the front steps
tensors whose state depends on their shape one by one), and each parameter's state
holds the values of its call.

References:
  optax ``snapshot``, ``monitor`` and ``measure_with_ema``
  (google-deepmind/optax, ``optax/transforms/_monitoring.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import namespace_of
from .._core.transform import Transform, shallow_copy
from .._core.validate import BOOL, OneOf, check, decay_rate, hyperparams

BUILTINS = ("update_norm", "update_rms", "update_max", "param_norm", "update_param_ratio")


def _norm(tree: Any) -> Any:
    leaves = _tree.leaves(tree)
    if not leaves:
        return np.zeros((), np.float64)
    return namespace_of(leaves[0]).sqrt(sum(namespace_of(x).square_sum(x) for x in leaves))


def _size(tree: Any) -> int:
    return sum(int(np.prod(np.shape(x))) for x in _tree.leaves(tree))


def _max_abs(tree: Any) -> Any:
    leaves = _tree.leaves(tree)
    if not leaves:
        return np.zeros((), np.float64)
    ns = namespace_of(leaves[0])
    out = ns.max_abs(leaves[0])
    for x in leaves[1:]:
        out = ns.maximum(out, ns.max_abs(x))
    return out


def _needs_params(name: str, params: Any) -> Any:
    if params is None:
        raise ValueError(f"monitor: measure {name!r} needs params in update()")
    return params


def builtin_measure(name: str, updates: Any, params: Any) -> Any:
    """The built-in measure ``name`` (see the module docstring)."""
    if name == "update_norm":
        return _norm(updates)
    if name == "update_rms":
        return _norm(updates) / max(_size(updates), 1) ** 0.5
    if name == "update_max":
        return _max_abs(updates)
    if name == "param_norm":
        return _norm(_needs_params(name, params))
    return _norm(updates) / _norm(_needs_params(name, params))


def _measured(measure: str | Callable, updates: Any, params: Any) -> Any:
    if isinstance(measure, str):
        return builtin_measure(measure, updates, params)
    return measure(updates)


def _as_float(x: Any) -> Any:
    ns = namespace_of(x)
    return ns.wrap(ns.astype(x, x))


def _zeros_like(x: Any) -> Any:
    return namespace_of(x).zeros(np.shape(x), x)


def _wrapped(x: Any) -> Any:
    return namespace_of(x).wrap(x)


def _check_measure(owner: str, name: str, measure: Any, transforms: bool) -> None:
    if isinstance(measure, str):
        check(owner, name, measure, OneOf(BUILTINS))
    elif not (callable(measure) or (transforms and isinstance(measure, Transform))):
        raise ValueError(
            f"{owner}: invalid {name}={measure!r}; valid values: a built-in measure "
            f"({', '.join(BUILTINS)}), a function of the updates"
            + (" or a measuring transform" if transforms else "")
        )


class MeasureWithEMA(Transform):
    """Outputs the (debiased) moving average of a measure of its input."""

    name = "measure_with_ema"

    def __init__(self, measure: str | Callable, decay: float, debias: bool):
        self.measure = measure
        self.decay = decay
        self.debias = debias

    def init(self, params: Any) -> dict:
        with np.errstate(divide="ignore", invalid="ignore"):  # for its structure only
            first = _measured(self.measure, params, params)
        return {"count": np.zeros((), np.int64), "ema": _tree.tree_map(_zeros_like, first)}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        count_ns = namespace_of(state["count"])
        t = count_ns.count(state["count"]) + 1
        beta = self.decay
        ema = _tree.tree_map(
            lambda a, m: _wrapped((1 - beta) * _as_float(m) + beta * a),
            state["ema"],
            _measured(self.measure, grads, params),
        )
        out = ema
        if self.debias:
            out = _tree.tree_map(lambda a: _wrapped(a / (1 - beta**t)), ema)
        return out, {"count": count_ns.count_array(t, state["count"]), "ema": ema}


@hyperparams(decay=decay_rate(), debias=BOOL)
def measure_with_ema(measure: str | Callable, decay: float, debias: bool = True) -> Transform:
    r"""The moving average of ``measure`` over steps (see the module docstring); meant
    as a measure of :func:`monitor`.

    Args:
      measure: a built-in name or a function of the updates.
      decay: :math:`\beta` in [0, 1).
      debias: report :math:`a_t / (1 - \beta^t)`. Default True (optax).

    Differences: optax's ``measure_with_ema`` (same output, ``accumulator_dtype``
    not offered: the average is in the measurement's float dtype).
    """
    _check_measure("measure_with_ema", "measure", measure, transforms=False)
    return MeasureWithEMA(measure, decay, debias)


def state_key(name: str) -> str:
    """Where the state of the stateful measure ``name`` lives in the monitor's state
    (not under ``name`` itself: ``optax.tree.get(state, name)`` finds the value)."""
    return f"{name}.state"


class Monitor(Transform):
    """Updates unchanged; measurements in the state (a combinator over its stateful
    measures, which are its children)."""

    name = "monitor"

    def __init__(self, measures: dict[str, Any]):
        self.measures = dict(measures)

    def _stateful(self) -> list[str]:
        return [k for k, m in self.measures.items() if isinstance(m, Transform)]

    # -- the structural protocol -------------------------------------------------------

    def children(self) -> tuple[Transform, ...]:
        return tuple(self.measures[k] for k in self._stateful())

    def child_state_keys(self) -> tuple[str | None, ...]:
        return tuple(state_key(k) for k in self._stateful())

    def child_leaves(self, params: Any, grads: Any, n: int) -> tuple[list[int] | None, ...]:
        return (None,) * len(self._stateful())

    def with_children(self, children: tuple[Transform, ...]) -> Monitor:
        children = tuple(children)
        names = self._stateful()
        if len(children) != len(names):
            raise ValueError(f"{self.name}: {len(children)} children given, it has {len(names)}")
        clone = shallow_copy(self)
        clone.measures = {**self.measures, **dict(zip(names, children))}
        return clone

    # -- the transform -----------------------------------------------------------------

    def init(self, params: Any) -> dict:
        state: dict[str, Any] = {}
        measurements = {}
        for name, measure in self.measures.items():
            # each measure is evaluated for its structure only: zero parameters' 0/0
            # (update_param_ratio) is no warning here
            with np.errstate(divide="ignore", invalid="ignore"):
                if isinstance(measure, Transform):
                    state[state_key(name)] = measure.init(params)
                    value, _ = measure.update(params, state[state_key(name)], params)
                else:
                    value = _measured(measure, params, params)
            measurements[name] = _tree.tree_map(_zeros_like, value)
        state["measurements"] = measurements
        return state

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        new_state: dict[str, Any] = {}
        measurements = {}
        for name, measure in self.measures.items():
            if isinstance(measure, Transform):
                key = state_key(name)
                value, new_state[key] = measure.update(grads, state[key], params, **ctx)
            else:
                value = _measured(measure, grads, params)
            measurements[name] = _tree.tree_map(_as_float, value)
        new_state["measurements"] = measurements
        return grads, new_state


def monitor(measures: dict[str, Any]) -> Monitor:
    """Record measurements of the updates (and parameters) in the state; the updates
    pass through unchanged (see the module docstring for the measures).

    The state is ``{"measurements": {name: value}, "<name>.state": measure state,
    ...}`` (a stateful measure keeps its own state beside the measurements).

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import chain, monitor, measure_with_ema
      >>> t = chain(gradstep.sgd(0.5), monitor({
      ...     "step": "update_norm", "relative": "update_param_ratio",
      ...     "smoothed": measure_with_ema("update_norm", decay=0.9)}))
      >>> w = np.array([3.0, 4.0])
      >>> opt = gradstep.Optimizer(w, t)
      >>> opt.step(np.array([2.0, 0.0]))
      >>> {k: float(v) for k, v in opt.state["monitor"]["measurements"].items()}
      {'step': 1.0, 'relative': 0.2, 'smoothed': 1.0}

    Differences: optax's ``monitor`` (its ``snapshot`` is a monitor of one function);
    the built-in measures are gradstep's. torch has no counterpart (log from the
    training loop).
    """
    if not isinstance(measures, dict) or not measures:
        raise ValueError(f"monitor: invalid measures={measures!r}; valid values: a non-empty dict")
    for name, measure in measures.items():
        if not isinstance(name, str) or name == "measurements" or name.endswith(".state"):
            raise ValueError(
                f"monitor: invalid measure name {name!r}; valid values: strings other than "
                "'measurements' and not ending in '.state'"
            )
        _check_measure("monitor", name, measure, transforms=True)
    return Monitor(measures)
