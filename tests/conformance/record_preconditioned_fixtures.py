"""Record reference trajectories of the preconditioned rules and optax's long tail:
optax 0.2.8 (fromage, sm3, optimistic_gradient_descent, optimistic_adam and
optimistic_adam_v2, contrib.sam) and pytorch_optimizer (SOAP, ScalableShampoo, and SAM
driven by a closure).

Run from the repository root (needs torch, optax/jax and pytorch_optimizer; the
tests do not)::

    python tests/conformance/record_preconditioned_fixtures.py

Cases go to ``fixtures/preconditioned.json`` in the format of ``record_fixtures.py``
(30 steps, gradients ``h * (w - target) + noise`` at the reference's own iterates,
one column of the first tensor always zero; the problem is
``record_modern_fixtures.problem``) and are replayed by ``test_conformance.py``.
pytorch_optimizer's SAM with its closure goes to ``fixtures/closure/sam.json``,
replayed by ``tests/modern/test_sam.py``: the problem of
``record_modern_fixtures.closure_problem`` (a quadratic plus a Rosenbrock chain, the
loss and gradient computed by the same NumPy code on both sides), the options, and
per ``step(closure)`` the loss at the start and the parameters after it.
``fixtures/MANIFEST-preconditioned.json`` records the library versions.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "preconditioned.json"
SAM_OUT = FIXTURES / "closure" / "sam.json"
MANIFEST = FIXTURES / "MANIFEST-preconditioned.json"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODERN = _load("record_modern_fixtures")
BASE = MODERN.BASE
VECTOR = MODERN.VECTOR
WITH_3D = MODERN.WITH_3D


def problem(seed: int, options: dict):
    """``record_modern_fixtures.problem``; with ``options["dense"]`` the first
    tensor's first column keeps its gradient (see :data:`TORCH_CASES`)."""
    shapes, scale = options.get("shapes", VECTOR), options.get("grad_scale", 1.0)
    w0, grad = MODERN.problem(seed, shapes, scale)
    if not options.get("dense"):
        return w0, grad
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s) for s in shapes]
    target = [rng.normal(size=s) for s in shapes]
    curvature = [rng.uniform(0.5, 2.0, size=s) for s in shapes]
    noise = [[0.1 * rng.normal(size=s) for s in shapes] for _ in range(BASE.STEPS)]

    def dense(k: int, w: list[np.ndarray]) -> list[np.ndarray]:
        return [scale * (c * (x - t) + n) for x, t, c, n in zip(w, target, curvature, noise[k])]

    return w0, dense


