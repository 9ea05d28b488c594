"""Record reference trajectories of Adam-mini (pytorch-optimizer's ``AdamMini``, the
authors' ``adam-mini`` package's ``Adam_mini``) and
Sophia (pytorch-optimizer's ``SophiaH``, optax's ``contrib.sophia``).

Run from the repository root (needs torch, pytorch_optimizer, adam-mini, jax and
optax installed; the tests need none of them)::

    python tests/conformance/record_adammini_sophia_fixtures.py

It writes ``fixtures/adammini_sophia.json`` in the format of ``record_fixtures.py``
(30 steps, one column of the first tensor with a zero gradient), replayed by
``test_conformance.py``, and ``fixtures/MANIFEST-adammini-sophia.json`` with the
library versions.

**Adam-mini.** ``AdamMini`` takes a model and partitions by parameter names; the
model here has a plain tensor (one block per tensor, ``partition="tensor"``), or a
``q_proj.weight`` whose head size is one row (``num_embeds=num_heads=4`` on a
``(3, 4)`` tensor: ``partition="rows"``), and a tensor whose name contains ``norm``
(no decay: ``weight_decay_mask``). It keeps its state and does its math in float32
whatever the parameter dtype, so only float32 runs are recorded. The authors'
``Adam_mini`` (version 1.1.1) takes named parameters: a name without keywords is one
block per tensor, ``mlp`` gives one block per row (neuron), ``norm`` no decay; it steps
in the parameters' dtype (float64 and float32 recorded).

**Sophia.** The gradients are those of a quadratic :math:`\\tfrac12 (x-t)^\\top A
(x-t) + n_k^\\top x` per tensor, with a dense :math:`A` (so Hutchinson's estimate
:math:`z\\odot Az` is noisy and sometimes negative) and fresh noise :math:`n_k` each
step. The Hessian estimates are made deterministic so: ``SophiaH``'s own Hutchinson
estimate (``loss.backward(create_graph=True)``) draws its Rademacher probes through
``torch.randint_like``, which is patched to hand over the probes gradstep draws for
the same ``seed`` and step (``gradstep.rules.sophia.hutchinson``); the estimate it
stored is replayed as ``hessian=`` on the refresh steps (``ctx``), and the matrices
are kept in the case (``hessian_matrices``) so that a test can replay the case
through ``hvp=`` as well. ``SophiaH``'s ``step(hessian=...)`` and optax's
``hessian_diagonal_fn`` (a transform returning the estimate it is given) receive a
fixed sequence of estimates drawn here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
OUT = FIXTURES / "adammini_sophia.json"
MANIFEST = FIXTURES / "MANIFEST-adammini-sophia.json"
SEED0 = 1600  # problems of their own, distinct from the other recorders'
PROBE_SEED = 7  # gradstep's seed of the Rademacher probes (rule argument ``seed``)


def _base():
    """``record_fixtures.py`` beside this file (problem, learning rates, records)."""
    spec = importlib.util.spec_from_file_location("record_fixtures", HERE / "record_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = _base()
STEPS = BASE.STEPS
SHAPES = BASE.SHAPES

FLOAT32_MATH = (
    "pytorch-optimizer's AdamMini keeps m and v in float32 and steps in float32 also "
    "for float64 parameters, so only float32 runs are compared"
)

# -- Adam-mini ------------------------------------------------------------------------

# (id, names of the two tensors, AdamMini kwargs, gradstep kwargs, options)
ADAM_MINI_CASES = [
    (
        "adam_mini_per_tensor_norm_exempt_lr_change",
        ("w", "norm"),
        {"lr": 0.05, "weight_decay": 0.1},
        {"learning_rate": 0.05, "weight_decay": 0.1, "weight_decay_mask": [True, False]},
        {"lrs": True},
    ),
    (
        "adam_mini_per_row_heads",
        ("q_proj.weight", "bias"),
        {
            "lr": 0.02,
            "betas": (0.8, 0.95),
            "eps": 1e-6,
            "weight_decay": 0.0,
            "num_embeds": 4,
            "num_heads": 4,
        },
        {
            "learning_rate": 0.02,
            "beta1": 0.8,
            "beta2": 0.95,
            "epsilon": 1e-6,
            "weight_decay": 0.0,
            "partition": "rows",
            "rows_per_block": 1,
        },
        {},
    ),
]


def run_adam_mini(names, kwargs, dtype, options, seed) -> dict:
    import pytorch_optimizer
    import torch

    w0, grad = BASE.problem(seed, 1.0)
    model = torch.nn.Module()
    params = []
    for name, w in zip(names, w0):
        owner = model
        *path, leaf = name.split(".")
        for part in path:
            owner.add_module(part, torch.nn.Module())
            owner = getattr(owner, part)
        owner.register_parameter(
            leaf, torch.nn.Parameter(torch.tensor(w, dtype=getattr(torch, dtype)))
        )
        params.append(getattr(owner, leaf))
    opt = pytorch_optimizer.AdamMini(model, **kwargs, foreach=False)
    lrs = BASE.changing_lrs(kwargs["lr"]) if options.get("lrs") else None
    return BASE._record(
        w0, grad, lrs, dtype, params, lambda g, k: BASE._torch_step(opt, params, g, k, lrs)
    )


# the authors' package: (id, names of the two tensors, Adam_mini kwargs, gradstep
# kwargs, options); it steps in the parameters' dtype, so float64 is recorded too
AUTHORS_CASES = [
    (
        "adam_mini_authors_per_tensor_lr_change",
        ("w", "scale"),
        {"lr": 0.05, "weight_decay": 0.1},
        {"learning_rate": 0.05, "weight_decay": 0.1},
        {"lrs": True},
    ),
    (
        "adam_mini_authors_per_neuron_norm_exempt",
        ("mlp.weight", "norm.weight"),
        {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.05},
        {
            "learning_rate": 0.02,
            "beta1": 0.8,
            "beta2": 0.95,
            "epsilon": 1e-6,
            "weight_decay": 0.05,
            "weight_decay_mask": [True, False],
            "partition": "rows",
            "rows_per_block": 1,
        },
        {},
    ),
]


def run_authors_adam_mini(names, kwargs, dtype, options, seed) -> dict:
    import adam_mini
    import torch

    w0, grad = BASE.problem(seed, 1.0)
    params = [torch.nn.Parameter(torch.tensor(w, dtype=getattr(torch, dtype))) for w in w0]
    opt = adam_mini.Adam_mini(list(zip(names, params)), **kwargs, verbose=False)
    lrs = BASE.changing_lrs(kwargs["lr"]) if options.get("lrs") else None
    return BASE._record(
        w0, grad, lrs, dtype, params, lambda g, k: BASE._torch_step(opt, params, g, k, lrs)
    )


# -- Sophia ---------------------------------------------------------------------------


def quadratic(seed: int):
    """Dense per-tensor curvatures ``A`` (zero rows and columns where the first tensor's
    first column is), targets and per-step noise."""
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s) for s in SHAPES]
    targets = [rng.normal(size=s) for s in SHAPES]
    matrices, noise = [], []
    for i, s in enumerate(SHAPES):
        n = int(np.prod(s))
        u = rng.normal(size=n)
        a = np.diag(rng.uniform(0.5, 2.0, size=n)) + 0.4 * np.outer(u, u)
        keep = np.ones(s)
        if i == 0:
            keep[:, 0] = 0.0
        keep = keep.ravel()
        matrices.append(a * np.outer(keep, keep))
        noise.append([0.1 * rng.normal(size=n) * keep for _ in range(STEPS)])
    return w0, targets, matrices, noise


def numpy_grad(w, targets, matrices, noise, k):
    return [
        (a @ (x - t).ravel() + n[k]).reshape(np.shape(x))
        for x, t, a, n in zip(w, targets, matrices, noise)
    ]


def gradstep_probes(count: int) -> list[np.ndarray]:
    """The Rademacher probes gradstep's ``hvp=`` path draws at ``count`` (float64)."""
    from gradstep._core import tree as _tree
    from gradstep.rules.sophia import hutchinson

    likes = [np.zeros(s) for s in SHAPES]
    _, td = _tree.flatten(likes)
    seen = []
    hutchinson(lambda z: seen.extend(z) or z, likes, td, PROBE_SEED, count)
    return seen


