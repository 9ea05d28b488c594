"""Record reference trajectories of the layer-wise rules: optax (lars, lamb) and MXNet
1.9.1 (LARS, LAMB, LBSGD with each warm-up strategy).

MXNet 1.x needs its own environment (Python 3.11, ``numpy<1.24``); it is never a
dependency of gradstep or of its tests. Run from the repository root::

    python -m venv <mxnet-env> && <mxnet-env>/bin/pip install mxnet==1.9.1 "numpy<1.24"
    python tests/conformance/record_layerwise_fixtures.py --mxnet-python <mxnet-env>/bin/python

The optax cases run in this interpreter; the MXNet cases run in a subprocess of the
given interpreter (this same file with ``--mxnet-worker``). Without
``--mxnet-python`` the MXNet cases already in ``layerwise.json`` are kept.

Problems, gradients and the fixture format are those of ``record_fixtures.py`` (two
tensors, 30 steps, gradients at the reference's own iterates, one column of the first
tensor always zero). Options add the layer-wise edge cases: ``zero_w1`` starts the
second tensor at 0 (a zero parameter norm), ``zero_g1`` gives the second tensor an
all-zero gradient on the listed steps (a zero gradient norm).

MXNet hands every scalar hyperparameter to its C++ kernels as a float32 (``lr``,
``wd``, ``momentum``, ``beta1``, ...). The cases use values a float32 holds exactly
where they can, and give the rule MXNet's float32 value where they cannot (the
``rule_kwargs`` then show it); where MXNet rounds a value it computes (LARS's
layer learning rate and norms, LBSGD's ``sqrt`` and ``lars`` multipliers) the case
states a tolerance and the reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "layerwise.json"
MANIFEST = FIXTURES / "MANIFEST-layerwise.json"


def _base():
    """``record_fixtures.py`` beside this file (problems, learning rates, records)."""
    spec = importlib.util.spec_from_file_location("record_fixtures", HERE / "record_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def f32(x: float) -> float:
    """The value MXNet's kernels receive for the Python float ``x``."""
    return float(np.float32(x))


def exact_lrs(lr: float, steps: int) -> list[float]:
    """A learning rate that drops, then rises (as ``changing_lrs``), by factors that keep
    a power-of-two rate exact in float32, the precision of MXNet's kernel parameter."""
    return [lr if k < 10 else lr * 0.3125 if k < 20 else lr * 1.75 for k in range(steps)]


def problem(seed: int, options: dict):
    base = _base()
    w0, grad = base.problem(seed, options.get("grad_scale", 1.0))
    if options.get("zero_w1"):
        w0[1] = np.zeros_like(w0[1])
    zero_steps = set(options.get("zero_g1", ()))

    def edged(k, w):
        g = grad(k, w)
        if k in zero_steps:
            g[1] = np.zeros_like(g[1])
        return g

    return w0, edged


