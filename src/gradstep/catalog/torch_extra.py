"""Registry entries of the rules torch.optim has and the other areas do not: ASGD
and Rprop. (torch's SparseAdam is a class of the torch front only: see
:class:`gradstep.torch.SparseAdam`.)"""

from .._core.registry import OptimizerSpec
from ..rules.asgd import asgd
from ..rules.rprop import rprop

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "asgd",
        asgd,
        "asgd",
        "SGD with a decaying step size and averaged iterates.",
        frozenset({"elementwise"}),
        (
            "Polyak & Juditsky (1992): Acceleration of Stochastic Approximation by "
            "Averaging. SIAM Journal on Control and Optimization 30",
            "Bottou (2012): Stochastic Gradient Descent Tricks. Neural Networks: Tricks "
            "of the Trade, Springer",
        ),
        fixtures=("torch.optim.ASGD",),
        test_hyperparams={"learning_rate": 0.05, "lambd": 1e-3},
        rosenbrock_hyperparams={"learning_rate": 1e-3, "lambd": 1e-4},
        torch_equivalent=("ASGD", {"lr": 0.05, "lambd": 1e-3}),
    ),
    OptimizerSpec(
        "rprop",
        rprop,
        "rprop",
        "Per-element step sizes adapted from gradient sign changes (iRprop-).",
        frozenset({"elementwise"}),
        (
            "Riedmiller & Braun (1993): A Direct Adaptive Method for Faster "
            "Backpropagation Learning: The RPROP Algorithm. IEEE ICNN",
            "Igel & Hüsken (2000): Improving the Rprop Learning Algorithm. NC 2000",
        ),
        fixtures=("torch.optim.Rprop",),
        test_hyperparams={"initial_step_size": 0.01},
        rosenbrock_hyperparams={"initial_step_size": 1e-3},
        torch_equivalent=("Rprop", {"lr": 0.01}),
    ),
)
