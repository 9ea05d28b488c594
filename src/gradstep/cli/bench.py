"""``gradstep bench``: step time of every elementwise optimizer against torch.optim and
against the memory-traffic floor.

For each optimizer and layout (one 20M tensor, 200 x 100k, 5000 x 1k by default), all
on the same float32 data in the same run:

- gradstep fused and eager (gradients reused each step, as ``p.grad`` buffers are);
- gradstep fused with new gradient arrays every step (pointer look-ups included);
- torch.optim with ``fused=True`` (where it exists), ``foreach=True`` and the for-loop;
- the memory-traffic floor: the bytes the rule must move (read g, w and each slot,
  write w and each slot) divided by the best bandwidth of parallel streaming kernels
  (copy, scale, add, triad) measured in the same run;
- peak extra memory allocated during one gradstep step (tracemalloc).

``--compile`` adds the cold and warm compile time of each fused kernel, measured in
fresh processes. Results go to a table and to JSON. Times are medians; a benchmark on a
shared machine is noisy, so compare ratios from one run.

``--backend torch`` measures the PyTorch front instead: ``gradstep.torch.<Class>``
against ``torch.optim.<Class>(fused=True)``, ``foreach=True`` and the for-loop, all
stepping the parameter list of a real model shape (by default GPT-2 small: a 50257 x
768 embedding, 1024 positions and 12 transformer blocks, 124M float32 parameters),
with the steps of the implementations interleaved so that a busy machine slows them
alike.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import gradstep
from gradstep.engines.fused import FusedEngine

DEFAULT_LAYOUTS = "1x20000000,200x100000,5000x1000"


def parse_layouts(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        count, _, size = item.strip().partition("x")
        try:
            out.append((int(count), int(size)))
        except ValueError:
            raise SystemExit(f"gradstep bench: invalid layout {item!r}; use COUNTxSIZE") from None
    return out


def median_time(step: Callable[[int], None], repeats: int, warmup: int = 2) -> float:
    for k in range(warmup):
        step(k)
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        step(warmup + k)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- bandwidth ----------------------------------------------------------------------


def measure_bandwidth(n: int = 20_000_000, repeats: int = 7) -> dict[str, float]:
    """GB/s of parallel streaming kernels on float32 arrays of ``n`` elements."""
    from numba import njit, prange

    @njit(parallel=True)
    def copy(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i]

    @njit(parallel=True)
    def scale(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = s * b[i]

    @njit(parallel=True)
    def add(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i] + c[i]

    @njit(parallel=True)
    def triad(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    s = np.float32(0.5)
    streams = {"copy": (copy, 2), "scale": (scale, 2), "add": (add, 3), "triad": (triad, 3)}
    out = {}
    for name, (kernel, arrays) in streams.items():
        seconds = median_time(lambda k, f=kernel: f(a, b, c, s), repeats)
        out[name] = arrays * 4 * n / seconds / 1e9
    out["best"] = max(out.values())
    return out


# -- one optimizer on one layout ------------------------------------------------------


def slot_count(transform: gradstep.Transform) -> int:
    return sum(len(st.stage.slots) for st in FusedEngine(transform).stages)


def make_data(count: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
    grads = [rng.standard_normal(size, dtype=np.float32) * 0.01 for _ in range(count)]
    return params, grads


def time_gradstep(spec, layout, engine, repeats, fresh_grads=False):
    params, grads = make_data(*layout)
    opt = gradstep.Optimizer(params, spec.factory(**spec.test_hyperparams), engine=engine)
    pools = [grads, [g.copy() for g in grads]] if fresh_grads else [grads]
    return median_time(lambda k: opt.step(pools[k % len(pools)]), repeats)


def peak_extra_bytes(spec, layout, engine) -> int:
    params, grads = make_data(*layout)
    opt = gradstep.Optimizer(params, spec.factory(**spec.test_hyperparams), engine=engine)
    opt.step(grads)
    tracemalloc.start()
    opt.step(grads)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def time_torch(spec, layout, mode, repeats) -> float | None:
    import torch

    name, kwargs = spec.torch_equivalent
    params, grads = make_data(*layout)
    tensors = [torch.from_numpy(p) for p in params]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g)
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}
    try:
        opt = getattr(torch.optim, name)(tensors, **kwargs, **flags[mode])
        opt.step()
    except (TypeError, RuntimeError):
        return None  # this torch optimizer has no such implementation
    with torch.no_grad():
        return median_time(lambda k: opt.step(), repeats)


def bench_case(spec, layout, repeats, bandwidth, with_torch) -> dict[str, Any]:
    count, size = layout
    transform = spec.factory(**spec.test_hyperparams)
    n = count * size
    traffic = 4 * n * (3 + 2 * slot_count(transform))
    row: dict[str, Any] = {
        "optimizer": spec.name,
        "layout": f"{count}x{size}",
        "traffic_bytes": traffic,
        "floor_s": traffic / (bandwidth * 1e9),
        "fused_s": time_gradstep(spec, layout, "fused", repeats),
        "fused_new_grads_s": time_gradstep(spec, layout, "fused", repeats, fresh_grads=True),
        "eager_s": time_gradstep(spec, layout, "eager", max(3, repeats // 2)),
        "peak_extra_bytes_fused": peak_extra_bytes(spec, layout, "fused"),
        "param_bytes": 4 * n,
    }
    if with_torch and spec.torch_equivalent:
        for mode in ("fused", "foreach", "loop"):
            row[f"torch_{mode}_s"] = time_torch(spec, layout, mode, repeats)
    return row


# -- compile time ---------------------------------------------------------------------

_FIRST_STEP = """
import time, numpy as np, gradstep
spec = gradstep.REGISTRY[{name!r}]
p = [np.zeros(1000, np.float32)]
t0 = time.perf_counter()
opt = gradstep.Optimizer(p, spec.factory(**spec.test_hyperparams), engine="fused")
opt.step([np.ones(1000, np.float32)])
t1 = time.perf_counter()
opt.step([np.ones(1000, np.float32)])
t2 = time.perf_counter()
print((t1 - t0) - (t2 - t1))
"""


def compile_times(spec) -> dict[str, float]:
    """Extra time of the first step over a later one, in a fresh process: cold (empty
    kernel cache) and warm (kernel compiled by the previous process)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GRADSTEP_CACHE_DIR": cache}
        code = _FIRST_STEP.format(name=spec.name)
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(2)
        ]
    return {"cold_s": runs[0], "warm_s": runs[1]}


