"""Record optax trajectories with a slot stored in bfloat16 (``mu_dtype``,
``accumulator_dtype``), for the state-precision option.

Run from the repository root (needs jax and optax installed; the tests need jax but
not optax)::

    python tests/conformance/record_precision_fixtures.py

Each case is a spec of ``record_optax_compat_fixtures.py`` (the same problem, the
same ``build``), run with float32 parameters and jax_enable_x64 off. Besides the
parameters, each step records the stored slot (``mu`` or optax's ``trace``) as
float32 values of its bfloat16 elements. The replay
(``tests/jax_front/test_state_precision_optax.py``) runs the same spec through
``gradstep.compat.optax`` under ``jax.jit`` and the matching registry rule through
the NumPy front.

optax multiplies the stored moment by its decay in the stored dtype (``decay * mu``
is a bfloat16 product, one rounding more); gradstep widens the slot and does all
arithmetic in float32. The replay's tolerances are for that rounding, stated in each
case.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "fixtures" / "precision"
_SPEC = importlib.util.spec_from_file_location(
    "record_optax_compat_fixtures", Path(__file__).parent / "record_optax_compat_fixtures.py"
)
compat = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compat)
S = compat.S
STEPS = 20

# the difference made by optax's bfloat16 product decay * mu, compounded over the
# steps (measured: at most 1.3% of the distance travelled for the parameters, 3.5
# bfloat16 units of the slot's largest magnitude for the slot):
# - parameters within ``params_travel_fraction`` of the largest distance any element
#   travels from its start;
# - the slot within ``slot_units`` units of 2**-8 times its largest magnitude.
BF16_PRODUCT = {
    "params_travel_fraction": 0.02,
    "slot_units": 6,
    "reason": "optax rounds decay * mu to bfloat16 before adding (1 - decay) * g; "
    "gradstep keeps every intermediate in float32 and rounds only the stored slot",
}

# (case id, spec, slot path in optax's state, slot name in gradstep's state, the
# registry rule and its arguments for the NumPy-front replay)
CASES = [
    (
        "adam_mu_bf16",
        S("adam", 0.05, mu_dtype="bfloat16"),
        "mu",
        ("adam", {"learning_rate": 0.05, "mu_dtype": "bfloat16"}),
    ),
    (
        "adamw_mu_bf16",
        S("adamw", 0.05, weight_decay=0.1, mu_dtype="bfloat16"),
        "mu",
        ("adamw", {"learning_rate": 0.05, "weight_decay": 0.1, "mu_dtype": "bfloat16"}),
    ),
    (
        "sgd_momentum_bf16",
        S("sgd", 0.05, momentum=0.9, accumulator_dtype="bfloat16"),
        "trace",
        None,  # gradstep.sgd's momentum keeps the learning rate in the buffer
    ),
    (
        "lion_mu_bf16",
        S("lion", 0.01, mu_dtype="bfloat16"),
        "mu",
        None,  # gradstep.lion's defaults differ (b2, decay); the compat replay covers it
    ),
]


def slot_of(state, name: str):
    """The first entry called ``name`` in an optax state (nested NamedTuples)."""
    if hasattr(state, "_fields"):
        if name in state._fields:
            return getattr(state, name)
        for value in state:
            found = slot_of(value, name)
            if found is not None:
                return found
    elif isinstance(state, (tuple, list)):
        for value in state:
            found = slot_of(value, name)
            if found is not None:
                return found
    elif isinstance(state, dict):
        if name in state:
            return state[name]
        for value in state.values():
            found = slot_of(value, name)
            if found is not None:
                return found
    return None


def run(module, spec, slot: str, seed: int, grads=None) -> dict:
    """Run ``spec`` built from ``module`` under jit in float32; record or replay
    ``grads``; return the parameters, the slot and the slot's dtype after each step."""
    import jax
    import jax.numpy as jnp

    opt = compat.build(module, spec)
    if grads is None:
        w0, grad = compat.problem(seed, 1.0)
    else:
        w0, grad = grads["params0"], lambda k, w: grads["grads"][k]
    params = {k: jnp.asarray(np.asarray(v), jnp.float32) for k, v in w0.items()}
    state = opt.init(params)
    update = jax.jit(opt.update)
    out: dict = {"params0": {k: np.asarray(v, np.float32) for k, v in w0.items()}}
    out.update(grads=[], params=[], slot=[])
    for k in range(STEPS):
        current = {n: np.asarray(v, np.float64) for n, v in params.items()}
        g = {n: np.asarray(v, np.float64).astype(np.float32) for n, v in grad(k, current).items()}
        updates, state = update({n: jnp.asarray(v) for n, v in g.items()}, state, params)
        params = jax.tree_util.tree_map(lambda p, u: (p + u).astype(p.dtype), params, updates)
        stored = slot_of(state, slot)
        out["grads"].append(g)
        out["params"].append({n: np.asarray(v) for n, v in params.items()})
        out["slot"].append({n: np.asarray(v, np.float32) for n, v in stored.items()})
        out["slot_dtype"] = str(next(iter(stored.values())).dtype)
    return out


def record() -> list[dict]:
    import optax

    as_list = lambda tree: {k: np.asarray(v).tolist() for k, v in tree.items()}  # noqa: E731
    cases = []
    for seed, (case_id, spec, slot, rule) in enumerate(CASES):
        data = run(optax, spec, slot, seed)
        cases.append(
            {
                "id": f"precision-{case_id}",
                "reference": f"optax.{spec['fn']}",
                "spec": spec,
                "slot": slot,
                "slot_dtype": data["slot_dtype"],
                "rule": rule,
                "params0": as_list(data["params0"]),
                "grads": [as_list(g) for g in data["grads"]],
                "params": [as_list(t) for t in data["params"]],
                "slots": [as_list(t) for t in data["slot"]],
                **BF16_PRODUCT,
            }
        )
    return cases


def main() -> None:
    import jax
    import optax

    HERE.mkdir(parents=True, exist_ok=True)
    cases = record()
    (HERE / "precision.json").write_text(json.dumps(cases, indent=0))
    print(f"precision: {len(cases)} trajectories")
    manifest = {
        "generator": "tests/conformance/record_precision_fixtures.py",
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
    (HERE / "MANIFEST-precision.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
