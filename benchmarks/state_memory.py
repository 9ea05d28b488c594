"""Optimizer-state bytes per parameter and the peak extra memory of one step, on
GPT-2 small's parameter list, for each state precision.

python benchmarks/state_memory.py [--optimizer adam] [--model 12x768]
    [--state-dtypes param,bfloat16,int8] [--out FILE]

The parameters are GPT-2 small's 148 tensors (124.4M float32 values, tied output
embedding; :func:`gradstep.cli.bench_torch.transformer_shapes`), stepped by the NumPy
front on the fused engine. For each ``state_dtype`` it reports the bytes of every
array of the optimizer state (slots, block scales, counts) per parameter, and the
peak of Python-tracked allocations during the second step (``tracemalloc``: NumPy's
buffers are tracked, the kernels' stack buffers are not) as a fraction of the
parameters' bytes: a full-size temporary would show as 100% or more.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tracemalloc

import numpy as np

import gradstep
from gradstep.cli.bench_torch import parse_model, transformer_shapes

#: GPT-2 small: vocabulary and context of the tied-embedding decoder
VOCAB, CONTEXT = 50257, 1024


def measure(optimizer: str, shapes: list[tuple], state_dtype: str | None) -> dict:
    """State bytes per parameter and the peak allocation of one step."""
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) * np.float32(1e-2) for s in shapes]
    factory = getattr(gradstep, optimizer)
    options = {} if state_dtype is None else {"state_dtype": state_dtype}
    opt = gradstep.Optimizer(params, factory(1e-3, **options), engine="fused")
    opt.step(grads)  # compiles; the state exists from here on
    tracemalloc.start()
    opt.step(grads)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n = sum(p.size for p in params)
    state = sum(np.asarray(leaf).nbytes for leaf in gradstep.tree.leaves(opt.state))
    return {
        "state_dtype": state_dtype or "param",
        "engine": opt.engine,
        "parameters": n,
        "tensors": len(params),
        "state_bytes": state,
        "state_bytes_per_param": state / n,
        "step_peak_extra_bytes": peak,
        "step_peak_extra_fraction_of_param_bytes": peak / (4 * n),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument(
        "--model", default="12x768", type=parse_model, help="LAYERSxWIDTH (default GPT-2 small)"
    )
    parser.add_argument("--state-dtypes", default="param,bfloat16,int8")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    shapes = transformer_shapes(*args.model, VOCAB, CONTEXT)
    rows = []
    for name in args.state_dtypes.split(","):
        row = measure(args.optimizer, shapes, None if name == "param" else name)
        rows.append(row)
        print(
            f"{args.optimizer} state {row['state_dtype']:>8}: "
            f"{row['state_bytes_per_param']:.3f} bytes/parameter, step peak extra "
            f"{row['step_peak_extra_bytes'] / 2**20:.2f} MiB "
            f"({100 * row['step_peak_extra_fraction_of_param_bytes']:.3f}% of the parameters)"
        )
    if args.out:
        report = {
            "command": " ".join(["python", "benchmarks/state_memory.py", *(argv or sys.argv[1:])]),
            "date": datetime.date.today().isoformat(),
            "versions": {
                "gradstep": gradstep.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "model": args.model,
            "rows": rows,
        }
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
