"""MXNet 1.9.1's ``mxnet.optimizer`` API on gradstep's rules.

Change ``import mxnet as mx`` / ``mx.optimizer.create(...)`` to
``from gradstep.compat import mxnet`` / ``mxnet.create(...)`` and a training loop over
NumPy weights keeps working:

    >>> import numpy as np
    >>> from gradstep.compat import mxnet
    >>> opt = mxnet.create("adam", learning_rate=0.1, wd=0.01, rescale_grad=0.5)
    >>> updater = mxnet.get_updater(opt)
    >>> w = [np.array([1.0, -2.0], np.float32), np.array([0.5], np.float32)]
    >>> for _ in range(2):
    ...     for i, weight in enumerate(w):
    ...         updater(i, 2 * weight, weight)  # updates the array in place
    >>> w[0].round(4), opt.num_update
    (array([ 0.8004, -1.8002], dtype=float32), 2)

Every name of MXNet 1.9.1's optimizer registry is here (:func:`create`, or the class
by MXNet's name): ``sgd``, ``nag``, ``signum``, ``ftml``, ``lars``, ``lbsgd``,
``lamb``, ``dcasgd``, ``sgld``, ``adam``, ``adagrad``, ``rmsprop``, ``adadelta``,
``ftrl``, ``adamax``, ``nadam``, with MXNet's argument names and defaults. The
optimizer object has MXNet's methods: ``create_state(index, weight)``,
``update(index, weight, grad, state)`` (the NumPy ``weight`` is updated in place),
their ``_multi_precision`` variants, ``set_learning_rate``, ``set_lr_mult``,
``set_wd_mult`` and the ``learning_rate`` property; :func:`get_updater` returns
``updater(index, grad, weight)`` keeping one state per index, as MXNet's.

The bookkeeping is MXNet's:

- Step counts per index, starting at ``begin_num_update``; ``num_update`` is the
  largest count; ``lr_scheduler(num_update)`` is read after the count of this update
  is incremented (LBSGD: before).
- ``lr = learning_rate * lr_mult``, ``wd = wd * wd_mult`` per index (multipliers by
  index or by name through ``param_idx2name``); with ``param_idx2name``, names not
  ending in ``_weight`` or ``_gamma`` get ``wd_mult = 0`` (LARS: not ending in
  ``_weight``).
- ``rescale_grad`` is read at every update (Gluon's ``Trainer`` sets it each step).
- ``clip_gradient``: ``None`` or 0 means no clipping for the kernel-based rules (SGD,
  NAG, Signum, FTML, LARS, LBSGD, LAMB, Adam, RMSProp, Ftrl); the Python-implemented
  ones (DCASGD, SGLD, AdaGrad, AdaDelta, Adamax, Nadam) clip to 0 with 0.
- ``multi_precision=True`` with a float16 weight keeps a float32 master copy in the
  state (``(master, inner_state)``), as ``create_state_multi_precision`` does.
- Nadam's momentum-schedule product is one number on the optimizer, multiplied once per
  parameter update (as MXNet's ``m_schedule``).

The math is gradstep's rules at the option settings recorded from MXNet 1.9.1 (see
``docs/mxnet.md``): each index keeps the rule's own state for one tensor; nothing of the
math is written here.

Differences: weights, gradients and states are NumPy arrays (no NDArray, contexts,
row-sparse storage or aggregated multi-tensor kernels; ``lazy_update`` is accepted and
has no effect on dense arrays, as in MXNet). ``param_dict`` and ``sym`` are not taken
(pass ``set_lr_mult`` / ``set_wd_mult`` dictionaries). SGLD draws its noise from
NumPy (``seed`` is gradstep's addition), not MXNet's generator. The rule transform is
built from the constructor's values; ``wd``, ``rescale_grad``, ``lr_mult`` and
``wd_mult`` may change between updates, ``clip_gradient`` is read at construction.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

import gradstep
from gradstep._core.validate import check, nonnegative
from gradstep.transforms import mxnet as _mx

__all__ = [
    "DCASGD",
    "FTML",
    "LAMB",
    "LARS",
    "LBSGD",
    "NAG",
    "SGD",
    "SGLD",
    "AdaDelta",
    "AdaGrad",
    "Adam",
    "Adamax",
    "Ftrl",
    "Nadam",
    "Optimizer",
    "RMSProp",
    "Signum",
    "Updater",
    "create",
    "get_updater",
    "register",
]

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


# -- the registry ------------------------------------------------------------------


@register
class SGD(Optimizer):
    """SGD, with momentum when ``momentum > 0``: ``m <- mu m - lr (clip(s g) + wd w)``,
    ``w <- w + m`` (gradstep ``momentum`` / ``sgd``)."""

    def __init__(self, momentum: float = 0.0, lazy_update: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.lazy_update = lazy_update

    def _rule(self, wd, rescale_grad, clip, index):
        common = dict(weight_decay=wd, rescale_grad=rescale_grad, clip_gradient=clip)
        if self.momentum != 0:
            return gradstep.momentum(1.0, self.momentum, **common)
        return gradstep.sgd(1.0, **common)


@register
class NAG(SGD):
    """Nesterov momentum as MXNet 1.x's kernel (``velocity_decay_weight="updated"``);
    ``momentum=0`` is plain SGD."""

    def __init__(self, momentum: float = 0.0, **kwargs: Any):
        super().__init__(momentum=momentum, **kwargs)

    def _rule(self, wd, rescale_grad, clip, index):
        if self.momentum == 0:
            return super()._rule(wd, rescale_grad, clip, index)
        extra = {"velocity_decay_weight": "updated"} if wd else {}
        return gradstep.nesterov_momentum(
            1.0,
            self.momentum,
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
            **extra,
        )


@register
class Signum(Optimizer):
    """Signum (``momentum > 0``) or signSGD (``momentum=0``; MXNet's kernel ignores
    ``rescale_grad`` and ``clip_gradient`` there, and 1.9.1 fails with ``wd_lh``)."""

    def __init__(
        self, learning_rate: float = 0.01, momentum: float = 0.9, wd_lh: float = 0.0, **kwargs
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = momentum
        self.wd_lh = wd_lh
        if momentum == 0:
            self.uses_rescale = False
            if wd_lh:
                raise ValueError(
                    f"Signum: invalid wd_lh={wd_lh!r} with momentum=0; valid values: 0 "
                    "(MXNet 1.9.1 passes it to signsgd_update, which has no such argument)"
                )

    def _rule(self, wd, rescale_grad, clip, index):
        if self.momentum == 0:
            return gradstep.signsgd(1.0, weight_decay=wd)
        return gradstep.signum(
            1.0,
            self.momentum,
            weight_decay=wd,
            wd_lh=self.wd_lh,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )


@register
class FTML(Optimizer):
    """FTML (gradstep ``ftml``, decay inside the clip as MXNet 1.x)."""

    def __init__(self, beta1: float = 0.6, beta2: float = 0.999, epsilon: float = 1e-8, **kw):
        super().__init__(**kw)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def _rule(self, wd, rescale_grad, clip, index):
        return gradstep.ftml(
            1.0,
            self.beta1,
            self.beta2,
            self.epsilon,
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )


def _lars_excluded(name: str) -> bool:
    return name.endswith("gamma") or name.endswith("beta") or name.endswith("bias")


@register
class LARS(Optimizer):
    """LARS as MXNet 1.x (gradstep ``lars(form="mxnet")``): the trust ratio
    ``eta ||w|| / (||s g|| + wd ||w|| + eps)`` per tensor, none for names ending in
    ``gamma``, ``beta`` or ``bias``; ``momentum_correction`` scales the momentum by the
    ratio of this and the previous learning rate (per index here; MXNet uses the global
    rate, which is the same while ``lr_mult`` is constant)."""

    def __init__(
        self,
        momentum: float = 0.0,
        lazy_update: bool = True,
        eta: float = 0.001,
        eps: float = 0,
        momentum_correction: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.momentum, self.lazy_update = momentum, lazy_update
        self.eta, self.eps, self.momentum_correction = eta, eps, momentum_correction

    def set_wd_mult(self, args_wd_mult: dict) -> None:
        _check_multipliers("LARS.set_wd_mult", args_wd_mult)
        self.wd_mult = {}
        for name in self.idx2name.values():
            if not name.endswith("_weight"):
                self.wd_mult[name] = 0.0
        self.wd_mult.update(args_wd_mult)

    def _rule_key(self, index):
        return _lars_excluded(self.idx2name.get(index, str(index)))

    def _rule(self, wd, rescale_grad, clip, index):
        excluded = self._rule_key(index)
        return gradstep.lars(
            1.0,
            self.momentum,
            weight_decay=wd,
            trust_coefficient=self.eta,
            epsilon=self.eps,
            form="mxnet",
            momentum_correction=bool(self.momentum_correction and self.momentum != 0),
            trust_ratio_mask=[False] if excluded else None,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )


@register
class LBSGD(Optimizer):
    """LBSGD (gradstep ``lbsgd``): gradients accumulated over ``batch_scale`` calls, a
    warm-up multiplier (or the ``"lars"`` ratio); the learning rate is read before the
    count is incremented. ``num_epochs`` is accepted and unused, as in MXNet."""

    count_before_lr = False
    counts_in_state = False

    def __init__(
        self,
        momentum: float = 0.0,
        multi_precision: bool = False,
        warmup_strategy: str = "linear",
        warmup_epochs: int = 5,
        batch_scale: int = 1,
        updates_per_epoch: int = 32,
        begin_epoch: int = 0,
        num_epochs: int = 60,
        **kwargs: Any,
    ):
        super().__init__(multi_precision=multi_precision, **kwargs)
        self.momentum = momentum
        self.warmup_strategy, self.warmup_epochs = warmup_strategy, warmup_epochs
        self.batch_scale, self.updates_per_epoch = batch_scale, updates_per_epoch
        self.begin_epoch, self.num_epochs = begin_epoch, num_epochs

    def _rule(self, wd, rescale_grad, clip, index):
        return gradstep.lbsgd(
            1.0,
            self.momentum,
            weight_decay=wd,
            warmup_strategy=self.warmup_strategy,
            warmup_epochs=None if self.warmup_strategy == "lars" else self.warmup_epochs,
            batch_scale=self.batch_scale,
            updates_per_epoch=self.updates_per_epoch,
            begin_epoch=self.begin_epoch,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )


def _f32(x: float) -> float:
    """MXNet's kernels take float hyperparameters as float32."""
    return float(np.float32(x))