def fixed_estimates(seed: int, matrices) -> list[list[np.ndarray]]:
    """One Hutchinson-like estimate per step, drawn here (Gaussian probes)."""
    rng = np.random.default_rng(seed + 50)
    out = []
    for _ in range(STEPS):
        step = []
        for s, a in zip(SHAPES, matrices):
            z = rng.normal(size=a.shape[0])
            step.append((z * (a @ z)).reshape(s))
        out.append(step)
    return out


def _sophia_record(w0, dtype, lrs, step) -> dict:
    """Run ``step(k, current) -> (grads, new params, ctx or None)`` for 30 steps."""
    current = [np.asarray(w, dtype=dtype) for w in w0]
    grads, trajectory, ctx = [], [], []
    for k in range(STEPS):
        g, current, extra = step(k, current)
        grads.append(g)
        trajectory.append(current)
        ctx.append(extra or {})
    as_list = lambda arrays: [np.asarray(a).tolist() for a in arrays]  # noqa: E731
    return {
        "params0": as_list([np.asarray(w, dtype=dtype) for w in w0]),
        "grads": [as_list(g) for g in grads],
        "trajectory": [as_list(t) for t in trajectory],
        "ctx": [{k: as_list(v) for k, v in c.items()} for c in ctx],
        "lrs": lrs,
    }


