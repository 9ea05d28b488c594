r"""LBSGD: MXNet 1.x's large-batch SGD, with gradient accumulation and warm-up.

Symbols: :math:`g` gradient, :math:`w` parameter, :math:`a` slot ``accumulated``,
:math:`v` slot ``velocity`` (the signed, learning-rate-scaled step, as MXNet's
buffer), :math:`\eta` ``learning_rate``, :math:`\mu` ``momentum``, :math:`\lambda`
``weight_decay``, :math:`B` ``batch_scale``, :math:`N_w` =
``warmup_epochs * updates_per_epoch``, :math:`n` the call number, counted from
``begin_epoch * updates_per_epoch + 1``, :math:`s` ``rescale_grad``, :math:`c`
``clip_gradient``.

Every call adds the gradient to :math:`a`; on calls where :math:`B` divides
:math:`n` (a *macro-batch*) the step uses the mean :math:`\bar g = a / B`, empties
:math:`a`, and multiplies the learning rate by :math:`M`:

.. math::

    v \leftarrow \mu v - \eta M (\mathrm{clip}(s \bar g, -c, c) + \lambda w),\quad
    w \leftarrow w + v

(without momentum :math:`w \leftarrow w - \eta M(\mathrm{clip}(s\bar g, -c, c) +
\lambda w)`; no clip by default, :math:`s = 1`); on the other calls nothing but
:math:`a` changes. :math:`M = B` once :math:`n \ge N_w`, 1 if
:math:`N_w \le 1`, and otherwise by ``warmup_strategy``:

- ``"linear"``: :math:`M = 1 + (B-1)\, n / N_w`
- ``"power2"``: :math:`M = 1 + (B-1)\, n^2 / N_w^2`
- ``"sqrt"``: :math:`M = 1 + (B-1) \sqrt{n / N_w}`
- ``"lars"`` (no warm-up; a per-tensor reduction):
  :math:`M = \mathrm{clip}\big(\sqrt{\|w\|^2 / (\|\bar g\|^2 + \lambda\|w\|^2 +
  10^{-18})},\ 0.01,\ 100\big)`

:math:`n` is never reset, so with ``begin_epoch`` > 0 the first macro-batch may be
shorter than :math:`B` calls (its mean still divides by :math:`B`), as in MXNet.

References:
  You, Gitman & Ginsburg (2017): Large Batch Training of Convolutional Networks.
  arXiv:1708.03888.
  Goyal, Dollar, Girshick, Noordhuis, Wesolowski, Kyrola, Tulloch, Jia & He (2017):
  Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour. arXiv:1706.02677.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .._core.elementwise import Elementwise, Slot
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import Interval, OneOf, hyperparams, nonnegative
from .._core.xmath import clip, maximum, minimum, sqrt
from .layerwise import NoneOr, PerTensorReduction

STRATEGIES = ("linear", "power2", "sqrt", "lars")
DEFAULT_WARMUP_EPOCHS = 5


# ``on`` is 1 on the calls that end a macro-batch and 0 on the others, ``off = 1 - on``:
# for finite values ``on * step + off * velocity`` is exactly ``step`` or ``velocity``
# (a scalar condition in ``where`` is not accepted by every array library).


def _lbsgd_plain(g, w, accumulated, on, off, inv_batch, s, lo, hi, weight_decay, neg_lr):
    total = accumulated + g
    step = neg_lr * (clip(total * inv_batch * s, lo, hi) + weight_decay * w)
    return on * step, off * total


def _lbsgd_momentum(
    g, w, accumulated, velocity, on, off, inv_batch, s, lo, hi, weight_decay, keep, neg_lr
):
    total = accumulated + g
    step = keep * velocity + neg_lr * (clip(total * inv_batch * s, lo, hi) + weight_decay * w)
    return on * step, off * total, on * step + off * velocity


def _mean_and_param_plain(g, w, accumulated, on, off, inv_batch, s, lo, hi, weight_decay):
    return (accumulated + g) * inv_batch, w


def _mean_and_param_momentum(
    g, w, accumulated, velocity, on, off, inv_batch, s, lo, hi, weight_decay, keep
):
    return (accumulated + g) * inv_batch, w


def warmup_multiplier(strategy: str, n: int, warmup_steps: int, batch_scale: int) -> float:
    """MXNet 1.x's ``_get_lbmult``: the learning-rate multiplier at call ``n``."""
    if n >= warmup_steps:
        return float(batch_scale)
    if warmup_steps <= 1:
        return 1.0
    growth = batch_scale - 1.0
    if strategy == "linear":
        return 1.0 + growth * n / warmup_steps
    if strategy == "power2":
        return 1.0 + growth * (n * n) / (warmup_steps * warmup_steps)
    return 1.0 + growth * math.sqrt(float(n) / warmup_steps)


def _lars_multiplier(sums: tuple[float, float], flags: dict, h: dict) -> dict:
    # element operations, not math's: engines call it on columns of tensors
    g2, w2 = sums
    ratio = sqrt(w2 / (g2 + h["weight_decay"] * w2 + 1e-18))
    return {"neg_lr": -h["learning_rate"] * minimum(maximum(ratio, 0.01), 100.0)}


