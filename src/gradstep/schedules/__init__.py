"""Schedules: pure, closed-form functions of the step count.

``schedule(count)`` gives a hyperparameter's value at ``count``, the number of
updates made before this one (0 on the first update, as optax). Any hyperparameter
declared schedulable accepts one, not only the learning rate. Schedules join with
:func:`join`; none depends on the previous value, so any step can be evaluated alone
(a resumed run gets the same values).
"""

from .schedules import (
    Schedule,
    constant,
    cosine_decay,
    exponential_decay,
    join,
    linear_warmup,
    one_cycle,
    piecewise_constant,
    polynomial_decay,
    step_decay,
    warmup_cosine_decay,
)

__all__ = [
    "Schedule",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "join",
    "linear_warmup",
    "one_cycle",
    "piecewise_constant",
    "polynomial_decay",
    "step_decay",
    "warmup_cosine_decay",
]
