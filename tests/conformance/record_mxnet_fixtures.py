"""Record reference trajectories from MXNet 1.9.1's own ``Optimizer.update`` (and
torch.optim.NAdam and optax.nadam, the other forms of NAdam) into fixtures.

MXNet is never a dependency of gradstep or of its tests: it lives in a separate
virtual environment (it needs ``numpy<1.24``)::

    python3.11 -m venv /path/to/mxnet-venv
    /path/to/mxnet-venv/bin/pip install mxnet==1.9.1 "numpy<1.24"
    /path/to/mxnet-venv/bin/python tests/conformance/record_mxnet_fixtures.py mxnet

and the torch.optim.NAdam and optax.nadam cases with the project's own environment
(torch, jax and optax installed)::

    python tests/conformance/record_mxnet_fixtures.py nadam

Each case runs a reference optimizer for ``STEPS`` steps on two (or three) parameter
tensors, with gradients ``h * (w - target) + noise`` computed at the reference's own
iterates, calling ``update(index, weight, grad, state)`` for every index in order as
MXNet's updaters do. Options per case: ``lrs`` (the learning rate changes between
steps: ``set_learning_rate`` before each step), ``zero_column`` (one column of the
first tensor always gets a zero gradient), ``grad_scale`` (large gradients, so clipping
is active), ``skip`` (steps on which the second tensor gets no update: MXNet's counts
are per index).

SGLD draws its noise from MXNet's generator; to compare trajectories the recorder
replaces that draw by gradstep's documented noise (``numpy.random.default_rng([seed,
k])``), checking that MXNet asks for mean 0 and standard deviation ``sqrt(lr)``; a
separate unpatched run measures the standard deviation of MXNet's own noise and
stores it in the manifest.

Outputs: ``fixtures/mxnet.json`` and ``fixtures/nadam.json`` (replayed by
``test_conformance.py``), ``tests/mxnet/fixtures/mxnet_skips.json`` (replayed by
``tests/mxnet``), and ``fixtures/MANIFEST-mxnet.json`` with the library versions.
"""

from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "fixtures"
SKIPS = Path(__file__).parents[1] / "mxnet" / "fixtures"
STEPS = 30
SHAPES = ((3, 4), (5,))


def changing_lrs(lr: float) -> list[float]:
    """A learning rate that changes between steps: drops, then rises again."""
    return [lr if k < 10 else lr * 0.3 if k < 20 else lr * 1.7 for k in range(STEPS)]


def problem(seed: int, options: dict):
    rng = np.random.default_rng(1000 + seed)
    shapes = options.get("shapes", SHAPES)
    scale = options.get("grad_scale", 1.0)
    w0 = [rng.normal(size=s) for s in shapes]
    target = [rng.normal(size=s) for s in shapes]
    curvature = [rng.uniform(0.5, 2.0, size=s) for s in shapes]
    noise = [[0.1 * rng.normal(size=s) for s in shapes] for _ in range(STEPS)]

    def grad(k: int, w: list[np.ndarray]) -> list[np.ndarray]:
        g = [scale * (c * (x - t) + n) for x, t, c, n in zip(w, target, curvature, noise[k])]
        if options.get("zero_column"):
            g[0][:, 0] = 0.0
        return g

    return w0, grad


LRS = {"lrs": True}
# per-case tolerance for MXNet Adam at a large learning rate, with its reason
ADAM_BETA2_F32 = {
    "tolerance": {"rtol": 2e-5, "atol": 2e-5},
    "tolerance_reason": (
        "MXNet's kernel computes 1 - beta2 in float32 (1 - 0.999f = 0.00099998713, "
        "1.3e-5 below 0.001; gradstep rounds 1 - beta2 from float64), so every step "
        "is 6e-6 relative larger; at lr 0.05 the difference reaches 1e-5 in 30 "
        "steps (a float32 emulation of the kernel matches MXNet bit for bit)"
    ),
}
CLIP = {"grad_scale": 3.0}
ZERO = {"zero_column": True}

