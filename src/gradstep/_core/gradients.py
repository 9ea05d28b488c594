r"""MXNet's gradient handling as elementwise stages: rescale, element-wise clip and
coupled weight decay inside or outside the clip; and post-update weight clipping.

MXNet treats the gradient handed to an optimizer in a fixed order (semantics
reference, sections 1.1 and 9.13), with :math:`s` ``rescale_grad``, :math:`c`
``clip_gradient``, :math:`\lambda` ``weight_decay``:

- ``decay_in_clip=False`` (MXNet 1.x SGD, NAG, Signum, SGLD, DCASGD; all of 2.x):
  :math:`u = \mathrm{clip}(s g, -c, c) + \lambda w`;
- ``decay_in_clip=True`` (MXNet 1.x Adam, RMSProp, FTML, AdaMax, Nadam):
  :math:`u = \mathrm{clip}(s g + \lambda w, -c, c)`.

Without ``clip_gradient`` the clip is left out (:math:`c = \infty`). ``clip_gradient=0``
clips every element to 0, which is what MXNet's Python-implemented updates do with 0;
its C++ kernels instead read 0 as "no clipping" (pass ``None`` for those).

These stages live in the core because rules are built from them (rules import only
the core); :mod:`gradstep.transforms.mxnet` exports them.
"""

from __future__ import annotations

import functools
from typing import Any

from .elementwise import Elementwise
from .stages import add_decayed_weights
from .transform import Transform
from .validate import BOOL, Interval, NoneOr
from .xmath import absolute, clip, where

#: ``None`` or a value of a constraint (the name the rules import)
Optional = NoneOr


RESCALE_GRAD = Interval(0.0, lo_open=True, schedulable=True)
CLIP_GRADIENT = Optional(Interval(0.0))
CLIP_WEIGHTS = Optional(Interval(0.0, lo_open=True))

#: the validation of the gradient-handling options every rule that offers them shares
GRADIENT_RANGES = dict(rescale_grad=RESCALE_GRAD, clip_gradient=CLIP_GRADIENT, decay_in_clip=BOOL)


def _rescaled(g, s):
    return g * s


def _rescaled_clipped(g, s, lo, hi):
    return clip(g * s, lo, hi)


def _rescaled_decayed(g, w, s, wd):
    return g * s + wd * w


def _clip_then_decay(g, w, s, lo, hi, wd):
    return clip(g * s, lo, hi) + wd * w


def _decay_then_clip(g, w, s, wd, lo, hi):
    return clip(g * s + wd * w, lo, hi)


def _is_zero(value: Any) -> bool:
    return not callable(value) and value == 0


def _gradient_scalars(
    v: dict, count: int, *, lo: float | None = None, hi: float | None = None, decay_last=False
) -> dict:
    """The scalars of :func:`rescale_clip_decay`'s element functions, in their order:
    ``s``, then ``wd`` and the bounds (``lo``, ``hi``, ``wd`` where the decay comes
    after the clip)."""
    out = {"s": v["rescale_grad"]}
    if "weight_decay" in v and not decay_last:
        out["wd"] = v["weight_decay"]
    if lo is not None:
        out["lo"], out["hi"] = lo, hi
    if decay_last:
        out["wd"] = v["weight_decay"]
    return out


def _bounds(lo: float, hi: float, h: dict, count: int) -> dict:
    return {"lo": lo, "hi": hi}


def rescale_clip_decay(
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    weight_decay: Any = 0.0,
    decay_in_clip: bool = False,
) -> Elementwise:
    """One stage: :math:`u = \\mathrm{clip}(s g [+ \\lambda w]) [+ \\lambda w]` (see the
    module docstring). Arguments are validated by the callers' declarations."""
    h = {"rescale_grad": rescale_grad}
    decay = not _is_zero(weight_decay)
    if decay:
        h["weight_decay"] = weight_decay
    if clip_gradient is None:
        if decay:
            return Elementwise(
                "rescale_clip_decay",
                _rescaled_decayed,
                hyperparams=h,
                prepare=_gradient_scalars,
                uses_params=True,
            )
        return Elementwise(
            "rescale_clip_decay",
            _rescaled,
            hyperparams=h,
            prepare=_gradient_scalars,
        )
    lo, hi = -float(clip_gradient), float(clip_gradient)
    if not decay:
        return Elementwise(
            "rescale_clip_decay",
            _rescaled_clipped,
            hyperparams=h,
            prepare=functools.partial(_gradient_scalars, lo=lo, hi=hi),
        )
    if decay_in_clip:
        return Elementwise(
            "rescale_clip_decay",
            _decay_then_clip,
            hyperparams=h,
            prepare=functools.partial(_gradient_scalars, lo=lo, hi=hi),
            uses_params=True,
        )
    return Elementwise(
        "rescale_clip_decay",
        _clip_then_decay,
        hyperparams=h,
        prepare=functools.partial(_gradient_scalars, lo=lo, hi=hi, decay_last=True),
        uses_params=True,
    )


def gradient_stage(
    owner: str,
    rescale_grad: Any,
    clip_gradient: float | None,
    weight_decay: Any,
    decay_in_clip: bool,
    *,
    default_in_clip: bool,
    coupled: bool = True,
) -> Transform | None:
    """The stage a rule puts first for its gradient handling, or ``None``.

    ``weight_decay`` is the rule's coupled decay (``coupled=False``: the rule applies
    its decay elsewhere, and this stage only rescales and clips). Without rescaling
    or clipping this is exactly :func:`add_decayed_weights` (or nothing), so a rule's
    stages and state are unchanged when the MXNet options are not used.

    A ``decay_in_clip`` other than the rule's default raises where it has no effect:
    without a clip, or without a coupled decay.
    """
    decay = coupled and not _is_zero(weight_decay)
    if decay_in_clip != default_in_clip and (clip_gradient is None or not decay):
        why = "without clip_gradient" if clip_gradient is None else "without coupled weight_decay"
        raise ValueError(
            f"{owner}: invalid decay_in_clip={decay_in_clip!r} {why}; valid values: "
            "decay_in_clip only applies when a coupled weight_decay and clip_gradient are "
            "both given"
        )
    plain_rescale = not callable(rescale_grad) and rescale_grad == 1
    if plain_rescale and clip_gradient is None:
        return add_decayed_weights(weight_decay) if decay else None
    return rescale_clip_decay(
        rescale_grad, clip_gradient, weight_decay if decay else 0.0, decay_in_clip
    )


def _clip_weights(u, w, lo, hi):
    # elements that stay inside the bound keep their update bit for bit
    new = w + u
    return where(absolute(new) > hi, clip(new, lo, hi) - w, u)


def clip_weights(bound: float) -> Elementwise:
    """Last stage: the new parameter :math:`w + u` is clipped to ``[-bound, bound]``
    (MXNet RMSProp's ``clip_weights``)."""
    lo, hi = -float(bound), float(bound)
    return Elementwise(
        "clip_weights",
        _clip_weights,
        prepare=functools.partial(_bounds, lo, hi),
        uses_params=True,
    )
