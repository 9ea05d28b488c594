"""Registry entries of the optimizers users import from optax, pytorch-optimizer and
timm next: AdaBelief, Yogi, Adan."""

from .._core.registry import OptimizerSpec
from ..rules.adabelief import adabelief
from ..rules.adan import adan
from ..rules.yogi import yogi

_ELEMENTWISE = frozenset({"elementwise"})

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "adabelief",
        adabelief,
        "adabelief",
        "Adam whose second moment tracks the gradient's deviation from its mean.",
        _ELEMENTWISE,
        (
            "Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan (2020): AdaBelief "
            "Optimizer: Adapting Stepsizes by the Belief in Observed Gradients. NeurIPS, "
            "arXiv:2010.07468",
        ),
        fixtures=("optax.adabelief", "pytorch_optimizer.AdaBelief"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 5e-3},
    ),
    OptimizerSpec(
        "yogi",
        yogi,
        "yogi",
        "Adam whose second moment moves additively, by at most (1-beta2) g^2.",
        _ELEMENTWISE,
        (
            "Zaheer, Reddi, Sachan, Kale & Kumar (2018): Adaptive Methods for Nonconvex "
            "Optimization. NeurIPS",
        ),
        fixtures=("optax.yogi", "pytorch_optimizer.Yogi"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 5e-3},
    ),
    OptimizerSpec(
        "adan",
        adan,
        "adan",
        "Adaptive Nesterov momentum from moments of the gradient and of its change.",
        _ELEMENTWISE,
        (
            "Xie, Zhou, Li, Lin & Yan (2024): Adan: Adaptive Nesterov Momentum Algorithm for "
            "Faster Optimizing Deep Models. IEEE TPAMI, arXiv:2208.06677",
        ),
        fixtures=("optax.adan", "pytorch_optimizer.Adan"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 5e-3},
    ),
)