def _lbsgd_prepare(
    h: dict, count: int, *, batch, bounds, first, has_momentum, warmup_steps, warmup_strategy
) -> dict:
    n = first + count
    on = 1.0 if n % batch == 0 else 0.0
    out = {"on": on, "off": 1.0 - on, "inv_batch": 1.0 / batch, "s": h["rescale_grad"]}
    out["lo"], out["hi"] = bounds
    out["weight_decay"] = h["weight_decay"]
    if has_momentum:
        out["keep"] = h["momentum"]
    if warmup_strategy != "lars":
        multiplier = warmup_multiplier(warmup_strategy, n, warmup_steps, batch)
        out["neg_lr"] = -h["learning_rate"] * multiplier
    return out


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    momentum=Interval(0.0, 1.0, schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    warmup_strategy=OneOf(STRATEGIES),
    warmup_epochs=NoneOr(Interval(0, integer=True)),
    batch_scale=Interval(1, integer=True),
    updates_per_epoch=Interval(1, integer=True),
    begin_epoch=Interval(0, integer=True),
    rescale_grad=Interval(0.0, lo_open=True, schedulable=True),
    clip_gradient=NoneOr(nonnegative()),
)
def lbsgd(
    learning_rate: Any = 0.01,
    momentum: Any = 0.0,
    weight_decay: Any = 0.0,
    *,
    warmup_strategy: str = "linear",
    warmup_epochs: int | None = None,
    batch_scale: int = 1,
    updates_per_epoch: int = 32,
    begin_epoch: int = 0,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
) -> Chain:
    r"""Large-batch SGD: accumulate ``batch_scale`` gradients, step with a warmed-up
    learning rate (see the module docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule (evaluated at the call count
        before this call, as MXNet reads it before counting). Default 0.01.
      momentum: :math:`\mu` in [0, 1], or a schedule. Default 0 (no velocity kept).
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 0.
      warmup_strategy: ``"linear"`` (default), ``"power2"``, ``"sqrt"`` or
        ``"lars"``.
      warmup_epochs: an integer >= 0, or ``None`` for MXNet's 5; the warm-up lasts
        :math:`N_w` = ``warmup_epochs * updates_per_epoch`` calls. ``"lars"`` has no
        warm-up: giving it raises.
      batch_scale: :math:`B`, an integer >= 1: calls per macro-batch and the final
        learning-rate multiplier. Default 1.
      updates_per_epoch: an integer >= 1. Default 32.
      begin_epoch: an integer >= 0: the epoch a resumed run starts at (offsets
        :math:`n` by ``begin_epoch * updates_per_epoch``). Default 0.
      rescale_grad: MXNet's :math:`s` > 0, or a schedule: the step uses
        :math:`\mathrm{clip}(s \bar g, -c, c)`. Default 1. The ``"lars"``
        multiplier uses :math:`\bar g` itself, as MXNet.
      clip_gradient: MXNet's :math:`c`: ``None`` (default: no clip) or >= 0 (0 clips
        every element to 0; MXNet's kernel reads 0 as no clipping).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(1)
      >>> opt = gradstep.Optimizer(w, gradstep.lbsgd(0.1, batch_scale=2, warmup_epochs=0))
      >>> opt.step(np.ones(1)); w
      array([0.])
      >>> opt.step(np.full(1, 3.0)); w
      array([-0.4])

    Differences: MXNet 1.x ``LBSGD`` (removed in 2.x); its ``num_epochs`` and
    ``multi_precision`` arguments are not taken (the first is unused by MXNet). MXNet
    keeps :math:`a` and :math:`n` per parameter index; gradstep steps all tensors
    together, which is the same when every call updates every parameter. The MXNet
    tutorial describes LBSGD as LARS; in the code LARS is only the ``"lars"``
    strategy, with a ratio of its own (no trust coefficient, :math:`\lambda` on
    :math:`\|w\|^2`). A non-finite gradient reaches the parameters on the call it
    arrives in (gradstep gates the step arithmetically), in MXNet at the end of its
    macro-batch. No other library has LBSGD.
    """
    if warmup_strategy == "lars" and warmup_epochs is not None:
        raise ValueError(
            f"lbsgd: invalid warmup_epochs={warmup_epochs!r} with warmup_strategy='lars'; "
            "valid values: None (the 'lars' strategy has no warm-up)"
        )
    epochs = DEFAULT_WARMUP_EPOCHS if warmup_epochs is None else int(warmup_epochs)
    warmup_steps = epochs * int(updates_per_epoch)
    first = int(begin_epoch) * int(updates_per_epoch) + 1
    batch = int(batch_scale)
    has_momentum = callable(momentum) or momentum != 0
    c = math.inf if clip_gradient is None else float(clip_gradient)
    bounds = (-c, c)

    prepare = functools.partial(
        _lbsgd_prepare,
        batch=batch,
        bounds=bounds,
        first=first,
        has_momentum=has_momentum,
        warmup_steps=warmup_steps,
        warmup_strategy=warmup_strategy,
    )

    # One stage does accumulation, decay, learning rate and momentum: a call that only
    # accumulates must leave the velocity untouched, so they are gated together (and
    # the learning rate is applied here, not by a separate learning-rate stage).
    slots = (Slot("accumulated"),) + ((Slot("velocity"),) if has_momentum else ())
    element = _lbsgd_momentum if has_momentum else _lbsgd_plain
    hyper = {"learning_rate": learning_rate, "weight_decay": weight_decay}
    hyper["rescale_grad"] = rescale_grad
    if has_momentum:
        hyper["momentum"] = momentum
    common = dict(
        slots=slots, hyperparams=hyper, prepare=prepare, uses_params=True, uses_count=True
    )
    if warmup_strategy == "lars":
        stage: Elementwise = PerTensorReduction(
            "lbsgd",
            element,
            norms=_mean_and_param_momentum if has_momentum else _mean_and_param_plain,
            combine=_lars_multiplier,
            tensor_scalars=("neg_lr",),
            **common,
        )
    else:
        stage = Elementwise("lbsgd", element, **common)
    return rule("lbsgd", stage)
