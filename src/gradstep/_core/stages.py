"""The small stages every rule is built from: scaling, the learning rate, weight
decay, and Dandelion's NaN clearing.

They live in the core because rules are chains of them; :mod:`gradstep.transforms`
exports them with the other transforms.
"""

from __future__ import annotations

from typing import Any

from .combine import masked
from .elementwise import Elementwise
from .transform import Chain, Transform, map_transform
from .xmath import complex_ready, isnan, where


@complex_ready
def _scaled(g, factor):
    return g * factor


def _step_size_factor(h: dict, count: int) -> dict:
    return {"factor": h["step_size"]}


def _descent_factor(h: dict, count: int) -> dict:
    return {"factor": -h["learning_rate"]}


def scale(step_size: Any) -> Elementwise:
    """Multiply updates by ``step_size`` (a number or a schedule)."""
    return Elementwise(
        "scale",
        _scaled,
        hyperparams={"step_size": step_size},
        prepare=_step_size_factor,
    )


def scale_by_learning_rate(learning_rate: Any) -> Elementwise:
    """``u <- -learning_rate * u``: the one stage that turns a direction into a step.

    ``learning_rate`` is a number or a schedule; a value passed to ``update`` as
    ``learning_rate=...`` overrides it for that step.
    """
    return Elementwise(
        "learning_rate",
        _scaled,
        hyperparams={"learning_rate": learning_rate},
        prepare=_descent_factor,
    )


@complex_ready
def _decayed(g, w, weight_decay):
    return g + weight_decay * w


def add_decayed_weights(weight_decay: Any, mask: Any = None) -> Transform:
    """``u <- u + weight_decay * w``.

    Where it sits decides what it means: before a rule's statistics it is coupled L2
    decay (``g + lambda w`` enters the moments, torch's ``Adam(weight_decay=...)``);
    after the rule and before the learning rate it is decoupled decay
    (``-lr * (direction + lambda w)``, AdamW). ``mask`` (a tree of booleans, or a
    function of the parameters) limits it to some leaves, e.g. to skip biases.
    """
    stage = Elementwise(
        "weight_decay", _decayed, hyperparams={"weight_decay": weight_decay}, uses_params=True
    )
    return masked(stage, mask)


def _nan_params_to_zero(g, w):
    # Dandelion clears the *new parameter*: where w + u is NaN the element becomes 0.
    # Elsewhere u is returned untouched so w + u is bit-identical to the unguarded step.
    return where(isnan(w + g), -w, g)


def clear_nan_params() -> Elementwise:
    """Final stage of Dandelion's ``clear_nan``: a parameter element whose new value
    would be NaN is set to 0 instead (infinities pass through)."""
    return Elementwise("clear_nan", _nan_params_to_zero, uses_params=True)


def with_clear_nan(transform: Transform) -> Transform:
    """``transform`` with Dandelion's ``clear_nan`` semantics.

    Exactly what Dandelion's ``clear_nan=True`` does (``do_clear_nan(x) =
    switch(isnan(x), 0, x)`` in its ``update.py``; semantics reference, sec. 3): after
    the arithmetic, NaN elements of the new state slots become 0, and so do NaN
    elements of the new parameter; infinities are kept; the gradient itself is not
    cleaned and the step count advances. For an infinite gradient element this means,
    as in Dandelion: Adam's ``m`` and ``v`` become infinite there and stay so, each
    step there is ``inf/inf`` = NaN, so that parameter element is 0 on this and every
    later step; AdaDelta's accumulator becomes infinite and its parameter element 0;
    SGD takes the element to -inf/+inf.

    One case differs, because gradstep's updates are *added* to the parameters: a
    parameter element that is already infinite and whose new value would be NaN
    becomes NaN, where Dandelion sets it to 0 (``gradstep.compat.dandelion``, which
    assigns new values as Dandelion does, gives 0).

    Prefer ``gradstep.transforms.nonfinite_policy(rule, "zero")`` (non-finite
    gradient elements replaced by 0 before the rule: the state stays finite) or
    ``"skip"``; ``clear_nan`` is for reproducing Dandelion.
    """
    cleared = _clear_slots(transform)
    if isinstance(cleared, Chain):
        return Chain(cleared.stages + (clear_nan_params(),), name=cleared.name)
    return Chain((cleared, clear_nan_params()), name=transform.name)


def _clear_slots(t: Transform) -> Transform:
    """``t`` with every elementwise stage that keeps slots clearing their NaN, wherever
    it sits (chains, masks, partitions, wrappers)."""

    def clear(node: Transform) -> Transform:
        if isinstance(node, Elementwise) and node.slots:
            return node.replace(clear_nan_slots=True)
        return node

    return map_transform(clear, t)


def rule(name: str, *stages: Transform | None, clear_nan: bool = False) -> Chain:
    """A named optimizer chain of ``stages`` (``None`` entries are left out)."""
    chain = Chain(tuple(s for s in stages if s is not None), name=name)
    return with_clear_nan(chain) if clear_nan else chain
