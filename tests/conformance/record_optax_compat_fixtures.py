"""Record optax trajectories for the names of ``gradstep.compat.optax``.

Run from the repository root (needs jax and optax installed; the tests need jax but
not optax)::

    python tests/conformance/record_optax_compat_fixtures.py

Each case is a *spec*, a small JSON description of a call such as
``{"fn": "adamw", "args": [0.05], "kwargs": {"mask": {"w": true, "b": false}}}``; the
same spec is built once from ``optax`` (recorded here) and once from
``gradstep.compat.optax`` (replayed by ``tests/jax_front/test_optax_compat.py``
under ``jax.jit``). A value ``{"fn": ...}`` inside a spec is built too (schedules,
inner transforms); ``{"attr": name}`` is the module attribute itself (a factory);
``"call"`` calls the built object with keyword arguments.

Each case runs ``STEPS`` steps on a dict of two tensors with gradients
``h * (w - target) + noise`` at optax's own iterates (one column always has a zero
gradient; some cases put NaN into chosen steps). The optimizer state after the last step is recorded
too (its structure and values), for the tests of the state optax code reads.
float64 cases are recorded with
``jax_enable_x64`` on, float32 cases with it off (optax's float32 arithmetic,
bias corrections included). Further case lists live in ``optax_compat_cases_*.py``
beside this script (see :func:`groups`); ``--group NAME`` records one of them. The
files go to ``fixtures/optax_compat/`` -- a folder,
so the generic replay of ``fixtures/*.json`` (NumPy front, registry rules) does not
read them -- with ``MANIFEST.json`` recording the versions.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "fixtures" / "optax_compat"
STEPS = 25
SHAPES = {"w": (3, 4), "b": (5,)}


def attribute(module, name: str):
    """``module.name``, ``name`` possibly dotted (``"contrib.muon"``)."""
    out = module
    for part in name.split("."):
        out = getattr(out, part)
    return out


def build(module, spec):
    """The object a spec describes, made from ``module`` (optax or its compat twin)."""
    if isinstance(spec, dict) and "fn" in spec:
        fn = attribute(module, spec["fn"])
        out = fn(
            *[build(module, a) for a in spec.get("args", [])],
            **build(module, spec.get("kwargs", {})),
        )
        if "call" in spec:
            out = out(**build(module, spec["call"]))
        return out
    if isinstance(spec, dict) and "attr" in spec:
        return attribute(module, spec["attr"])
    if isinstance(spec, dict):
        return {k: build(module, v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [build(module, v) for v in spec]
    return spec


def names_in(spec) -> set[str]:
    """Every module name a spec uses."""
    out: set[str] = set()
    if isinstance(spec, dict):
        if "fn" in spec:
            out.add(spec["fn"])
        if "attr" in spec:
            out.add(spec["attr"])
        for v in spec.values():
            out |= names_in(v)
    elif isinstance(spec, list):
        for v in spec:
            out |= names_in(v)
    return out


def problem(seed: int, grad_scale: float, nan_steps: tuple = ()):
    rng = np.random.default_rng(seed)
    w0 = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    target = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    curvature = {k: rng.uniform(0.5, 2.0, size=s) for k, s in SHAPES.items()}
    noise = [{k: 0.1 * rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(STEPS)]

    def grad(k: int, w: dict) -> dict:
        g = {n: grad_scale * (curvature[n] * (w[n] - target[n]) + noise[k][n]) for n in SHAPES}
        g["w"][:, 0] = 0.0  # coordinates whose gradient is always zero
        if k in nan_steps:
            g["b"][1] = np.nan
        return g

    return w0, grad


def S(fn, *args, **kwargs) -> dict:  # noqa: N802 - a spec, read like a call
    out: dict = {"fn": fn}
    if args:
        out["args"] = list(args)
    if kwargs:
        out["kwargs"] = kwargs
    return out


WARMUP_COSINE = S("warmup_cosine_decay_schedule", 0.0, 0.1, 5, 20, end_value=0.01)

# Where optax and gradstep compute a per-step scalar in different precisions, a
# case states its own tolerance and the reason:
# - optax evaluates most schedules in float32 even with jax_enable_x64 on (its
#   arithmetic on the int32 count); gradstep's schedules give Python floats.
F32_SCHEDULE = {
    "float64_tolerance": {"rtol": 1e-5, "atol": 1e-7},
    "reason": "optax evaluates this schedule in float32 even with jax_enable_x64 "
    "(arithmetic on the int32 count); gradstep's schedules give Python floats",
}
# - optax computes RAdam's rho_t in float32: the cancellation in rho_inf - 2t b^t/(1-b^t)
#   moves rho_6 from 5.994 to 6.0005, the rectification factor by 0.3%; gradstep's
#   prepare computes it in float64.
RADAM_F32 = {
    "float32_tolerance": {"rtol": 1e-3, "atol": 1e-4},
    "reason": "optax computes RAdam's rho_t in float32 (cancellation: rho_6 = 6.0005 "
    "instead of 5.9942, the rectification 0.3% off); gradstep's prepare uses float64",
}
# - gradstep's Nadam prepare is Python (products over the steps), so it runs on the
#   host in float64; optax computes its bias corrections in float32.
NADAM_F32 = {
    "float32_tolerance": {"rtol": 1e-4, "atol": 1e-5},
    "reason": "gradstep's Nadam scalars are computed on the host in float64 (its "
    "prepare is Python); optax computes 1 - b1^t in float32",
}

# - centered RMSProp with bias correction in float32: the step divides by
#   sqrt(n-hat - m-hat^2), a difference of two nearly equal numbers early on, which
#   turns the float32 rounding of either implementation into ~1e-4 relative changes.
CENTERED_F32 = {
    "float32_tolerance": {"rtol": 1e-3, "atol": 1e-5},
    "reason": "centered RMSProp with bias correction divides by sqrt(n_hat - m_hat^2): "
    "the cancellation amplifies float32 rounding (optax's as much as gradstep's) to "
    "~1e-4 relative; float64 agrees to 1e-13",
}

# (case id, spec, options); options: grad_scale, nan_steps, hyperparams (per step),
# float64_tolerance (replaces the float64 default, for F32_SCHEDULE's reason)
CASES = [
    ("adam", S("adam", 0.05), {}),
    ("adam_b_eps_root", S("adam", 0.2, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8), {}),
    ("adam_small_grads", S("adam", 1.0, b1=0.8, b2=0.99), {"grad_scale": 1e-4}),
    ("adam_warmup_cosine", S("adam", WARMUP_COSINE), F32_SCHEDULE),
    ("adamw", S("adamw", 0.05), {}),
    ("adamw_masked_wd", S("adamw", 0.05, weight_decay=0.1, mask={"w": True, "b": False}), {}),
    (
        "adamw_scheduled_wd",
        S("adamw", 0.05, weight_decay=S("exponential_decay", 0.2, 5, 0.5, staircase=True)),
        F32_SCHEDULE,
    ),
    ("amsgrad", S("amsgrad", 0.05), {}),
    ("sgd", S("sgd", 0.1), {}),
    ("sgd_momentum", S("sgd", 0.05, momentum=0.9), {}),
    (
        "sgd_nesterov_polynomial",
        S("sgd", S("polynomial_schedule", 0.1, 0.01, 2, 15, 3), momentum=0.8, nesterov=True),
        F32_SCHEDULE,
    ),
    ("rmsprop", S("rmsprop", 0.01), {}),
    (
        "rmsprop_centered_momentum",
        S("rmsprop", 0.01, decay=0.95, centered=True, momentum=0.9, initial_scale=0.1),
        {},
    ),
    (
        "rmsprop_eps_outside_nesterov",
        S("rmsprop", 0.01, eps_in_sqrt=False, momentum=0.5, nesterov=True),
        {},
    ),
    ("adagrad", S("adagrad", 0.5), {}),
    ("adagrad_init_eps", S("adagrad", 0.3, initial_accumulator_value=1.0, eps=1e-4), {}),
    ("adadelta_no_lr_ascent", S("adadelta"), {}),
    ("adadelta_lr_wd", S("adadelta", 1.0, rho=0.95, weight_decay=0.01), {}),
    (
        "adadelta_masked_wd",
        S("adadelta", 0.5, weight_decay=0.1, weight_decay_mask={"w": False, "b": True}),
        {},
    ),
    ("adamax", S("adamax", 0.05), {}),
    ("adamax_b", S("adamax", 0.1, b1=0.5, b2=0.9, eps=1e-4), {}),
    ("nadam", S("nadam", 0.05), NADAM_F32),
    ("nadam_b_eps_root", S("nadam", 0.1, b1=0.8, b2=0.99, eps_root=1e-8), NADAM_F32),
    ("adam_nesterov", S("adam", 0.05, nesterov=True), NADAM_F32),
    ("adamw_nesterov", S("adamw", 0.05, weight_decay=0.05, nesterov=True), NADAM_F32),
    ("nadamw_masked", S("nadamw", 0.05, weight_decay=0.1, mask={"w": True, "b": False}), NADAM_F32),
    ("adamaxw", S("adamaxw", 0.05, b1=0.8, weight_decay=0.05), {}),
    ("radam", S("radam", 0.05), RADAM_F32),
    (
        "radam_nesterov_threshold",
        S("radam", 0.05, b2=0.99, threshold=4.5, nesterov=True),
        RADAM_F32,
    ),
    ("lion", S("lion", 0.01), {}),
    (
        "lion_masked_b",
        S("lion", 0.02, b1=0.5, b2=0.9, weight_decay=0.1, mask={"w": True, "b": False}),
        {},
    ),
    ("lamb", S("lamb", 0.05), {}),
    (
        "lamb_wd_eps",
        S("lamb", 0.05, b1=0.8, eps=1e-4, weight_decay=0.1, mask={"w": True, "b": False}),
        {},
    ),
    ("lars", S("lars", 0.5), {}),
    (
        "lars_masks_nesterov",
        S(
            "lars",
            0.5,
            weight_decay=0.01,
            weight_decay_mask={"w": False, "b": True},
            trust_coefficient=0.02,
            eps=1e-3,
            trust_ratio_mask={"w": True, "b": False},
            momentum=0.8,
            nesterov=True,
        ),
        {},
    ),
    (
        "chain_clip_global_norm_adam",
        S("chain", S("clip_by_global_norm", 1.0), S("adam", 0.05)),
        {},
    ),
    (
        "chain_blocks",
        S(
            "chain",
            S("clip", 0.5),
            S("scale_by_adam", b1=0.8),
            S("add_decayed_weights", 0.01, mask={"w": True, "b": False}),
            S("scale_by_learning_rate", S("cosine_decay_schedule", 0.1, 20, alpha=0.1)),
        ),
        {},
    ),
    (
        "chain_rms_trace",
        S(
            "chain",
            S("scale_by_rms", decay=0.9, eps=1e-6),
            S("scale", -0.01),
            S("trace", 0.9, nesterov=True),
            S("identity"),
        ),
        {},
    ),
    (
        "chain_lr_no_flip_linear",
        S(
            "chain",
            S("scale_by_adam"),
            S("scale", -1.0),
            S("scale_by_learning_rate", S("linear_schedule", 0.1, 0.0, 20, 2), flip_sign=False),
        ),
        F32_SCHEDULE,
    ),
    (
        "masked_sgd",
        S("chain", S("masked", S("trace", 0.9), {"w": True, "b": False}), S("scale", -0.1)),
        {},
    ),
    (
        "multi_transform",
        S(
            "multi_transform",
            {"a": S("adam", 0.05), "s": S("sgd", S("constant_schedule", 0.1))},
            {"w": "a", "b": "s"},
        ),
        {},
    ),
    (
        "partition",
        S(
            "partition",
            {"a": S("adamax", 0.05), "s": S("rmsprop", 0.01)},
            {"w": "s", "b": "a"},
        ),
        {},
    ),
    (
        "apply_if_finite",
        S("apply_if_finite", S("adam", 0.05), 2),
        {"nan_steps": (4, 9, 10, 11, 12)},
    ),
    (
        "schedules_joined",
        S(
            "sgd",
            S(
                "join_schedules",
                [
                    S("warmup_constant_schedule", 0.0, 0.1, 4),
                    S("piecewise_constant_schedule", 0.1, {"3": 0.5, "8": 0.2}),
                ],
                [6],
            ),
        ),
        F32_SCHEDULE,
    ),
    (
        "exponential_decay_end_value",
        S("sgd", S("exponential_decay", 0.2, 3, 0.7, transition_begin=2, end_value=0.05)),
        F32_SCHEDULE,
    ),
    (
        "inject_hyperparams_lr",
        {**S("inject_hyperparams", {"attr": "adam"}), "call": {"learning_rate": 0.05, "b1": 0.8}},
        {"hyperparams": True},
    ),
    (
        "inject_hyperparams_scheduled_decay",
        {
            **S("inject_hyperparams", {"attr": "rmsprop"}),
            "call": {"learning_rate": 0.01, "decay": S("linear_schedule", 0.5, 0.99, 10)},
        },
        {
            "fixed_hyperparams": ["initial_scale"],
            "float32_in_optax": [".hyperparams['decay']"],
            **F32_SCHEDULE,
        },
    ),
    (
        "inject_stateful_hyperparams_sgd",
        {
            **S("inject_stateful_hyperparams", {"attr": "sgd"}),
            "call": {"learning_rate": S("cosine_decay_schedule", 0.1, 20), "momentum": 0.9},
        },
        {"float32_in_optax": [".hyperparams['learning_rate']"], **F32_SCHEDULE},
    ),
    ("rmsprop_bias_correction", S("rmsprop", 0.01, bias_correction=True), {}),
    (
        "rmsprop_centered_bias_correction_momentum",
        S(
            "rmsprop",
            0.01,
            centered=True,
            bias_correction=True,
            momentum=0.9,
            initial_scale=0.1,
        ),
        CENTERED_F32,
    ),
    (
        "scale_by_stddev_bias_correction",
        S(
            "chain",
            S("scale_by_stddev", initial_scale=0.1, eps_in_sqrt=False, bias_correction=True),
            S("scale", -0.01),
        ),
        CENTERED_F32,
    ),
    # optax's names for gradstep's existing stages and optimizers
    ("scale_by_sign", S("chain", S("scale_by_sign"), S("scale", -0.01)), {}),
    ("sign_sgd", S("sign_sgd", 0.01), {}),
    ("ema", S("chain", S("ema", 0.8), S("scale", -0.05)), {}),
    ("ema_no_debias", S("chain", S("ema", 0.5, debias=False), S("scale", -0.05)), {}),
    ("signum", S("signum", 0.01, beta=0.8), {}),
    ("scale_by_adamax", S("chain", S("scale_by_adamax", b1=0.8), S("scale", -0.05)), {}),
    (
        "scale_by_amsgrad",
        S("chain", S("scale_by_amsgrad", eps_root=1e-8), S("scale_by_learning_rate", 0.05)),
        {},
    ),
    ("scale_by_radam", S("chain", S("scale_by_radam"), S("scale", -0.05)), RADAM_F32),
    (
        "scale_by_lion_masked_decay",
        S(
            "chain",
            S("scale_by_lion", b1=0.8),
            S("add_decayed_weights", 0.1, mask={"w": True, "b": False}),
            S("scale", -0.01),
        ),
        {},
    ),
    ("scale_by_adadelta", S("chain", S("scale_by_adadelta", rho=0.95), S("scale", -1.0)), {}),
    ("scale_by_rss", S("chain", S("scale_by_rss", 0.5, 1e-5), S("scale", -0.5)), {}),
    ("scale_by_stddev", S("chain", S("scale_by_stddev", initial_scale=0.1), S("scale", -0.01)), {}),
    (
        "scale_by_trust_ratio",
        S(
            "chain",
            S("scale_by_adam"),
            S("scale_by_trust_ratio", trust_coefficient=0.5, eps=1e-3),
            S("scale", -0.05),
        ),
        {},
    ),
    (
        "scale_by_schedule",
        S("chain", S("scale_by_adam"), S("scale_by_schedule", S("linear_schedule", -0.1, 0.0, 20))),
        F32_SCHEDULE,
    ),
    (
        "named_chain",
        S("named_chain", ["clip", S("clip_by_global_norm", 1.0)], ["opt", S("adam", 0.05)]),
        {},
    ),
    (
        "set_to_zero_partition",
        S("multi_transform", {"a": S("adam", 0.05), "z": S("set_to_zero")}, {"w": "a", "b": "z"}),
        {},
    ),
]
# "float32_in_optax": state leaves optax keeps in float32 even with jax_enable_x64
# (the schedule's value, see F32_SCHEDULE), gradstep in float64.
# "fixed_hyperparams": numeric arguments optax puts into ``state.hyperparams`` that
# act only when the state is made (rmsprop's ``initial_scale``), so gradstep's
# ``inject_hyperparams`` leaves them out of the state rather than accept changes it
# would ignore (``eps``, ``eps_root`` are per-step hyperparameters and injected).


def changing_lr(lr: float, k: int) -> float:
    return lr if k < 8 else lr * 0.3 if k < 16 else lr * 1.7


def _keys_to_int(spec):
    """JSON object keys are strings; piecewise_constant_schedule wants int boundaries."""
    if isinstance(spec, dict) and spec.get("fn") == "piecewise_constant_schedule":
        args = list(spec["args"])
        args[1] = {int(k): v for k, v in args[1].items()}
        return {**spec, "args": args}
    if isinstance(spec, dict):
        return {k: _keys_to_int(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_keys_to_int(v) for v in spec]
    return spec


def run(module, spec, dtype: str, options: dict, seed: int, grads=None):
    """Run ``spec`` built from ``module`` (under jit); record or replay ``grads``."""
    import jax
    import jax.numpy as jnp

    opt = build(module, _keys_to_int(spec))
    if grads is None:
        w0, grad = problem(
            seed, options.get("grad_scale", 1.0), tuple(options.get("nan_steps", ()))
        )
    else:
        w0, grad = grads["params0"], lambda k, w: grads["grads"][k]
    params = {k: jnp.asarray(np.asarray(v), dtype) for k, v in w0.items()}
    state = opt.init(params)
    update = jax.jit(opt.update)
    out = {
        "params0": {k: np.asarray(v, dtype) for k, v in w0.items()},
        "grads": [],
        "trajectory": [],
    }
    lrs = []
    for k in range(STEPS):
        current = {n: np.asarray(v, np.float64) for n, v in params.items()}
        g = {n: np.asarray(v, np.float64).astype(dtype) for n, v in grad(k, current).items()}
        if options.get("hyperparams"):
            lr = changing_lr(0.05, k)
            state.hyperparams["learning_rate"] = jnp.asarray(lr, dtype)
            lrs.append(lr)
        updates, state = update({n: jnp.asarray(v) for n, v in g.items()}, state, params)
        params = jax.tree_util.tree_map(lambda p, u: (p + u).astype(p.dtype), params, updates)
        out["grads"].append(g)
        out["trajectory"].append({n: np.asarray(v) for n, v in params.items()})
    out["lrs"] = lrs or None
    out["state"] = state_record(state)
    return out


def state_record(state) -> dict:
    """The optimizer state after the last step as optax code sees it: its structure
    (classes, field names, keys) and each leaf's path, dtype and values."""
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(state)
    return {
        "treedef": str(jax.tree_util.tree_structure(state)),
        "leaves": [
            [jax.tree_util.keystr(path), str(np.asarray(x).dtype), np.asarray(x).tolist()]
            for path, x in leaves
        ],
    }


