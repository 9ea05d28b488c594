"""Registry entries of the classic rules: SGD, momentum, AdaGrad, RMSProp, AdaDelta,
Adam, AdamW, AdaMax."""

from .._core.registry import OptimizerSpec
from ..rules import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    momentum,
    nesterov_momentum,
    rmsprop,
    sgd,
)

_ADAM_PAPER = (
    "Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR, arXiv:1412.6980",
)
_ELEMENTWISE = frozenset({"elementwise", "nan_policy"})

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "sgd",
        sgd,
        "sgd",
        "Stochastic gradient descent.",
        _ELEMENTWISE,
        ("Robbins & Monro (1951): A Stochastic Approximation Method. Ann. Math. Statist. 22",),
        fixtures=("torch.optim.SGD", "optax.sgd", "mxnet.optimizer.SGD"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
        torch_equivalent=("SGD", {"lr": 0.05}),
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
        fixtures=("torch.optim.SGD", "optax.sgd", "mxnet.optimizer.SGD"),
        test_hyperparams={"learning_rate": 0.02, "momentum": 0.9},
        rosenbrock_hyperparams={"learning_rate": 2e-4, "momentum": 0.9},
        torch_equivalent=("SGD", {"lr": 0.02, "momentum": 0.9}),
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
        fixtures=("torch.optim.SGD", "optax.sgd", "mxnet.optimizer.NAG"),
        test_hyperparams={"learning_rate": 0.02, "momentum": 0.9},
        rosenbrock_hyperparams={"learning_rate": 2e-4, "momentum": 0.9},
        torch_equivalent=("SGD", {"lr": 0.02, "momentum": 0.9, "nesterov": True}),
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
        fixtures=("torch.optim.Adagrad", "optax.adagrad", "mxnet.optimizer.AdaGrad"),
        test_hyperparams={"learning_rate": 0.5},
        rosenbrock_hyperparams={"learning_rate": 0.2},
        torch_equivalent=("Adagrad", {"lr": 0.5, "eps": 1e-6}),
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
        fixtures=("torch.optim.RMSprop", "optax.rmsprop", "mxnet.optimizer.RMSProp"),
        test_hyperparams={"learning_rate": 0.01},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
        torch_equivalent=("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    ),
    OptimizerSpec(
        "adadelta",
        adadelta,
        "adadelta",
        "Unit-correct steps from two running averages.",
        _ELEMENTWISE,
        ("Zeiler (2012): ADADELTA: An Adaptive Learning Rate Method. arXiv:1212.5701",),
        fixtures=("torch.optim.Adadelta", "optax.adadelta", "mxnet.optimizer.AdaDelta"),
        test_hyperparams={"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-3},
        rosenbrock_hyperparams={"learning_rate": 0.3, "rho": 0.9, "epsilon": 1e-6},
        torch_equivalent=("Adadelta", {"lr": 1.0, "rho": 0.9, "eps": 1e-3}),
    ),
    OptimizerSpec(
        "adam",
        adam,
        "adam",
        "Adaptive moment estimation.",
        _ELEMENTWISE,
        _ADAM_PAPER,
        fixtures=("torch.optim.Adam", "optax.adam", "optax.amsgrad", "mxnet.optimizer.Adam"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 0.02},
        torch_equivalent=("Adam", {"lr": 0.05}),
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
        torch_equivalent=("AdamW", {"lr": 0.05, "weight_decay": 1e-4}),
    ),
    OptimizerSpec(
        "adamax",
        adamax,
        "adamax",
        "Adam with the infinity norm.",
        _ELEMENTWISE,
        _ADAM_PAPER,
        fixtures=("torch.optim.Adamax", "optax.adamax", "mxnet.optimizer.Adamax"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 0.02},
        torch_equivalent=("Adamax", {"lr": 0.05}),
    ),
)
