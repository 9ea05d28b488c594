"""Registry entries of the layer-wise rules: LARS, LAMB and MXNet 1.x's LBSGD.

Each needs a per-tensor reduction over more than the incoming update (the norm of
the parameter as well), so none is declared ``"elementwise"``: chains with them run
on the eager engine (LBSGD's warm-up strategies other than ``"lars"`` are
elementwise and run fused when the NumPy front can).
"""

from .._core.registry import OptimizerSpec
from ..rules.lamb import lamb
from ..rules.lars import lars
from ..rules.lbsgd import lbsgd
from ..schedules import polynomial_decay

_LARS_PAPER = (
    "You, Gitman & Ginsburg (2017): Large Batch Training of Convolutional Networks. "
    "arXiv:1708.03888",
)
_REDUCTION = frozenset({"reduction"})

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "lars",
        lars,
        "lars",
        "SGD with momentum, each tensor's step scaled by its trust ratio.",
        _REDUCTION,
        _LARS_PAPER,
        fixtures=("optax.lars", "mxnet.optimizer.LARS"),
        # objax's prescribed decay lr (1 - t/T)^2: normalised steps need a decaying rate
        test_hyperparams={
            "learning_rate": polynomial_decay(1.0, 0.0, 2, 500),
            "trust_coefficient": 0.1,
        },
        rosenbrock_hyperparams={"learning_rate": polynomial_decay(1.0, 0.0, 2, 5000)},
    ),
    OptimizerSpec(
        "lamb",
        lamb,
        "lamb",
        "Adam's direction with decoupled decay, scaled per tensor by a trust ratio.",
        _REDUCTION,
        (
            "You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh (2020): "
            "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes. ICLR, "
            "arXiv:1904.00962",
        ),
        fixtures=("optax.lamb", "mxnet.optimizer.LAMB"),
        test_hyperparams={"learning_rate": polynomial_decay(0.1, 0.0, 2, 500)},
        rosenbrock_hyperparams={"learning_rate": polynomial_decay(0.02, 0.0, 2, 5000)},
    ),
    OptimizerSpec(
        "lbsgd",
        lbsgd,
        "lbsgd",
        "MXNet 1.x large-batch SGD: gradient accumulation with a warmed-up rate.",
        _REDUCTION,
        _LARS_PAPER
        + (
            "Goyal, Dollar, Girshick, Noordhuis, Wesolowski, Kyrola, Tulloch, Jia & He (2017): "
            "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour. arXiv:1706.02677",
        ),
        fixtures=("mxnet.optimizer.LBSGD",),
        test_hyperparams={
            "learning_rate": 0.05,
            "momentum": 0.9,
            "batch_scale": 2,
            "warmup_epochs": 1,
            "updates_per_epoch": 10,
        },
        rosenbrock_hyperparams={"learning_rate": 5e-4},
    ),
)