# (id, reference, reference kwargs, gradstep kwargs, options); options: "estimator"
# ("hutchinson": SophiaH's own with gradstep's probes; "given": a fixed sequence),
# "lrs", "float32"
SOPHIA_CASES = [
    (
        "sophiah_hutchinson_lr_change",
        "pytorch_optimizer.SophiaH",
        {
            "lr": 0.1,
            "betas": (0.9, 0.95),
            "p": 0.5,
            "update_period": 3,
            "hessian_distribution": "rademacher",
            "eps": 1e-12,
        },
        {
            "learning_rate": 0.1,
            "beta1": 0.9,
            "beta2": 0.95,
            "gamma": 1.0,
            "clip_threshold": 0.5,
            "update_interval": 3,
            "epsilon": 1e-12,
            "seed": PROBE_SEED,
        },
        {"estimator": "hutchinson", "lrs": True, "float32": True},
    ),
    (
        "sophiah_given_decay_floor",
        "pytorch_optimizer.SophiaH",
        {
            "lr": 0.05,
            "betas": (0.8, 0.9),
            "p": 1.0,
            "update_period": 2,
            "eps": 0.3,
            "weight_decay": 0.05,
        },
        {
            "learning_rate": 0.05,
            "beta1": 0.8,
            "beta2": 0.9,
            "gamma": 1.0,
            "clip_threshold": 1.0,
            "update_interval": 2,
            "epsilon": 0.3,
            "weight_decay": 0.05,
        },
        {"estimator": "given"},
    ),
    (
        "sophia_decay",
        "optax.contrib.sophia",
        {
            "learning_rate": 0.05,
            "b1": 0.9,
            "b2": 0.95,
            "eps": 1e-8,
            "gamma": 0.5,
            "clip_threshold": 1.0,
            "update_interval": 3,
            "weight_decay": 0.01,
        },
        {
            "learning_rate": 0.05,
            "beta1": 0.9,
            "beta2": 0.95,
            "epsilon": 1e-8,
            "gamma": 0.5,
            "clip_threshold": 1.0,
            "update_interval": 3,
            "weight_decay": 0.01,
            "bias_correction": True,
            "refresh": "after",
        },
        {"estimator": "given", "float32": True},
    ),
    (
        "sophia_no_clip_every_step",
        "optax.contrib.sophia",
        {
            "learning_rate": 0.02,
            "eps": 0.05,
            "gamma": 2.0,
            "clip_threshold": None,
            "update_interval": 1,
            "weight_decay": 0.0,
        },
        {
            "learning_rate": 0.02,
            "epsilon": 0.05,
            "gamma": 2.0,
            "clip_threshold": None,
            "update_interval": 1,
            "bias_correction": True,
            "refresh": "after",
        },
        {"estimator": "given"},
    ),
]


def _refreshes(k: int, interval: int) -> bool:
    return k % interval == 0


def run_sophiah(kwargs, dtype, options, seed) -> dict:
    import pytorch_optimizer
    import torch

    w0, targets, matrices, noise = quadratic(seed)
    tdtype = getattr(torch, dtype)
    params = [torch.tensor(w, dtype=tdtype, requires_grad=True) for w in w0]
    opt = pytorch_optimizer.SophiaH(params, **kwargs, foreach=False)
    lrs = BASE.changing_lrs(kwargs["lr"]) if options.get("lrs") else None
    given = fixed_estimates(seed, matrices)
    mats = [torch.tensor(a, dtype=tdtype) for a in matrices]
    tgts = [torch.tensor(t, dtype=tdtype) for t in targets]
    interval = kwargs["update_period"]

    def step(k, current):
        with torch.no_grad():
            for p, c in zip(params, current):
                p.copy_(torch.tensor(c, dtype=tdtype))
        opt.zero_grad()
        loss = 0.0
        for p, a, t, n in zip(params, mats, tgts, noise):
            d = (p - t).reshape(-1)
            loss = loss + 0.5 * d @ (a @ d) + torch.tensor(n[k], dtype=tdtype) @ p.reshape(-1)
        hutchinson = options["estimator"] == "hutchinson"
        loss.backward(create_graph=hutchinson)
        g = [p.grad.detach().numpy().copy() for p in params]
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = lrs[k]
        ctx = None
        if hutchinson:
            probes = iter(gradstep_probes(k) if _refreshes(k, interval) else [])
            original = torch.randint_like

            def rademacher(p, low, high):  # SophiaH maps it to 2 r - 1
                return (torch.tensor(next(probes), dtype=p.dtype) + 1.0) / 2.0

            torch.randint_like = rademacher
            try:
                opt.step()
            finally:
                torch.randint_like = original
            if _refreshes(k, interval):
                ctx = {"hessian": [opt.state[p]["hessian"].detach().numpy().copy() for p in params]}
        else:
            estimate = None
            if _refreshes(k, interval):
                estimate = [e.astype(dtype) for e in given[k]]
                ctx = {"hessian": estimate}
            opt.step(hessian=None if estimate is None else [torch.tensor(e) for e in estimate])
        for p in params:
            p.grad = None
        return g, [p.detach().numpy().copy() for p in params], ctx

    out = _sophia_record(w0, dtype, lrs, step)
    if options["estimator"] == "hutchinson":
        out["hessian_matrices"] = [a.tolist() for a in matrices]
        out["hessian_targets"] = [t.tolist() for t in targets]
    return out