# (id, reference, reference kwargs, gradstep rule, gradstep kwargs, options); the
# reference is an optax name, or "scale_by_sm3" for optax's transform chained with
# optax.scale(-learning_rate) (the alias does not expose b2 and eps)
OPTAX_CASES = [
    ("fromage", "fromage", {"learning_rate": 0.05}, "fromage", {"learning_rate": 0.05}, {}),
    (
        # small gradients: the min_norm floor of the gradient norm is active
        "fromage_min_norm_lr_change",
        "fromage",
        {"learning_rate": 0.1, "min_norm": 0.05},
        "fromage",
        {"learning_rate": 0.1, "min_norm": 0.05},
        {"lrs": True, "grad_scale": 1e-2},
    ),
    ("sm3", "sm3", {"learning_rate": 0.1}, "sm3", {"learning_rate": 0.1}, {"shapes": WITH_3D}),
    (
        "sm3_momentum_lr_change",
        "sm3",
        {"learning_rate": 0.05, "momentum": 0.5},
        "sm3",
        {"learning_rate": 0.05, "momentum": 0.5},
        {"shapes": WITH_3D, "lrs": True},
    ),
    (
        "sm3_decay_eps",
        "scale_by_sm3",
        {"learning_rate": 0.05, "b1": 0.8, "b2": 0.9, "eps": 1e-3},
        "sm3",
        {"learning_rate": 0.05, "momentum": 0.8, "beta2": 0.9, "epsilon": 1e-3},
        {"shapes": WITH_3D},
    ),
    (
        # the alternating form: even updates ascend, odd ones descend (fed the
        # gradient at the perturbed point, as the recorder computes it there)
        "sam",
        "contrib.sam",
        {"learning_rate": 0.1, "rho": 0.05},
        "sam",
        {"learning_rate": 0.1, "rho": 0.05, "epsilon": 0.0},
        {},
    ),
    (
        "sam_large_rho_lr_change",
        "contrib.sam",
        {"learning_rate": 0.05, "rho": 0.5},
        "sam",
        {"learning_rate": 0.05, "rho": 0.5, "epsilon": 0.0},
        {"lrs": True},
    ),
    (
        "optimistic_gradient_descent",
        "optimistic_gradient_descent",
        {"learning_rate": 0.1},
        "optimistic_gradient_descent",
        {"learning_rate": 0.1},
        {},
    ),
    (
        "optimistic_gradient_descent_alpha_beta_lr_change",
        "optimistic_gradient_descent",
        {"learning_rate": 0.05, "alpha": 0.5, "beta": 2.0},
        "optimistic_gradient_descent",
        {"learning_rate": 0.05, "alpha": 0.5, "beta": 2.0},
        {"lrs": True},
    ),
    (
        "optimistic_adam_v2",
        "optimistic_adam_v2",
        {"learning_rate": 0.05},
        "optimistic_adam",
        {"learning_rate": 0.05},
        {},
    ),
    (
        "optimistic_adam_v2_plain_lr_change",
        "optimistic_adam_v2",
        {
            "learning_rate": 0.05,
            "alpha": 0.7,
            "beta": 0.3,
            "b1": 0.8,
            "b2": 0.99,
            "eps_root": 1e-8,
            "nesterov": False,
        },
        "optimistic_adam",
        {
            "learning_rate": 0.05,
            "alpha": 0.7,
            "beta": 0.3,
            "beta1": 0.8,
            "beta2": 0.99,
            "eps_root": 1e-8,
            "nesterov": False,
        },
        {"lrs": True},
    ),
    (
        # the deprecated form: its learning rate is alpha, its optimism beta
        "optimistic_adam",
        "optimistic_adam",
        {"learning_rate": 0.05, "optimism": 0.02},
        "optimistic_adam",
        {"learning_rate": 1.0, "alpha": 0.05, "beta": 0.02},
        {},
    ),
]

QR_FLOAT32_REASON = (
    "pytorch_optimizer's SOAP runs the QR decomposition of the basis refresh in float32 "
    "even for float64 parameters; gradstep in the parameter's dtype"
)
# Two things make a basis implementation-defined, so these cases avoid them. A
# gradient direction that is exactly zero ("dense": False, the usual zero column):
# the reference's float32 QR leaves noise of order 1e-8 in it, which the Adam
# normalisation turns into steps of order lr (gradstep's float64 QR leaves 1e-16).
# A statistic with a repeated eigenvalue (the rank-one statistic of a vector longer
# than 2 on the first step): its eigenvectors there are any basis of the eigenspace,
# and each LAPACK build picks another.

# (id, pytorch_optimizer class, its kwargs, gradstep rule, gradstep kwargs, options)
TORCH_CASES = [
    (
        # no basis refresh within the run: the eigendecomposition of step 1 only
        "soap_eigenbasis",
        "SOAP",
        {"lr": 0.01, "precondition_frequency": 100},
        "soap",
        {"learning_rate": 0.01, "precondition_frequency": 100},
        {"shapes": WITH_3D},
    ),
    (
        "soap_power_iteration_decay_lr_change",
        "SOAP",
        {
            "lr": 0.01,
            "betas": (0.9, 0.99),
            "shampoo_beta": 0.8,
            "weight_decay": 0.05,
            "precondition_frequency": 3,
        },
        "soap",
        {
            "learning_rate": 0.01,
            "beta1": 0.9,
            "beta2": 0.99,
            "shampoo_beta": 0.8,
            "weight_decay": 0.05,
            "precondition_frequency": 3,
        },
        {
            "shapes": WITH_3D,
            "lrs": True,
            "dense": True,
            "tolerance": (QR_FLOAT32_REASON, 1e-5, 1e-6),
        },
    ),
    (
        # axis 1 of the matrix is too long for a matrix; the vector (of length 2: its
        # rank-one first statistic has distinct eigenvalues) gets one
        "soap_1d_max_dim_normalized_uncorrected",
        "SOAP",
        {
            "lr": 0.01,
            "precondition_1d": True,
            "max_precondition_dim": 4,
            "normalize_gradient": True,
            "correct_bias": False,
            "precondition_frequency": 100,
        },
        "soap",
        {
            "learning_rate": 0.01,
            "precondition_1d": True,
            "max_precondition_dim": 4,
            "normalize_gradient": True,
            "bias_correction": False,
            "precondition_frequency": 100,
        },
        {"shapes": ((3, 5), (2,))},
    ),
]

