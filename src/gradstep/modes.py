"""Training and evaluation weights: schedule-free's ``x`` and parameter averages
(EMA, SWA).

Some optimizers evaluate at another point than the one they train at:

- schedule-free rules (:mod:`gradstep.rules.schedule_free`) keep ``y`` in the
  parameters while training; the point to evaluate, ``x``, follows from ``y`` and
  the state slot ``z``, and back;
- :func:`gradstep.transforms.parameter_ema` and
  :func:`gradstep.transforms.parameter_swa` keep an average of the parameters.

The functional API maps parameters without changing anything
(:func:`evaluation_params`, :func:`schedule_free_eval_params`,
:func:`schedule_free_train_params`). On the NumPy front (:class:`gradstep.Optimizer`)
the arrays are switched in place:

- ``with evaluating(opt): ...`` puts the evaluation weights in the arrays and
  restores the training weights, bit for bit, on exit (EMA and schedule-free);
- ``set_mode(opt, "eval")`` / ``set_mode(opt, "train")`` switch a schedule-free
  optimizer persistently, as the ``schedulefree`` package's ``.eval()`` /
  ``.train()`` (both idempotent).

The mode is recorded as the step-time hyperparameter ``train_mode`` in
``opt.hyperparams``, so a checkpoint (``opt.save``) remembers it, and a step taken in
evaluation mode raises instead of training from the wrong point. A checkpoint taken
in either mode restores correctly: save the parameters with it, load both, and the
mode comes back with the state (``get_mode(opt)``); ``set_mode`` then moves on.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np

from ._core import tree as _tree
from ._core.transform import Transform, walk
from ._core.validate import OneOf, check
from .rules.schedule_free import (
    interpolation,
    is_schedule_free_stage,
    to_evaluation,
    to_training,
)
from .transforms.averaging import ParameterAverage

MODES = ("train", "eval")


def _located(transform: Transform, state: Any, params: Any) -> list:
    """``(kind, transform, state, leaf indices)`` for every parameter-average wrapper
    (EMA, SWA; kind ``"ema"``) and schedule-free stage (not those inside an average
    wrapper: its averages decide)."""
    out: list = []
    for visit in walk(transform, params):
        t = visit.transform
        if visit.path is None or any(isinstance(p, ParameterAverage) for p in visit.parents):
            continue
        if isinstance(t, ParameterAverage):
            out.append(("ema", t, visit.state(state), visit.leaves))
        elif is_schedule_free_stage(t):
            out.append(("schedule_free", t, visit.state(state), visit.leaves))
    return out


def _schedule_free_values(stage, state, leaves, idx, direction) -> dict[int, Any]:
    if int(state["count"]) == 0:  # no z yet: x = y
        return {}
    beta = interpolation(stage)
    move = to_evaluation if direction == "eval" else to_training
    z = _tree.leaves(state["z"])
    return {i: move(leaves[i], z[k], beta) for k, i in enumerate(idx)}


def _values(found: list, leaves: list, direction: str, kinds: tuple[str, ...]) -> dict:
    values: dict[int, Any] = {}
    for kind, node, state, idx in found:
        if kind not in kinds:
            continue
        if kind == "ema":
            averages = _tree.leaves(node.averages(state))
            new = {i: averages[k] for k, i in enumerate(idx)}
        else:
            new = _schedule_free_values(node, state, leaves, idx, direction)
        for i, v in new.items():
            values.setdefault(i, v)  # the outermost wrapper decides
    return values


def _replaced(params: Any, values: dict[int, Any]) -> Any:
    leaves, td = _tree.flatten(params)
    return _tree.unflatten(td, [values.get(i, leaf) for i, leaf in enumerate(leaves)])


def evaluation_params(transform: Transform, state: Any, params: Any) -> Any:
    """The weights to evaluate with, from training-mode ``params``: the averages
    where a :func:`~gradstep.transforms.parameter_ema` or
    :func:`~gradstep.transforms.parameter_swa` covers a leaf, schedule-free's
    ``x`` where a schedule-free rule does, the parameter itself elsewhere. Pure: new
    arrays for the mapped leaves, the given ones for the others."""
    found = _located(transform, state, params)
    return _replaced(params, _values(found, _tree.leaves(params), "eval", ("ema", "schedule_free")))


def schedule_free_eval_params(transform: Transform, state: Any, params: Any) -> Any:
    """``x = y + (1 - 1/beta)(z - y)`` for the leaves of every schedule-free stage of
    ``transform`` (``params`` hold ``y``); other leaves are returned as given."""
    found = _located(transform, state, params)
    return _replaced(params, _values(found, _tree.leaves(params), "eval", ("schedule_free",)))


def schedule_free_train_params(transform: Transform, state: Any, params: Any) -> Any:
    """``y = x + (1 - beta)(z - x)``: the inverse of :func:`schedule_free_eval_params`."""
    found = _located(transform, state, params)
    return _replaced(params, _values(found, _tree.leaves(params), "train", ("schedule_free",)))


# -- the NumPy front -----------------------------------------------------------------


def get_mode(opt) -> str:
    """``"eval"`` if ``opt`` was put in evaluation mode, else ``"train"``."""
    return "eval" if opt.hyperparams.get("train_mode", True) is False else "train"


def _write(opt, values: dict[int, Any]) -> None:
    leaves = _tree.leaves(opt.params)
    for i, v in values.items():
        np.copyto(leaves[i], v, casting="same_kind")


def set_mode(opt, mode: str) -> None:
    """Switch a schedule-free optimizer's parameters between ``y`` (``"train"``) and
    ``x`` (``"eval"``) in place; a no-op if already in ``mode``.

    Raises ``ValueError`` for optimizers without a schedule-free stage (for a
    parameter EMA, whose training weights cannot be recomputed from the state, use
    :func:`evaluating`).
    """
    check("set_mode", "mode", mode, OneOf(MODES))
    found = _located(opt.transform, opt.state, opt.params)
    if not any(kind == "schedule_free" for kind, *_ in found):
        raise ValueError(
            "set_mode: this optimizer has no schedule-free stage whose mode can change; "
            "for a parameter EMA use gradstep.modes.evaluating(opt)"
        )
    if get_mode(opt) == mode:
        return
    _write(opt, _values(found, _tree.leaves(opt.params), mode, ("schedule_free",)))
    if mode == "eval":
        opt.hyperparams["train_mode"] = False
    else:
        opt.hyperparams.pop("train_mode", None)


@contextmanager
def evaluating(opt):
    """Evaluate with the evaluation weights inside the block, then switch back.

    Inside, ``opt``'s arrays hold the parameter averages or schedule-free's ``x`` (see
    :func:`evaluation_params`) and :meth:`~gradstep.Optimizer.step` raises; on exit
    the training weights are restored bit for bit. Raises ``ValueError`` if the
    optimizer has neither.
    """
    found = _located(opt.transform, opt.state, opt.params)
    if not found:
        raise ValueError(
            "evaluating: this optimizer has no evaluation weights (no parameter_ema or "
            "parameter_swa, no schedule-free stage)"
        )
    kinds = ("ema", "schedule_free") if get_mode(opt) == "train" else ("ema",)
    leaves = _tree.leaves(opt.params)
    values = _values(found, leaves, "eval", kinds)
    saved = {i: np.array(leaves[i], copy=True) for i in values}
    had = "train_mode" in opt.hyperparams
    previous = opt.hyperparams.get("train_mode")
    _write(opt, values)
    opt.hyperparams["train_mode"] = False
    try:
        yield opt
    finally:
        _write(opt, saved)
        if had:
            opt.hyperparams["train_mode"] = previous
        else:
            opt.hyperparams.pop("train_mode", None)