# -- report ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info = {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gradstep": gradstep.__version__,
    }
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.get_num_threads()
    except ImportError:  # pragma: no cover - numba is a requirement
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1e3 * seconds:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}"


def _percent(part: float, whole: float) -> str:
    return "n/a" if not whole else f"{100 * part / whole:.3f}%"


def format_table(rows: list[dict]) -> str:
    head = (
        "optimizer",
        "layout",
        "fused ms",
        "new-grads ms",
        "eager ms",
        "torch fused",
        "torch foreach",
        "torch loop",
        "floor ms",
        "fused/floor",
        "fused/torch fused",
        "fused/torch loop",
        "peak extra",
    )
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        lines.append(
            " | ".join(
                [
                    r["optimizer"],
                    r["layout"],
                    _ms(r["fused_s"]),
                    _ms(r["fused_new_grads_s"]),
                    _ms(r["eager_s"]),
                    _ms(r.get("torch_fused_s")),
                    _ms(r.get("torch_foreach_s")),
                    _ms(r.get("torch_loop_s")),
                    _ms(r["floor_s"]),
                    _ratio(r["fused_s"], r["floor_s"]),
                    _ratio(r["fused_s"], r.get("torch_fused_s")),
                    _ratio(r["fused_s"], r.get("torch_loop_s")),
                    _percent(r["peak_extra_bytes_fused"], r["param_bytes"]),
                ]
            )
        )
    return "\n".join("| " + line + " |" for line in lines)


# -- the PyTorch front on a model's parameter list ------------------------------------

TORCH_MODES = ("fused", "foreach", "loop")