# (id, reference, reference kwargs, gradstep rule, gradstep kwargs, options)
OPTAX_CASES = [
    (
        "lars_default",
        "lars",
        {"learning_rate": 1.0},
        "lars",
        {"learning_rate": 1.0, "weight_decay": 0.0, "epsilon": 0.0, "form": "optax"},
        {},
    ),
    (
        "lars_wd_tc_lr_change",
        "lars",
        {
            "learning_rate": 0.3,
            "weight_decay": 0.01,
            "trust_coefficient": 0.1,
            "eps": 1e-4,
            "momentum": 0.8,
        },
        "lars",
        {
            "learning_rate": 0.3,
            "weight_decay": 0.01,
            "trust_coefficient": 0.1,
            "epsilon": 1e-4,
            "momentum": 0.8,
            "form": "optax",
        },
        {"lrs": True},
    ),
    (
        "lars_nesterov_masks_zero_norms",
        "lars",
        {
            "learning_rate": 0.5,
            "weight_decay": 0.05,
            "weight_decay_mask": [True, False],
            "trust_coefficient": 0.2,
            "trust_ratio_mask": [True, False],
            "nesterov": True,
        },
        "lars",
        {
            "learning_rate": 0.5,
            "weight_decay": 0.05,
            "weight_decay_mask": [True, False],
            "trust_coefficient": 0.2,
            "epsilon": 0.0,
            "trust_ratio_mask": [True, False],
            "nesterov": True,
            "form": "optax",
        },
        {"zero_w1": True, "zero_g1": (3, 4)},
    ),
    (
        "lars_zero_norms_no_momentum",
        "lars",
        {"learning_rate": 0.5, "weight_decay": 0.0, "trust_coefficient": 0.2, "momentum": 0.0},
        "lars",
        {
            "learning_rate": 0.5,
            "weight_decay": 0.0,
            "trust_coefficient": 0.2,
            "epsilon": 0.0,
            "momentum": 0.0,
            "form": "optax",
        },
        {"zero_w1": True, "zero_g1": (3, 4, 10)},
    ),
    ("lamb_default", "lamb", {"learning_rate": 0.01}, "lamb", {"learning_rate": 0.01}, {}),
    (
        "lamb_wd_mask_lr_change",
        "lamb",
        {
            "learning_rate": 0.05,
            "b1": 0.8,
            "b2": 0.99,
            "eps": 1e-4,
            "weight_decay": 0.1,
            "mask": [True, False],
        },
        "lamb",
        {
            "learning_rate": 0.05,
            "beta1": 0.8,
            "beta2": 0.99,
            "epsilon": 1e-4,
            "weight_decay": 0.1,
            "weight_decay_mask": [True, False],
        },
        {"lrs": True},
    ),
    (
        "lamb_eps_root_zero_norms",
        "lamb",
        {"learning_rate": 0.02, "eps_root": 1e-8, "weight_decay": 0.01},
        "lamb",
        {"learning_rate": 0.02, "eps_root": 1e-8, "weight_decay": 0.01},
        {"zero_w1": True, "zero_g1": (0, 1, 2)},
    ),
]

