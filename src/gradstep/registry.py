"""Every public optimizer, registered once.

Tests, the command line and the documentation read this registry; adding an
optimizer is one rule file plus one entry here.

``fixtures`` names the reference implementations whose recorded trajectories the
optimizer must match (``tests/conformance/fixtures``); ``test_hyperparams`` are the
arguments the generic property tests use.
"""

from __future__ import annotations

from ._core.registry import OptimizerSpec, Registry
from .rules import adadelta, adagrad, adam, adamax, adamw, momentum, nesterov_momentum, rmsprop, sgd

REGISTRY = Registry()

_ADAM_PAPER = (
    "Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR, arXiv:1412.6980",
)
_ELEMENTWISE = frozenset({"elementwise", "nan_policy"})

for spec in (
    OptimizerSpec(
        "sgd",
        sgd,
        "sgd",
        "Stochastic gradient descent.",
        _ELEMENTWISE,
        ("Robbins & Monro (1951): A Stochastic Approximation Method. Ann. Math. Statist. 22",),
        fixtures=("torch.optim.SGD", "optax.sgd"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
    ),
    OptimizerSpec(
        "momentum",
        momentum,
        "sgd",
        "SGD with heavy-ball momentum.",
        _ELEMENTWISE,
        (
            "Rumelhart, Hinton & Williams (1986): Learning representations by "
            "back-propagating errors. Nature 323",
        ),
        fixtures=("torch.optim.SGD", "optax.sgd"),
        test_hyperparams={"learning_rate": 0.02, "momentum": 0.9},
        rosenbrock_hyperparams={"learning_rate": 2e-4, "momentum": 0.9},
    ),
    OptimizerSpec(
        "nesterov_momentum",
        nesterov_momentum,
        "sgd",
        "SGD with Nesterov momentum.",
        _ELEMENTWISE,
        (
            "Nesterov (1983): A method for solving the convex programming problem with "
            "convergence rate O(1/k^2). Soviet Math. Dokl. 27",
            "Sutskever, Martens, Dahl & Hinton (2013): On the importance of initialization "
            "and momentum in deep learning. ICML",
        ),
        fixtures=("torch.optim.SGD", "optax.sgd"),
        test_hyperparams={"learning_rate": 0.02, "momentum": 0.9},
        rosenbrock_hyperparams={"learning_rate": 2e-4, "momentum": 0.9},
    ),
    OptimizerSpec(
        "adagrad",
        adagrad,
        "adagrad",
        "Per-element rates from summed squared gradients.",
        _ELEMENTWISE,
        (
            "Duchi, Hazan & Singer (2011): Adaptive Subgradient Methods for Online Learning "
            "and Stochastic Optimization. JMLR 12",
        ),
        fixtures=("torch.optim.Adagrad", "optax.adagrad"),
        test_hyperparams={"learning_rate": 0.5},
        rosenbrock_hyperparams={"learning_rate": 0.2},
    ),
    OptimizerSpec(
        "rmsprop",
        rmsprop,
        "rmsprop",
        "Steps scaled by a running RMS of gradients.",
        _ELEMENTWISE,
        (
            "Tieleman & Hinton (2012): Lecture 6.5 - rmsprop. COURSERA: Neural Networks for "
            "Machine Learning",
            "Graves (2013): Generating Sequences With Recurrent Neural Networks. arXiv:1308.0850",
        ),
        fixtures=("torch.optim.RMSprop", "optax.rmsprop"),
        test_hyperparams={"learning_rate": 0.01},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
    ),
    OptimizerSpec(
        "adadelta",
        adadelta,
        "adadelta",
        "Unit-correct steps from two running averages.",
        _ELEMENTWISE,
        ("Zeiler (2012): ADADELTA: An Adaptive Learning Rate Method. arXiv:1212.5701",),
        fixtures=("torch.optim.Adadelta", "optax.adadelta"),
        test_hyperparams={"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-3},
        rosenbrock_hyperparams={"learning_rate": 0.3, "rho": 0.9, "epsilon": 1e-6},
    ),
    OptimizerSpec(
        "adam",
        adam,
        "adam",
        "Adaptive moment estimation.",
        _ELEMENTWISE,
        _ADAM_PAPER,
        fixtures=("torch.optim.Adam", "optax.adam", "optax.amsgrad"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 0.02},
    ),
    OptimizerSpec(
        "adamw",
        adamw,
        "adam",
        "Adam with decoupled weight decay.",
        _ELEMENTWISE,
        _ADAM_PAPER
        + (
            "Loshchilov & Hutter (2019): Decoupled Weight Decay "
            "Regularization. ICLR, arXiv:1711.05101",
        ),
        fixtures=("torch.optim.AdamW", "optax.adamw"),
        test_hyperparams={"learning_rate": 0.05, "weight_decay": 1e-4},
        rosenbrock_hyperparams={"learning_rate": 0.02, "weight_decay": 0.0},
    ),
    OptimizerSpec(
        "adamax",
        adamax,
        "adamax",
        "Adam with the infinity norm.",
        _ELEMENTWISE,
        _ADAM_PAPER,
        fixtures=("torch.optim.Adamax", "optax.adamax"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 0.02},
    ),
):
    REGISTRY.register(spec)
