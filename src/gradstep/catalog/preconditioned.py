"""Registry entries of the preconditioned (matrix) rules, Shampoo, SOAP and PSGD-Kron, and the
sharpness-aware wrapper SAM.

Their matrix work (eigendecompositions, QR, inverse roots) runs per tensor on the eager engines
of every front, so none is declared ``"elementwise"``.
"""

from .._core.registry import OptimizerSpec
from ..rules.psgd_kron import psgd_kron
from ..rules.sam import sam
from ..rules.shampoo import shampoo
from ..rules.soap import soap

_SHAMPOO_PAPER = (
    "Gupta, Koren & Singer (2018): Shampoo: Preconditioned Stochastic Tensor "
    "Optimization. ICML, arXiv:1802.09568"
)

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "shampoo",
        shampoo,
        "shampoo",
        "Per-axis inverse-root preconditioning in blocks, grafted to a diagonal method's step.",
        frozenset({"reduction"}),
        (
            _SHAMPOO_PAPER,
            "Anil, Gupta, Koren, Regan & Singer (2020): Scalable Second Order Optimization "
            "for Deep Learning. arXiv:2002.09018",
        ),
        fixtures=("pytorch_optimizer.ScalableShampoo",),
        # blocks (the test problems' 4-long axes split 3 + 1), a start, and roots and
        # statistics not every step: every front and wrapper runs those code paths
        test_hyperparams={
            "learning_rate": 0.1,
            "graft": "adagrad",
            "block_size": 3,
            "start_preconditioning_step": 2,
            "preconditioning_compute_steps": 2,
            "statistics_compute_steps": 2,
        },
        # a vector gets no matrix: the grafted AdaGrad with summed momentum
        rosenbrock_hyperparams={"learning_rate": 0.05},
    ),
    OptimizerSpec(
        "soap",
        soap,
        "soap",
        "Adam in the eigenbasis of Shampoo's preconditioner, refreshed by power iteration.",
        frozenset({"reduction"}),
        (
            "Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade (2025): "
            "SOAP: Improving and Stabilizing Shampoo using Adam. ICLR, arXiv:2409.11321",
            _SHAMPOO_PAPER,
        ),
        fixtures=("pytorch_optimizer.SOAP",),
        # the test problems have a gradient column that is always zero: in its rotated
        # coordinate both moments are rounding noise, which epsilon 1e-8 would turn
        # into steps that differ between libraries (see the rule's docstring)
        test_hyperparams={"learning_rate": 0.05, "weight_decay": 0.0, "epsilon": 1e-3},
    ),
    OptimizerSpec(
        "psgd_kron",
        psgd_kron,
        "psgd_kron",
        "Momentum preconditioned by Kronecker factors fitted on a Lie group (PSGD-Kron).",
        # random probe vectors; per-tensor norms, solves and Gram matrices
        frozenset({"stochastic", "reduction"}),
        (
            "Li (2018): Preconditioned Stochastic Gradient Descent. IEEE TNNLS 29(5), "
            "arXiv:1512.04202",
            "Li (2022): Black Box Lie Group Preconditioners for SGD. arXiv:2211.04422",
        ),
        # the generic replay covers steps before the first preconditioner update;
        # tests/conformance/test_psgd_kron.py replays the fitted steps with the
        # reference's recorded probe vectors (fixtures/psgd_kron/)
        fixtures=("kron_torch.Kron",),
        # the step's RMS is clipped, not decayed: a constant rate ends in a ripple of
        # its size around the minimum
        test_hyperparams={"learning_rate": 0.01, "seed": 0},
    ),
    OptimizerSpec(
        "sam",
        sam,
        "sam",
        "Sharpness-aware minimisation (SAM, ASAM) around any base rule.",
        # a closure step evaluates the gradient twice; without one, update()
        # alternates between the ascent and the descent
        frozenset({"needs_closure", "reduction"}),
        (
            "Foret, Kleiner, Mobahi & Neyshabur (2021): Sharpness-Aware Minimization for "
            "Efficiently Improving Generalization. ICLR, arXiv:2010.01412",
            "Kwon, Kim, Park & Choi (2021): ASAM: Adaptive Sharpness-Aware Minimization for "
            "Scale-Invariant Learning of Deep Neural Networks. ICML, arXiv:2102.11600",
        ),
        fixtures=("optax.contrib.sam",),
        test_hyperparams={"learning_rate": 0.1, "rho": 0.01},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
    ),
)
