"""MXNet's SGD-family and layer-wise optimizers (SGD, NAG, Signum, FTML, LARS, LBSGD and more)."""

from __future__ import annotations

from typing import Any

import numpy as np

import gradstep
from gradstep.transforms import mxnet as _mx

from ._mxnet_base import Optimizer, _check_multipliers, _walk, register


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