# MXNet: reference kwargs go to mx.optimizer.create; "mode" picks the update call:
# "aggregate" (all tensors in one call, as Gluon's Trainer) or "per_index".
MX_LARS = {"learning_rate": 0.5, "momentum": 0.875, "eta": 0.125, "wd": 0.0078125}
MXNET_CASES = [
    (
        "lars_momentum_correction_lr_change",
        "LARS",
        MX_LARS,
        "lars",
        {
            "learning_rate": 0.5,
            "momentum": 0.875,
            "trust_coefficient": 0.125,
            "weight_decay": 0.0078125,
            "epsilon": 0.0,
            "form": "mxnet",
            "momentum_correction": True,
        },
        {"lrs": True, "mode": "aggregate"},
    ),
    (
        "lars_no_correction_eps_zero_norms",
        "LARS",
        {**MX_LARS, "eps": 0.25, "momentum_correction": False},
        "lars",
        {
            "learning_rate": 0.5,
            "momentum": 0.875,
            "trust_coefficient": 0.125,
            "weight_decay": 0.0078125,
            "epsilon": 0.25,
            "form": "mxnet",
        },
        {"lrs": True, "mode": "aggregate", "zero_w1": True, "zero_g1": (3, 4)},
    ),
    (
        "lars_no_momentum",
        "LARS",
        {"learning_rate": 0.25, "eta": 0.5, "wd": 0.03125},
        "lars",
        {
            "learning_rate": 0.25,
            "momentum": 0.0,
            "trust_coefficient": 0.5,
            "weight_decay": 0.03125,
            "epsilon": 0.0,
            "form": "mxnet",
        },
        {"mode": "aggregate"},
    ),
    (
        "lars_named_bias_excluded",
        "LARS",
        {**MX_LARS, "param_idx2name": {0: "fc_weight", 1: "fc_bias"}},
        "lars",
        {
            "learning_rate": 0.5,
            "momentum": 0.875,
            "trust_coefficient": 0.125,
            "weight_decay": 0.0078125,
            "epsilon": 0.0,
            "form": "mxnet",
            "momentum_correction": True,
            "trust_ratio_mask": [True, False],
            "weight_decay_mask": [True, False],
        },
        {"mode": "aggregate"},
    ),
    (
        "lars_rescale_clip",
        "LARS",
        {**MX_LARS, "rescale_grad": 0.5, "clip_gradient": 0.25},
        "lars",
        {
            "learning_rate": 0.5,
            "momentum": 0.875,
            "trust_coefficient": 0.125,
            "weight_decay": 0.0078125,
            "epsilon": 0.0,
            "form": "mxnet",
            "momentum_correction": True,
            "rescale_grad": 0.5,
            "clip_gradient": 0.25,
        },
        {"mode": "aggregate"},
    ),
    (
        "lamb_default",
        "LAMB",
        {"learning_rate": 0.0625},
        "lamb",
        {"learning_rate": 0.0625, "beta1": f32(0.9), "beta2": f32(0.999), "epsilon": f32(1e-6)},
        {"mode": "per_index"},
    ),
    (
        "lamb_wd_no_bias_correction_lr_change",
        "LAMB",
        {
            "learning_rate": 0.125,
            "beta1": 0.875,
            "beta2": 0.984375,
            "epsilon": 0.0009765625,
            "wd": 0.0625,
            "bias_correction": False,
        },
        "lamb",
        {
            "learning_rate": 0.125,
            "beta1": 0.875,
            "beta2": 0.984375,
            "epsilon": 0.0009765625,
            "weight_decay": 0.0625,
            "bias_correction": False,
        },
        {"mode": "per_index", "lrs": True},
    ),
    (
        "lamb_bounds_zero_norms",
        "LAMB",
        {
            "learning_rate": 0.0625,
            "beta1": 0.875,
            "beta2": 0.984375,
            "wd": 0.03125,
            "lower_bound": 0.5,
            "upper_bound": 2.0,
        },
        "lamb",
        {
            "learning_rate": 0.0625,
            "beta1": 0.875,
            "beta2": 0.984375,
            "epsilon": f32(1e-6),
            "weight_decay": 0.03125,
            "lower_bound": 0.5,
            "upper_bound": 2.0,
        },
        {"mode": "per_index", "zero_w1": True, "zero_g1": (0, 1, 5)},
    ),
    (
        "lbsgd_linear_momentum",
        "LBSGD",
        {
            "learning_rate": 0.125,
            "momentum": 0.875,
            "warmup_strategy": "linear",
            "warmup_epochs": 2,
            "updates_per_epoch": 4,
            "batch_scale": 3,
        },
        "lbsgd",
        {
            "learning_rate": 0.125,
            "momentum": 0.875,
            "warmup_strategy": "linear",
            "warmup_epochs": 2,
            "updates_per_epoch": 4,
            "batch_scale": 3,
        },
        {"mode": "per_index"},
    ),
    (
        "lbsgd_power2_wd_begin_epoch",
        "LBSGD",
        {
            "learning_rate": 0.0625,
            "momentum": 0.5,
            "wd": 0.0625,
            "warmup_strategy": "power2",
            "warmup_epochs": 4,
            "updates_per_epoch": 4,
            "batch_scale": 3,
            "begin_epoch": 1,
        },
        "lbsgd",
        {
            "learning_rate": 0.0625,
            "momentum": 0.5,
            "weight_decay": 0.0625,
            "warmup_strategy": "power2",
            "warmup_epochs": 4,
            "updates_per_epoch": 4,
            "batch_scale": 3,
            "begin_epoch": 1,
        },
        {"mode": "per_index", "lrs": True},
    ),
    (
        "lbsgd_sqrt_no_momentum",
        "LBSGD",
        {
            "learning_rate": 0.125,
            "wd": 0.03125,
            "warmup_strategy": "sqrt",
            "warmup_epochs": 3,
            "updates_per_epoch": 5,
            "batch_scale": 2,
        },
        "lbsgd",
        {
            "learning_rate": 0.125,
            "weight_decay": 0.03125,
            "warmup_strategy": "sqrt",
            "warmup_epochs": 3,
            "updates_per_epoch": 5,
            "batch_scale": 2,
        },
        {"mode": "per_index"},
    ),
    (
        "lbsgd_lars_momentum_wd",
        "LBSGD",
        {
            "learning_rate": 0.03125,
            "momentum": 0.75,
            "wd": 0.125,
            "warmup_strategy": "lars",
            "batch_scale": 2,
        },
        "lbsgd",
        {
            "learning_rate": 0.03125,
            "momentum": 0.75,
            "weight_decay": 0.125,
            "warmup_strategy": "lars",
            "batch_scale": 2,
        },
        {"mode": "per_index", "zero_w1": True},
    ),
    (
        "lbsgd_lars_rescale_clip",
        "LBSGD",
        {
            "learning_rate": 0.0625,
            "momentum": 0.5,
            "wd": 0.0625,
            "warmup_strategy": "lars",
            "batch_scale": 2,
            "rescale_grad": 0.5,
            "clip_gradient": 0.25,
        },
        "lbsgd",
        {
            "learning_rate": 0.0625,
            "momentum": 0.5,
            "weight_decay": 0.0625,
            "warmup_strategy": "lars",
            "batch_scale": 2,
            "rescale_grad": 0.5,
            "clip_gradient": 0.25,
        },
        {"mode": "per_index"},
    ),
    (
        "lbsgd_linear_clip",
        "LBSGD",
        {
            "learning_rate": 0.125,
            "warmup_strategy": "linear",
            "warmup_epochs": 1,
            "updates_per_epoch": 8,
            "batch_scale": 2,
            "clip_gradient": 0.5,
        },
        "lbsgd",
        {
            "learning_rate": 0.125,
            "warmup_strategy": "linear",
            "warmup_epochs": 1,
            "updates_per_epoch": 8,
            "batch_scale": 2,
            "clip_gradient": 0.5,
        },
        {"mode": "per_index"},
    ),
    (
        "lbsgd_plain",
        "LBSGD",
        {"learning_rate": 0.25},
        "lbsgd",
        {"learning_rate": 0.25},
        {"mode": "per_index"},
    ),
]