# (id, MXNet optimizer, MXNet kwargs, gradstep rule, gradstep kwargs, options)
MXNET_CASES = [
    ("sgd_plain", "SGD", {"learning_rate": 0.1}, "sgd", {"learning_rate": 0.1}, ZERO),
    (
        "sgd_wd_rescale_clip",
        "SGD",
        {"learning_rate": 0.2, "wd": 0.05, "rescale_grad": 0.5, "clip_gradient": 0.3},
        "sgd",
        {"learning_rate": 0.2, "weight_decay": 0.05, "rescale_grad": 0.5, "clip_gradient": 0.3},
        CLIP,
    ),
    (
        "sgd_clip0_is_off",
        "SGD",
        {"learning_rate": 0.1, "wd": 0.01, "clip_gradient": 0.0},
        "sgd",
        {"learning_rate": 0.1, "weight_decay": 0.01},
        {},
    ),
    (
        "sgd_momentum_lr_change",
        "SGD",
        {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.01},
        "momentum",
        {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.01},
        {**LRS, **ZERO},
    ),
    (
        "sgd_momentum_clip_wd",
        "SGD",
        {
            "learning_rate": 0.05,
            "momentum": 0.8,
            "wd": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.125,
        },
        "momentum",
        {
            "learning_rate": 0.05,
            "momentum": 0.8,
            "weight_decay": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.125,
        },
        {"grad_scale": 20.0},
    ),
    (
        "nag_lr_change",
        "NAG",
        {"learning_rate": 0.05, "momentum": 0.9},
        "nesterov_momentum",
        {"learning_rate": 0.05, "momentum": 0.9},
        {**LRS, **ZERO},
    ),
    (
        "nag_wd_clip_rescale",
        "NAG",
        {
            "learning_rate": 0.05,
            "momentum": 0.7,
            "wd": 0.05,
            "clip_gradient": 0.4,
            "rescale_grad": 0.5,
        },
        "nesterov_momentum",
        {
            "learning_rate": 0.05,
            "momentum": 0.7,
            "weight_decay": 0.05,
            "clip_gradient": 0.4,
            "rescale_grad": 0.5,
            "velocity_decay_weight": "updated",
        },
        CLIP,
    ),
    (
        # MXNet 1.x's in-place kernel decays the new weight into the velocity
        "nag_wd_lr_change",
        "NAG",
        {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.2},
        "nesterov_momentum",
        {
            "learning_rate": 0.1,
            "momentum": 0.9,
            "weight_decay": 0.2,
            "velocity_decay_weight": "updated",
        },
        {**LRS, **ZERO},
    ),
    (
        "nag_no_momentum",
        "NAG",
        {"learning_rate": 0.1, "wd": 0.01},
        "nesterov_momentum",
        {"learning_rate": 0.1, "momentum": 0.0, "weight_decay": 0.01},
        {},
    ),
    ("signum_default", "Signum", {}, "signum", {}, ZERO),
    (
        "signum_wd_wdlh_clip",
        "Signum",
        {
            "learning_rate": 0.02,
            "momentum": 0.8,
            "wd": 0.05,
            "wd_lh": 0.01,
            "clip_gradient": 0.3,
            "rescale_grad": 0.5,
        },
        "signum",
        {
            "learning_rate": 0.02,
            "momentum": 0.8,
            "weight_decay": 0.05,
            "wd_lh": 0.01,
            "clip_gradient": 0.3,
            "rescale_grad": 0.5,
        },
        {**LRS, **CLIP},
    ),
    (
        "signsgd_wd",
        "Signum",
        {
            "learning_rate": 0.02,
            "momentum": 0.0,
            "wd": 0.03,
            "rescale_grad": 0.5,
            "clip_gradient": 0.2,
        },
        "signsgd",
        {"learning_rate": 0.02, "weight_decay": 0.03},
        {**LRS, **ZERO, **CLIP},
    ),
    ("sgld_plain", "SGLD", {"learning_rate": 0.01}, "sgld", {"learning_rate": 0.01}, ZERO),
    (
        "sgld_wd_clip_rescale",
        "SGLD",
        {"learning_rate": 0.005, "wd": 0.1, "clip_gradient": 0.5, "rescale_grad": 2.0},
        "sgld",
        {
            "learning_rate": 0.005,
            "weight_decay": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 2.0,
        },
        LRS,
    ),
    ("ftml_default", "FTML", {}, "ftml", {}, ZERO),
    (
        "ftml_wd_clip_inside",
        "FTML",
        {
            "learning_rate": 0.05,
            "beta1": 0.5,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "wd": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "ftml",
        {
            "learning_rate": 0.05,
            "beta1": 0.5,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "weight_decay": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        {**LRS, **CLIP},
    ),
    ("ftml_lr_change", "FTML", {"learning_rate": 0.02}, "ftml", {"learning_rate": 0.02}, LRS),
    ("ftrl_default", "Ftrl", {}, "ftrl", {}, ZERO),
    (
        "ftrl_l1_l2_clip",
        "Ftrl",
        {
            "learning_rate": 0.5,
            "lamda1": 0.1,
            "beta": 0.5,
            "wd": 0.2,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "ftrl",
        {
            "learning_rate": 0.5,
            "lamda1": 0.1,
            "beta": 0.5,
            "weight_decay": 0.2,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        {**LRS, **CLIP},
    ),
    (
        "dcasgd_default",
        "DCASGD",
        {"learning_rate": 0.05},
        "dcasgd",
        {"learning_rate": 0.05},
        ZERO,
    ),
    (
        "dcasgd_wd_clip_rescale",
        "DCASGD",
        {
            "learning_rate": 0.05,
            "lamda": 0.5,
            "wd": 0.05,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "dcasgd",
        {
            "learning_rate": 0.05,
            "lamda": 0.5,
            "weight_decay": 0.05,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        {**LRS, **CLIP},
    ),
    (
        "dcasgd_clip0_zeroes",
        "DCASGD",
        {"learning_rate": 0.1, "wd": 0.05, "clip_gradient": 0.0},
        "dcasgd",
        {"learning_rate": 0.1, "weight_decay": 0.05, "clip_gradient": 0.0},
        {},
    ),
    (
        "adagrad_default",
        "AdaGrad",
        {},
        "adagrad",
        {"learning_rate": 0.01, "epsilon": 1e-7},
        ZERO,
    ),
    (
        "adagrad_wd_clip",
        "AdaGrad",
        {
            "learning_rate": 0.1,
            "eps": 1e-6,
            "wd": 0.05,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "adagrad",
        {
            "learning_rate": 0.1,
            "epsilon": 1e-6,
            "weight_decay": 0.05,
            "decoupled_weight_decay": True,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        CLIP,
    ),
    (
        "adagrad_lr_change",
        "AdaGrad",
        {"learning_rate": 0.5},
        "adagrad",
        {"learning_rate": 0.5, "epsilon": 1e-7},
        LRS,
    ),
    (
        "rmsprop_default",
        "RMSProp",
        {},
        "rmsprop",
        {"learning_rate": 0.001, "rho": 0.9, "epsilon": 1e-8},
        ZERO,
    ),
    (
        "rmsprop_wd_clip_inside",
        "RMSProp",
        {
            "learning_rate": 0.01,
            "gamma1": 0.95,
            "epsilon": 1e-6,
            "wd": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "rmsprop",
        {
            "learning_rate": 0.01,
            "rho": 0.95,
            "epsilon": 1e-6,
            "weight_decay": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        {**LRS, **CLIP},
    ),
    (
        "rmsprop_centered",
        "RMSProp",
        {"learning_rate": 0.01, "centered": True},
        "rmsprop",
        {
            "learning_rate": 0.01,
            "rho": 0.9,
            "epsilon": 1e-8,
            "centered": True,
            "momentum": 0.9,
        },
        ZERO,
    ),
    (
        "rmsprop_centered_clip_weights",
        "RMSProp",
        {
            "learning_rate": 0.02,
            "centered": True,
            "gamma1": 0.95,
            "gamma2": 0.5,
            "wd": 0.05,
            "clip_gradient": 0.5,
            "clip_weights": 0.6,
        },
        "rmsprop",
        {
            "learning_rate": 0.02,
            "rho": 0.95,
            "epsilon": 1e-8,
            "centered": True,
            "momentum": 0.5,
            "weight_decay": 0.05,
            "clip_gradient": 0.5,
            "clip_weights": 0.6,
        },
        {**LRS, **CLIP},
    ),
    (
        "rmsprop_clip_weights",
        "RMSProp",
        {"learning_rate": 0.05, "clip_weights": 0.5},
        "rmsprop",
        {"learning_rate": 0.05, "rho": 0.9, "epsilon": 1e-8, "clip_weights": 0.5},
        {},
    ),
    (
        "adadelta_default",
        "AdaDelta",
        {},
        "adadelta",
        {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-5},
        ZERO,
    ),
    (
        # MXNet 1.x ignores the learning rate: it changes every 10 steps in MXNet
        # (``mxnet_lrs``) and gradstep replays with its learning rate fixed at 1
        "adadelta_wd_clip_lr_ignored",
        "AdaDelta",
        {
            "learning_rate": 0.3,
            "rho": 0.95,
            "epsilon": 1e-6,
            "wd": 0.01,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "adadelta",
        {
            "learning_rate": 1.0,
            "rho": 0.95,
            "epsilon": 1e-6,
            "weight_decay": 0.01,
            "decoupled_weight_decay": True,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        {**CLIP, "mxnet_lrs": True},
    ),
    (
        "adam_default",
        "Adam",
        {},
        "adam",
        {"epsilon_placement": "outside_uncorrected"},
        ZERO,
    ),
    (
        "adam_wd_clip_inside",
        "Adam",
        {
            "learning_rate": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "wd": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "adam",
        {
            "learning_rate": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "epsilon_placement": "outside_uncorrected",
            "weight_decay": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        {**LRS, **CLIP},
    ),
    (
        "adam_lr_change",
        "Adam",
        {"learning_rate": 0.05},
        "adam",
        {"learning_rate": 0.05, "epsilon_placement": "outside_uncorrected"},
        {**LRS, **ADAM_BETA2_F32},
    ),
    (
        # no epsilon in MXNet 1.x: the always-zero column is 0/0 = NaN
        "adamax_default_nan",
        "Adamax",
        {},
        "adamax",
        {"epsilon": 0.0},
        ZERO,
    ),
    (
        "adamax_wd_clip_inside",
        "Adamax",
        {
            "learning_rate": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "wd": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "adamax",
        {
            "learning_rate": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 0.0,
            "weight_decay": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        {**LRS, **CLIP},
    ),
    ("nadam_default", "Nadam", {}, "nadam", {"schedule_scope": "shared"}, ZERO),
    (
        "nadam_wd_clip_inside",
        "Nadam",
        {
            "learning_rate": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "schedule_decay": 0.01,
            "wd": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        "nadam",
        {
            "learning_rate": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "schedule_decay": 0.01,
            "schedule_scope": "shared",
            "weight_decay": 0.1,
            "clip_gradient": 0.5,
            "rescale_grad": 0.5,
        },
        {**LRS, **CLIP},
    ),
    (
        "nadam_three_tensors",
        "Nadam",
        {"learning_rate": 0.05},
        "nadam",
        {"learning_rate": 0.05, "schedule_scope": "shared"},
        {"shapes": ((3, 4), (5,), (2, 2))},
    ),
]

# Cases where the second tensor gets no update on some steps (MXNet counts steps per
# index); replayed through gradstep.transforms.mxnet.per_parameter.
SKIP_STEPS = (3, 4, 11, 20)
SKIP_CASES = [
    (
        "adam_skips",
        "Adam",
        {"learning_rate": 0.05},
        "adam",
        {"learning_rate": 0.05, "epsilon_placement": "outside_uncorrected"},
        {"skip": SKIP_STEPS, **ADAM_BETA2_F32},
    ),
    (
        "ftml_skips",
        "FTML",
        {"learning_rate": 0.05},
        "ftml",
        {"learning_rate": 0.05},
        {"skip": SKIP_STEPS},
    ),
    (
        "nadam_skips_per_parameter",
        "Nadam",
        {"learning_rate": 0.05, "beta1": 0.95},
        "nadam",
        {"learning_rate": 0.05, "beta1": 0.95},
        # one tensor only: MXNet's shared product is then a per-parameter one
        {"shapes": ((3, 4),), "skip": ()},
    ),
]


def run_mxnet(name: str, kwargs: dict, options: dict, seed: int) -> dict:
    import mxnet.optimizer.optimizer as mx_opt

    import mxnet as mx

    dtype = "float32"
    w0, grad = problem(seed, options)
    opt = mx.optimizer.create(name.lower(), **kwargs)
    weights = [mx.nd.array(w, dtype=dtype) for w in w0]
    states = [opt.create_state(i, w) for i, w in enumerate(weights)]
    base_lr = opt.learning_rate
    lrs = changing_lrs(base_lr) if options.get("lrs") or options.get("mxnet_lrs") else None
    skip = set(options.get("skip", ()))
    noise_seed = 7 + seed
    draws = {}

    def gradstep_noise(loc, scale, shape, dtype, ctx):
        # gradstep's documented Langevin noise, in the order MXNet asks for it
        assert loc == 0 and scale == math.sqrt(draws["lr"]), (loc, scale, draws["lr"])
        z = draws["rng"].standard_normal(shape)
        return mx.nd.array((scale * z).astype(dtype), dtype=dtype, ctx=ctx)

    original_normal = mx_opt.normal
    mx_opt.normal = gradstep_noise
    try:
        current = [np.asarray(w, dtype=dtype) for w in w0]
        grads, trajectory, present = [], [], []
        for k in range(STEPS):
            g = [x.astype(dtype) for x in grad(k, [c.astype(np.float64) for c in current])]
            grads.append(g)
            if lrs is not None:
                opt.set_learning_rate(lrs[k])
            draws["lr"] = opt.learning_rate
            draws["rng"] = np.random.default_rng([noise_seed, k])
            mask = [not (i == 1 and k in skip) for i in range(len(weights))]
            present.append(mask)
            for i, (w, s) in enumerate(zip(weights, states)):
                if mask[i]:
                    # a fresh array: MXNet's AdaDelta scales its gradient in place
                    opt.update(i, w, mx.nd.array(g[i], dtype=dtype), s)
            current = [w.asnumpy() for w in weights]
            trajectory.append(current)
    finally:
        mx_opt.normal = original_normal
    as_list = lambda arrays: [a.tolist() for a in arrays]  # noqa: E731
    out = {
        "params0": as_list([np.asarray(w, dtype=dtype) for w in w0]),
        "grads": [as_list(g) for g in grads],
        "trajectory": [as_list(t) for t in trajectory],
        "lrs": None if options.get("mxnet_lrs") else lrs,
    }
    if options.get("mxnet_lrs"):
        out["mxnet_lrs"] = lrs
    if name == "SGLD":
        out["noise_seed"] = noise_seed
    if skip:
        out["present"] = present
    if name == "Nadam" and len(out["params0"]) > 1:
        # MXNet's schedule product is updated tensor by tensor: an eager stage
        out["fusable"] = False
    if "tolerance" in options:
        out["tolerance"] = options["tolerance"]
        out["tolerance_reason"] = options["tolerance_reason"]
    return out


def record_mxnet(cases: list, seed0: int = 0) -> list[dict]:
    out = []
    for seed, (case_id, ref, ref_kwargs, rule, rule_kwargs, options) in enumerate(cases, seed0):
        data = run_mxnet(ref, ref_kwargs, options, seed)
        rule_kwargs = dict(rule_kwargs)
        if "noise_seed" in data:
            rule_kwargs["seed"] = data.pop("noise_seed")
        out.append(
            {
                "id": f"mxnet-{case_id}-float32",
                "reference": f"mxnet.optimizer.{ref}",
                "reference_kwargs": ref_kwargs,
                "rule": rule,
                "rule_kwargs": rule_kwargs,
                "dtype": "float32",
                **data,
            }
        )
    return out


def mxnet_probes() -> dict:
    """Facts about MXNet 1.9.1 that the fixtures cannot hold."""
    import mxnet as mx

    probes = {}
    # the standard deviation of MXNet's own SGLD noise (zero gradient, lr 0.04)
    mx.random.seed(3)
    opt = mx.optimizer.create("sgld", learning_rate=0.04)
    w = mx.nd.zeros((200_000,))
    opt.update(0, w, mx.nd.zeros((200_000,)), opt.create_state(0, w))
    x = w.asnumpy().astype(np.float64)
    probes["sgld_noise_lr0.04"] = {"mean": float(x.mean()), "std": float(x.std())}
    # DCASGD's momentum path in 1.9.1
    opt = mx.optimizer.create("dcasgd", learning_rate=0.1, momentum=0.9)
    w = mx.nd.ones((3,))
    try:
        state = opt.create_state(0, w)
        opt.update(0, w, mx.nd.ones((3,)), state)
        probes["dcasgd_momentum"] = "ran"
    except Exception as err:  # noqa: BLE001 - the failure is what is recorded
        probes["dcasgd_momentum"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return probes


def run_torch_nadam(kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import torch

    w0, grad = problem(seed, options)
    tdtype = getattr(torch, dtype)
    # torch keeps NAdam's mu_product in the default dtype: match the parameters'
    torch.set_default_dtype(tdtype)
    params = [torch.tensor(w, dtype=tdtype) for w in w0]
    opt = torch.optim.NAdam(params, **kwargs, foreach=False)
    lrs = changing_lrs(opt.param_groups[0]["lr"]) if options.get("lrs") else None
    current = [np.asarray(w, dtype=dtype) for w in w0]
    grads, trajectory = [], []
    for k in range(STEPS):
        g = [x.astype(dtype) for x in grad(k, [c.astype(np.float64) for c in current])]
        grads.append(g)
        for p, x in zip(params, g):
            p.grad = torch.tensor(x, dtype=tdtype)
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        opt.step()
        current = [p.detach().numpy().copy() for p in params]
        trajectory.append(current)
    torch.set_default_dtype(torch.float32)
    as_list = lambda arrays: [a.tolist() for a in arrays]  # noqa: E731
    return {
        "params0": as_list([np.asarray(w, dtype=dtype) for w in w0]),
        "grads": [as_list(g) for g in grads],
        "trajectory": [as_list(t) for t in trajectory],
        "lrs": lrs,
    }


TORCH_NADAM_CASES = [
    ("default", {}, {"learning_rate": 0.002}, ZERO),
    (
        "wd_momentum_decay_lr_change",
        {
            "lr": 0.01,
            "betas": (0.8, 0.99),
            "eps": 1e-6,
            "weight_decay": 0.05,
            "momentum_decay": 0.01,
        },
        {
            "learning_rate": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "weight_decay": 0.05,
            "schedule_decay": 0.01,
        },
        {**LRS, **ZERO},
    ),
    (
        "nadamw",
        {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True},
        {"learning_rate": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True},
        ZERO,
    ),
]


def run_optax_nadam(kwargs: dict, dtype: str, options: dict, seed: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    w0, grad = problem(seed, options)
    lrs = changing_lrs(kwargs["learning_rate"]) if options.get("lrs") else None
    opt = optax.inject_hyperparams(optax.nadam)(**kwargs) if lrs else optax.nadam(**kwargs)
    params = [jnp.asarray(w, dtype=dtype) for w in w0]
    state = opt.init(params)
    current = [np.asarray(w, dtype=dtype) for w in w0]
    grads, trajectory = [], []
    for k in range(STEPS):
        g = [x.astype(dtype) for x in grad(k, [c.astype(np.float64) for c in current])]
        grads.append(g)
        if lrs is not None:
            state.hyperparams["learning_rate"] = jnp.asarray(lrs[k], dtype=dtype)
        updates, state = opt.update([jnp.asarray(x, dtype=dtype) for x in g], state, params)
        params = optax.apply_updates(params, updates)
        current = [np.asarray(jax.device_get(x)) for x in params]
        trajectory.append(current)
    as_list = lambda arrays: [a.tolist() for a in arrays]  # noqa: E731
    return {
        "params0": as_list([np.asarray(w, dtype=dtype) for w in w0]),
        "grads": [as_list(g) for g in grads],
        "trajectory": [as_list(t) for t in trajectory],
        "lrs": lrs,
    }


OPTAX_NADAM_CASES = [
    (
        "default",
        {"learning_rate": 0.01},
        {"learning_rate": 0.01, "schedule_decay": None},
        ZERO,
    ),
    (
        "eps_root_lr_change",
        {"learning_rate": 0.05, "b1": 0.8, "b2": 0.99, "eps": 1e-6, "eps_root": 1e-4},
        {
            "learning_rate": 0.05,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-6,
            "eps_root": 1e-4,
            "schedule_decay": None,
        },
        {**LRS, **ZERO},
    ),
]


def record_nadam() -> list[dict]:
    out = []
    runs = [("torch", "torch.optim.NAdam", c, run_torch_nadam) for c in TORCH_NADAM_CASES]
    runs += [("optax", "optax.nadam", c, run_optax_nadam) for c in OPTAX_NADAM_CASES]
    for seed, (library, reference, case, runner) in enumerate(runs, 100):
        case_id, ref_kwargs, rule_kwargs, options = case
        for dtype in ("float64", "float32"):
            data = runner(ref_kwargs, dtype, options, seed)
            out.append(
                {
                    "id": f"{library}-nadam_{case_id}-{dtype}",
                    "reference": reference,
                    "reference_kwargs": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in ref_kwargs.items()
                    },
                    "rule": "nadam",
                    "rule_kwargs": rule_kwargs,
                    "dtype": dtype,
                    **data,
                }
            )
    return out


def _update_manifest(section: str, content: dict) -> None:
    path = HERE / "MANIFEST-mxnet.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest["generator"] = "tests/conformance/record_mxnet_fixtures.py"
    manifest["steps"] = STEPS
    manifest[section] = content
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str]) -> None:
    what = argv[1] if len(argv) > 1 else "mxnet"
    common = {"python": platform.python_version(), "numpy": np.__version__}
    common["platform"] = f"{platform.system()} {platform.machine()}"
    if what == "mxnet":
        import mxnet as mx

        records = record_mxnet(MXNET_CASES)
        (HERE / "mxnet.json").write_text(json.dumps(records, indent=0))
        skips = record_mxnet(SKIP_CASES, seed0=len(MXNET_CASES))
        SKIPS.mkdir(parents=True, exist_ok=True)
        (SKIPS / "mxnet_skips.json").write_text(json.dumps(skips, indent=0))
        print(f"mxnet: {len(records)} trajectories, {len(skips)} with skipped updates")
        _update_manifest(
            "mxnet",
            {
                "versions": {**common, "mxnet": mx.__version__},
                "command": (
                    "<mxnet-venv>/bin/python tests/conformance/record_mxnet_fixtures.py mxnet"
                ),
                "files": ["fixtures/mxnet.json", "../mxnet/fixtures/mxnet_skips.json"],
                "probes": mxnet_probes(),
            },
        )
    elif what == "nadam":
        import jax

        jax.config.update("jax_enable_x64", True)
        import optax
        import torch

        records = record_nadam()
        (HERE / "nadam.json").write_text(json.dumps(records, indent=0))
        print(f"torch and optax NAdam: {len(records)} trajectories")
        versions = {"torch": torch.__version__, "jax": jax.__version__}
        _update_manifest(
            "nadam",
            {
                "versions": {**common, **versions, "optax": optax.__version__},
                "command": "python tests/conformance/record_mxnet_fixtures.py nadam",
                "files": ["fixtures/nadam.json"],
            },
        )
    else:
        raise SystemExit(f"usage: {argv[0]} [mxnet | nadam]")


if __name__ == "__main__":
    main(sys.argv)
