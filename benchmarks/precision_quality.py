"""Training quality of Adam with bfloat16 parameters and state: float32, round-to-nearest,
stochastic rounding and Kahan-compensated updates on problems of ``gradstep compare``.

python benchmarks/precision_quality.py [--steps 600] [--seeds 0,1,2] [--lr 3e-3]
    [--problems mlp,text] [--out FILE]

Each setting trains the problem (default: the 64-32-10 tanh network on the digits
and the next-token model) on its mini-batches with ``gradstep.adam`` on the fused
engine; the loss and its gradient are computed in
float64 from the stored parameters (a bfloat16 parameter is read exactly), and the
gradient is handed over in the parameters' dtype, as a bfloat16 model would produce
it. Reported: the final training and validation cross-entropy, mean over the seeds,
and their relative difference to float32 Adam.
"""

from __future__ import annotations

import argparse
import datetime
import sys

import ml_dtypes
import numpy as np

import gradstep
from gradstep.cli._compare_problems import make_problems

BF16 = np.dtype(ml_dtypes.bfloat16)

#: name -> (parameter dtype, optimizer options)
SETTINGS = {
    "float32": (np.float32, {}),
    "bf16 state, nearest": (np.float32, {"state_dtype": "bfloat16"}),
    "bf16 params+state, nearest": (BF16, {}),
    "bf16 params+state, stochastic": (BF16, {"stochastic_rounding": True}),
    "bf16 params+state, Kahan": (BF16, {"kahan_summation": True}),
    "bf16 params+state, stochastic+Kahan": (
        BF16,
        {"stochastic_rounding": True, "kahan_summation": True},
    ),
}


def train(problem, dtype, options: dict, steps: int, seed: int, lr: float) -> dict:
    params = {k: v.astype(dtype) for k, v in problem.init(seed).items()}
    opt = gradstep.Optimizer(params, gradstep.adam(lr, rounding_seed=seed, **options))
    for batch in problem.batches(steps, seed):
        wide = {k: v.astype(np.float64) for k, v in params.items()}
        _, grads = problem.loss_and_grad(wide, batch)
        opt.step({k: g.astype(dtype) for k, g in grads.items()})
    wide = {k: v.astype(np.float64) for k, v in params.items()}
    return {"train": problem.loss(wide), "val": problem.monitor(wide), "engine": opt.engine}


def main(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--problems", default="mlp,text")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        f"# Adam, {args.steps} steps, lr {args.lr:g}, seeds {args.seeds}",
        f"# {datetime.date.today().isoformat()}; command: python benchmarks/precision_quality.py "
        + " ".join(argv),
        f"# gradstep {gradstep.__version__}, numpy {np.__version__}, "
        f"ml_dtypes {ml_dtypes.__version__}",
    ]
    for name in args.problems.split(","):
        lines += ["", *_table(make_problems()[name], seeds, args)]
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return text


def _table(problem, seeds: list[int], args) -> list[str]:
    results = {
        name: [train(problem, dtype, opts, args.steps, s, args.lr) for s in seeds]
        for name, (dtype, opts) in SETTINGS.items()
    }
    base = {k: np.mean([r[k] for r in results["float32"]]) for k in ("train", "val")}
    lines = [
        f"## {problem.title}",
        "",
        "| setting | engine | train loss | vs float32 | val loss | vs float32 | per seed (train) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        mean = {k: np.mean([r[k] for r in runs]) for k in ("train", "val")}
        rel = {k: 100 * (mean[k] - base[k]) / base[k] for k in mean}
        seeds_text = ", ".join(f"{r['train']:.4f}" for r in runs)
        lines.append(
            f"| {name} | {runs[0]['engine']} | {mean['train']:.4f} | {rel['train']:+.1f}% "
            f"| {mean['val']:.4f} | {rel['val']:+.1f}% | {seeds_text} |"
        )
    return lines


if __name__ == "__main__":
    print(main(sys.argv[1:]), end="")