def tolerance(options: dict, dtype: str) -> dict:
    """A case's own tolerance for ``dtype`` and its reason, if it states one."""
    key = f"{dtype}_tolerance"
    if key not in options:
        return {}
    return {"tolerance": options[key], "tolerance_reason": options["reason"]}


def groups() -> dict[str, list]:
    """The case lists by fixture file: this module's ``CASES`` (``optax_compat.json``)
    and each ``optax_compat_cases_NAME.py`` beside it, whose ``cases(S)`` gives the
    cases of ``optax_compat_NAME.json`` (one file per family of names, recorded on
    its own with ``--group NAME``)."""
    import importlib.util

    out = {"optax_compat": CASES}
    for path in sorted(Path(__file__).parent.glob("optax_compat_cases_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out["optax_compat_" + path.stem.removeprefix("optax_compat_cases_")] = module.cases(S)
    return out


def record(case_list: list) -> list[dict]:
    import jax
    import optax

    cases = []
    for seed, (case_id, spec, options) in enumerate(case_list):
        for dtype in ("float64", "float32"):
            with jax.enable_x64(dtype == "float64"):
                data = run(optax, spec, dtype, options, seed)
            as_list = lambda tree: {k: np.asarray(v).tolist() for k, v in tree.items()}  # noqa: E731
            cases.append(
                {
                    "id": f"optax_compat-{case_id}-{dtype}",
                    "reference": f"optax.{spec['fn']}",
                    "names": sorted(names_in(spec)),
                    "spec": spec,
                    "options": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in options.items()
                    },
                    "dtype": dtype,
                    "x64": dtype == "float64",
                    "params0": as_list(data["params0"]),
                    "grads": [as_list(g) for g in data["grads"]],
                    "trajectory": [as_list(t) for t in data["trajectory"]],
                    "lrs": data["lrs"],
                    "state": data["state"],
                    **tolerance(options, dtype),
                }
            )
    return cases


def main() -> None:
    import argparse

    import jax
    import optax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", help="record only these groups")
    chosen = parser.parse_args().group
    HERE.mkdir(parents=True, exist_ok=True)
    for name, case_list in groups().items():
        if chosen and name not in chosen and name.removeprefix("optax_compat_") not in chosen:
            continue
        cases = record(case_list)
        (HERE / f"{name}.json").write_text(json.dumps(cases, indent=0))
        print(f"{name}: {len(cases)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_optax_compat_fixtures.py",
        "steps": STEPS,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "jax": jax.__version__,
            "optax": optax.__version__,
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    (HERE / "MANIFEST-optax-compat.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
