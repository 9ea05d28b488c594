"""Record optax trajectories on complex parameters for ``gradstep.compat.optax``.

Run from the repository root (needs jax and optax installed; the tests need jax but
not optax)::

    python tests/conformance/record_optax_complex_fixtures.py

optax steps a complex parameter with complex first moments and second moments from
:math:`|g|^2 = \\mathrm{Re}(g \\bar g)` (its ``update_moment_per_elem_norm``); its
state keeps the parameter's complex dtype. The cases are specs as in
``record_optax_compat_fixtures.py`` (whose ``build``, ``S`` and ``state_record``
this script uses), run ``STEPS`` steps on a dict of two complex tensors with
gradients ``h * (w - target) + noise`` (complex target and noise, real curvature
``h``; one column always has a zero gradient); a case may keep some leaves real
(``"real_leaves"``: a tree mixing both). complex128 cases are recorded with
``jax_enable_x64`` on, complex64 cases with it off. Complex values are stored as
``{"re": [...], "im": [...]}``. The file goes to
``fixtures/optax_compat/optax_complex.json`` (not named ``optax_compat*.json``: the
real-valued replay does not read it; ``tests/jax_front/test_optax_complex.py``
does), with ``MANIFEST-optax-complex.json`` recording the versions.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "fixtures" / "optax_compat"
STEPS = 20
SHAPES = {"w": (3, 4), "b": (5,)}
DTYPES = ("complex128", "complex64")


def compat_recorder():
    """``record_optax_compat_fixtures.py`` as a module (its spec helpers)."""
    path = Path(__file__).parent / "record_optax_compat_fixtures.py"
    spec = importlib.util.spec_from_file_location("record_optax_compat_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMPAT = compat_recorder()
S = COMPAT.S

# complex64 cases whose per-step scalars optax computes in float32 where gradstep
# uses float64 (the reasons of the real-valued fixtures, the same on complex values)
RADAM_F32 = COMPAT.RADAM_F32
NADAM_F32 = COMPAT.NADAM_F32

# (case id, spec, options); options: real_leaves (names kept real), grad_scale
CASES = [
    ("adam", S("adam", 0.05), {}),
    ("adam_b_eps_root", S("adam", 0.2, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8), {}),
    ("adam_mixed_real_leaf", S("adam", 0.05), {"real_leaves": ["b"]}),
    ("adamw_masked_wd", S("adamw", 0.05, weight_decay=0.1, mask={"w": True, "b": False}), {}),
    ("amsgrad", S("amsgrad", 0.05), {}),
    ("adagrad", S("adagrad", 0.5), {}),
    ("adagrad_init_eps", S("adagrad", 0.3, initial_accumulator_value=1.0, eps=1e-4), {}),
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
    (
        "lamb_wd_eps",
        S("lamb", 0.05, b1=0.8, eps=1e-4, weight_decay=0.1, mask={"w": True, "b": False}),
        {},
    ),
    ("nadam", S("nadam", 0.05), NADAM_F32),
    ("adam_nesterov", S("adam", 0.05, nesterov=True), NADAM_F32),
    ("radam", S("radam", 0.05), RADAM_F32),
    (
        "radam_nesterov_threshold",
        S("radam", 0.05, b2=0.99, threshold=4.5, nesterov=True),
        RADAM_F32,
    ),
    ("sgd_momentum", S("sgd", 0.05, momentum=0.9), {}),
    ("sgd_nesterov", S("sgd", 0.05, momentum=0.8, nesterov=True), {}),
    ("adamax", S("adamax", 0.05), {}),
    ("adamax_b", S("adamax", 0.1, b1=0.5, b2=0.9, eps=1e-4), {}),
    ("chain_clip_global_norm_adam", S("chain", S("clip_by_global_norm", 1.0), S("adam", 0.05)), {}),
    (
        "chain_scale_by_blocks",
        S(
            "chain",
            S("scale_by_adam", b1=0.8),
            S("add_decayed_weights", 0.01, mask={"w": True, "b": False}),
            S("scale_by_learning_rate", 0.05),
        ),
        {},
    ),
    (
        "chain_rms_trace",
        S("chain", S("scale_by_rms", decay=0.9, eps=1e-6), S("scale", -0.01), S("trace", 0.9)),
        {},
    ),
    (
        "chain_stddev",
        S("chain", S("scale_by_stddev", initial_scale=0.1), S("scale", -0.01)),
        {},
    ),
    (
        "chain_rss",
        S("chain", S("scale_by_rss", initial_accumulator_value=0.5), S("scale", -0.1)),
        {},
    ),
    (
        "chain_amsgrad",
        S("chain", S("scale_by_amsgrad", eps_root=1e-8), S("scale_by_learning_rate", 0.05)),
        {},
    ),
    ("chain_radam", S("chain", S("scale_by_radam"), S("scale", -0.05)), RADAM_F32),
    ("chain_adamax", S("chain", S("scale_by_adamax", b1=0.8), S("scale", -0.05)), {}),
    (
        "chain_trust_ratio",
        S(
            "chain",
            S("scale_by_adam"),
            S("scale_by_trust_ratio", trust_coefficient=0.5, eps=1e-3),
            S("scale", -0.05),
        ),
        {},
    ),
    (
        "multi_transform",
        S(
            "multi_transform",
            {"a": S("adam", 0.05), "s": S("sgd", 0.1, momentum=0.9)},
            {"w": "a", "b": "s"},
        ),
        {},
    ),
    ("nadamw_masked", S("nadamw", 0.05, weight_decay=0.1, mask={"w": True, "b": False}), NADAM_F32),
    ("adamaxw", S("adamaxw", 0.05, b1=0.8, weight_decay=0.05), {}),
    (
        "lars_masks_nesterov",
        S(
            "lars",
            0.5,
            weight_decay=0.01,
            trust_coefficient=0.02,
            eps=1e-3,
            trust_ratio_mask={"w": True, "b": False},
            momentum=0.8,
            nesterov=True,
        ),
        {},
    ),
    ("chain_ema", S("chain", S("ema", 0.9), S("scale", -0.1)), {}),
    (
        "inject_hyperparams_adam",
        {**S("inject_hyperparams", {"attr": "adam"}), "call": {"learning_rate": 0.05, "b1": 0.8}},
        {},
    ),
]


def problem(seed: int, options: dict, dtype: str):
    """The start and the gradient function of a case (complex leaves, but for the
    ``real_leaves`` of its options)."""
    rng = np.random.default_rng(seed)
    real = set(options.get("real_leaves", ()))
    scale = options.get("grad_scale", 1.0)

    def draw(name: str, shape: tuple, size: float = 1.0):
        x = size * rng.normal(size=shape)
        y = size * rng.normal(size=shape)
        return x if name in real else x + 1j * y

    w0 = {k: draw(k, s) for k, s in SHAPES.items()}
    target = {k: draw(k, s) for k, s in SHAPES.items()}
    curvature = {k: rng.uniform(0.5, 2.0, size=s) for k, s in SHAPES.items()}
    noise = [{k: draw(k, s, 0.1) for k, s in SHAPES.items()} for _ in range(STEPS)]
    leaf_dtype = {k: "float64" if dtype == "complex128" else "float32" for k in real}

    def grad(k: int, w: dict) -> dict:
        g = {n: scale * (curvature[n] * (w[n] - target[n]) + noise[k][n]) for n in SHAPES}
        g["w"][:, 0] = 0.0  # coordinates whose gradient is always zero
        return {n: np.asarray(v).astype(leaf_dtype.get(n, dtype)) for n, v in g.items()}

    return {n: np.asarray(v).astype(leaf_dtype.get(n, dtype)) for n, v in w0.items()}, grad


def run(module, spec, dtype: str, options: dict, seed: int, grads=None):
    """Run ``spec`` built from ``module`` under ``jax.jit``; record or replay ``grads``
    (``{"params0": tree, "grads": [tree, ...]}`` of NumPy arrays)."""
    import jax
    import jax.numpy as jnp

    opt = COMPAT.build(module, COMPAT._keys_to_int(spec))
    if grads is None:
        w0, grad = problem(seed, options, dtype)
    else:
        w0, grad = grads["params0"], lambda k, w: grads["grads"][k]
    params = {k: jnp.asarray(v) for k, v in w0.items()}
    state = opt.init(params)
    update = jax.jit(opt.update)
    out = {"params0": w0, "grads": [], "trajectory": []}
    for k in range(STEPS):
        g = grad(k, {n: np.asarray(v) for n, v in params.items()})
        updates, state = update({n: jnp.asarray(v) for n, v in g.items()}, state, params)
        params = jax.tree_util.tree_map(lambda p, u: (p + u).astype(p.dtype), params, updates)
        out["grads"].append(g)
        out["trajectory"].append({n: np.asarray(v) for n, v in params.items()})
    out["state"] = state_record(state)
    return out


def encoded(x) -> dict:
    """An array as JSON: ``{"dtype", "re", "im"}`` (``im`` absent for a real one)."""
    a = np.asarray(x)
    out = {"dtype": str(a.dtype), "re": np.real(a).tolist()}
    if np.iscomplexobj(a):
        out["im"] = np.imag(a).tolist()
    return out


def decoded(data: dict) -> np.ndarray:
    """The array :func:`encoded` wrote."""
    re = np.asarray(data["re"], np.float64)
    if "im" not in data:
        return re.astype(data["dtype"])
    return (re + 1j * np.asarray(data["im"], np.float64)).astype(data["dtype"])


def state_record(state) -> dict:
    """The state after the last step as optax code sees it: its structure and each
    leaf's path, dtype and (encoded) values."""
    import jax

    return {
        "treedef": str(jax.tree_util.tree_structure(state)),
        "leaves": [
            [jax.tree_util.keystr(path), str(np.asarray(x).dtype), encoded(x)]
            for path, x in jax.tree_util.tree_leaves_with_path(state)
        ],
    }


