"""One algorithm, three backends: every registered rule's 20-step trajectory from
NumPy (eager and fused), torch (the transform on torch tensors, eager) and JAX
(``jax.jit``, per-step scalars ``"auto"`` and ``"host"``), against NumPy eager.

Used by ``test_cross_backend.py``; run it to print the table of ``docs/jax.md``::

    python tests/jax_front/cross_backend.py

The error of a backend is ``max over steps and tensors of ||x - x_numpy||_inf /
||x_numpy||_inf`` (the parameters after each step), on the same gradients (fixed,
drawn once in float64 and cast).

Every registered rule takes part, with its registry test settings: rules that step
with a closure run their gradient-only form (the registry's settings allow it), and
stochastic rules run with their noise switched off (:data:`NOISE_OFF`; each library
draws its own noise from the same key, which ``test_cross_backend.py`` checks
separately), and rules that take the loss every step (``needs_value``) get the same
values on every backend (:data:`VALUES`). :data:`VARIANTS` adds rows for option
settings whose code paths the defaults do not take.
"""

from __future__ import annotations

import warnings

import numpy as np

import gradstep

STEPS = 20
SHAPES = ((3, 4), (7,), (2, 3, 2))
TOLERANCE = {"float64": 1e-12, "float32": 2e-5}

#: looser tolerances, with the reason
TOLERANCE_OF = {
    # the two-loop recursion divides by y.s, which shrinks near the minimum: float32
    # rounding of the dot products grows to ~2e-5 by step 20 (NumPy float32 itself is
    # 2e-5 from NumPy float64 there), and each library sums them in its own order
    ("lbfgs", "float32"): 1e-4,
    # each library's float32 QR rounds in its own way, and SOAP's Adam normalisation
    # of the small rotated moments amplifies it: 6e-5 by step 20 with a refresh every
    # 3 steps (float64 agrees to 1e-12: the same algorithm)
    ("soap", "float32"): 1e-4,
}


#: per stochastic rule: the hyperparameters that switch its randomness off, for the
#: comparison (a new stochastic rule must say)
def shared_probes(seed, count, likes):
    """psgd_kron's probe vectors, the same on every library (each draws its own from
    the seeded noise): two fixed NumPy draws per tensor, alternating with the step's
    parity; the factors are balanced every 7th step. Traceable (a traced count)."""
    from gradstep._core.namespaces import namespace_of

    ns = namespace_of(likes[0])
    rng = np.random.default_rng(0)
    probes = []
    for x in likes:
        even, odd = (ns.astype(ns.constant(rng.standard_normal(np.shape(x)), x), x) for _ in "ab")
        probes.append(ns.where(count % 2 == 0, even, odd))
    return probes, count % 7 == 6


NOISE_OFF = {
    "sgld": {"temperature": 0.0},
    "noisy_sgd": {"eta": 0.0},
    "psgd_kron": {"probe_source": shared_probes},
}

#: extra rows: ``(rule, label, overrides of its test settings)``
VARIANTS = (
    ("nadam", "schedule_scope='shared'", {"schedule_scope": "shared"}),
    ("lars", "momentum_correction", {"momentum_correction": True, "learning_rate": 0.5}),
    ("lars", "form='mxnet', nesterov", {"form": "mxnet", "nesterov": True}),
    ("muon", "bias_correction, no nesterov", {"bias_correction": True, "nesterov": False}),
    (
        "adafactor",
        "optax's settings, momentum, decay",
        {
            "epsilon1_placement": "add",
            "epsilon1": 1e-30,
            "factored": "largest_two",
            "momentum": 0.9,
            "weight_decay": 0.01,
        },
    ),
    ("lbfgs", "history of 3", {"history_size": 3}),
    (
        "sam",
        "ASAM around AdamW",
        {"adaptive": True, "rho": 0.3, "base": gradstep.adamw(0.05, weight_decay=0.1)},
    ),
    # (not precondition_1d: a vector's first statistic has rank one, and each library
    # picks its own basis of the repeated eigenvalue 0; see the rule's docstring)
    (
        "soap",
        "power iteration every 3 steps, normalized",
        {"precondition_frequency": 3, "normalize_gradient": True},
    ),
)


def problem(dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in SHAPES]
    grads = [[rng.normal(size=s) * (1 + 0.1 * k) for s in SHAPES] for k in range(STEPS)]
    for g in grads:
        g[0][:, 0] = 0.0  # a column that never gets a gradient
    cast = lambda xs: [np.asarray(x, dtype) for x in xs]  # noqa: E731
    return cast(params), [cast(g) for g in grads]


#: the loss value of each step, for rules that take it (``needs_value``): fixed
#: numbers, as the gradients are
VALUES = [2.0 / (1 + k) for k in range(STEPS)]


def values_for(make) -> list:
    """Each step's extra keywords: ``value`` for a rule made by ``make`` that takes
    the loss (a stage with ``takes_loss``), else nothing."""
    from gradstep._core.transform import walk

    takes = any(getattr(v.transform, "takes_loss", False) for v in walk(make()))
    return [{"value": v} if takes else {} for v in VALUES]