@register
class LAMB(Optimizer):
    """LAMB (gradstep ``lamb`` after MXNet's rescale and clip); ``beta1``, ``beta2`` and
    ``epsilon`` are rounded to float32 as MXNet's kernel receives them; the bounds apply
    only when truthy, as MXNet forwards them."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-6,
        lower_bound: float | None = None,
        upper_bound: float | None = None,
        bias_correction: bool = True,
        **kwargs: Any,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.lower_bound, self.upper_bound = lower_bound, upper_bound
        self.bias_correction = bias_correction

    def _rule(self, wd, rescale_grad, clip, index):
        inner = gradstep.lamb(
            1.0,
            _f32(self.beta1),
            _f32(self.beta2),
            _f32(self.epsilon),
            weight_decay=wd,
            bias_correction=self.bias_correction,
            lower_bound=self.lower_bound or None,
            upper_bound=self.upper_bound or None,
        )
        if rescale_grad == 1.0 and clip is None:
            return inner
        return gradstep.chain(_mx.gradient(rescale_grad, clip), inner)


@register
class DCASGD(Optimizer):
    """DC-ASGD as MXNet 1.x (gradstep ``dcasgd``). MXNet 1.9.1 itself fails with
    ``momentum > 0`` (it tests the truth value of the momentum array); here the momentum
    path follows the math its code intends: ``m <- mu m + Delta``, ``w <- w + m``."""

    kernel_clip = False

    def __init__(self, momentum: float = 0.0, lamda: float = 0.04, **kwargs: Any):
        super().__init__(**kwargs)
        self.momentum, self.lamda = momentum, lamda

    def _rule(self, wd, rescale_grad, clip, index):
        return gradstep.dcasgd(
            1.0,
            self.momentum,
            self.lamda,
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )


@register
class SGLD(Optimizer):
    """SGLD (gradstep ``sgld``): ``w <- w - lr/2 u + N(0, lr)``. The noise comes from
    NumPy: ``seed`` (gradstep's addition; None = fresh entropy) seeds every index's own
    stream."""

    kernel_clip = False

    def __init__(self, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.seed = seed

    def _rule(self, wd, rescale_grad, clip, index):
        return gradstep.sgld(
            1.0, weight_decay=wd, rescale_grad=rescale_grad, clip_gradient=clip, seed=0
        )

    def _fresh_state(self, index, state):
        if self.seed is None:
            seq = np.random.SeedSequence()
        else:
            seq = np.random.SeedSequence([int(self.seed), abs(hash(index)) % (2**31)])
        seed = int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
        return _walk(state, "seed", lambda v: np.asarray(seed, np.int64))


@register
class Adam(Optimizer):
    """Adam as MXNet 1.x: epsilon outside the root, not bias-corrected
    (``epsilon_placement="outside_uncorrected"``), decay inside the clip."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        lazy_update: bool = True,
        **kwargs: Any,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.lazy_update = lazy_update

    def _rule(self, wd, rescale_grad, clip, index):
        return gradstep.adam(
            1.0,
            self.beta1,
            self.beta2,
            self.epsilon,
            epsilon_placement="outside_uncorrected",
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )


@register
class AdaGrad(Optimizer):
    """AdaGrad as MXNet 1.x: ``eps`` inside the root, decay added after the
    normalisation (``decoupled_weight_decay=True``)."""

    kernel_clip = False

    def __init__(self, eps: float = 1e-7, **kwargs: Any):
        super().__init__(**kwargs)
        self.float_stable_eps = eps

    def _rule(self, wd, rescale_grad, clip, index):
        extra = {"decoupled_weight_decay": True} if wd else {}
        return gradstep.adagrad(
            1.0,
            epsilon=self.float_stable_eps,
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
            **extra,
        )


@register
class RMSProp(Optimizer):
    """RMSProp as MXNet 1.x: epsilon inside the root, decay inside the clip; centered
    (Graves) with momentum ``gamma2``; ``clip_weights`` bounds the weights."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        gamma1: float = 0.9,
        gamma2: float = 0.9,
        epsilon: float = 1e-8,
        centered: bool = False,
        clip_weights: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.gamma1, self.gamma2, self.epsilon = gamma1, gamma2, epsilon
        self.centered, self.clip_weights = centered, clip_weights

    def _rule(self, wd, rescale_grad, clip, index):
        extra = {"centered": True, "momentum": self.gamma2} if self.centered else {}
        return gradstep.rmsprop(
            1.0,
            rho=self.gamma1,
            epsilon=self.epsilon,
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
            clip_weights=self.clip_weights or None,
            **extra,
        )


@register
class AdaDelta(Optimizer):
    """AdaDelta as MXNet 1.x: no learning rate at all (``learning_rate``, ``lr_mult``
    and ``lr_scheduler`` have no effect, as in MXNet), decay ``w <- w - wd w`` after
    the step."""

    kernel_clip = False

    def __init__(self, rho: float = 0.90, epsilon: float = 1e-5, **kwargs: Any):
        super().__init__(**kwargs)
        self.rho, self.epsilon = rho, epsilon

    def _lr_for_rule(self, index):
        return {}

    def _rule(self, wd, rescale_grad, clip, index):
        extra = {"decoupled_weight_decay": True} if wd else {}
        return gradstep.adadelta(
            1.0,
            self.rho,
            self.epsilon,
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
            **extra,
        )


@register
class Ftrl(Optimizer):
    """FTRL-Proximal as MXNet (gradstep ``ftrl``); ``wd`` is the L2 term of the closed
    form."""

    def __init__(
        self, lamda1: float = 0.01, learning_rate: float = 0.1, beta: float = 1, **kwargs: Any
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.lamda1, self.beta = lamda1, beta

    def _rule(self, wd, rescale_grad, clip, index):
        return gradstep.ftrl(
            1.0,
            self.lamda1,
            self.beta,
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )


@register
class Adamax(Optimizer):
    """AdaMax as MXNet 1.x: no epsilon (an always-zero gradient gives NaN, as MXNet)."""

    kernel_clip = False

    def __init__(
        self, learning_rate: float = 0.002, beta1: float = 0.9, beta2: float = 0.999, **kw
    ):
        super().__init__(learning_rate=learning_rate, **kw)
        self.beta1, self.beta2 = beta1, beta2

    def _rule(self, wd, rescale_grad, clip, index):
        return gradstep.adamax(
            1.0,
            self.beta1,
            self.beta2,
            epsilon=0.0,
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )


@register
class Nadam(Optimizer):
    """Nadam as MXNet: the momentum-schedule product ``m_schedule`` is one number on the
    optimizer, multiplied once per parameter update (gradstep
    ``nadam(schedule_scope="shared")``, its product carried from index to index)."""

    kernel_clip = False

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        schedule_decay: float = 0.004,
        **kwargs: Any,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.schedule_decay = schedule_decay
        self.m_schedule = 1.0

    def _rule(self, wd, rescale_grad, clip, index):
        return gradstep.nadam(
            1.0,
            self.beta1,
            self.beta2,
            self.epsilon,
            schedule_decay=self.schedule_decay,
            schedule_scope="shared",
            weight_decay=wd,
            rescale_grad=rescale_grad,
            clip_gradient=clip,
        )

    def _before(self, index, state):
        shared = np.asarray(self.m_schedule, np.float64)
        return _walk(state, "m_schedule", lambda v: shared)

    def _after(self, index, new_state):
        self.m_schedule = float(_find(new_state, "m_schedule"))


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
