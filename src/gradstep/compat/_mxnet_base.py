"""The machinery of MXNet's optimizer API: the base ``Optimizer``, its registry and the updater.

:mod:`gradstep.compat.mxnet` holds the rule classes and documents the API.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from gradstep._core.validate import check, nonnegative

_REGISTRY: dict[str, type] = {}

# the learning rate, weight decay and multipliers are handed to the rule at each
# update, so they are checked here, against the core's range for them
_NONNEGATIVE = nonnegative()


class _CheckedOnConstruction(type):
    """Builds the rule once a constructor has run, so that every hyperparameter is
    checked at the call (by the rule's own declaration), not at the first update."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        optimizer = super().__call__(*args, **kwargs)
        optimizer._transform(None, optimizer.wd)
        return optimizer


def register(klass: type) -> type:
    """Register an optimizer class under its lower-case name (as MXNet's decorator)."""
    _REGISTRY[klass.__name__.lower()] = klass
    return klass


def create(name: str, **kwargs: Any) -> Optimizer:
    """The optimizer registered as ``name`` (case-insensitive), built with ``kwargs``."""
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"create: unknown optimizer {name!r}; valid names: {sorted(_REGISTRY)}")
    return _REGISTRY[key](**kwargs)


def _walk(state: Any, key: str, fn) -> Any:
    """Apply ``fn`` to every value stored under ``key`` in nested state dicts."""
    if isinstance(state, dict):
        return {k: (fn(v) if k == key else _walk(v, key, fn)) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_walk(v, key, fn) for v in state)
    return state


def _find(state: Any, key: str) -> Any:
    found = []
    _walk(state, key, lambda v: found.append(v) or v)
    return found[0]


class Optimizer(metaclass=_CheckedOnConstruction):
    """MXNet 1.9.1's optimizer base: counts, learning rates, multipliers, states.

    Subclasses name the gradstep rule (:meth:`_rule`) and MXNet's conventions for it.
    """

    kernel_clip = True  # C++ kernels read clip_gradient=0 as "off"
    uses_rescale = True  # the rule takes rescale_grad
    count_before_lr = True  # lr_scheduler sees the incremented count (LBSGD: False)
    counts_in_state = True  # begin_num_update offsets the rule's own step count

    def __init__(
        self,
        rescale_grad: float = 1.0,
        param_idx2name: dict | None = None,
        wd: float = 0.0,
        clip_gradient: float | None = None,
        learning_rate: float | None = None,
        lr_scheduler: Any = None,
        sym: Any = None,
        begin_num_update: int = 0,
        multi_precision: bool = False,
        param_dict: Any = None,
    ):
        if sym is not None or param_dict is not None:
            raise ValueError(
                f"{type(self).__name__}: sym and param_dict are not supported; pass the "
                "multipliers with set_lr_mult / set_wd_mult"
            )
        owner = type(self).__name__
        self.rescale_grad = rescale_grad
        self.lr_scheduler = lr_scheduler
        if lr_scheduler is None and learning_rate is None:
            learning_rate = 0.01
        if learning_rate is not None:
            check(owner, "learning_rate", learning_rate, _NONNEGATIVE)
        check(owner, "wd", wd, _NONNEGATIVE)
        self.lr = learning_rate
        if lr_scheduler is not None and learning_rate is not None:
            if hasattr(lr_scheduler, "base_lr"):
                lr_scheduler.base_lr = learning_rate
        self.wd = wd
        self.lr_mult: dict = {}
        self.wd_mult: dict = {}
        self.begin_num_update = int(begin_num_update)
        self.num_update = int(begin_num_update)
        self._index_update_count: dict = {}
        self.clip_gradient = clip_gradient
        self.multi_precision = bool(multi_precision)
        self.idx2name = dict(param_idx2name or {})
        self._transforms: dict = {}
        self.set_lr_mult({})
        self.set_wd_mult({})

    # -- learning rates, multipliers and counts (MXNet's bookkeeping) ------------------

    @property
    def learning_rate(self) -> float:
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def set_learning_rate(self, lr: float) -> None:
        if self.lr_scheduler is not None:
            raise UserWarning(
                "LRScheduler of the optimizer has already been defined. Note that "
                "set_learning_rate can mutate the value of the learning rate of the "
                "optimizer only when the LRScheduler of the optimizer is undefined."
            )
        check(f"{type(self).__name__}.set_learning_rate", "lr", lr, _NONNEGATIVE)
        self.lr = lr

    def set_lr_mult(self, args_lr_mult: dict) -> None:
        _check_multipliers(f"{type(self).__name__}.set_lr_mult", args_lr_mult)
        self.lr_mult = dict(args_lr_mult)

    def set_wd_mult(self, args_wd_mult: dict) -> None:
        _check_multipliers(f"{type(self).__name__}.set_wd_mult", args_wd_mult)
        self.wd_mult = {}
        for name in self.idx2name.values():
            if not (name.endswith("_weight") or name.endswith("_gamma")):
                self.wd_mult[name] = 0.0
        self.wd_mult.update(args_wd_mult)

    def _mult(self, table: dict, index: Any) -> float:
        if index in table:
            return table[index]
        if index in self.idx2name:
            return table.get(self.idx2name[index], 1.0)
        return 1.0

    def _update_count(self, index: Any) -> None:
        count = self._index_update_count.get(index, self.begin_num_update) + 1
        self._index_update_count[index] = count
        self.num_update = max(count, self.num_update)

    def _get_lr(self, index: Any) -> float:
        return self.learning_rate * self._mult(self.lr_mult, index)

    def _get_wd(self, index: Any) -> float:
        return self.wd * self._mult(self.wd_mult, index)

    # -- the rule -------------------------------------------------------------------

    def _clip(self) -> float | None:
        c = self.clip_gradient
        if self.kernel_clip and (c is None or c <= 0):
            return None
        return c

    def _rule(self, wd: float, rescale_grad: Any, clip: float | None, index: Any) -> Any:
        raise NotImplementedError

    def _rule_key(self, index: Any) -> Any:
        """What, besides wd and rescale_grad, makes an index's transform differ."""
        return None

    def _transform(self, index: Any, wd: float) -> Any:
        rescale = self.rescale_grad if self.uses_rescale else None
        key = (wd, rescale, self._rule_key(index))
        t = self._transforms.get(key)
        if t is None:
            t = self._rule(wd, rescale, self._clip(), index)
            self._transforms[key] = t
        return t

    def create_state(self, index: Any, weight: np.ndarray) -> dict:
        """The rule's state for one weight tensor (zeros, of the weight's shape)."""
        state = self._transform(index, self._get_wd(index)).init([weight])
        if self.counts_in_state and self.begin_num_update:
            begin = self.begin_num_update
            state = _walk(state, "count", lambda v: np.asarray(begin, np.asarray(v).dtype))
        return self._fresh_state(index, state)

    def _fresh_state(self, index: Any, state: dict) -> dict:
        return state

    def create_state_multi_precision(self, index: Any, weight: np.ndarray) -> Any:
        """With ``multi_precision`` and a float16 weight: ``(float32 master, state)``."""
        if self.multi_precision and weight.dtype == np.float16:
            master = weight.astype(np.float32)
            return (master, self.create_state(index, master))
        return self.create_state(index, weight)

    def _lr_for_rule(self, index: Any) -> dict:
        return {"learning_rate": self._get_lr(index)}

    def update(self, index: Any, weight: np.ndarray, grad: Any, state: dict) -> None:
        """One MXNet update of ``weight`` (a NumPy array, changed in place)."""
        if not isinstance(weight, np.ndarray):
            raise ValueError(
                f"{type(self).__name__}.update: weight must be a NumPy array updated in "
                f"place, got {type(weight).__name__}"
            )
        if not self.count_before_lr:
            ctx = self._lr_for_rule(index)
            self._update_count(index)
        else:
            self._update_count(index)
            ctx = self._lr_for_rule(index)
        if self.uses_rescale:
            ctx["rescale_grad"] = self.rescale_grad
        wd = self._get_wd(index)
        transform = self._transform(index, wd)
        grad = np.asarray(grad, dtype=weight.dtype)
        (u,), new_state = transform.update([grad], self._before(index, state), [weight], **ctx)
        self._after(index, new_state)
        weight += np.asarray(u, dtype=weight.dtype)
        _replace(state, new_state)

    def _before(self, index: Any, state: dict) -> dict:
        return state

    def _after(self, index: Any, new_state: dict) -> None:
        pass

    def update_multi_precision(self, index: Any, weight: np.ndarray, grad: Any, state: Any) -> None:
        """:meth:`update`, on the float32 master copy when the state holds one."""
        if self.multi_precision and weight.dtype == np.float16:
            master, inner = state
            self.update(index, master, np.asarray(grad, np.float32), inner)
            weight[...] = master.astype(np.float16)
        else:
            self.update(index, weight, grad, state)