FLOAT32_CASES = {
    "optax": {"lars_wd_tc_lr_change", "lamb_default"},
    "mxnet": {
        "lars_momentum_correction_lr_change",
        "lamb_default",
        "lbsgd_linear_momentum",
        "lbsgd_lars_momentum_wd",
    },
}

_MX_SCALAR = (
    "MXNet sums the LARS norms in float32 and hands the layer learning rate it computes to a "
    "float32 kernel parameter: each step's size is off by up to a few 1e-7 relative, which "
    "momentum compounds over 30 steps"
)
_MX_MULT = (
    "MXNet hands lr * multiplier, which is not a float32 number here, to a float32 kernel parameter"
)
_LARS64 = (dict(rtol=1e-5, atol=1e-6), _MX_SCALAR)
# the cases whose reference rounds a scalar it computes to float32
TOLERANCES = {
    "mxnet-lars_momentum_correction_lr_change-float64": _LARS64,
    "mxnet-lars_no_correction_eps_zero_norms-float64": _LARS64,
    "mxnet-lars_no_momentum-float64": (dict(rtol=1e-6, atol=1e-8), _MX_SCALAR),
    "mxnet-lars_named_bias_excluded-float64": _LARS64,
    "mxnet-lbsgd_sqrt_no_momentum-float64": (dict(rtol=1e-5, atol=1e-7), _MX_MULT),
    "mxnet-lars_rescale_clip-float64": _LARS64,
    "mxnet-lbsgd_lars_rescale_clip-float64": (
        dict(rtol=1e-5, atol=1e-7),
        _MX_MULT + "; the 'lars' multiplier comes from float64 sums of squares",
    ),
    "mxnet-lbsgd_lars_momentum_wd-float64": (
        dict(rtol=1e-5, atol=1e-7),
        _MX_MULT + "; the 'lars' multiplier comes from float64 sums of squares",
    ),
    "mxnet-lars_momentum_correction_lr_change-float32": (
        dict(rtol=1e-4, atol=1e-5),
        "float32 LARS: the trust ratio divides two norms MXNet sums in float32 in another "
        "order; a relative change of 1e-6 in the layer rate compounds over 30 momentum steps",
    ),
}


def run_optax(name, kwargs, dtype, options, seed):
    import jax
    import jax.numpy as jnp
    import optax

    base = _base()
    w0, grad = problem(seed, options)
    factory = getattr(optax, name)
    lrs = base.changing_lrs(kwargs["learning_rate"]) if options.get("lrs") else None
    opt = optax.inject_hyperparams(factory)(**kwargs) if lrs else factory(**kwargs)
    params = [jnp.asarray(w, dtype=dtype) for w in w0]
    state = {"opt": opt.init(params), "params": params}

    def step(g, k):
        if lrs is not None:
            state["opt"].hyperparams["learning_rate"] = jnp.asarray(lrs[k], dtype=dtype)
        g = [jnp.asarray(x, dtype=dtype) for x in g]
        updates, state["opt"] = opt.update(g, state["opt"], state["params"])
        state["params"] = optax.apply_updates(state["params"], updates)
        return [np.asarray(jax.device_get(p)) for p in state["params"]]

    return base._record(w0, grad, lrs, dtype, params, step)


