"""Record torch.optim's expectations of its own classes for gradstep.torch: the error
inputs of torch's OptimizerInfo database, and trajectories of ASGD, Rprop and
SparseAdam.

Run from the repository root (needs torch 2.13 and ``expecttest``, which torch's
testing helpers import; the tests need neither)::

    python tests/conformance/record_torch_extra_fixtures.py

It writes

- ``tests/conformance/fixtures/torch_front/error_inputs.json``: for every class of
  ``torch.testing._internal.common_optimizers.optim_db``, the inputs its
  ``optim_error_inputs_func`` gives on the CPU (float32): the ``params`` and
  constructor arguments (tensors encoded by shape, dtype, layout, whether they are a
  ``Parameter`` and have a gradient, and their identity, since a repeated tensor is
  part of some inputs), when torch raises (``construction`` or ``step``), the
  exception type and the regular expression torch's own test matches;
  ``tests/torch_front/test_torch_errors.py`` replays them against gradstep.torch;
- ``tests/conformance/fixtures/torch_extra.json``: ASGD, Rprop and SparseAdam
  trajectories in the format of ``record_fixtures.py`` (30 steps, gradients
  ``h * (w - target) + noise`` at torch's own iterates, one column of the first
  tensor always zero), replayed by ``test_conformance.py``;
- ``tests/conformance/fixtures/torch_front/complex.json``: complex-parameter runs of
  every class torch declares complex support for (a complex128 matrix beside a
  float64 vector; complex tensors stored as their real views), replayed by
  ``tests/torch_front/test_torch_extra.py``;
- ``tests/conformance/fixtures/torch_front/differentiable.json``: ``differentiable=True``
  runs with a tensor learning rate on a non-leaf copy of the weights: the loss after
  a few steps and its gradients with respect to the learning rate and the initial
  weights (through gradients taken with ``create_graph`` where the case says so),
  replayed by ``tests/torch_front/test_torch_extra.py``;
- ``tests/conformance/fixtures/MANIFEST-torch-extra.json``: the library versions.

torch keeps ASGD's ``eta`` and ``mu`` in its default dtype: each run sets the default
dtype to the parameters' so that float64 runs are float64 throughout.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
ERRORS_OUT = FIXTURES / "torch_front" / "error_inputs.json"
OUT = FIXTURES / "torch_extra.json"
COMPLEX_OUT = FIXTURES / "torch_front" / "complex.json"
DIFFERENTIABLE_OUT = FIXTURES / "torch_front" / "differentiable.json"
MANIFEST = FIXTURES / "MANIFEST-torch-extra.json"


def _base():
    """``record_fixtures.py`` beside this file (problem, learning rates, records)."""
    spec = importlib.util.spec_from_file_location("record_fixtures", HERE / "record_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = _base()
STEPS = BASE.STEPS


# -- torch's error inputs ---------------------------------------------------------------


def encode(value, tensors: list) -> object:
    """``value`` as JSON; ``tensors`` collects the distinct tensors met (a tensor met
    again is encoded by its index, so identity survives)."""
    import torch

    if isinstance(value, torch.Tensor):
        for i, t in enumerate(tensors):
            if t is value:
                return {"tensor_ref": i}
        tensors.append(value)
        dense = value.to_dense() if value.layout != torch.strided else value
        entry = {
            "shape": list(value.shape),
            "dtype": str(value.dtype).removeprefix("torch."),
            "layout": "sparse_coo" if value.layout == torch.sparse_coo else "strided",
            "parameter": isinstance(value, torch.nn.Parameter),
            "grad": value.grad is not None,
            "index": len(tensors) - 1,
        }
        if dense.numel() <= 8 and not dense.is_complex():
            entry["values"] = dense.detach().reshape(-1).tolist()
        return {"tensor": entry}
    if isinstance(value, tuple):
        return {"tuple": [encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [encode(v, tensors) for v in value]
    if isinstance(value, dict):
        return {"dict": {k: encode(v, tensors) for k, v in value.items()}}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise TypeError(f"cannot encode {type(value).__name__}")


def record_error_inputs() -> list[dict]:
    import torch
    from torch.testing._internal.common_optimizers import OptimizerErrorEnum, optim_db

    out = []
    for info in optim_db:
        torch.manual_seed(0)
        for error in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
            given = error.optimizer_error_input
            tensors: list = []
            out.append(
                {
                    "class": info.optim_cls.__name__,
                    "desc": given.desc,
                    "params": encode(given.params, tensors),
                    "kwargs": encode(given.kwargs, tensors),
                    "error_on": (
                        "step"
                        if error.error_on == OptimizerErrorEnum.STEP_ERROR
                        else "construction"
                    ),
                    "error_type": error.error_type.__name__,
                    "error_regex": error.error_regex,
                }
            )
    return out


# -- ASGD and Rprop trajectories ----------------------------------------------------------

# (id, torch class, torch kwargs, gradstep rule, gradstep kwargs); every case in float64
# and float32
TORCH_CASES = [
    ("asgd_default", "ASGD", {}, "asgd", {}),
    (
        "asgd_averaging_from_step_10_wd",
        "ASGD",
        {"lr": 0.05, "lambd": 1e-2, "alpha": 0.6, "t0": 10.0, "weight_decay": 0.1},
        "asgd",
        {"learning_rate": 0.05, "lambd": 1e-2, "alpha": 0.6, "t0": 10.0, "weight_decay": 0.1},
    ),
    ("rprop_default", "Rprop", {}, "rprop", {}),
    (
        "rprop_etas_step_sizes",
        "Rprop",
        {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)},
        "rprop",
        {
            "initial_step_size": 0.05,
            "eta_minus": 0.3,
            "eta_plus": 1.5,
            "min_step_size": 1e-3,
            "max_step_size": 0.2,
        },
    ),
]


def run_torch(name: str, kwargs: dict, dtype: str, seed: int) -> dict:
    import torch

    w0, grad = BASE.problem(seed, 1.0)
    tdtype = getattr(torch, dtype)
    old = torch.get_default_dtype()
    torch.set_default_dtype(tdtype)  # ASGD keeps eta and mu in the default dtype
    try:
        params = [torch.tensor(w, dtype=tdtype) for w in w0]
        opt = getattr(torch.optim, name)(params, **kwargs, foreach=False)
        return BASE._record(
            w0, grad, None, dtype, params, lambda g, k: BASE._torch_step(opt, params, g, k, None)
        )
    finally:
        torch.set_default_dtype(old)


def record_trajectories() -> list[dict]:
    out = []
    for seed, (case_id, ref, ref_kwargs, rule, rule_kwargs) in enumerate(TORCH_CASES, 700):
        for dtype in ("float64", "float32"):
            out.append(
                {
                    "id": f"torch-{case_id}-{dtype}",
                    "reference": f"torch.optim.{ref}",
                    "reference_kwargs": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in ref_kwargs.items()
                    },
                    "rule": rule,
                    "rule_kwargs": rule_kwargs,
                    "dtype": dtype,
                    **run_torch(ref, ref_kwargs, dtype, seed),
                }
            )
    return out


# -- complex parameters ---------------------------------------------------------------------

# (id, torch class, kwargs): every class torch declares complex support for
COMPLEX_CASES = [
    ("sgd_momentum_wd", "SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
    (
        "sgd_nesterov_maximize",
        "SGD",
        {"lr": 0.02, "momentum": 0.5, "nesterov": True, "maximize": True},
    ),
    ("adam_amsgrad_wd", "Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01}),
    ("adamw", "AdamW", {"lr": 0.05, "weight_decay": 0.1}),
    ("adagrad_lr_decay", "Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01}),
    ("adadelta_wd", "Adadelta", {"lr": 1.0, "weight_decay": 0.01}),
    ("adamax", "Adamax", {"lr": 0.05}),
    ("nadam_decoupled", "NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("radam", "RAdam", {"lr": 0.05}),
    ("rmsprop_centered_momentum", "RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("asgd_averaging", "ASGD", {"lr": 0.05, "lambd": 1e-2, "t0": 5.0}),
    ("rprop", "Rprop", {"lr": 0.05}),
    ("lbfgs_one_iteration", "LBFGS", {"lr": 0.5, "max_iter": 1, "history_size": 4}),
]
COMPLEX_STEPS = 12


def _real_lists(t) -> list:
    import torch

    t = t.detach()
    return (torch.view_as_real(t) if t.is_complex() else t).tolist()


def record_complex() -> list[dict]:
    """A complex128 matrix and a float64 vector, gradients of ``|z - c|^2 a +
    Re(b z) + e (x - t)^2`` at torch's own iterates (the first column of ``z``'s
    gradient zeroed); the parameters after every step."""
    import torch

    out = []
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for seed, (case_id, name, kwargs) in enumerate(COMPLEX_CASES, 800):
            gen = torch.Generator().manual_seed(seed)
            z0 = torch.randn(3, 4, dtype=torch.complex128, generator=gen)
            x0 = torch.randn(5, dtype=torch.float64, generator=gen)
            c = torch.randn(3, 4, dtype=torch.complex128, generator=gen)
            b = torch.randn(3, 4, dtype=torch.complex128, generator=gen)
            a = torch.rand(3, 4, dtype=torch.float64, generator=gen) + 0.5
            target = torch.randn(5, dtype=torch.float64, generator=gen)
            z, x = z0.clone().requires_grad_(), x0.clone().requires_grad_()
            extra = {} if name == "LBFGS" else {"foreach": False}
            opt = getattr(torch.optim, name)([z, x], **kwargs, **extra)
            grads, trajectory = [], []
            for _ in range(COMPLEX_STEPS):
                opt.zero_grad()
                loss = ((z - c).abs() ** 2 * a).sum() + (b * z).real.sum()
                loss = loss + ((x - target) ** 2 * 1.5).sum()
                loss.backward()
                z.grad[:, 0] = 0
                grads.append([_real_lists(z.grad), _real_lists(x.grad)])
                if name == "LBFGS":
                    opt.step(lambda: torch.tensor(0.0))
                else:
                    opt.step()
                trajectory.append([_real_lists(z), _real_lists(x)])
            out.append(
                {
                    "id": f"torch-complex-{case_id}",
                    "class": name,
                    "kwargs": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()
                    },
                    "dtypes": ["complex128", "float64"],
                    "params0": [_real_lists(z0), _real_lists(x0)],
                    "grads": grads,
                    "trajectory": trajectory,
                }
            )
    finally:
        torch.set_default_dtype(old)
    return out


# -- differentiable steps -----------------------------------------------------------------

# (id, torch class, kwargs, create_graph): the classes whose differentiable path
# takes a tensor learning rate in torch 2.13 (the others fail there with
# ``argument 'alpha' must be Number, not Tensor`` or an in-place error)
DIFFERENTIABLE_CASES = [
    ("sgd_nesterov_wd", "SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, True),
    ("sgd_plain", "SGD", {"weight_decay": 0.01}, True),
    ("adam_amsgrad", "Adam", {"amsgrad": True}, False),
    ("adam", "Adam", {}, True),
    ("adamw", "AdamW", {"weight_decay": 0.1}, True),
    ("radam", "RAdam", {}, True),
]
DIFFERENTIABLE_STEPS = 4
#: torch's SGD starts its momentum buffer from ``grad.detach()``: no gradient reaches
#: the initial weights through it (gradstep's does), so only the learning rate's
#: gradient is compared there
W0_GRADIENT_DIFFERS = {"sgd_nesterov_wd": "torch detaches the first momentum buffer"}


def differentiable_problem(seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    x = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    y = torch.randn(6, 3, dtype=torch.float64, generator=gen)
    return w0, x, y


def hypergradients(optim, name, kwargs, create_graph, w0, x, y, lr=0.05):
    """The loss after ``DIFFERENTIABLE_STEPS`` steps of ``optim.<name>(...,
    differentiable=True)`` on a non-leaf copy of ``w0`` with a tensor learning rate,
    and its gradients with respect to the learning rate and ``w0``."""
    import torch

    rate = torch.tensor(lr, dtype=torch.float64, requires_grad=True)
    start = w0.clone().requires_grad_(True)
    w = start.clone()
    opt = getattr(optim, name)([w], lr=rate, differentiable=True, **kwargs)
    for _ in range(DIFFERENTIABLE_STEPS):
        loss = ((x @ w.T - y) ** 2).mean()
        (w.grad,) = torch.autograd.grad(loss, w, create_graph=create_graph)
        opt.step()
    final = ((x @ w.T - y) ** 2).mean()
    d_rate, d_start = torch.autograd.grad(final, (rate, start))
    return float(final.detach()), float(d_rate), d_start


def record_differentiable() -> list[dict]:
    import torch

    out = []
    old = torch.get_default_dtype()
    # torch's differentiable Adam computes its bias corrections from the step tensor,
    # kept in the default dtype
    torch.set_default_dtype(torch.float64)
    try:
        runs = [
            (case, hypergradients(torch.optim, case[1], case[2], case[3], *problem))
            for case, problem in (
                (case, differentiable_problem(seed))
                for seed, case in enumerate(DIFFERENTIABLE_CASES, 900)
            )
        ]
    finally:
        torch.set_default_dtype(old)
    for seed, ((case_id, name, kwargs, create_graph), (loss, d_rate, d_start)) in enumerate(
        runs, 900
    ):
        w0, x, y = differentiable_problem(seed)
        out.append(
            {
                "id": f"torch-differentiable-{case_id}",
                "class": name,
                "kwargs": kwargs,
                "create_graph": create_graph,
                "steps": DIFFERENTIABLE_STEPS,
                "lr": 0.05,
                "seed": seed,
                "w0": w0.tolist(),
                "x": x.tolist(),
                "y": y.tolist(),
                "loss": loss,
                "d_lr": d_rate,
                "d_w0": d_start.tolist(),
                "d_w0_differs": W0_GRADIENT_DIFFERS.get(case_id),
            }
        )
    return out


def main() -> None:
    import torch

    ERRORS_OUT.parent.mkdir(parents=True, exist_ok=True)
    errors = record_error_inputs()
    ERRORS_OUT.write_text(json.dumps(errors, indent=1) + "\n")
    print(f"error inputs: {len(errors)}")
    complex_runs = record_complex()
    COMPLEX_OUT.write_text(json.dumps(complex_runs, indent=0))
    print(f"complex runs: {len(complex_runs)}")
    differentiable = record_differentiable()
    DIFFERENTIABLE_OUT.write_text(json.dumps(differentiable, indent=0))
    print(f"differentiable runs: {len(differentiable)}")
    trajectories = record_trajectories()
    OUT.write_text(json.dumps(trajectories, indent=0))
    print(f"trajectories: {len(trajectories)}")
    manifest = {
        "generator": "tests/conformance/record_torch_extra_fixtures.py",
        "steps": STEPS,
        "files": [
            "tests/conformance/fixtures/torch_front/error_inputs.json",
            "tests/conformance/fixtures/torch_extra.json",
            "tests/conformance/fixtures/torch_front/complex.json",
            "tests/conformance/fixtures/torch_front/differentiable.json",
        ],
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
        },
        "platform": f"{platform.system()} {platform.machine()}",
        "command": " ".join([Path(sys.executable).name] + sys.argv[:1]),
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