def transformer_shapes(layers: int, width: int, vocab: int, context: int) -> list[tuple]:
    """The parameter shapes of a GPT-2-style decoder (tied output embedding)."""
    shapes: list[tuple] = [(vocab, width), (context, width)]
    for _ in range(layers):
        shapes += [(width,), (width,)]  # first layer norm
        shapes += [(width, 3 * width), (3 * width,), (width, width), (width,)]  # attention
        shapes += [(width,), (width,)]  # second layer norm
        shapes += [(width, 4 * width), (4 * width,), (4 * width, width), (width,)]  # MLP
    shapes += [(width,), (width,)]  # final layer norm
    return shapes


def parse_model(text: str) -> tuple[int, int]:
    layers, _, width = text.partition("x")
    try:
        return int(layers), int(width)
    except ValueError:
        raise SystemExit(f"gradstep bench: invalid --model {text!r}; use LAYERSxWIDTH") from None


def bench_torch_front(
    class_name: str, kwargs: dict, shapes: list[tuple], repeats: int, modes=TORCH_MODES
) -> dict[str, Any]:
    """Step times of gradstep.torch.<class_name> and torch.optim.<class_name> on one
    set of float32 parameters and gradients (each optimizer keeps its own state)."""
    import torch

    import gradstep.torch as gt

    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    contenders: dict[str, Any] = {"gradstep": getattr(gt, class_name)(params, **kwargs)}
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}
    for mode in modes:
        try:
            opt = getattr(torch.optim, class_name)(params, **kwargs, **flags[mode])
        except (TypeError, RuntimeError, ValueError):
            continue  # this torch optimizer has no such implementation
        contenders[f"torch_{mode}"] = opt
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with torch.no_grad():
        for k in range(repeats + 2):
            for name, opt in contenders.items():
                t0 = time.perf_counter()
                opt.step()
                if k >= 2:  # the first steps create state and load kernels
                    times[name].append(time.perf_counter() - t0)
    n = sum(p.numel() for p in params)
    row: dict[str, Any] = {
        "optimizer": class_name,
        "parameters": n,
        "tensors": len(params),
        "param_bytes": 4 * n,
    }
    for name, values in times.items():
        row[f"{name}_s"] = statistics.median(values)
    for mode in TORCH_MODES:
        row.setdefault(f"torch_{mode}_s", None)
    return row


def format_torch_table(rows: list[dict]) -> str:
    head = (
        "optimizer",
        "parameters",
        "tensors",
        "gradstep.torch ms",
        "torch fused ms",
        "torch foreach ms",
        "torch loop ms",
        "gradstep/torch fused",
        "gradstep/torch foreach",
    )
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        lines.append(
            " | ".join(
                [
                    r["optimizer"],
                    f"{r['parameters'] / 1e6:.1f}M",
                    str(r["tensors"]),
                    _ms(r["gradstep_s"]),
                    _ms(r["torch_fused_s"]),
                    _ms(r["torch_foreach_s"]),
                    _ms(r["torch_loop_s"]),
                    _ratio(r["gradstep_s"], r["torch_fused_s"]),
                    _ratio(r["gradstep_s"], r["torch_foreach_s"]),
                ]
            )
        )
    return "\n".join("| " + line + " |" for line in lines)