# ScalableShampoo with inverse roots from an SVD (use_svd: the eigendecomposition of the
# symmetric statistic; its default Newton iteration stops at a residual of 1e-3 and
# starts a power iteration from a random vector) and the tensors' own shapes
# (shape_interpretation would merge a tensor of at most block_size elements into a
# vector, which gets no matrix); graft_type by its LayerWiseGrafting name
SHAMPOO_REFERENCE = {"use_svd": True, "shape_interpretation": False}
TORCH_CASES += [
    (
        # the grafted SGD for 4 steps, then Shampoo with SGD's length every step
        "shampoo_sgd_graft_lr_change",
        "ScalableShampoo",
        {
            **SHAMPOO_REFERENCE,
            "lr": 0.05,
            "start_preconditioning_step": 5,
            "preconditioning_compute_steps": 1,
        },
        "shampoo",
        {"learning_rate": 0.05, "start_preconditioning_step": 5},
        {"shapes": WITH_3D, "lrs": True},
    ),
    (
        # blocks of 2 (the 3-long axis in 2 + 1), statistics every 2 steps, roots every
        # 3, AdaGrad's length, coupled decay, from the first step
        "shampoo_blocked_adagrad_graft_decay",
        "ScalableShampoo",
        {
            **SHAMPOO_REFERENCE,
            "lr": 0.02,
            "betas": (0.8, 0.99),
            "block_size": 2,
            "graft_type": "ADAGRAD",
            "start_preconditioning_step": 1,
            "preconditioning_compute_steps": 3,
            "statistics_compute_steps": 2,
            "weight_decay": 0.05,
            "matrix_eps": 1e-4,
            "diagonal_eps": 1e-8,
        },
        "shampoo",
        {
            "learning_rate": 0.02,
            "beta1": 0.8,
            "beta2": 0.99,
            "block_size": 2,
            "graft": "adagrad",
            "start_preconditioning_step": 1,
            "preconditioning_compute_steps": 3,
            "statistics_compute_steps": 2,
            "weight_decay": 0.05,
            "epsilon": 1e-4,
            "graft_epsilon": 1e-8,
        },
        {"shapes": WITH_3D},
    ),
    (
        "shampoo_rmsprop_graft_average_decoupled_lr_change",
        "ScalableShampoo",
        {
            **SHAMPOO_REFERENCE,
            "lr": 0.02,
            "betas": (0.9, 0.9),
            "block_size": 3,
            "graft_type": "RMSPROP",
            "moving_average_for_momentum": True,
            "nesterov": False,
            "start_preconditioning_step": 3,
            "preconditioning_compute_steps": 2,
            "weight_decay": 0.1,
            "decoupled_weight_decay": True,
        },
        "shampoo",
        {
            "learning_rate": 0.02,
            "beta1": 0.9,
            "beta2": 0.9,
            "block_size": 3,
            "graft": "rmsprop",
            "moving_average_momentum": True,
            "nesterov": False,
            "start_preconditioning_step": 3,
            "preconditioning_compute_steps": 2,
            "weight_decay": 0.1,
            "decoupled_weight_decay": True,
        },
        {"shapes": WITH_3D, "lrs": True},
    ),
    (
        # Shampoo's own length, no momentum (the reference refuses the paper's summed
        # statistics, beta2 = 1)
        "shampoo_no_graft_no_momentum",
        "ScalableShampoo",
        {
            **SHAMPOO_REFERENCE,
            "lr": 0.05,
            "betas": (0.0, 0.99),
            "graft_type": "NONE",
            "start_preconditioning_step": 1,
            "preconditioning_compute_steps": 1,
            "matrix_eps": 1e-3,
        },
        "shampoo",
        {
            "learning_rate": 0.05,
            "beta1": 0.0,
            "beta2": 0.99,
            "graft": "none",
            "start_preconditioning_step": 1,
            "epsilon": 1e-3,
        },
        {"shapes": WITH_3D},
    ),
    (
        "shampoo_sqrt_n_graft",
        "ScalableShampoo",
        {
            **SHAMPOO_REFERENCE,
            "lr": 0.01,
            "graft_type": "SQRTN",
            "start_preconditioning_step": 2,
            "preconditioning_compute_steps": 4,
        },
        "shampoo",
        {
            "learning_rate": 0.01,
            "graft": "sqrt_n",
            "start_preconditioning_step": 2,
            "preconditioning_compute_steps": 4,
        },
        {"shapes": WITH_3D},
    ),
]

