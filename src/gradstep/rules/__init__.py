"""The update rules, one file per family."""

from .adabelief import adabelief, scale_by_belief
from .adadelta import adadelta, scale_by_adadelta
from .adafactor import adafactor
from .adagrad import adagrad, inverse_time_decay, scale_by_adagrad
from .adam import adam, adamw, scale_by_adam
from .adamax import adamax, scale_by_adamax
from .adamp import adamp, sgdp
from .adan import adan, proximal_weight_decay, scale_by_adan
from .cocob import cocob, scale_by_cocob
from .dadapt_adagrad import dadapt_adagrad
from .dadapt_adam import dadapt_adam, scale_by_dadapt_adam
from .dadapt_sgd import dadapt_sgd
from .delay import dcasgd, scale_by_delay_compensation
from .dog import dog, scale_by_dog
from .dowg import dowg, scale_by_dowg
from .ftml import ftml, scale_by_ftml
from .ftrl import ftrl, scale_by_ftrl
from .lamb import lamb
from .langevin import sgld
from .lars import lars
from .layerwise import PerTensorReduction, scale_by_lars, scale_by_trust_ratio
from .lbfgs import LBFGS, lbfgs
from .lbsgd import lbsgd
from .lion import lion, scale_by_lion
from .mechanic import mechanic, mechanize
from .muon import muon, newton_schulz
from .nadam import nadam, scale_by_nadam
from .noisy_sgd import add_noise, noisy_sgd
from .novograd import novograd, scale_by_novograd
from .polyak import polyak_sgd, scale_by_polyak
from .prodigy import prodigy, scale_by_prodigy
from .radam import radam, scale_by_radam
from .ranger import ranger
from .rmsprop import rmsprop, scale_by_rms
from .schedule_free import schedule_free_adamw, schedule_free_sgd
from .sgd import apply_momentum, apply_nesterov_momentum, momentum, nesterov_momentum, sgd
from .sign import scale_by_sign, scale_by_signum, signsgd, signum
from .yogi import scale_by_yogi, yogi

__all__ = [
    "LBFGS",
    "add_noise",
    "PerTensorReduction",
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamp",
    "adamw",
    "dadapt_adagrad",
    "dadapt_adam",
    "dadapt_sgd",
    "adan",
    "apply_momentum",
    "apply_nesterov_momentum",
    "cocob",
    "dcasgd",
    "dog",
    "dowg",
    "ftml",
    "ftrl",
    "inverse_time_decay",
    "lamb",
    "lars",
    "lbfgs",
    "lbsgd",
    "lion",
    "mechanic",
    "mechanize",
    "momentum",
    "muon",
    "nadam",
    "nesterov_momentum",
    "newton_schulz",
    "prodigy",
    "noisy_sgd",
    "novograd",
    "polyak_sgd",
    "proximal_weight_decay",
    "radam",
    "ranger",
    "rmsprop",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_cocob",
    "scale_by_dadapt_adam",
    "scale_by_adan",
    "scale_by_belief",
    "scale_by_delay_compensation",
    "scale_by_dog",
    "scale_by_dowg",
    "scale_by_ftml",
    "scale_by_ftrl",
    "scale_by_lars",
    "scale_by_lion",
    "scale_by_nadam",
    "scale_by_polyak",
    "scale_by_prodigy",
    "scale_by_novograd",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_sign",
    "scale_by_signum",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "sgd",
    "sgdp",
    "sgld",
    "signsgd",
    "signum",
    "yogi",
]