def run_torch(args: argparse.Namespace) -> int:
    try:
        import gradstep.torch as gt
    except ImportError:
        print("gradstep bench: --backend torch needs torch installed", file=sys.stderr)
        return 2
    if getattr(args, "device", "cpu") == "cuda":
        from .bench_cuda import run_cuda

        return run_cuda(args)

    names = (
        ["adam"] if args.optimizers == "all" else [n.strip() for n in args.optimizers.split(",")]
    )
    unknown = [n for n in names if n not in gt.TORCH_CLASSES]
    if unknown:
        print(
            f"gradstep bench: --backend torch compares the classes torch.optim also has; "
            f"unknown optimizer(s) {unknown}; known: {', '.join(gt.TORCH_CLASSES)}",
            file=sys.stderr,
        )
        return 2
    if args.repeats < 1:
        print("gradstep bench: invalid --repeats; valid values: an integer >= 1", file=sys.stderr)
        return 2
    layers, width = parse_model(args.model)
    shapes = transformer_shapes(layers, width, args.vocab, args.context)
    modes = TORCH_MODES if args.torch_loop else TORCH_MODES[:2]
    rows = []
    for name in names:
        spec = gradstep.REGISTRY[name] if name in gradstep.REGISTRY else None
        class_name = gt.TORCH_CLASSES[name].__name__
        kwargs = dict(spec.torch_equivalent[1]) if spec and spec.torch_equivalent else {}
        if spec and spec.torch_equivalent and spec.torch_equivalent[0] != class_name:
            kwargs = {}
        rows.append(bench_torch_front(class_name, kwargs, shapes, args.repeats, modes))
        print(format_torch_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_torch_table(rows))
    report = {
        "machine": machine(),
        "backend": "torch",
        "model": {"layers": layers, "width": width, "vocab": args.vocab, "context": args.context},
        "results": rows,
    }
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.json}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("numpy", "torch"),
        default="numpy",
        help="numpy: the engines on arrays (default); torch: the gradstep.torch classes "
        "against torch.optim on a model's parameter list",
    )
    parser.add_argument(
        "--optimizers",
        default="all",
        help="comma-separated registry names, or 'all' (elementwise ones; with --backend "
        "torch: adam)",
    )
    parser.add_argument(
        "--model",
        default="12x768",
        help="--backend torch: LAYERSxWIDTH of the GPT-2-style parameter list (default "
        "12x768, GPT-2 small)",
    )
    parser.add_argument("--vocab", type=int, default=50257, help="--backend torch: vocabulary")
    parser.add_argument("--context", type=int, default=1024, help="--backend torch: positions")
    parser.add_argument(
        "--torch-loop",
        action="store_true",
        help="--backend torch: also time torch's for-loop implementation (slow)",
    )
    parser.add_argument(
        "--layouts",
        default=DEFAULT_LAYOUTS,
        help=f"comma-separated COUNTxSIZE (default {DEFAULT_LAYOUTS})",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="--backend torch: cuda times the Triton engine against torch.optim on a GPU "
        "(see gradstep.cli.bench_cuda)",
    )
    parser.add_argument(
        "--cuda-layouts",
        default="all",
        help="--device cuda: comma-separated layouts among gpt2, COUNTxSIZE (default all: "
        "gpt2,200x100000,5000x1000,20000x64,1x20000000)",
    )
    parser.add_argument("--steps", type=int, default=20, help="--device cuda: steps per timed run")
    parser.add_argument(
        "--compile-torch",
        action="store_true",
        help="--device cuda: also time a torch.compile'd torch.optim.Adam step on GPT-2 small",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per case")
    parser.add_argument("--no-torch", action="store_true", help="skip torch.optim")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also measure cold and warm compile time per optimizer",
    )
    parser.add_argument("--json", default="gradstep-bench.json", help="where to write JSON")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "backend", "numpy") == "torch":
        return run_torch(args)
    specs = [s for s in gradstep.REGISTRY if "elementwise" in s.capabilities]
    if args.optimizers != "all":
        names = [n.strip() for n in args.optimizers.split(",")]
        unknown = [n for n in names if n not in gradstep.REGISTRY]
        if unknown:
            print(
                f"gradstep bench: unknown optimizer(s) {unknown}; known: "
                f"{', '.join(s.name for s in specs)}",
                file=sys.stderr,
            )
            return 2
        specs = [gradstep.REGISTRY[n] for n in names]
    if args.repeats < 1:
        print("gradstep bench: invalid --repeats; valid values: an integer >= 1", file=sys.stderr)
        return 2
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("gradstep bench: torch is not installed; measuring gradstep only")
            with_torch = False
    layouts = parse_layouts(args.layouts)
    bandwidth = measure_bandwidth()
    print("streaming bandwidth (GB/s): " + ", ".join(f"{k} {v:.1f}" for k, v in bandwidth.items()))
    rows = []
    for spec in specs:
        for layout in layouts:
            rows.append(bench_case(spec, layout, args.repeats, bandwidth["best"], with_torch))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    compiles = {s.name: compile_times(s) for s in specs} if args.compile else {}
    print()
    print(format_table(rows))
    for name, t in compiles.items():
        print(f"compile {name}: cold {t['cold_s']:.2f} s, warm {t['warm_s']:.2f} s")
    report = {
        "machine": machine(),
        "bandwidth_gbs": bandwidth,
        "results": rows,
        "compile": compiles,
    }
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.json}")
    return 0
