"""Registry entries of the recent first-order rules: ADOPT, AdEMAMix and its
simplified form, the cautious variants of AdamW and Lion, LaProp, StableAdamW, MARS
and CAME."""

from .._core.registry import OptimizerSpec
from ..rules.ademamix import ademamix, simplified_ademamix
from ..rules.adopt import adopt
from ..rules.came import came
from ..rules.cautious import cautious_adamw, cautious_lion
from ..rules.laprop import laprop
from ..rules.mars import mars
from ..rules.stable_adamw import stable_adamw

_CAUTIOUS_PAPER = (
    "Liang, Chen, Liu & Liu (2024): Cautious Optimizers: Improving Training with One Line "
    "of Code. arXiv:2411.16085"
)
_ADEMAMIX_PAPER = (
    "Pagliardini, Ablin & Grangier (2025): The AdEMAMix Optimizer: Better, Faster, Older. "
    "ICLR, arXiv:2409.03137"
)

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "adopt",
        adopt,
        "adopt",
        "Adam normalising each gradient by the second moment of the steps before it.",
        frozenset({"elementwise"}),
        (
            "Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki, "
            "Iwasawa & Matsuo (2024): ADOPT: Modified Adam Can Converge with Any beta2 "
            "with the Optimal Rate. NeurIPS, arXiv:2411.02853",
        ),
        fixtures=("pytorch_optimizer.ADOPT", "optax.contrib.adopt"),
        test_hyperparams={"learning_rate": 0.01, "beta2": 0.99},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "ademamix",
        ademamix,
        "ademamix",
        "Adam whose step mixes a fast and a slow (long-memory) momentum.",
        frozenset({"elementwise"}),
        (_ADEMAMIX_PAPER,),
        fixtures=(
            "pytorch_optimizer.AdEMAMix",
            "optax.contrib.ademamix",
            "bitsandbytes.AdEMAMix",
        ),
        test_hyperparams={"learning_rate": 0.05, "beta3": 0.99, "alpha": 2.0},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "simplified_ademamix",
        simplified_ademamix,
        "ademamix",
        "AdEMAMix with one undamped momentum plus the weighted current gradient.",
        frozenset({"elementwise"}),
        (
            "Morwani, Vyas, Kakade, Shapira & Brandfonbrener (2025): Connections between "
            "Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD Variants. "
            "arXiv:2502.02431",
            _ADEMAMIX_PAPER,
        ),
        fixtures=("optax.contrib.simplified_ademamix",),
        test_hyperparams={"learning_rate": 0.005, "beta1": 0.9, "alpha": 1.0},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "cautious_adamw",
        cautious_adamw,
        "cautious",
        "AdamW stepping only where its direction agrees in sign with the gradient.",
        frozenset({"reduction"}),
        (
            _CAUTIOUS_PAPER,
            "Loshchilov & Hutter (2019): Decoupled Weight Decay Regularization. "
            "ICLR, arXiv:1711.05101",
        ),
        fixtures=("timm.AdamWLegacy",),
        test_hyperparams={"learning_rate": 0.05, "weight_decay": 0.0},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "cautious_lion",
        cautious_lion,
        "cautious",
        "Lion stepping only where its sign agrees with the gradient.",
        frozenset({"reduction"}),
        (
            _CAUTIOUS_PAPER,
            "Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu & Le (2023): "
            "Symbolic Discovery of Optimization Algorithms. NeurIPS, arXiv:2302.06675",
        ),
        fixtures=("timm.Lion", "pytorch_optimizer.Lion"),
        test_hyperparams={"learning_rate": 0.01},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "laprop",
        laprop,
        "laprop",
        "Momentum over RMSProp-normalised gradients (Adam with decoupled moments).",
        frozenset({"elementwise"}),
        (
            "Ziyin, Wang & Ueda (2020): LaProp: Separating Momentum and Adaptivity in "
            "Adam. arXiv:2002.04839",
        ),
        fixtures=("pytorch_optimizer.LaProp",),
        test_hyperparams={"learning_rate": 0.05},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "stable_adamw",
        stable_adamw,
        "stable_adamw",
        "AdamW with each tensor's step divided by the RMS of g^2/v (update clipping).",
        frozenset({"reduction"}),
        (
            "Wortsman, Dettmers, Zettlemoyer, Morcos, Farhadi & Schmidt (2023): Stable and "
            "low-precision training for large-scale vision-language models. NeurIPS, "
            "arXiv:2304.13013",
        ),
        fixtures=("pytorch_optimizer.StableAdamW",),
        test_hyperparams={"learning_rate": 0.05, "weight_decay": 0.0},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "mars",
        mars,
        "mars",
        "AdamW (or Lion) on the gradient corrected by its change, clipped per tensor.",
        frozenset({"reduction"}),
        (
            "Yuan, Liu, Wu, Zhou & Gu (2024): MARS: Unleashing the Power of Variance "
            "Reduction for Training Large Models. arXiv:2411.10438",
        ),
        fixtures=("pytorch_optimizer.MARS",),
        test_hyperparams={"learning_rate": 0.05},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "came",
        came,
        "came",
        "Adafactor's factored moments with the momentum scaled by its confidence.",
        frozenset({"reduction"}),
        (
            "Luo, Ren, Zheng, Jiang, Jiang & You (2023): CAME: Confidence-guided "
            "Adaptive Memory Efficient Optimization. ACL, arXiv:2307.02047",
        ),
        fixtures=("came_pytorch.CAME", "pytorch_optimizer.CAME"),
        test_hyperparams={"learning_rate": 0.01},
        torch_equivalent=None,
    ),
)
