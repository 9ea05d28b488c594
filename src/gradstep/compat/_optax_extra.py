"""optax 0.2.8's names for gradstep's further schedules and transforms: SGDR,
one-cycles, piecewise interpolation, warm-up + exponential decay, reduce-on-plateau."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import schedules as _sched
from ..jax import GradstepTransformation
from ..transforms.plateau import reduce_on_plateau as _reduce_on_plateau
from ._optax_base import wrap
from ._optax_schedules import (
    Schedule,
    _as_compat,
    _constant,
    exponential_decay,
    join_schedules,
    linear_schedule,
    warmup_cosine_decay_schedule,
)

__all__ = [
    "cosine_onecycle_schedule",
    "linear_onecycle_schedule",
    "piecewise_interpolate_schedule",
    "reduce_on_plateau",
    "sgdr_schedule",
    "warmup_exponential_decay_schedule",
]

# -- schedules ----------------------------------------------------------------------

_INTERPOLATIONS = {"linear": "linear", "cosine": "cos"}


def piecewise_interpolate_schedule(
    interpolate_type: str, init_value: float, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """optax's ``piecewise_interpolate_schedule``: from each boundary on the value is
    multiplied by its scale, and interpolated (``"linear"`` or ``"cosine"``) between
    the boundaries (:func:`gradstep.schedules.piecewise_interpolate`)."""
    if interpolate_type not in _INTERPOLATIONS:
        raise ValueError(
            f"piecewise_interpolate_schedule: invalid interpolate_type={interpolate_type!r}; "
            "valid values: 'linear', 'cosine'"
        )
    items = sorted((boundaries_and_scales or {}).items())
    if any(s < 0 for _, s in items):
        raise ValueError(
            "piecewise_interpolate_schedule: invalid boundaries_and_scales; valid values: "
            "non-negative scale factors"
        )
    if not items:
        return _constant(init_value)
    values, value = [], float(init_value)
    for _, s in items:
        value *= s
        values.append(value)
    return _as_compat(
        _sched.piecewise_interpolate(
            init_value, [int(b) for b, _ in items], values, _INTERPOLATIONS[interpolate_type]
        )
    )


def _positive_steps(owner: str, transition_steps: int) -> None:
    if not transition_steps > 0:
        raise ValueError(
            f"{owner}: invalid transition_steps={transition_steps!r}; valid values: a "
            "positive integer"
        )


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """optax's ``linear_onecycle_schedule``: three linear phases, ``peak / div`` up to
    ``peak``, back down to ``peak / div``, then to ``peak / (div * final_div)``."""
    _positive_steps("linear_onecycle_schedule", transition_steps)
    return piecewise_interpolate_schedule(
        "linear",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(pct_final * transition_steps): 1.0 / div_factor,
            transition_steps: 1.0 / final_div_factor,
        },
    )


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """optax's ``cosine_onecycle_schedule``: ``peak / div`` up to ``peak`` along half a
    cosine, then down to ``peak / (div * final_div)``."""
    _positive_steps("cosine_onecycle_schedule", transition_steps)
    return piecewise_interpolate_schedule(
        "cosine",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(transition_steps): 1.0 / (div_factor * final_div_factor),
        },
    )


def warmup_exponential_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """optax's ``warmup_exponential_decay_schedule``: linear ``init -> peak`` over
    ``warmup_steps``, then ``exponential_decay`` of ``peak`` counted from there."""
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            exponential_decay(
                peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
            ),
        ],
        [warmup_steps],
    )


def sgdr_schedule(cosine_kwargs: Iterable[dict[str, Any]]) -> Schedule:
    """optax's ``sgdr_schedule``: one ``warmup_cosine_decay_schedule`` per dict of
    ``cosine_kwargs``, each lasting its ``decay_steps``, joined end to end (warm
    restarts; :func:`gradstep.schedules.cosine_warm_restarts` is the closed form of
    torch's periodic version)."""
    schedules, boundaries, step = [], [], 0
    for kwargs in cosine_kwargs:
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        step += kwargs["decay_steps"]
        boundaries.append(step)
    return join_schedules(schedules, boundaries[:-1])


# -- transforms -----------------------------------------------------------------------


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> GradstepTransformation:
    """optax.contrib's ``reduce_on_plateau``: updates times a scale that drops by
    ``factor`` after ``patience`` evaluations in a row without improvement of the
    ``value`` given to ``update`` (:func:`gradstep.transforms.reduce_on_plateau` with
    ``patience - 1``: optax counts the evaluation that triggers the drop). An update
    without ``value`` leaves the state unchanged (optax requires one)."""
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(
            f"reduce_on_plateau: invalid patience={patience!r}; valid values: an integer "
            ">= 1 (optax's patience=0 never reduces on a plateau)"
        )
    if rtol == 0.0 and atol == 0.0:
        raise ValueError(
            "reduce_on_plateau: invalid rtol=0.0 with atol=0.0; valid values: at least one "
            "of them positive (as optax)"
        )
    return wrap(
        _reduce_on_plateau(factor, patience - 1, rtol, atol, cooldown, accumulation_size, min_scale)
    )
