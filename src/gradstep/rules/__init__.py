"""The update rules, one file per family."""

from .adadelta import adadelta, scale_by_adadelta
from .adagrad import adagrad, inverse_time_decay, scale_by_adagrad
from .adam import adam, adamw, scale_by_adam
from .adamax import adamax, scale_by_adamax
from .rmsprop import rmsprop, scale_by_rms
from .sgd import apply_momentum, apply_nesterov_momentum, momentum, nesterov_momentum, sgd

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "apply_momentum",
    "apply_nesterov_momentum",
    "inverse_time_decay",
    "momentum",
    "nesterov_momentum",
    "rmsprop",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_rms",
    "sgd",
]