def tolerance(options: dict, dtype: str) -> dict:
    """A case's own tolerance for ``dtype`` (complex64: the float32 one) and its reason."""
    key = "float32_tolerance" if dtype == "complex64" else "float64_tolerance"
    if key not in options:
        return {}
    return {"tolerance": options[key], "tolerance_reason": options["reason"]}


def record() -> list[dict]:
    import jax
    import optax

    cases = []
    for seed, (case_id, spec, options) in enumerate(CASES):
        for dtype in DTYPES:
            with jax.enable_x64(dtype == "complex128"):
                data = run(optax, spec, dtype, options, seed)
            tree = lambda t: {k: encoded(v) for k, v in t.items()}  # noqa: E731
            cases.append(
                {
                    "id": f"optax_complex-{case_id}-{dtype}",
                    "reference": f"optax.{spec['fn']}",
                    "names": sorted(COMPAT.names_in(spec)),
                    "spec": spec,
                    "options": {k: v for k, v in options.items() if k != "reason"},
                    "dtype": dtype,
                    "x64": dtype == "complex128",
                    "params0": tree(data["params0"]),
                    "grads": [tree(g) for g in data["grads"]],
                    "trajectory": [tree(t) for t in data["trajectory"]],
                    "state": data["state"],
                    **tolerance(options, dtype),
                }
            )
    return cases


def main() -> None:
    import jax
    import optax

    HERE.mkdir(parents=True, exist_ok=True)
    cases = record()
    (HERE / "optax_complex.json").write_text(json.dumps(cases, indent=0))
    print(f"optax_complex: {len(cases)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_optax_complex_fixtures.py",
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
    (HERE / "MANIFEST-optax-complex.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