FLOAT32_CASES = {
    "pytorch_optimizer": {
        "soap_eigenbasis",
        "soap_power_iteration_decay_lr_change",
        "shampoo_sgd_graft_lr_change",
        "shampoo_blocked_adagrad_graft_decay",
    },
    "optax": {
        "fromage",
        "sm3_momentum_lr_change",
        "optimistic_gradient_descent",
        "optimistic_adam_v2",
        "sam",
    },
}


def _optax_factory(name: str):
    import optax

    if name == "contrib.sam":

        def sam(learning_rate, rho):
            adversary = optax.chain(optax.contrib.normalize(), optax.sgd(rho))
            return optax.contrib.sam(optax.sgd(learning_rate), adversary, sync_period=2)

        return sam
    if name == "scale_by_sm3":

        def chained(learning_rate, b1, b2, eps):
            return optax.chain(optax.scale_by_sm3(b1, b2, eps), optax.scale(-learning_rate))

        return chained
    return getattr(optax, name)


def run_optax(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import warnings

    import jax
    import jax.numpy as jnp
    import optax

    w0, grad = problem(seed, options)
    factory = _optax_factory(name)
    lrs = BASE.changing_lrs(kwargs["learning_rate"]) if options.get("lrs") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # optimistic_adam (v1)
        if lrs:  # only the learning rate changes; every other argument stays as given
            static = tuple(k for k in kwargs if k != "learning_rate")
            opt = optax.inject_hyperparams(factory, static_args=static)(**kwargs)
        else:
            opt = factory(**kwargs)
    params = [jnp.asarray(w, dtype=dtype) for w in w0]
    state = {"opt": opt.init(params), "params": params}

    def step(g, k):
        if lrs is not None:
            state["opt"].hyperparams["learning_rate"] = jnp.asarray(lrs[k], dtype=dtype)
        g = [jnp.asarray(x, dtype=dtype) for x in g]
        updates, state["opt"] = opt.update(g, state["opt"], state["params"])
        state["params"] = optax.apply_updates(state["params"], updates)
        return [np.asarray(jax.device_get(p)) for p in state["params"]]

    return BASE._record(w0, grad, lrs, dtype, params, step)


def run_torch_library(name: str, kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    """A torch.optim-like class of pytorch_optimizer, stepped on the recorded gradients."""
    import pytorch_optimizer
    import torch

    w0, grad = problem(seed, options)
    params = [torch.tensor(w, dtype=getattr(torch, dtype)) for w in w0]
    if isinstance(kwargs.get("graft_type"), str):
        from pytorch_optimizer.optimizer.utils.graft import LayerWiseGrafting

        kwargs = {**kwargs, "graft_type": LayerWiseGrafting[kwargs["graft_type"]]}
    opt = getattr(pytorch_optimizer, name)(params, **kwargs)
    lrs = BASE.changing_lrs(opt.param_groups[0]["lr"]) if options.get("lrs") else None

    def step(g, k):
        for p, x in zip(params, g):
            p.grad = torch.tensor(x, dtype=p.dtype)
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        opt.step()
        return [p.detach().numpy().copy() for p in params]

    return BASE._record(w0, grad, lrs, dtype, params, step)


# -- SAM with a closure ----------------------------------------------------------------

SAM_NORM_REASON = (
    "pytorch_optimizer's SAM computes the global gradient norm in float32 even for "
    "float64 parameters; gradstep in float64"
)

# (id, pytorch_optimizer SAM kwargs, torch base optimizer and its kwargs, gradstep sam
#  kwargs, gradstep base rule and its kwargs (None: sam's own SGD), step() calls, seed)
SAM_CLOSURE_CASES = [
    (
        "sam_sgd",
        {"rho": 0.05},
        ("SGD", {"lr": 1e-3}),
        {"learning_rate": 1e-3, "rho": 0.05},
        None,
        6,
        900,
    ),
    (
        "asam_adamw",
        {"rho": 0.5, "adaptive": True},
        ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
        {"rho": 0.5, "adaptive": True},
        ("adamw", {"learning_rate": 0.01, "weight_decay": 0.1}),
        6,
        901,
    ),
]


def run_sam_closure(sam_kwargs: dict, base: tuple, prob: dict, calls: int) -> list[dict]:
    import pytorch_optimizer
    import torch

    params = [torch.tensor(np.array(w), dtype=torch.float64) for w in prob["params0"]]
    base_name, base_kwargs = base
    opt = pytorch_optimizer.SAM(
        params, getattr(torch.optim, base_name), **sam_kwargs, **base_kwargs
    )

    def closure():
        loss, grads = MODERN.loss_and_grad(prob, [p.detach().numpy() for p in params])
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float64)
        return loss

    out = []
    for _ in range(calls):
        loss = closure()  # pytorch_optimizer's SAM wants the first gradient before step()
        opt.step(closure)
        out.append({"loss": loss, "params": [p.detach().numpy().tolist() for p in params]})
    return out


def record_sam_closure() -> list[dict]:
    out = []
    for case_id, sam_kwargs, base, rule_kwargs, rule_base, calls, seed in SAM_CLOSURE_CASES:
        prob = MODERN.closure_problem(seed)
        out.append(
            {
                "id": f"pytorch_optimizer-{case_id}-closure-float64",
                "reference": "pytorch_optimizer.SAM",
                "reference_kwargs": {**sam_kwargs, "base_optimizer": base[0], **base[1]},
                "rule": "sam",
                "rule_kwargs": rule_kwargs,
                "base": None
                if rule_base is None
                else {"rule": rule_base[0], "kwargs": rule_base[1]},
                "dtype": "float64",
                "problem": prob,
                "tolerance": {"rtol": 1e-6, "atol": 1e-9},
                "tolerance_reason": SAM_NORM_REASON,
                "steps": run_sam_closure(sam_kwargs, base, prob, calls),
            }
        )
    return out


def record(library: str, cases: list, runner, seed0: int, prefix: str) -> list[dict]:
    out = []
    for seed, (case_id, ref, ref_kwargs, rule, rule_kwargs, options) in enumerate(cases, seed0):
        dtypes = ["float64"] + (["float32"] if case_id in FLOAT32_CASES[library] else [])
        for dtype in dtypes:
            data = runner(ref, ref_kwargs, dtype, options, seed)
            case = {
                "id": f"{library}-{case_id}-{dtype}",
                "reference": f"{prefix}{ref}",
                "reference_kwargs": {
                    k: list(v) if isinstance(v, tuple) else v for k, v in ref_kwargs.items()
                },
                "rule": rule,
                "rule_kwargs": rule_kwargs,
                "dtype": dtype,
                **data,
            }
            if "tolerance" in options and dtype == "float64":
                reason, rtol, atol = options["tolerance"]
                case["tolerance"] = {"rtol": rtol, "atol": atol}
                case["tolerance_reason"] = reason
            out.append(case)
    return out


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import optax
    import torch

    records = record("optax", OPTAX_CASES, run_optax, 700, "optax.") + record(
        "pytorch_optimizer", TORCH_CASES, run_torch_library, 800, "pytorch_optimizer."
    )
    OUT.write_text(json.dumps(records, indent=0))
    print(f"preconditioned.json: {len(records)} trajectories")
    closure = record_sam_closure()
    SAM_OUT.parent.mkdir(parents=True, exist_ok=True)
    SAM_OUT.write_text(json.dumps(closure, indent=0))
    print(f"closure/sam.json: {len(closure)} closure-driven runs")
    manifest = {
        "generator": "tests/conformance/record_preconditioned_fixtures.py",
        "steps": BASE.STEPS,
        "files": ["preconditioned.json", "closure/sam.json"],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
            "torch": torch.__version__,
            "pytorch_optimizer": version("pytorch_optimizer"),
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
