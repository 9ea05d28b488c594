"""Registry entries of optax's long tail: Fromage, SM3, optimistic gradient descent,
optimistic Adam, noisy SGD and Polyak SGD (each recorded against optax 0.2.8)."""

from .._core.registry import OptimizerSpec
from ..rules.fromage import fromage
from ..rules.noisy_sgd import noisy_sgd
from ..rules.optimistic import optimistic_adam, optimistic_gradient_descent
from ..rules.polyak import polyak_sgd
from ..rules.sm3 import sm3
from ..schedules import polynomial_decay

_OPTIMISM = (
    "Daskalakis, Ilyas, Syrgkanis & Zeng (2018): Training GANs with Optimism. ICLR, "
    "arXiv:1711.00141"
)

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "fromage",
        fromage,
        "fromage",
        "Per-tensor steps relative to the parameter norm, with a norm-preserving shrink.",
        frozenset({"reduction"}),
        (
            "Bernstein, Vahdat, Yue & Liu (2020): On the distance between two neural "
            "networks and the stability of learning. NeurIPS, arXiv:2002.03432",
        ),
        fixtures=("optax.fromage",),
        # relative steps grow a parameter that starts at zero geometrically, then
        # need a decaying rate to settle
        test_hyperparams={"learning_rate": polynomial_decay(0.2, 0.0, 2, 500)},
        rosenbrock_hyperparams={"learning_rate": polynomial_decay(0.05, 0.0, 2, 5000)},
    ),
    OptimizerSpec(
        "sm3",
        sm3,
        "sm3",
        "AdaGrad-like second moments kept as one accumulator per tensor axis, with momentum.",
        frozenset({"reduction"}),
        (
            "Anil, Gupta, Koren & Singer (2019): Memory-Efficient Adaptive Optimization. "
            "NeurIPS, arXiv:1901.11150",
        ),
        fixtures=("optax.sm3", "optax.scale_by_sm3"),
        test_hyperparams={"learning_rate": 0.5},
    ),
    OptimizerSpec(
        "optimistic_gradient_descent",
        optimistic_gradient_descent,
        "optimistic",
        "Gradient steps extrapolated with the change of the gradient (optimism).",
        frozenset({"elementwise"}),
        (_OPTIMISM,),
        fixtures=("optax.optimistic_gradient_descent",),
        test_hyperparams={"learning_rate": 0.1},
        rosenbrock_hyperparams={"learning_rate": 8e-4},
    ),
    OptimizerSpec(
        "optimistic_adam",
        optimistic_adam,
        "optimistic",
        "Adam's direction extrapolated with its change since the last step.",
        frozenset({"elementwise"}),
        (
            _OPTIMISM,
            "Kingma & Ba (2015): Adam: A Method for Stochastic Optimization. ICLR, arXiv:1412.6980",
        ),
        fixtures=("optax.optimistic_adam_v2", "optax.optimistic_adam"),
        test_hyperparams={"learning_rate": 0.03},
        rosenbrock_hyperparams={"learning_rate": 5e-3},
    ),
    OptimizerSpec(
        "noisy_sgd",
        noisy_sgd,
        "noisy_sgd",
        "SGD on the gradient plus Gaussian noise whose variance decays as t^-gamma.",
        frozenset({"stochastic"}),
        (
            "Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens (2015): Adding "
            "Gradient Noise Improves Learning for Very Deep Networks. arXiv:1511.06807",
        ),
        fixtures=("optax.noisy_sgd",),
        # nearly noiseless: the property tests measure minimisation
        test_hyperparams={"learning_rate": 0.05, "eta": 1e-12, "seed": 0},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
    ),
    OptimizerSpec(
        "polyak_sgd",
        polyak_sgd,
        "polyak",
        "SGD stepped by (loss - f*) / |g|^2, capped (the stochastic Polyak step).",
        frozenset({"reduction", "needs_value"}),
        (
            "Loizou, Vaswani, Laradji & Lacoste-Julien (2021): Stochastic Polyak Step-size "
            "for SGD: An Adaptive Learning Rate for Fast Convergence. AISTATS, "
            "arXiv:2002.10542",
        ),
        fixtures=("optax.polyak_sgd",),
        test_hyperparams={"max_learning_rate": 1.0},
    ),
)
