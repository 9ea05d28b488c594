"""Registry entries of Adam-mini (one second moment per block of parameters) and
Sophia (a clipped step over an average of diagonal Hessian estimates)."""

from .._core.registry import OptimizerSpec
from ..rules.adam_mini import adam_mini
from ..rules.sophia import sophia

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "adam_mini",
        adam_mini,
        "adam_mini",
        "Adam with one second moment per block (per tensor or per group of rows).",
        # the block means are reductions over slices of each tensor, with per-block
        # state: the stage runs on the eager path of every front
        frozenset({"reduction"}),
        (
            "Zhang, Chen, Li, Ding, Wu, Kingma, Ye, Luo & Sun (2025): Adam-mini: Use "
            "Fewer Learning Rates To Gain More. ICLR, arXiv:2406.16793",
        ),
        fixtures=("pytorch_optimizer.AdamMini", "adam_mini.Adam_mini"),
        test_hyperparams={"learning_rate": 0.05, "weight_decay": 0.0},
    ),
    OptimizerSpec(
        "sophia",
        sophia,
        "sophia",
        "Momentum over an average of Hessian-diagonal estimates, clipped per element.",
        # elementwise math behind a hook both fused engines run as a host step around
        # their launch (Triton's on the device); the estimate is an extra input of the
        # step (hessian= or hvp=), without which the average stays as it is (the
        # generic tests run that gradient-only form)
        frozenset(),
        (
            "Liu, Li, Hall, Liang & Ma (2024): Sophia: A Scalable Stochastic Second-order "
            "Optimizer for Language Model Pre-training. ICLR, arXiv:2305.14342",
        ),
        fixtures=("pytorch_optimizer.SophiaH", "optax.contrib.sophia"),
        test_hyperparams={"learning_rate": 0.01},
    ),
)
