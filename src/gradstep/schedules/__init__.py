"""Schedules: pure, closed-form functions of the step count.

``schedule(count)`` gives a hyperparameter's value at ``count``, the number of
updates made before this one (0 on the first update, as optax). Any hyperparameter
declared schedulable accepts one, not only the learning rate. Schedules join with
:func:`join`; none depends on the previous value, so any step can be evaluated alone
(a resumed run gets the same values).
"""

from .cyclical import cosine_warm_restarts, cyclic
from .decays import inverse_time_decay, warmup_exponential_decay, warmup_stable_decay
from .interpolate import one_cycle, piecewise_interpolate
from .schedules import (
    Schedule,
    constant,
    cosine_decay,
    exponential_decay,
    join,
    linear_warmup,
    piecewise_constant,
    polynomial_decay,
    step_decay,
    warmup_cosine_decay,
)
from .swa import swa_learning_rate

__all__ = [
    "Schedule",
    "constant",
    "cosine_decay",
    "cosine_warm_restarts",
    "cyclic",
    "exponential_decay",
    "inverse_time_decay",
    "join",
    "linear_warmup",
    "one_cycle",
    "piecewise_constant",
    "piecewise_interpolate",
    "polynomial_decay",
    "step_decay",
    "swa_learning_rate",
    "warmup_cosine_decay",
    "warmup_exponential_decay",
    "warmup_stable_decay",
]
