"""Registry entries of the second-order and modern rules: L-BFGS, RAdam, Lion,
Adafactor and Muon."""

from .._core.registry import OptimizerSpec
from ..rules.adafactor import adafactor
from ..rules.lbfgs import lbfgs
from ..rules.lion import lion
from ..rules.muon import muon
from ..rules.radam import radam

_ADAM_PAPER = (
    "Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR, arXiv:1412.6980"
)

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "lbfgs",
        lbfgs,
        "lbfgs",
        "Limited-memory BFGS with an optional strong-Wolfe line search.",
        # the full algorithm re-evaluates the loss through a closure; with max_iter=1
        # and no line search (the test settings) it also runs on gradients alone
        frozenset({"needs_closure", "reduction"}),
        (
            "Nocedal (1980): Updating Quasi-Newton Matrices with Limited Storage. "
            "Mathematics of Computation 35",
            "Liu & Nocedal (1989): On the limited memory BFGS method for large scale "
            "optimization. Mathematical Programming 45",
        ),
        fixtures=("torch.optim.LBFGS",),
        test_hyperparams={"learning_rate": 1.0, "max_iter": 1, "history_size": 10},
        torch_equivalent=("LBFGS", {"lr": 1.0, "max_iter": 1, "history_size": 10}),
    ),
    OptimizerSpec(
        "radam",
        radam,
        "radam",
        "Adam with a rectified, warmup-free adaptive learning rate.",
        frozenset({"elementwise"}),
        (
            "Liu, Jiang, He, Chen, Liu, Gao & Han (2020): On the Variance of the Adaptive "
            "Learning Rate and Beyond. ICLR, arXiv:1908.03265",
            _ADAM_PAPER,
        ),
        fixtures=("torch.optim.RAdam", "optax.radam"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 5e-3},
        torch_equivalent=("RAdam", {"lr": 0.05}),
    ),
    OptimizerSpec(
        "lion",
        lion,
        "lion",
        "Sign of an interpolated momentum (evolved sign momentum).",
        frozenset({"elementwise"}),
        (
            "Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu & Le (2023): "
            "Symbolic Discovery of Optimization Algorithms. NeurIPS, arXiv:2302.06675",
        ),
        fixtures=("optax.lion",),
        test_hyperparams={"learning_rate": 0.01},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "adafactor",
        adafactor,
        "adafactor",
        "Factored second moments and relative step sizes.",
        frozenset({"reduction"}),
        (
            "Shazeer & Stern (2018): Adafactor: Adaptive Learning Rates with Sublinear "
            "Memory Cost. ICML, arXiv:1804.04235",
        ),
        fixtures=("torch.optim.Adafactor", "optax.adafactor"),
        test_hyperparams={"learning_rate": 0.05, "relative_step": False},
        rosenbrock_hyperparams={"learning_rate": 0.01},
        torch_equivalent=None,
    ),
    OptimizerSpec(
        "muon",
        muon,
        "muon",
        "Newton-Schulz orthogonalised momentum for matrices, AdamW for the rest.",
        frozenset({"reduction"}),
        (
            "Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein (2024): Muon: An "
            "optimizer for hidden layers in neural networks. Blog post",
            "Liu, Su, Yao et al. (2025): Muon is Scalable for LLM Training. arXiv:2502.16982",
        ),
        fixtures=("torch.optim.Muon", "optax.contrib.muon"),
        test_hyperparams={"learning_rate": 0.02, "weight_decay": 0.0},
        rosenbrock_hyperparams=None,
        torch_equivalent=None,
    ),
)