def run_numpy(make, dtype: str, engine: str):
    params, grads = problem(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = gradstep.Optimizer(params, make(), engine=engine)
        out = []
        for g, extra in zip(grads, values_for(make)):
            opt.step(g, **extra)
            out.append([p.copy() for p in params])
    return out


def run_torch(make, dtype: str):
    import torch

    import gradstep.torch  # noqa: F401  (registers torch's array namespace)

    params, grads = problem(dtype)
    params = [torch.tensor(p) for p in params]
    t = make()
    state = t.init(params)
    out = []
    for g, extra in zip(grads, values_for(make)):
        updates, state = t.update([torch.tensor(x) for x in g], state, params, **extra)
        params = [p + torch.as_tensor(u) for p, u in zip(params, updates)]
        out.append([p.numpy().copy() for p in params])
    return out


def run_jax(make, dtype: str, scalars: str, fallback: str = "error"):
    import jax
    import jax.numpy as jnp

    from gradstep.jax import apply_updates, to_optax

    with jax.enable_x64(dtype == "float64"):
        params, grads = problem(dtype)
        params = [jnp.asarray(p) for p in params]
        opt = to_optax(make(), scalars=scalars, fallback=fallback)
        step = jax.jit(opt.update)
        state = opt.init(params)
        out = []
        for g, extra in zip(grads, values_for(make)):
            extra = {k: jnp.asarray(v, dtype) for k, v in extra.items()}
            updates, state = step([jnp.asarray(x) for x in g], state, params, **extra)
            params = apply_updates(params, updates)
            out.append([np.asarray(p) for p in params])
    return out


def error(got, want) -> float:
    worst = 0.0
    for step_got, step_want in zip(got, want):
        for a, b in zip(step_got, step_want):
            assert a.dtype == b.dtype, (a.dtype, b.dtype)
            scale = float(np.max(np.abs(b)))
            both_nan = np.isnan(a) & np.isnan(b)
            diff = np.where(both_nan, 0.0, np.abs(a.astype(np.float64) - b))
            worst = max(worst, float(np.max(diff)) / (scale or 1.0))
    return worst


class Case:
    """One row: a registered rule with its test settings, plus overrides."""

    def __init__(self, spec, label: str = "", overrides: dict | None = None):
        self.spec, self.label = spec, label
        self.kwargs = dict(spec.test_hyperparams)
        if "stochastic" in spec.capabilities:
            self.kwargs.update(NOISE_OFF[spec.name])
        self.kwargs.update(overrides or {})
        self.name = spec.name if not label else f"{spec.name} ({label})"

    def make(self):
        return self.spec.factory(**self.kwargs)

    def tolerance(self, dtype: str) -> float:
        return TOLERANCE_OF.get((self.spec.name, dtype), TOLERANCE[dtype])


def cases() -> list[Case]:
    """Every registered rule, then the variants."""
    out = [Case(spec) for spec in gradstep.REGISTRY]
    out += [Case(gradstep.REGISTRY[name], label, kw) for name, label, kw in VARIANTS]
    return out


def compare(case: Case, dtype: str) -> dict[str, float | str]:
    """``{backend: error or the reason it cannot run}``."""
    from gradstep.jax import NotTraceable

    make = case.make

    want = run_numpy(make, dtype, "eager")
    runs = {
        "numpy fused": lambda: run_numpy(make, dtype, "fused"),
        "torch": lambda: run_torch(make, dtype),
        "jax auto": lambda: run_jax(make, dtype, "auto"),
        "jax host": lambda: run_jax(make, dtype, "host"),
    }
    out: dict[str, float | str] = {}
    for backend, run in runs.items():
        try:
            out[backend] = error(run(), want)
        except NotTraceable as err:
            out[backend] = f"not traceable: {err}"
            if backend == "jax auto":
                out["jax fallback=host"] = error(run_jax(make, dtype, "auto", "host"), want)
        except ValueError as err:
            if backend == "numpy fused" and "engine='fused'" in str(err):
                out[backend] = "eager only: " + str(err).split(": ", 2)[-1]
            else:
                out[backend] = f"error: ValueError: {str(err).splitlines()[0]}"
        except Exception as err:  # noqa: BLE001 - reported in the table, checked by the test
            out[backend] = f"error: {type(err).__name__}: {str(err).splitlines()[0]}"
    return out


def table() -> str:
    backends = ["numpy fused", "torch", "jax auto", "jax host"]
    lines = [
        "| rule | dtype | " + " | ".join(backends) + " |",
        "|---|---|" + "---|" * len(backends),
    ]
    notes = []
    for case in cases():
        for dtype in ("float64", "float32"):
            result = compare(case, dtype)
            cells = []
            for b in backends:
                v = result[b]
                if isinstance(v, float):
                    cells.append(f"{v:.1e}")
                elif b.startswith("jax") and "jax fallback=host" in result:
                    cells.append(f"{result['jax fallback=host']:.1e} (host fallback)")
                    notes.append(f"- `{case.name}`, jax: {v}")
                elif v.startswith("eager only"):
                    cells.append("eager only")
                    notes.append(f"- `{case.name}`, {b}: {v}")
                else:
                    cells.append("n/a")
                    notes.append(f"- `{case.name}`, {b}: {v}")
            lines.append(f"| `{case.name}` | {dtype} | " + " | ".join(cells) + " |")
    notes += [
        f"- `{name}` {dtype}: tolerance {tol:g}" for (name, dtype), tol in TOLERANCE_OF.items()
    ]
    return "\n".join(lines + [""] + sorted(set(notes)))


if __name__ == "__main__":
    print(table())
