"""MXNet's adaptive optimizers (Adam, AdaGrad, RMSProp, AdaDelta, Ftrl, Adamax, Nadam)."""

from __future__ import annotations

from typing import Any

import numpy as np

import gradstep

from ._mxnet_base import Optimizer, _find, _walk, register


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
