"""Lasagne's (and Dandelion's) ``updates`` module on gradstep's rules.

Change ``import lasagne.updates as updates`` (or ``dandelion.update``) to
``import gradstep.compat.lasagne as updates`` and the training loop keeps working:

    >>> import numpy as np
    >>> import gradstep.compat.lasagne as updates
    >>> w = updates.shared(np.array([1.0, -2.0]))
    >>> for _ in range(2):  # the loop calls the rule every step, as a compiled Theano
    ...     grads = [2 * w.get_value()]  # function would run its update graph
    ...     updates.apply_updates(updates.adam(grads, [w], learning_rate=0.1))
    >>> w.get_value().round(4)
    array([ 0.8004, -1.8002])

Conventions, as Lasagne's:

- A rule returns an ordered mapping from each shared variable — every parameter and
  every accumulator the rule created — to its new value, computed from the current
  values (simultaneous assignment). :func:`apply_updates` assigns them all at once.
- Shared variables are torch tensors (``torch.nn.Parameter`` included) or
  :func:`shared` containers of NumPy arrays (``get_value()`` / ``set_value()``).
- ``loss_or_grads`` is a list of gradients, or a scalar torch loss whose gradients
  autograd computes.
- Accumulators (and ``adam``'s step counter) are created on the first call and
  reused when the rule is called again for the same parameters, so a loop that calls
  the rule each step behaves like Theano's compiled update. They are zeros, of each
  parameter's shape and type.

The math is gradstep's rules at the option settings that reproduce Lasagne: Adam and
AMSGrad with epsilon outside the root and not bias-corrected
(``epsilon_placement="outside_uncorrected"``), AdaMax with epsilon added to the
infinity norm, AdaGrad and RMSProp with epsilon inside the root, momentum buffers that
hold learning-rate-scaled steps (``lr_in_buffer=True``). Defaults are Dandelion's where
it differs from Lasagne (``sgd``'s ``learning_rate=1e-4``); ``clear_nan`` is
Dandelion's (``sgd``, ``adam``, ``adadelta``), exactly: after the arithmetic, NaN
elements of the new state and of the new parameters become 0 and infinities stay
(the gradient itself is not cleaned, despite Dandelion's documentation). So an
infinite gradient element makes Adam's ``m`` and ``v`` infinite there, the step
``inf/inf`` NaN and the parameter element 0, on this and every later step; SGD
takes the parameter to -inf/+inf. ``gradstep.transforms.nonfinite_policy(rule,
"zero")`` (non-finite gradient elements replaced by 0 before the rule) is the
recommended policy outside Dandelion reproductions.

Differences: Lasagne builds symbolic Theano expressions; here values are computed
eagerly when the rule is called. ``learning_rate`` and the other hyperparameters
may be numbers or 0-d shared variables (read when the rule is called).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

import gradstep
from gradstep import tree as _tree
from gradstep.transforms import constraints as _constraints


class SharedVariable:
    """A named, mutable NumPy value: the stand-in for a Theano shared variable."""

    def __init__(self, value: Any, name: str | None = None):
        self._value = np.array(value, copy=True)
        self.name = name

    def get_value(self, borrow: bool = False) -> np.ndarray:
        return self._value if borrow else self._value.copy()

    def set_value(self, value: Any, borrow: bool = False) -> None:
        self._value = np.asarray(value) if borrow else np.array(value, copy=True)

    @property
    def shape(self) -> tuple:
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        return self._value.dtype

    def __repr__(self) -> str:
        return f"shared({self.name or ''}{self._value.shape}, {self._value.dtype})"


def shared(value: Any, name: str | None = None) -> SharedVariable:
    """A shared variable holding a copy of ``value``."""
    return SharedVariable(value, name)


# -- values of shared variables -----------------------------------------------------


def _is_torch(x: Any) -> bool:
    # a torch tensor, or one of a subclass (torch is imported only when one comes)
    return any(c.__module__.split(".")[0] == "torch" for c in type(x).__mro__)


def _value(var: Any) -> Any:
    if isinstance(var, SharedVariable):
        return var.get_value(borrow=True)
    if _is_torch(var):
        from ..engines import torch_namespace  # noqa: F401  (registers torch's namespace)

        return var.detach()
    raise ValueError(
        f"expected a shared variable (gradstep.compat.lasagne.shared or a torch tensor), "
        f"got {type(var).__name__}"
    )


def _hyper(value: Any) -> Any:
    """A hyperparameter given as a number or a 0-d shared variable."""
    if isinstance(value, SharedVariable):
        return float(value.get_value())
    if _is_torch(value):
        return float(value.detach())
    return value


def _like(param: Any, name: str) -> Any:
    """A new zero accumulator shaped and typed like ``param``."""
    if isinstance(param, SharedVariable):
        return SharedVariable(np.zeros_like(param.get_value(borrow=True)), name)
    return param.detach().clone().zero_()


def apply_updates(updates: dict) -> None:
    """Assign every new value of ``updates`` to its shared variable, all at once."""
    pending = list(updates.items())
    for var, value in pending:
        if isinstance(var, SharedVariable):
            var.set_value(value)
        elif _is_torch(var):
            import torch

            with torch.no_grad():
                var.copy_(value if isinstance(value, torch.Tensor) else torch.as_tensor(value))
        else:
            raise ValueError(f"cannot assign to {type(var).__name__}")


def get_or_compute_grads(loss_or_grads: Any, params: list) -> list:
    """Gradients of ``loss_or_grads`` with respect to ``params``.

    A list is returned as it is (it must have one gradient per parameter); anything
    else is a scalar torch loss, differentiated with autograd.
    """
    for p in params:
        if not (isinstance(p, SharedVariable) or _is_torch(p)):
            raise ValueError(
                "params must be shared variables (gradstep.compat.lasagne.shared or torch "
                f"tensors); got {type(p).__name__}"
            )
    if isinstance(loss_or_grads, list):
        if len(loss_or_grads) != len(params):
            raise ValueError(f"got {len(loss_or_grads)} gradients for {len(params)} parameters")
        return loss_or_grads
    import torch

    return list(torch.autograd.grad(loss_or_grads, params))


# -- accumulators: created once per (rule, parameters), reused afterwards -----------

_ACCUMULATORS: dict[tuple, tuple[list, Any]] = {}


def _accumulators(rule: str, params: list, template: dict) -> dict:
    """Shared variables for every leaf of a transform's state, one set per rule and
    parameter list (identified by the parameters themselves)."""
    key = (rule, tuple(id(p) for p in params))
    entry = _ACCUMULATORS.get(key)
    if entry is not None and all(r() is p for r, p in zip(entry[0], params)):
        return entry[1]
    like = params[0]
    paths = _tree.leaf_paths(template)
    leaves = []
    for path, leaf in zip(paths, _tree.leaves(template)):
        name = f"{rule}/{path}"
        if isinstance(like, SharedVariable):
            leaves.append(SharedVariable(leaf, name))
        else:
            import torch

            leaves.append(
                torch.as_tensor(np.asarray(leaf)).to(like.device).clone()
                if not _is_torch(leaf)
                else leaf.detach().clone()
            )
    state = _tree.unflatten(_tree.structure(template), leaves)
    _ACCUMULATORS[key] = ([weakref.ref(p) for p in params], state)
    return state


def _run(
    rule: str,
    transform: gradstep.Transform,
    grads: list,
    params: list,
    clear_nan: bool = False,
) -> OrderedDict:
    """One Lasagne-style update: new values for the params and the accumulators.

    ``clear_nan``: Dandelion's ``do_clear_nan`` of the new parameter values, here too
    (the rule's last stage does it through the update, which cannot turn a parameter
    that is already infinite into 0: inf + u is inf or NaN)."""
    values = [_value(p) for p in params]
    grads = [g.detach() if _is_torch(g) else np.asarray(g) for g in grads]
    template = transform.init(values)
    shared_state = _accumulators(rule, params, template)
    current = _tree.tree_map(_value, shared_state)
    updates, new_state = transform.update(grads, current, values)
    out: OrderedDict = OrderedDict()
    for p, v, u in zip(params, values, updates):
        out[p] = _nan_to_zero(v + u) if clear_nan else v + u
    for var, value in zip(_tree.leaves(shared_state), _tree.leaves(new_state)):
        out[var] = value
    return out


# -- the rules ----------------------------------------------------------------------


def sgd(
    loss_or_grads: Any, params: list, learning_rate: Any = 1e-4, clear_nan: bool = False
) -> OrderedDict:
    """``w <- w - learning_rate * g`` (Dandelion's default learning rate)."""
    grads = get_or_compute_grads(loss_or_grads, params)
    return _run("sgd", gradstep.sgd(_hyper(learning_rate), clear_nan), grads, params, clear_nan)


def apply_momentum(updates: dict, params: list | None = None, momentum: Any = 0.9) -> OrderedDict:
    """Add momentum to the updates of ``params``: ``v <- mu v + (u - w)``,
    ``w <- w + v`` (all parameters of ``updates`` by default)."""
    params = list(updates.keys()) if params is None else params
    steps = [updates[p] - _value(p) for p in params]
    out = OrderedDict(updates)
    out.update(_run("apply_momentum", gradstep.apply_momentum(_hyper(momentum)), steps, params))
    return out


def momentum(
    loss_or_grads: Any, params: list, learning_rate: Any, momentum: Any = 0.9
) -> OrderedDict:
    """SGD with momentum: ``v <- mu v - lr g``, ``w <- w + v``."""
    grads = get_or_compute_grads(loss_or_grads, params)
    rule = gradstep.momentum(_hyper(learning_rate), _hyper(momentum), lr_in_buffer=True)
    return _run("momentum", rule, grads, params)


def apply_nesterov_momentum(
    updates: dict, params: list | None = None, momentum: Any = 0.9
) -> OrderedDict:
    """Nesterov momentum on ``updates``: ``v <- mu v + (u - w)``,
    ``w <- w + mu v + (u - w)``."""
    params = list(updates.keys()) if params is None else params
    steps = [updates[p] - _value(p) for p in params]
    out = OrderedDict(updates)
    rule = gradstep.apply_nesterov_momentum(_hyper(momentum))
    out.update(_run("apply_nesterov_momentum", rule, steps, params))
    return out


def nesterov_momentum(
    loss_or_grads: Any, params: list, learning_rate: Any, momentum: Any = 0.9
) -> OrderedDict:
    """SGD with Nesterov momentum: ``v <- mu v - lr g``, ``w <- w + mu v - lr g``."""
    grads = get_or_compute_grads(loss_or_grads, params)
    rule = gradstep.nesterov_momentum(_hyper(learning_rate), _hyper(momentum), lr_in_buffer=True)
    return _run("nesterov_momentum", rule, grads, params)


def adagrad(
    loss_or_grads: Any, params: list, learning_rate: Any = 1.0, epsilon: float = 1e-6
) -> OrderedDict:
    """AdaGrad: ``a <- a + g^2``, ``w <- w - lr g / sqrt(a + eps)``."""
    grads = get_or_compute_grads(loss_or_grads, params)
    rule = gradstep.adagrad(_hyper(learning_rate), _hyper(epsilon), epsilon_placement="inside")
    return _run("adagrad", rule, grads, params)


def rmsprop(
    loss_or_grads: Any,
    params: list,
    learning_rate: Any = 1.0,
    rho: Any = 0.9,
    epsilon: float = 1e-6,
) -> OrderedDict:
    """RMSProp: ``a <- rho a + (1 - rho) g^2``, ``w <- w - lr g / sqrt(a + eps)``."""
    grads = get_or_compute_grads(loss_or_grads, params)
    rule = gradstep.rmsprop(
        _hyper(learning_rate), _hyper(rho), _hyper(epsilon), epsilon_placement="inside"
    )
    return _run("rmsprop", rule, grads, params)


def adadelta(
    loss_or_grads: Any,
    params: list,
    learning_rate: Any = 1.0,
    rho: Any = 0.95,
    epsilon: float = 1e-6,
    clear_nan: bool = False,
) -> OrderedDict:
    """AdaDelta (Zeiler), the step average accumulating the step without ``lr``."""
    grads = get_or_compute_grads(loss_or_grads, params)
    rule = gradstep.adadelta(_hyper(learning_rate), _hyper(rho), _hyper(epsilon), clear_nan)
    return _run("adadelta", rule, grads, params, clear_nan)


def adam(
    loss_or_grads: Any,
    params: list,
    learning_rate: Any = 0.001,
    beta1: Any = 0.9,
    beta2: Any = 0.999,
    epsilon: float = 1e-8,
    clear_nan: bool = False,
) -> OrderedDict:
    """Adam as Lasagne computes it: ``a_t = lr sqrt(1 - b2^t) / (1 - b1^t)``,
    ``w <- w - a_t m / (sqrt(v) + eps)``; one step counter per parameter list."""
    grads = get_or_compute_grads(loss_or_grads, params)
    rule = gradstep.adam(
        _hyper(learning_rate),
        _hyper(beta1),
        _hyper(beta2),
        _hyper(epsilon),
        clear_nan,
        epsilon_placement="outside_uncorrected",
    )
    return _run("adam", rule, grads, params, clear_nan)


def _nan_to_zero(x: Any) -> Any:
    """Dandelion's ``do_clear_nan``: NaN elements become 0, infinities stay."""
    if _is_torch(x):
        import torch

        return torch.where(torch.isnan(x), torch.zeros_like(x), x)
    return np.where(np.isnan(x), np.zeros_like(x), x)


def adamax(
    loss_or_grads: Any,
    params: list,
    learning_rate: Any = 0.002,
    beta1: Any = 0.9,
    beta2: Any = 0.999,
    epsilon: float = 1e-8,
) -> OrderedDict:
    """AdaMax: ``u <- max(b2 u, |g|)``, ``w <- w - lr / (1 - b1^t) m / (u + eps)``."""
    grads = get_or_compute_grads(loss_or_grads, params)
    rule = gradstep.adamax(
        _hyper(learning_rate),
        _hyper(beta1),
        _hyper(beta2),
        _hyper(epsilon),
        epsilon_placement="outside",
    )
    return _run("adamax", rule, grads, params)


def amsgrad(
    loss_or_grads: Any,
    params: list,
    learning_rate: Any = 0.001,
    beta1: Any = 0.9,
    beta2: Any = 0.999,
    epsilon: float = 1e-8,
) -> OrderedDict:
    """AMSGrad as Lasagne computes it: Adam with ``v_hat <- max(v_hat, v)`` on the raw
    second moment."""
    grads = get_or_compute_grads(loss_or_grads, params)
    rule = gradstep.adam(
        _hyper(learning_rate),
        _hyper(beta1),
        _hyper(beta2),
        _hyper(epsilon),
        amsgrad="raw",
        epsilon_placement="outside_uncorrected",
    )
    return _run("amsgrad", rule, grads, params)


# -- constraints --------------------------------------------------------------------


def norm_constraint(
    tensor_var: Any, max_norm: float, norm_axes: Any = None, epsilon: float = 1e-7
) -> Any:
    """Lasagne's max-norm constraint (see :func:`gradstep.norm_constraint`); a torch
    tensor in gives a torch tensor out, computed on its device."""
    if _is_torch(tensor_var):
        _torch_namespace()
        return _constraints.norm_constraint(tensor_var.detach(), max_norm, norm_axes, epsilon)
    return _constraints.norm_constraint(_plain(tensor_var), max_norm, norm_axes, epsilon)


def total_norm_constraint(
    tensor_vars: list, max_norm: float, epsilon: float = 1e-7, return_norm: bool = False
) -> Any:
    """Lasagne's joint norm constraint (see :func:`gradstep.total_norm_constraint`):
    torch tensors alone are scaled on their device; torch tensors mixed with arrays or
    shared variables through NumPy copies."""
    torch_in = [_is_torch(t) for t in tensor_vars]
    if torch_in and all(torch_in):
        _torch_namespace()
        tensors = [t.detach() for t in tensor_vars]
        return _constraints.total_norm_constraint(tensors, max_norm, epsilon, return_norm)
    arrays = [
        t.detach().cpu().numpy() if flag else _plain(t) for t, flag in zip(tensor_vars, torch_in)
    ]
    scaled, norm = _constraints.total_norm_constraint(arrays, max_norm, epsilon, return_norm=True)
    if any(torch_in):
        import torch

        scaled = [
            torch.as_tensor(s).to(t.device) if flag else s
            for s, t, flag in zip(scaled, tensor_vars, torch_in)
        ]
    return (scaled, norm) if return_norm else scaled


def _torch_namespace() -> None:
    from ..engines import torch_namespace  # noqa: F401  (registers torch's namespace)


def _plain(x: Any) -> np.ndarray:
    return x.get_value(borrow=True) if isinstance(x, SharedVariable) else np.asarray(x)


__all__ = [
    "SharedVariable",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "amsgrad",
    "apply_momentum",
    "apply_nesterov_momentum",
    "apply_updates",
    "get_or_compute_grads",
    "momentum",
    "nesterov_momentum",
    "norm_constraint",
    "rmsprop",
    "sgd",
    "shared",
    "total_norm_constraint",
]
