"""Record optax 0.2.8 trajectories of the rules that take an extra input or draw
noise: ``polyak_sgd`` (the loss value every step) and ``noisy_sgd``.

Run from the repository root (needs jax and optax; the tests do not)::

    python tests/conformance/record_optax_tail_fixtures.py

Each case runs ``STEPS`` steps on two tensors with the loss
:math:`f(w) = \\sum \\tfrac12 h (w - t)^2` and gradients ``h * (w - target) + noise``
at optax's own iterates (one column of the first tensor always gets a zero
gradient). The loss at the parameters before each step (without the noise) goes to
optax as ``value=`` and into the case's ``ctx`` (per step), which
``test_conformance.py`` hands to the gradstep rule the same way.

``noisy_sgd`` draws its noise from each library's own generator, so its
trajectories can only be compared without noise: the cases are recorded with
``eta=0`` (the update is then exactly SGD's plus zero noise);
``tests/jax_front/test_optax_tail.py`` compares the noise's variance per step with
optax's. Cases go to ``fixtures/optax_tail.json`` (format of ``record_fixtures.py``),
the versions to ``fixtures/MANIFEST-optax-tail.json``.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "optax_tail.json"
MANIFEST = FIXTURES / "MANIFEST-optax-tail.json"
STEPS = 30
SHAPES = ((3, 4), (5,))

# (id, optax name, optax kwargs, gradstep rule, gradstep kwargs)
CASES = [
    ("polyak_sgd_default", "polyak_sgd", {}, "polyak_sgd", {}),
    (
        # f_min above the reachable loss late in the run: sps+ stops stepping there
        "polyak_sgd_sps_plus_fmin_eps_scaling_cap",
        "polyak_sgd",
        {
            "max_learning_rate": 0.8,
            "scaling": 0.5,
            "f_min": 6.0,
            "eps": 1e-3,
            "variant": "sps+",
        },
        "polyak_sgd",
        {
            "max_learning_rate": 0.8,
            "scaling": 0.5,
            "f_min": 6.0,
            "epsilon": 1e-3,
            "variant": "sps+",
        },
    ),
    (
        "noisy_sgd_noise_off",
        "noisy_sgd",
        {"learning_rate": 0.1, "eta": 0.0, "key": 0},
        "noisy_sgd",
        {"learning_rate": 0.1, "eta": 0.0, "seed": 0},
    ),
    (
        "noisy_sgd_noise_off_gamma",
        "noisy_sgd",
        {"learning_rate": 0.05, "eta": 0.0, "gamma": 1.0, "key": 3},
        "noisy_sgd",
        {"learning_rate": 0.05, "eta": 0.0, "gamma": 1.0, "seed": 3},
    ),
]


def problem(seed: int):
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s) for s in SHAPES]
    target = [rng.normal(size=s) for s in SHAPES]
    curvature = [rng.uniform(0.5, 2.0, size=s) for s in SHAPES]
    noise = [[0.1 * rng.normal(size=s) for s in SHAPES] for _ in range(STEPS)]

    def loss(w: list) -> float:
        return float(sum(np.sum(0.5 * c * (x - t) ** 2) for x, t, c in zip(w, target, curvature)))

    def grad(k: int, w: list) -> list:
        g = [c * (x - t) + n for x, t, c, n in zip(w, target, curvature, noise[k])]
        g[0][:, 0] = 0.0  # coordinates whose gradient is always zero
        return g

    return w0, loss, grad


def run_optax(name: str, kwargs: dict, dtype: str, seed: int) -> dict:
    import jax.numpy as jnp
    import optax

    w0, loss, grad = problem(seed)
    opt = getattr(optax, name)(**kwargs)
    params = [jnp.asarray(w, dtype=dtype) for w in w0]
    state = opt.init(params)
    takes_value = name == "polyak_sgd"
    grads, trajectory, ctx = [], [], []
    for k in range(STEPS):
        current = [np.asarray(p, dtype=np.float64) for p in params]
        g = [x.astype(dtype) for x in grad(k, current)]
        extra = {}
        if takes_value:
            value = loss(current)
            ctx.append({"value": value})
            extra = {"value": jnp.asarray(value, dtype=dtype)}
        updates, state = opt.update([jnp.asarray(x) for x in g], state, params, **extra)
        params = optax.apply_updates(params, updates)
        grads.append([x.tolist() for x in g])
        trajectory.append([np.asarray(p).tolist() for p in params])
    return {
        "params0": [np.asarray(w, dtype=dtype).tolist() for w in w0],
        "grads": grads,
        "trajectory": trajectory,
        "lrs": None,
        **({"ctx": ctx} if takes_value else {}),
    }


def record() -> list[dict]:
    import jax

    out = []
    for seed, (case_id, name, kwargs, rule, rule_kwargs) in enumerate(CASES, 900):
        for dtype in ("float64", "float32"):
            with jax.enable_x64(dtype == "float64"):
                data = run_optax(name, kwargs, dtype, seed)
            out.append(
                {
                    "id": f"optax-{case_id}-{dtype}",
                    "reference": f"optax.{name}",
                    "reference_kwargs": kwargs,
                    "rule": rule,
                    "rule_kwargs": rule_kwargs,
                    "dtype": dtype,
                    **data,
                }
            )
    return out


def main() -> None:
    import jax

    records = record()
    OUT.write_text(json.dumps(records, indent=0))
    print(f"{OUT.name}: {len(records)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_optax_tail_fixtures.py",
        "steps": STEPS,
        "files": [OUT.name],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "jax": jax.__version__,
            "optax": version("optax"),
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": "python tests/conformance/record_optax_tail_fixtures.py",
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(" ".join(sys.argv), "->", MANIFEST.name)


if __name__ == "__main__":
    main()
