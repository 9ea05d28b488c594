"""Where a CUDA step's host time goes: the torch front's Python work per step, apart from the GPU's.

python benchmarks/host_overhead.py [--cases adam:1x20000000,rmsprop:5000x1000]
    [--steps 50] [--profile N] [--top N] [--out FILE]

For each case (a ``gradstep.torch`` class and a layout COUNTxSIZE of float32
vectors) it measures, after warm-up steps:

- ``host_ms``: host seconds per ``opt.step()`` with no synchronisation, over a run of
  steps short enough that the launch queue never fills (what Python and the
  launcher cost);
- ``stepped_ms``: CUDA-event time per step over the same run (what a training loop
  sees: the larger of host and device time if they overlap, their sum if the step
  waits for the device);
- ``replay_ms``: the step captured in a CUDA graph (``capturable=True``), replayed:
  the device time alone.

``--profile N`` also prints cProfile's top ``--top`` functions (by own time) over the first
N cases' steps. Without a CUDA device it runs on CPU tensors under
``engine="triton"`` only if ``TRITON_INTERPRET=1`` (for checking the script).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import time

import torch

import gradstep
import gradstep.torch as gt
from gradstep.cli.bench_cuda import clip_adamw, event_time, graph_of

CLASSES = {
    "adam": ("Adam", {"lr": 1e-3}),
    "adamw": ("AdamW", {"lr": 1e-3, "weight_decay": 0.01}),
    "rmsprop": ("RMSprop", {"lr": 1e-3}),
    "adagrad": ("Adagrad", {"lr": 1e-2}),
    "sgd_momentum": ("SGD", {"lr": 1e-2, "momentum": 0.9}),
    "nadam": ("NAdam", {"lr": 1e-3}),
    "lion": ("Lion", {"learning_rate": 1e-4}),
    "schedule_free_adamw": ("AdamWScheduleFree", {"lr": 1e-3}),
    # a transform chain: gradstep.torch.TransformOptimizer
    "clip+adamw": ("TransformOptimizer", {}),
}


def make(case: str, layout: str, device: str, capturable: bool = False):
    name, kwargs = CLASSES[case]
    count, _, size = layout.partition("x")
    gen = torch.Generator(device=device).manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(int(size), generator=gen, device=device) * 0.02)
        for _ in range(int(count))
    ]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, device=device) * 1e-3
    extra = {"capturable": True} if capturable else {}
    if case == "clip+adamw":
        return gt.TransformOptimizer(params, clip_adamw(gradstep), **extra)
    opt = getattr(gt, name)(params, **kwargs, **extra)
    if hasattr(opt, "train"):  # schedule-free: steps in train mode
        opt.train()
    if device == "cpu":
        for group in opt.param_groups:
            group["engine"] = "triton"
    return opt


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(
    case: str, layout: str, steps: int, device: str, profile: bool, args_top: int = 12
) -> dict:
    opt = make(case, layout, device)
    for _ in range(3):
        opt.step()
    sync(device)
    host, stepped = [], []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(steps):
            opt.step()
        host.append((time.perf_counter() - start) / steps)
        sync(device)
        if device == "cuda":
            stepped.append(event_time(torch, opt.step, steps, repeats=1))
    row = {
        "case": case,
        "layout": layout,
        "fast_path": bool(opt._runtime().fast),
        "host_ms": 1e3 * statistics.median(host),
    }
    if stepped:
        row["stepped_ms"] = 1e3 * statistics.median(stepped)
        row["replay_ms"] = replay_ms(case, layout, steps)
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(steps):
            opt.step()
        prof.disable()
        sync(device)
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(args_top)
        row["profile"] = text.getvalue().split("\n", 6)[-1][: 250 * args_top]
    return row


def replay_ms(case: str, layout: str, steps: int) -> float | None:
    try:
        graph = graph_of(torch, make(case, layout, "cuda", capturable=True).step)
        return 1e3 * event_time(torch, graph.replay, steps, repeats=1)
    except Exception as error:  # reported, not fatal (a rule that cannot be captured)
        print(f"{case} {layout}: no graph ({type(error).__name__}: {error})"[:200])
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="adam:1x20000000,rmsprop:1x20000000,adam:5000x1000")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--top", type=int, default=12, help="functions a profile lists")
    parser.add_argument("--out")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for i, item in enumerate(args.cases.split(",")):
        case, _, layout = item.partition(":")
        row = measure(case, layout, args.steps, device, i < args.profile, args.top)
        rows.append(row)
        cells = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        profile = cells.pop("profile", None)
        print(cells, flush=True)
        if profile:
            print(profile, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