def _check_multipliers(owner: str, table: dict) -> None:
    if not isinstance(table, dict):
        raise ValueError(f"{owner}: expected a dict of multipliers, got {type(table).__name__}")
    for key, value in table.items():
        check(owner, f"[{key!r}]", value, _NONNEGATIVE)


def _replace(state: Any, new_state: Any) -> None:
    """Put ``new_state``'s values into the caller's ``state`` object (MXNet's states
    are mutated in place, the caller keeps the same object)."""
    if isinstance(state, dict):
        state.clear()
        state.update(new_state)
    else:
        raise TypeError(f"state must be the dict create_state returned, got {type(state)}")


# -- the updater -------------------------------------------------------------------


class Updater:
    """``updater(index, grad, weight)``: creates each index's state on first sight and
    updates ``weight`` in place (MXNet's ``get_updater``)."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.states: dict = {}
        self.states_synced: dict = {}

    def __call__(self, index: Any, grad: Any, weight: np.ndarray) -> None:
        indices = index if isinstance(index, (list, tuple)) else [index]
        grads = grad if isinstance(index, (list, tuple)) else [grad]
        weights = weight if isinstance(index, (list, tuple)) else [weight]
        for i, g, w in zip(indices, grads, weights):
            if i not in self.states:
                self.states[i] = self.optimizer.create_state_multi_precision(i, w)
                self.states_synced[i] = True
            self.optimizer.update_multi_precision(i, w, g, self.states[i])

    def get_states(self, dump_optimizer: bool = False) -> bytes:
        """The states (and, with ``dump_optimizer``, the optimizer) pickled."""
        return pickle.dumps((self.states, self.optimizer) if dump_optimizer else self.states)

    def set_states(self, states: bytes) -> None:
        """Restore what :meth:`get_states` returned."""
        loaded = pickle.loads(states)
        if isinstance(loaded, tuple) and len(loaded) == 2 and isinstance(loaded[1], Optimizer):
            self.states, self.optimizer = loaded
        else:
            self.states = loaded
        self.states_synced = dict.fromkeys(self.states, False)


def get_updater(optimizer: Optimizer) -> Updater:
    """An updater keeping one state per index for ``optimizer``."""
    return Updater(optimizer)
