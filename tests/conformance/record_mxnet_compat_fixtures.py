"""Record MXNet 1.9.1 trajectories for ``gradstep.compat.mxnet``'s bookkeeping: lr and
wd multipliers (by index and by name), ``param_idx2name``'s implicit ``wd_mult = 0``,
learning-rate schedulers (read after the count is incremented; LBSGD before),
``begin_num_update``, per-index counts with skipped updates, and ``rescale_grad``
changed between steps, all through MXNet's own ``get_updater``.

Run in MXNet's virtual environment (see ``record_mxnet_fixtures.py``)::

    /path/to/mxnet-venv/bin/python tests/conformance/record_mxnet_compat_fixtures.py

It writes ``tests/compat/fixtures/mxnet_compat.json`` (replayed by
``tests/compat/test_mxnet_compat.py``; the generic conformance loader does not read
that folder) and ``MANIFEST-mxnet_compat.json`` with the versions. A scheduler is
recorded as the table of its values ``scheduler_lrs[n]`` for ``n = 0..`` (the replay
passes ``lr_scheduler=table.__getitem__``), so the replay checks which ``num_update``
MXNet asks for.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

OUT = Path(__file__).parents[1] / "compat" / "fixtures"
STEPS = 24
NAMES = {0: "fc_weight", 1: "fc_bias"}

# id, MXNet name, constructor kwargs, options
CASES = [
    ("sgd_momentum_names_lr_mult", "sgd",
     {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.1, "param_idx2name": NAMES},
     {"lr_mult": [[1, 2.0]]}),
    ("adam_mult_by_name_scheduler", "adam",
     {"learning_rate": 0.02, "wd": 0.05, "param_idx2name": NAMES},
     {"lr_mult": [["fc_bias", 0.5]], "wd_mult": [["fc_bias", 1.0], ["fc_weight", 0.25]],
      "scheduler": (5, 0.5)}),
    ("nadam_begin_num_update_skips", "nadam",
     {"learning_rate": 0.02, "begin_num_update": 3},
     {"skip": (2, 3, 7, 11, 12, 13)}),
    ("adam_skips_per_index_counts", "adam",
     {"learning_rate": 0.05, "beta1": 0.8},
     {"skip": (0, 1, 5, 9), "tolerance": {"rtol": 2e-5, "atol": 2e-5},
      "tolerance_reason": "MXNet's Adam kernel computes 1 - beta2 in float32 (1.3e-5 below "
      "0.001): steps 6e-6 relative larger, seen on an element crossing zero at lr 0.05 "
      "(as the conformance case mxnet-adam_lr_change)"}),
    ("lbsgd_scheduler_before_count", "lbsgd",
     {"learning_rate": 0.1, "momentum": 0.5, "warmup_strategy": "linear",
      "warmup_epochs": 1, "updates_per_epoch": 4, "batch_scale": 2},
     {"scheduler": (3, 0.5)}),
    ("rmsprop_rescale_changes", "rmsprop",
     {"learning_rate": 0.01, "wd": 0.01, "clip_gradient": 0.4},
     {"rescale": True}),
    ("lars_names_lr_mult_wd_mult", "lars",
     {"learning_rate": 0.5, "momentum": 0.875, "eta": 0.125, "wd": 0.0078125,
      "param_idx2name": NAMES},
     {"lr_mult": [[0, 0.5]], "wd_mult": [["fc_bias", 1.0]]}),
    ("signum_wd_mult_index", "signum",
     {"learning_rate": 0.02, "wd": 0.05, "wd_lh": 0.01},
     {"wd_mult": [[1, 3.0]], "lr_mult": [[0, 0.5]]}),
    ("adagrad_names_implicit_wd_mult", "adagrad",
     {"learning_rate": 0.1, "wd": 0.02, "param_idx2name": {0: "w0", 1: "conv_gamma"}},
     {}),
]  # fmt: skip


def problem(seed: int):
    rng = np.random.default_rng(2000 + seed)
    w0 = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=5).astype(np.float32)]
    target = [rng.normal(size=w.shape) for w in w0]

    def grad(k, w):
        return [(1.3 * (x - t) + 0.2 * np.sin(k + x)).astype(np.float32) for x, t in zip(w, target)]

    return w0, grad


def run(case_id, name, kwargs, options, seed):
    import mxnet as mx

    w0, grad = problem(seed)
    kwargs = dict(kwargs)
    table = None
    if "scheduler" in options:
        step, factor = options["scheduler"]
        sched = mx.lr_scheduler.FactorScheduler(step=step, factor=factor)
        sched.base_lr = kwargs["learning_rate"]
        table = [float(sched(n)) for n in range(STEPS + 8)]
        # a fresh scheduler: FactorScheduler is stateful, it only moves forwards
        sched = mx.lr_scheduler.FactorScheduler(step=step, factor=factor)
        kwargs["lr_scheduler"] = sched
    opt = mx.optimizer.create(name, **kwargs)
    if "lr_mult" in options:
        opt.set_lr_mult(dict((k, v) for k, v in options["lr_mult"]))
    if "wd_mult" in options:
        opt.set_wd_mult(dict((k, v) for k, v in options["wd_mult"]))
    updater = mx.optimizer.get_updater(opt)
    weights = [mx.nd.array(w, dtype="float32") for w in w0]
    skip = set(options.get("skip", ()))
    grads, trajectory, present, rescales = [], [], [], []
    current = [w.copy() for w in w0]
    for k in range(STEPS):
        g = grad(k, current)
        grads.append([x.tolist() for x in g])
        if options.get("rescale"):
            opt.rescale_grad = 1.0 / (8 + k % 5)
            rescales.append(opt.rescale_grad)
        mask = [not (i == 1 and k in skip) for i in range(2)]
        present.append(mask)
        for i, w in enumerate(weights):
            if mask[i]:
                updater(i, mx.nd.array(g[i], dtype="float32"), w)
        current = [w.asnumpy() for w in weights]
        trajectory.append([x.tolist() for x in current])
    ref_kwargs = {k: v for k, v in kwargs.items() if k != "lr_scheduler"}
    out = {
        "id": f"mxnet_compat-{case_id}-float32",
        "reference": f"mxnet.optimizer.{type(opt).__name__}",
        "reference_kwargs": json.loads(json.dumps(ref_kwargs)),
        "dtype": "float32",
        "params0": [w.tolist() for w in w0],
        "grads": grads,
        "trajectory": trajectory,
        "lrs": None,
    }
    for key in ("lr_mult", "wd_mult"):
        if key in options:
            out[key] = options[key]
    if table is not None:
        out["scheduler_lrs"] = table
    if skip:
        out["present"] = present
    if rescales:
        out["rescale_grads"] = rescales
    if "tolerance" in options:
        out["tolerance"] = options["tolerance"]
        out["tolerance_reason"] = options["tolerance_reason"]
    return out


def main() -> None:
    import logging

    import mxnet as mx

    logging.disable(logging.INFO)
    cases = [run(*case, seed) for seed, case in enumerate(CASES)]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mxnet_compat.json").write_text(json.dumps(cases))
    manifest = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mxnet": mx.__version__,
        "cases": len(cases),
    }
    (OUT / "MANIFEST-mxnet_compat.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(cases)} cases")


if __name__ == "__main__":
    main()
