"""Registry entries of the rules MXNet's optimizer guide adds: signSGD, Signum, SGLD,
FTML, FTRL, DC-ASGD and NAdam (the MXNet, torch and optax forms)."""

from .._core.registry import OptimizerSpec
from ..rules.delay import dcasgd
from ..rules.ftml import ftml
from ..rules.ftrl import ftrl
from ..rules.langevin import sgld
from ..rules.nadam import nadam
from ..rules.sign import signsgd, signum

_ELEMENTWISE = frozenset({"elementwise"})
_SIGNSGD = (
    "Bernstein, Wang, Azizzadenesheli & Anandkumar (2018): signSGD: Compressed "
    "Optimisation for Non-Convex Problems. ICML, arXiv:1802.04434",
)

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "signsgd",
        signsgd,
        "sign",
        "Steps of the learning rate against the sign of each gradient element.",
        _ELEMENTWISE,
        _SIGNSGD,
        fixtures=("mxnet.optimizer.Signum",),
        # a sign step never shrinks: the learning rate sets how close it gets
        test_hyperparams={"learning_rate": 0.01},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
    ),
    OptimizerSpec(
        "signum",
        signum,
        "sign",
        "The sign of a gradient moving average, with coupled and decoupled decay.",
        _ELEMENTWISE,
        _SIGNSGD,
        fixtures=("mxnet.optimizer.Signum",),
        test_hyperparams={"learning_rate": 0.01, "momentum": 0.9},
        rosenbrock_hyperparams={"learning_rate": 1e-3, "momentum": 0.9},
    ),
    OptimizerSpec(
        "sgld",
        sgld,
        "langevin",
        "Gradient steps plus Gaussian noise of variance lr: posterior sampling.",
        frozenset({"stochastic"}),
        (
            "Welling & Teh (2011): Bayesian Learning via Stochastic Gradient Langevin "
            "Dynamics. ICML",
        ),
        fixtures=("mxnet.optimizer.SGLD",),
        # at temperature 1 SGLD samples exp(-loss) and never converges; a cold
        # temperature makes the property tests' minimisation meaningful
        test_hyperparams={"learning_rate": 0.1, "temperature": 1e-8, "seed": 0},
        rosenbrock_hyperparams={"learning_rate": 2e-3, "temperature": 1e-8, "seed": 0},
    ),
    OptimizerSpec(
        "ftml",
        ftml,
        "ftml",
        "Follow the moving leader: FTRL with Adam-like weighting and regulariser.",
        _ELEMENTWISE,
        ("Zheng & Kwok (2017): Follow the Moving Leader in Deep Learning. ICML, PMLR 70",),
        fixtures=("mxnet.optimizer.FTML",),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 0.02},
    ),
    OptimizerSpec(
        "ftrl",
        ftrl,
        "ftrl",
        "FTRL-Proximal: per-coordinate rates with L1 that zeroes weights.",
        _ELEMENTWISE,
        ("McMahan et al. (2013): Ad Click Prediction: a View from the Trenches. KDD",),
        fixtures=("mxnet.optimizer.Ftrl",),
        # L1 shrinks the minimiser; the convergence properties need the plain loss
        test_hyperparams={"learning_rate": 1.0, "lamda1": 0.0},
        rosenbrock_hyperparams={"learning_rate": 0.2, "lamda1": 0.0},
    ),
    OptimizerSpec(
        "dcasgd",
        dcasgd,
        "delay",
        "SGD with delay compensation for asynchronous training.",
        _ELEMENTWISE,
        (
            "Zheng et al. (2017): Asynchronous Stochastic Gradient Descent with Delay "
            "Compensation. ICML, arXiv:1609.08326",
        ),
        fixtures=("mxnet.optimizer.DCASGD",),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
    ),
    OptimizerSpec(
        "nadam",
        nadam,
        "nadam",
        "Adam with Nesterov momentum and a warming momentum schedule.",
        _ELEMENTWISE,
        ("Dozat (2016): Incorporating Nesterov Momentum into Adam. ICLR workshop",),
        fixtures=("mxnet.optimizer.Nadam", "torch.optim.NAdam", "optax.nadam"),
        test_hyperparams={"learning_rate": 0.05},
        rosenbrock_hyperparams={"learning_rate": 0.02},
        torch_equivalent=("NAdam", {"lr": 0.05}),
    ),
)
