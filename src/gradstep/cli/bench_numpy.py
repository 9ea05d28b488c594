"""``gradstep bench`` (the default backend): the engines on NumPy arrays against torch.optim
and the memory-traffic floor.

For each optimizer and layout (one 20M tensor, 200 x 100k, 5000 x 1k by default), all
on the same float32 data in the same run:

- gradstep fused and eager (gradients reused each step, as ``p.grad`` buffers are);
- gradstep fused with new gradient arrays every step (pointer look-ups included);
- torch.optim with ``fused=True`` (where it exists), ``foreach=True`` and the for-loop;
- the memory-traffic floor: the bytes the rule must move (read g, w and each slot,
  write w and each slot) divided by the best bandwidth of parallel streaming kernels
  (copy, scale, add, triad) measured in the same run;
- peak extra memory allocated during one gradstep step (tracemalloc);
- the optimizer state's bytes per parameter, for each ``--state-dtypes`` setting
  (``param``: the parameters' float32; ``bfloat16``, ``float16``: the
  ``state_dtype`` option, :mod:`gradstep._core.precision`).

``--compile`` adds the cold and warm compile time of each fused kernel, measured in
fresh processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tracemalloc
from typing import Any

import numpy as np

import gradstep
from gradstep.engines.fused import FusedEngine

from ._bench_report import (
    load_warning,
    machine,
    markdown_table,
    median_time,
    ms,
    percent,
    ratio,
    write_report,
)

DEFAULT_LAYOUTS = "1x20000000,200x100000,5000x1000"


def parse_state_dtypes(text: str) -> list[str | None] | None:
    """``param,bfloat16`` -> ``[None, "bfloat16"]`` (None: invalid); ``bfloat16-sr``:
    bfloat16 state rounded stochastically (:mod:`gradstep._core.rounding`)."""
    out: list[str | None] = []
    for item in text.split(","):
        item = item.strip()
        if item not in ("param", "float32", "bfloat16", "float16", "bfloat16-sr"):
            return None
        out.append(None if item == "param" else item)
    return out


def parse_layouts(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        count, _, size = item.strip().partition("x")
        try:
            out.append((int(count), int(size)))
        except ValueError:
            raise SystemExit(f"gradstep bench: invalid layout {item!r}; use COUNTxSIZE") from None
    return out


# -- bandwidth -----------------------------------------------------------------


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


def make_transform(spec, state_dtype: str | None = None) -> gradstep.Transform:
    """The benchmarked transform: the spec's test hyperparameters, its state stored in
    ``state_dtype`` (None: the parameters' dtype)."""
    if state_dtype == "bfloat16-sr":
        return spec.factory(
            **spec.test_hyperparams, state_dtype="bfloat16", stochastic_rounding=True
        )
    return spec.factory(**spec.test_hyperparams, state_dtype=state_dtype)


def state_bytes(opt: gradstep.Optimizer) -> int:
    """Bytes of every array of an optimizer's state (slots, counts)."""
    return sum(np.asarray(leaf).nbytes for leaf in gradstep.tree.leaves(opt.state))


def time_gradstep(spec, layout, engine, repeats, fresh_grads=False, state_dtype=None):
    params, grads = make_data(*layout)
    opt = gradstep.Optimizer(params, make_transform(spec, state_dtype), engine=engine)
    pools = [grads, [g.copy() for g in grads]] if fresh_grads else [grads]
    return median_time(lambda k: opt.step(pools[k % len(pools)]), repeats)


def peak_extra_bytes(spec, layout, engine, state_dtype=None) -> tuple[int, int]:
    """Peak bytes allocated during one step, and the state's bytes."""
    params, grads = make_data(*layout)
    opt = gradstep.Optimizer(params, make_transform(spec, state_dtype), engine=engine)
    opt.step(grads)
    tracemalloc.start()
    opt.step(grads)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, state_bytes(opt)


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


def bench_case(
    spec, layout, repeats, bandwidth, with_torch, state_dtype: str | None = None
) -> dict[str, Any]:
    count, size = layout
    transform = make_transform(spec, state_dtype)
    n = count * size
    slot_size = 4 if state_dtype in (None, "float32") else 2  # bytes per slot element
    traffic = 4 * n * 3 + 2 * slot_size * n * slot_count(transform)
    peak, kept = peak_extra_bytes(spec, layout, "fused", state_dtype)
    row: dict[str, Any] = {
        "optimizer": spec.name,
        "layout": f"{count}x{size}",
        "state_dtype": state_dtype or "param",
        "state_bytes_per_param": kept / n if n else None,
        "traffic_bytes": traffic,
        "floor_s": traffic / (bandwidth * 1e9),
        "fused_s": time_gradstep(spec, layout, "fused", repeats, state_dtype=state_dtype),
        "fused_new_grads_s": time_gradstep(
            spec, layout, "fused", repeats, fresh_grads=True, state_dtype=state_dtype
        ),
        "eager_s": time_gradstep(
            spec, layout, "eager", max(3, repeats // 2), state_dtype=state_dtype
        ),
        "peak_extra_bytes_fused": peak,
        "param_bytes": 4 * n,
    }
    if with_torch and spec.torch_equivalent and state_dtype is None:
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


def format_table(rows: list[dict]) -> str:
    head = (
        "optimizer",
        "layout",
        "state",
        "state B/param",
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
    cells = [
        [
            r["optimizer"],
            r["layout"],
            r.get("state_dtype", "param"),
            "-" if r.get("state_bytes_per_param") is None else f"{r['state_bytes_per_param']:.2f}",
            ms(r["fused_s"]),
            ms(r["fused_new_grads_s"]),
            ms(r["eager_s"]),
            ms(r.get("torch_fused_s")),
            ms(r.get("torch_foreach_s")),
            ms(r.get("torch_loop_s")),
            ms(r["floor_s"]),
            ratio(r["fused_s"], r["floor_s"]),
            ratio(r["fused_s"], r.get("torch_fused_s")),
            ratio(r["fused_s"], r.get("torch_loop_s")),
            percent(r["peak_extra_bytes_fused"], r["param_bytes"]),
        ]
        for r in rows
    ]
    return markdown_table(head, cells)


def run_numpy(args: Any) -> int:
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
    state_dtypes = parse_state_dtypes(getattr(args, "state_dtypes", "param"))
    if state_dtypes is None:
        print(
            "gradstep bench: invalid --state-dtypes; valid values: comma-separated among "
            "param, float32, bfloat16, float16, bfloat16-sr",
            file=sys.stderr,
        )
        return 2
    bandwidth = measure_bandwidth()
    print("streaming bandwidth (GB/s): " + ", ".join(f"{k} {v:.1f}" for k, v in bandwidth.items()))
    rows = []
    for spec in specs:
        for layout in layouts:
            for state_dtype in state_dtypes:
                row = bench_case(
                    spec, layout, args.repeats, bandwidth["best"], with_torch, state_dtype
                )
                rows.append(row)
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
    warning = load_warning()
    if warning:
        print(warning)
    write_report(args.json, report)
    return 0