def run_optax_sophia(kwargs, dtype, options, seed) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    import optax.contrib

    w0, targets, matrices, noise = quadratic(seed)
    given = fixed_estimates(seed, matrices)

    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None, estimate=None, **extra):
        return estimate, state

    estimator = optax.GradientTransformationExtraArgs(init, update)
    opt = optax.contrib.sophia(**kwargs, hessian_diagonal_fn=estimator)
    params = [jnp.asarray(w, dtype=dtype) for w in w0]
    state = {"opt": opt.init(params)}
    interval = kwargs["update_interval"]

    def step(k, current):
        g = [x.astype(dtype) for x in numpy_grad(current, targets, matrices, noise, k)]
        estimate = [jnp.asarray(e, dtype=dtype) for e in given[k]]
        p = [jnp.asarray(c, dtype=dtype) for c in current]
        updates, state["opt"] = opt.update(
            [jnp.asarray(x) for x in g], state["opt"], p, estimate=estimate
        )
        new = [np.asarray(jax.device_get(x)) for x in optax.apply_updates(p, updates)]
        ctx = {"hessian": [np.asarray(e) for e in estimate]} if _refreshes(k, interval) else None
        return g, new, ctx

    return _sophia_record(w0, dtype, None, step)


def _plain(value):
    """A reference argument as JSON stores it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def record() -> list[dict]:
    out = []
    seed = SEED0
    for case_id, names, ref_kwargs, rule_kwargs, options in ADAM_MINI_CASES:
        data = run_adam_mini(names, ref_kwargs, "float32", options, seed)
        out.append(
            {
                "id": f"pytorch_optimizer-{case_id}-float32",
                "reference": "pytorch_optimizer.AdamMini",
                "reference_kwargs": {k: _plain(v) for k, v in ref_kwargs.items()},
                "reference_parameter_names": list(names),
                "rule": "adam_mini",
                "rule_kwargs": rule_kwargs,
                "dtype": "float32",
                "float32_only": FLOAT32_MATH,
                **data,
            }
        )
        seed += 1
    for case_id, names, ref_kwargs, rule_kwargs, options in AUTHORS_CASES:
        for dtype in ("float64", "float32"):
            data = run_authors_adam_mini(names, ref_kwargs, dtype, options, seed)
            out.append(
                {
                    "id": f"adam_mini-{case_id}-{dtype}",
                    "reference": "adam_mini.Adam_mini",
                    "reference_kwargs": {k: _plain(v) for k, v in ref_kwargs.items()},
                    "reference_parameter_names": list(names),
                    "rule": "adam_mini",
                    "rule_kwargs": rule_kwargs,
                    "dtype": dtype,
                    **data,
                }
            )
        seed += 1
    for case_id, reference, ref_kwargs, rule_kwargs, options in SOPHIA_CASES:
        library = reference.split(".", 1)[0]
        for dtype in ["float64"] + (["float32"] if options.get("float32") else []):
            if library == "optax":
                data = run_optax_sophia(ref_kwargs, dtype, options, seed)
            else:
                data = run_sophiah(ref_kwargs, dtype, options, seed)
            out.append(
                {
                    "id": f"{library}-{case_id}-{dtype}",
                    "reference": reference,
                    "reference_kwargs": {k: _plain(v) for k, v in ref_kwargs.items()},
                    "rule": "sophia",
                    "rule_kwargs": rule_kwargs,
                    "dtype": dtype,
                    **data,
                }
            )
        seed += 1
    return out


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    records = record()
    OUT.write_text(json.dumps(records, indent=0))
    print(f"adam-mini and sophia: {len(records)} trajectories")
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("torch", "pytorch_optimizer", "adam-mini", "jax", "optax"):
        versions[package] = importlib.metadata.version(package)
    manifest = {
        "generator": "tests/conformance/record_adammini_sophia_fixtures.py",
        "steps": STEPS,
        "files": [OUT.name],
        "versions": versions,
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
