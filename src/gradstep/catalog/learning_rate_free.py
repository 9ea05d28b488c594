"""Registry entries of the learning-rate-free rules: Prodigy, D-Adaptation, DoG, DoWG,
COCOB and Mechanic.

Each estimates its step size from sums over every element of every tensor (a global
reduction with scalar state, :class:`~gradstep._core.global_reduction.GlobalReduction`),
so none is declared ``"elementwise"``; the numba and Triton engines still run each as a
reduction pass plus one fused elementwise pass. COCOB bets per coordinate: it is
elementwise. Mechanic wraps a whole rule (:class:`~gradstep._core.mechanic.Mechanize`,
which reads the raw gradient beside the rule's update); the fused engines run it as a
global reduction stage after the rule's stages when they can compile the rule.
"""

from .._core.registry import OptimizerSpec
from ..rules.cocob import cocob
from ..rules.dadapt_adagrad import dadapt_adagrad
from ..rules.dadapt_adam import dadapt_adam
from ..rules.dadapt_sgd import dadapt_sgd
from ..rules.dog import dog
from ..rules.dowg import dowg
from ..rules.mechanic import mechanic
from ..rules.prodigy import prodigy

_REDUCTION = frozenset({"reduction"})
_DADAPTATION = (
    "Defazio & Mishchenko (2023): Learning-Rate-Free Learning by D-Adaptation. ICML, "
    "arXiv:2301.07733",
)

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "prodigy",
        prodigy,
        "prodigy",
        "Adam stepped by a running estimate of the distance to the solution.",
        _REDUCTION,
        (
            "Mishchenko & Defazio (2024): Prodigy: An Expeditiously Adaptive Parameter-Free "
            "Learner. ICML, arXiv:2306.06101",
        ),
        fixtures=("prodigyopt.Prodigy", "optax.contrib.prodigy"),
        test_hyperparams={"learning_rate": 1.0, "d0": 1e-3},
        # the estimated step oscillates across the curved valley: a tenth of it settles
        rosenbrock_hyperparams={"learning_rate": 0.1},
    ),
    OptimizerSpec(
        "dadapt_adam",
        dadapt_adam,
        "dadapt_adam",
        "Adam stepped by a lower bound on the distance to the solution (D-Adaptation).",
        _REDUCTION,
        _DADAPTATION,
        fixtures=("dadaptation.DAdaptAdam", "optax.contrib.dadapt_adamw"),
        test_hyperparams={"learning_rate": 1.0, "d0": 1e-3},
        rosenbrock_hyperparams={"learning_rate": 0.1},
    ),
    OptimizerSpec(
        "dadapt_sgd",
        dadapt_sgd,
        "dadapt_sgd",
        "Dual-averaging SGD stepped by a lower bound on the distance to the solution.",
        _REDUCTION,
        _DADAPTATION,
        fixtures=("dadaptation.DAdaptSGD",),
        # without momentum the estimated step overshoots Rosenbrock's valley
        test_hyperparams={"learning_rate": 1.0, "d0": 1e-3, "momentum": 0.9},
    ),
    OptimizerSpec(
        "dadapt_adagrad",
        dadapt_adagrad,
        "dadapt_adagrad",
        "AdaGrad-weighted dual averaging stepped by a distance estimate.",
        _REDUCTION,
        _DADAPTATION,
        fixtures=("dadaptation.DAdaptAdaGrad",),
        test_hyperparams={"learning_rate": 1.0, "d0": 1e-3},
    ),
    OptimizerSpec(
        "dog",
        dog,
        "dog",
        "SGD stepped by the largest distance travelled over the summed gradient norms.",
        _REDUCTION,
        (
            "Ivgi, Hinder & Carmon (2023): DoG is SGD's Best Friend: A Parameter-Free Dynamic "
            "Step Size Schedule. ICML, arXiv:2302.12022",
        ),
        fixtures=("optax.contrib.dog",),
        test_hyperparams={"init_step_value": 1e-3},
    ),
    OptimizerSpec(
        "dowg",
        dowg,
        "dowg",
        "SGD stepped by the squared distance travelled over distance-weighted gradient norms.",
        _REDUCTION,
        (
            "Khaled, Mishchenko & Jin (2023): DoWG Unleashed: An Efficient Universal "
            "Parameter-Free Gradient Descent Method. NeurIPS, arXiv:2305.16284",
        ),
        fixtures=("optax.contrib.dowg",),
        test_hyperparams={},
    ),
    OptimizerSpec(
        "cocob",
        cocob,
        "cocob",
        "Per-coordinate coin betting on the gradient's sign (COCOB-Backprop).",
        frozenset({"elementwise"}),
        (
            "Orabona & Tommasi (2017): Training Deep Networks without Learning Rates Through "
            "Coin Betting. NeurIPS, arXiv:1705.07795",
        ),
        fixtures=("optax.contrib.cocob",),
        test_hyperparams={},
    ),
    OptimizerSpec(
        "mechanic",
        mechanic,
        "mechanic",
        "Adam whose cumulative step is rescaled by a learned scale (Mechanic).",
        _REDUCTION,
        (
            "Cutkosky, Defazio & Mehta (2023): Mechanic: A Learning Rate Tuner. NeurIPS, "
            "arXiv:2306.00144",
        ),
        fixtures=("optax.contrib.mechanize",),
        test_hyperparams={},
        # the learned scale follows the curved valley slowly; shorter memories help
        rosenbrock_hyperparams={"beta1": 0.95, "beta2": 0.99},
    ),
)
