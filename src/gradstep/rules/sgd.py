r"""Stochastic gradient descent and momentum.

Symbols: :math:`w` parameter, :math:`g` gradient, :math:`\eta` ``learning_rate``,
:math:`\mu` ``momentum``, :math:`\tau` ``dampening``, :math:`\lambda`
``weight_decay``, :math:`v` the velocity slot ``velocity``.

Plain SGD: :math:`w \leftarrow w - \eta (g + \lambda w)`.

Momentum keeps a velocity. Where the learning rate sits is a named option,
``lr_in_buffer``, because libraries differ and the difference shows as soon as the
learning rate changes between steps:

- ``lr_in_buffer=True`` (Lasagne/Dandelion, MXNet, Keras, the seeds):
  :math:`v \leftarrow \mu v - \eta g,\ w \leftarrow w + v`; Nesterov:
  :math:`w \leftarrow w + \mu v - \eta g` with the new :math:`v`.
- ``lr_in_buffer=False`` (torch.optim.SGD, optax.sgd, objax.Momentum):
  :math:`v \leftarrow \mu v + (1-\tau) g,\ w \leftarrow w - \eta v`; Nesterov:
  :math:`w \leftarrow w - \eta (g + \mu v)`.

The first step stores :math:`v_1 = g_1` (times :math:`-\eta` when the learning rate is
in the buffer): dampening is not applied to it, as in torch.

References:
  Rumelhart, Hinton & Williams (1986): Learning representations by back-propagating
  errors. Nature 323.
  Nesterov (1983): A method for solving the convex programming problem with
  convergence rate O(1/k^2). Soviet Math. Dokl. 27.
  Sutskever, Martens, Dahl & Hinton (2013): On the importance of initialization and
  momentum in deep learning. ICML.
  Bengio, Boulanger-Lewandowski & Pascanu (2013): Advances in optimizing recurrent
  networks. ICASSP (the Nesterov reformulation used by everyone).
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.gradients import GRADIENT_RANGES, gradient_stage
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Interval, OneOf, hyperparams, nonnegative
from .._core.xmath import complex_ready, ema

_LR = nonnegative(schedulable=True)
_MOMENTUM = Interval(0.0, 1.0, schedulable=True)
_DAMPENING = Interval(0.0, 1.0)


@complex_ready
def _heavy_ball(g, velocity, keep, gain):
    velocity = ema(velocity, g, keep, gain)
    return velocity, velocity


@complex_ready
def _nesterov(g, velocity, keep, gain, momentum):
    velocity = ema(velocity, g, keep, gain)
    return g + momentum * velocity, velocity


def _trace_prepare(h: dict, count: int, *, nesterov: bool, dampening: float) -> dict:
    # torch stores g itself on the first step: no dampening then. Written without a
    # branch on the count, so that a count on the device (capturable) computes it there.
    gain = 1.0 - dampening * (count > 0)
    out = {"keep": h["momentum"], "gain": gain}
    if nesterov:
        out["momentum"] = h["momentum"]
    return out


def _trace(momentum: Any, nesterov: bool, dampening: float) -> Elementwise:
    prepare = functools.partial(_trace_prepare, nesterov=nesterov, dampening=dampening)
    return Elementwise(
        "nesterov_momentum" if nesterov else "momentum",
        _nesterov if nesterov else _heavy_ball,
        slots=(Slot("velocity"),),
        hyperparams={"momentum": momentum},
        prepare=prepare,
        uses_count=dampening != 0,
    )


@hyperparams(momentum=_MOMENTUM, dampening=_DAMPENING)
def apply_momentum(momentum: Any = 0.9, *, dampening: float = 0.0) -> Transform:
    r"""Heavy-ball momentum on whatever the previous stages produced.

    :math:`v \leftarrow \mu v + (1-\tau) u,\ u \leftarrow v`, with :math:`u` the
    incoming update. After a learning-rate stage this is Lasagne's
    ``apply_momentum``; before it, torch's momentum buffer.

    Args:
      momentum: :math:`\mu`, in [0, 1] or a schedule. Default 0.9 (Lasagne).
      dampening: :math:`\tau`, in [0, 1]; not applied on the first step. Default 0.
    """
    return _trace(momentum, False, dampening)


@hyperparams(momentum=_MOMENTUM, dampening=_DAMPENING)
def apply_nesterov_momentum(momentum: Any = 0.9, *, dampening: float = 0.0) -> Transform:
    r"""Nesterov momentum on whatever the previous stages produced.

    :math:`v \leftarrow \mu v + (1-\tau) u,\ u \leftarrow u + \mu v` (the
    Bengio et al. form: the gradient is taken at the current parameters).

    Args:
      momentum: :math:`\mu`, in [0, 1] or a schedule. Default 0.9 (Lasagne).
      dampening: :math:`\tau`, in [0, 1]; not applied on the first step. Default 0.
    """
    return _trace(momentum, True, dampening)


def _gradient(owner, rescale_grad, clip_gradient, weight_decay, decay_in_clip):
    # MXNet 1.x SGD and NAG add the decay after the element-wise clip
    return gradient_stage(
        owner, rescale_grad, clip_gradient, weight_decay, decay_in_clip, default_in_clip=False
    )


@hyperparams(
    learning_rate=_LR, clear_nan=BOOL, weight_decay=nonnegative(schedulable=True), **GRADIENT_RANGES
)
def sgd(
    learning_rate: Any = 1e-4,
    clear_nan: bool = False,
    *,
    weight_decay: Any = 0.0,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = False,
) -> Chain:
    r"""Stochastic gradient descent: :math:`w \leftarrow w - \eta (u + \lambda w)`,
    :math:`u = \mathrm{clip}(s g, -c, c)` (just :math:`g` by default).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 1e-4 (Dandelion).
      clear_nan: Dandelion's NaN handling: a parameter element whose new value is
        NaN becomes 0 (see :func:`gradstep.transforms.with_clear_nan`).
      weight_decay: :math:`\lambda` >= 0, or a schedule: coupled L2 decay. Default 0.
      rescale_grad, clip_gradient, decay_in_clip: MXNet's gradient handling (see
        :mod:`gradstep.transforms.mxnet`); defaults leave the gradient as it is.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -2.0])
      >>> gradstep.Optimizer(w, gradstep.sgd(0.1)).step(np.array([1.0, 1.0]))
      >>> w
      array([ 0.9, -2.1])

    Differences: Dandelion's default learning rate is 1e-4, Lasagne and optax require
    one, torch defaults to 1e-3, MXNet to 0.01 (1.x) or 0.1 (2.x). MXNet's SGD
    (``w <- (1 - lr wd) w - lr clip(s g)``) is this rule with its ``rescale_grad``,
    ``clip_gradient`` and ``weight_decay``.
    """
    return rule(
        "sgd",
        _gradient("sgd", rescale_grad, clip_gradient, weight_decay, decay_in_clip),
        scale_by_learning_rate(learning_rate),
        clear_nan=clear_nan,
    )


def _momentum_rule(name, learning_rate, momentum, dampening, nesterov, lr_in_buffer, **kw) -> Chain:
    trace = _trace(momentum, nesterov, dampening)
    lr = scale_by_learning_rate(learning_rate)
    stages = (lr, trace) if lr_in_buffer else (trace, lr)
    gradient = _gradient(
        name, kw["rescale_grad"], kw["clip_gradient"], kw["weight_decay"], kw["decay_in_clip"]
    )
    return rule(name, gradient, *stages, clear_nan=kw["clear_nan"])


_MOMENTUM_RANGES = dict(
    learning_rate=_LR,
    momentum=_MOMENTUM,
    dampening=_DAMPENING,
    lr_in_buffer=BOOL,
    weight_decay=nonnegative(schedulable=True),
    clear_nan=BOOL,
    **GRADIENT_RANGES,
)


@hyperparams(**_MOMENTUM_RANGES)
def momentum(
    learning_rate: Any,
    momentum: Any = 0.9,
    *,
    dampening: float = 0.0,
    lr_in_buffer: bool = True,
    weight_decay: Any = 0.0,
    clear_nan: bool = False,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = False,
) -> Chain:
    r"""SGD with heavy-ball momentum.

    ``lr_in_buffer=True``: :math:`v \leftarrow \mu v - \eta (g + \lambda w),\
    w \leftarrow w + v`. ``lr_in_buffer=False``: :math:`v \leftarrow \mu v + (1-\tau)
    (g + \lambda w),\ w \leftarrow w - \eta v`.

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Required (as in Lasagne).
      momentum: :math:`\mu` in [0, 1], or a schedule. Default 0.9.
      dampening: :math:`\tau` in [0, 1] (torch); not applied on the first step.
      lr_in_buffer: whether the velocity holds learning-rate-scaled steps (True:
        Lasagne, MXNet, Keras) or gradients (False: torch, optax, objax).
      weight_decay: :math:`\lambda` >= 0, or a schedule: coupled L2 decay (inside the
        velocity).
      clear_nan: Dandelion's NaN handling.
      rescale_grad, clip_gradient, decay_in_clip: MXNet's gradient handling (see
        :mod:`gradstep.transforms.mxnet`); defaults leave the gradient as it is.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(1)
      >>> opt = gradstep.Optimizer(w, gradstep.momentum(1.0, 0.9))
      >>> opt.step(np.ones(1)); opt.step(np.ones(1), learning_rate=0.1); w
      array([-2.])

    Differences: ``torch.optim.SGD(lr, momentum, dampening, weight_decay)`` is
    ``lr_in_buffer=False``; Lasagne's ``momentum`` and MXNet's SGD are
    ``lr_in_buffer=True``. The two agree while the learning rate is constant.
    """
    return _momentum_rule(
        "momentum",
        learning_rate,
        momentum,
        dampening,
        False,
        lr_in_buffer,
        weight_decay=weight_decay,
        clear_nan=clear_nan,
        rescale_grad=rescale_grad,
        clip_gradient=clip_gradient,
        decay_in_clip=decay_in_clip,
    )


def _nag_decay_at_updated_weight(g, w, velocity, keep, neg_lr, wd):
    step = neg_lr * (g + wd * w)
    u = keep * (keep * velocity + step) + step
    return u, keep * velocity + neg_lr * (g + wd * (w + u))


def _mxnet_nag(learning_rate: Any, momentum: Any, weight_decay: Any) -> Elementwise:
    """MXNet 1.x's in-place NAG kernel: the step decays the current weight, the new
    velocity the already updated one."""
    return Elementwise(
        "nesterov_momentum",
        _nag_decay_at_updated_weight,
        slots=(Slot("velocity"),),
        hyperparams={
            "learning_rate": learning_rate,
            "momentum": momentum,
            "weight_decay": weight_decay,
        },
        prepare=lambda h, t: {
            "keep": h["momentum"],
            "neg_lr": -h["learning_rate"],
            "wd": h["weight_decay"],
        },
        uses_params=True,
    )


VELOCITY_DECAY_WEIGHTS = ("current", "updated")


@hyperparams(**_MOMENTUM_RANGES, velocity_decay_weight=OneOf(VELOCITY_DECAY_WEIGHTS))
def nesterov_momentum(
    learning_rate: Any,
    momentum: Any = 0.9,
    *,
    dampening: float = 0.0,
    lr_in_buffer: bool = True,
    weight_decay: Any = 0.0,
    clear_nan: bool = False,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    decay_in_clip: bool = False,
    velocity_decay_weight: str = "current",
) -> Chain:
    r"""SGD with Nesterov momentum, in the Bengio et al. form (gradient at ``w``).

    ``lr_in_buffer=True``: :math:`v \leftarrow \mu v - \eta g,\ w \leftarrow w + \mu v
    - \eta g`. ``lr_in_buffer=False``: :math:`v \leftarrow \mu v + (1-\tau) g,\
    w \leftarrow w - \eta (g + \mu v)`. Here :math:`g` includes :math:`\lambda w`.

    Args: as :func:`momentum`, and
      velocity_decay_weight: ``"current"`` (default) or ``"updated"``: the weight
        whose decay :math:`\lambda w` enters the new velocity. MXNet 1.x's NAG kernel
        updates the weight in place before it writes the velocity, so the velocity
        gets :math:`-\eta(g + \lambda w_{new})` while the step used
        :math:`\lambda w`: ``"updated"`` reproduces it (it needs
        ``lr_in_buffer=True``, a weight decay, and no ``dampening`` or
        ``decay_in_clip``).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(1)
      >>> gradstep.Optimizer(w, gradstep.nesterov_momentum(0.1, 0.9)).step(np.ones(1)); w
      array([-0.19])

    Differences: ``torch.optim.SGD(nesterov=True)`` is ``lr_in_buffer=False`` (torch
    refuses dampening with Nesterov; gradstep allows it). Lasagne's
    ``nesterov_momentum`` is ``lr_in_buffer=True``; MXNet 1.x's NAG is
    ``lr_in_buffer=True, velocity_decay_weight="updated"`` (the same when
    ``wd = 0``), MXNet 2.x's NAG is ``"current"``.
    """
    if velocity_decay_weight == "updated":
        has_decay = callable(weight_decay) or weight_decay != 0
        if not (lr_in_buffer and has_decay) or dampening or decay_in_clip:
            raise ValueError(
                "nesterov_momentum: invalid velocity_decay_weight='updated' with "
                f"lr_in_buffer={lr_in_buffer!r}, weight_decay={weight_decay!r}, "
                f"dampening={dampening!r}, decay_in_clip={decay_in_clip!r}; valid values: "
                "it needs lr_in_buffer=True, weight_decay > 0, dampening=0 and "
                "decay_in_clip=False"
            )
        return rule(
            "nesterov_momentum",
            _gradient("nesterov_momentum", rescale_grad, clip_gradient, 0.0, False),
            _mxnet_nag(learning_rate, momentum, weight_decay),
            clear_nan=clear_nan,
        )
    return _momentum_rule(
        "nesterov_momentum",
        learning_rate,
        momentum,
        dampening,
        True,
        lr_in_buffer,
        weight_decay=weight_decay,
        clear_nan=clear_nan,
        rescale_grad=rescale_grad,
        clip_gradient=clip_gradient,
        decay_in_clip=decay_in_clip,
    )