def run_mxnet(name, kwargs, dtype, options, seed):
    import mxnet as mx

    base = _base()
    w0, grad = problem(seed, options)
    kwargs = dict(kwargs)
    if "param_idx2name" in kwargs:
        kwargs["param_idx2name"] = {int(k): v for k, v in kwargs["param_idx2name"].items()}
    opt = mx.optimizer.create(name.lower(), **kwargs)
    lr0 = kwargs.get("learning_rate", 0.01)
    lrs = exact_lrs(lr0, base.STEPS) if options.get("lrs") else None
    weights = [mx.nd.array(w, dtype=dtype) for w in w0]
    states = [opt.create_state_multi_precision(i, w) for i, w in enumerate(weights)]
    indices = list(range(len(weights)))

    def step(g, k):
        if lrs is not None:
            opt.set_learning_rate(lrs[k])
        grads = [mx.nd.array(x, dtype=dtype) for x in g]
        if options["mode"] == "aggregate":
            opt.update_multi_precision(indices, weights, grads, states)
        else:
            for i in indices:
                opt.update_multi_precision(i, weights[i], grads[i], states[i])
        return [w.asnumpy().copy() for w in weights]

    return base._record(w0, grad, lrs, dtype, weights, step)


def record(library: str, cases: list, runner) -> list[dict]:
    out = []
    for seed, (case_id, ref, ref_kwargs, rule, rule_kwargs, options) in enumerate(cases):
        dtypes = ["float64"] + (["float32"] if case_id in FLOAT32_CASES[library] else [])
        for dtype in dtypes:
            data = runner(ref, ref_kwargs, dtype, options, seed + 100)
            reference = f"optax.{ref}" if library == "optax" else f"mxnet.optimizer.{ref}"
            case = {
                "id": f"{library}-{case_id}-{dtype}",
                "reference": reference,
                "reference_kwargs": json.loads(json.dumps(ref_kwargs)),
                "rule": rule,
                "rule_kwargs": rule_kwargs,
                "dtype": dtype,
                **data,
            }
            if case["id"] in TOLERANCES:
                case["tolerance"], case["tolerance_reason"] = TOLERANCES[case["id"]]
            out.append(case)
    return out


def mxnet_worker() -> None:
    """Run in MXNet's environment: print the MXNet cases and versions as JSON."""
    import logging

    import mxnet as mx

    logging.disable(logging.INFO)
    cases = record("mxnet", MXNET_CASES, run_mxnet)
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mxnet": mx.__version__,
    }
    json.dump({"cases": cases, "versions": versions}, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mxnet-python", help="interpreter of an environment with mxnet 1.9.1")
    parser.add_argument("--mxnet-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mxnet_worker:
        mxnet_worker()
        return

    import jax

    jax.config.update("jax_enable_x64", True)
    import optax

    old_cases = json.loads(OUT.read_text()) if OUT.exists() else []
    old_manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    cases = record("optax", OPTAX_CASES, run_optax)
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "optax": optax.__version__,
    }
    if args.mxnet_python:
        result = subprocess.run(
            [args.mxnet_python, str(Path(__file__).resolve()), "--mxnet-worker"],
            check=True,
            capture_output=True,
            text=True,
        )
        mx = json.loads(result.stdout)
        cases += mx["cases"]
        mx_versions = mx["versions"]
    else:
        cases += [c for c in old_cases if c["id"].startswith("mxnet-")]
        mx_versions = old_manifest.get("mxnet_environment", {})
    OUT.write_text(json.dumps(cases, indent=0))
    manifest = {
        "generator": "tests/conformance/record_layerwise_fixtures.py",
        "steps": _base().STEPS,
        "versions": versions,
        "mxnet_environment": mx_versions,
        "platform": f"{platform.system()} {platform.machine()}",
        "command": "python tests/conformance/record_layerwise_fixtures.py --mxnet-python "
        "<python of an environment with mxnet==1.9.1 and numpy<1.24>",
        "objax": "not installable; its LARS is checked against hand-derived float64 values "
        "in tests/layerwise/test_objax_lars.py",
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    for library in ("optax", "mxnet"):
        print(f"{library}: {sum(c['id'].startswith(library) for c in cases)} trajectories")


if __name__ == "__main__":
    main()
