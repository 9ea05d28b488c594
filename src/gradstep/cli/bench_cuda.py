"""``gradstep bench --backend torch --device cuda``: the Triton engine against torch.optim on a GPU.

For each optimizer and parameter layout (GPT-2 small's 148 tensors, 200 x 100k,
5000 x 1k, 20000 x 64, one 20M tensor; float32, and GPT-2 small in bfloat16) it
times, on the same parameters and gradients in the same run:

- ``gradstep.torch`` (the Triton engine: one launch per step);
- ``torch.optim`` with ``fused=True``, ``foreach=True`` and, for Adam on GPT-2
  small, a ``torch.compile``d foreach step (where each exists; for ``adamw_int8``,
  gradstep's AdamW with 8-bit state, torch's AdamW with its float32 state);
- the memory-traffic floor: the bytes the rule must move (read the gradient, the
  parameter and each slot; write the parameter and each slot) over the device's
  copy bandwidth measured in the same run (a device-to-device copy, bytes read and
  written).

Times come from CUDA events around a run of steps (so host overhead that starves
the GPU counts), repeated, medians reported.
"""

from __future__ import annotations

import datetime
import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

from .._core.blockwise8 import BLOCK as Q8_BLOCK
from ._arg_values import invalid
from ._bench_report import markdown_table, ms, ratio, write_report

GPT2_SMALL = (12, 768, 50257, 1024)
LAYOUTS = ("gpt2", "200x100000", "5000x1000", "20000x64", "1x20000000")
#: bytes an 8-bit slot moves per element, as a fraction of a float32 slot's: a code
#: and a float32 scale per block
Q8_SLOT = (1 + 4 / Q8_BLOCK) / 4
_ADAMW = {"lr": 1e-3, "weight_decay": 0.01}
#: name -> (gradstep.torch class or transform factory, torch.optim class, kwargs, slots
#: in float32 slots' bytes)
CASES: dict[str, tuple] = {
    "adam": ("Adam", "Adam", {"lr": 1e-3}, 2),
    "adamw": ("AdamW", "AdamW", {"lr": 1e-3, "weight_decay": 0.01}, 2),
    "adamw_int8": ("AdamW", "AdamW", {**_ADAMW, "state_dtype": "int8"}, 2 * Q8_SLOT),
    "sgd_momentum": ("SGD", "SGD", {"lr": 1e-2, "momentum": 0.9}, 1),
    "rmsprop": ("RMSprop", "RMSprop", {"lr": 1e-3}, 1),
    "adagrad": ("Adagrad", "Adagrad", {"lr": 1e-2}, 1),
    "nadam": ("NAdam", "NAdam", {"lr": 1e-3}, 2),
    "radam": ("RAdam", "RAdam", {"lr": 1e-3}, 2),
    "lion": ("lion", None, {"learning_rate": 1e-4}, 1),
    "schedule_free_adamw": ("schedule_free_adamw", None, {"learning_rate": 1e-3}, 3),
    "clip+adamw": ("clip+adamw", "AdamW", {"lr": 1e-3, "weight_decay": 0.01}, 2),
}


def parse_cuda_layouts(text: str) -> tuple[str, ...]:
    """``--cuda-layouts``: ``all`` or comma-separated among ``gpt2`` and ``COUNTxSIZE``
    (both >= 1). An argparse type: a bad value is refused while parsing."""
    if text.strip() == "all":
        return LAYOUTS
    items = tuple(i.strip() for i in text.split(","))
    for item in items:
        count, _, size = item.partition("x")
        try:
            valid = item == "gpt2" or (int(count) >= 1 and int(size) >= 1)
        except ValueError:
            valid = False
        if not valid:
            raise invalid(
                text, "all, or comma-separated among gpt2 and COUNTxSIZE (COUNT, SIZE >= 1)"
            )
    return items


def layout_shapes(name: str) -> list[tuple]:
    from .bench_torch import transformer_shapes

    if name == "gpt2":
        return transformer_shapes(*GPT2_SMALL)
    count, _, size = name.partition("x")
    return [(int(size),)] * int(count)


def copy_bandwidth(torch: Any, device: str, nbytes: int = 2 << 30) -> float:
    """Bytes read plus written per second by a device-to-device copy."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    return 2 * nbytes / min(times[2:])


def event_time(torch: Any, step: Callable[[], None], steps: int, repeats: int) -> float:
    """Median seconds per step over ``repeats`` runs of ``steps`` steps."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    per_step = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        per_step.append(start.elapsed_time(end) / 1e3 / steps)
    return statistics.median(per_step)


def clip_adamw(gradstep: Any) -> Any:
    """The ``clip+adamw`` case's chain: clip by global norm 1, then AdamW."""
    _, _, kwargs, _ = CASES["clip+adamw"]
    return gradstep.chain(
        gradstep.transforms.clip_by_global_norm(1.0),
        gradstep.adamw(kwargs["lr"], weight_decay=kwargs["weight_decay"]),
    )


def gradstep_optimizer(case: str, params: list, gt: Any, gradstep: Any) -> Any:
    first, _, kwargs, _ = CASES[case]
    if case == "clip+adamw":
        return gt.TransformOptimizer(params, clip_adamw(gradstep))
    if hasattr(gt, first):
        return getattr(gt, first)(params, **kwargs)
    return gt.TransformOptimizer(params, getattr(gradstep, first)(**kwargs))


#: the cases also timed as a CUDA-graph replay (device time without host overhead)
GRAPH_CASES = ("adam", "adamw", "adamw_int8", "sgd_momentum", "clip+adamw", "rmsprop", "adagrad")


def captured_step(case: str, params: list, gt: Any, gradstep: Any) -> Callable:
    """A capturable gradstep optimizer's step captured in a CUDA graph (its replay)."""
    import torch

    clones = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for c, p in zip(clones, params):
        c.grad = p.grad
    first, _, kwargs, _ = CASES[case]
    if case == "clip+adamw":
        transform = clip_adamw(gradstep)
    elif case == "sgd_momentum":
        transform = gradstep.momentum(kwargs["lr"], kwargs["momentum"])
    else:
        transform = None
    if transform is None:
        opt = getattr(gt, first)(clones, **kwargs, capturable=True)
    else:
        opt = gt.TransformOptimizer(clones, transform, capturable=True)
    return graph_of(torch, opt.step).replay


def graph_of(torch: Any, step: Callable[[], None]) -> Any:
    """A CUDA graph of ``step``, captured after three warm-up calls on a side stream
    (the pattern torch's documentation gives)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def torch_contenders(case: str, params: list, torch: Any, compiled: bool) -> dict[str, Any]:
    _, torch_name, kwargs, _ = CASES[case]
    kwargs = {k: v for k, v in kwargs.items() if k != "state_dtype"}  # torch's own state
    out: dict[str, Callable] = {}
    if torch_name is None:
        return out
    cls = getattr(torch.optim, torch_name)
    for mode, flags in (("fused", {"fused": True}), ("foreach", {"foreach": True})):
        try:
            opt = cls(params, **kwargs, **flags)
        except (TypeError, RuntimeError, ValueError):
            continue
        if case == "clip+adamw":

            def step(opt=opt):
                torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
                opt.step()

            out[f"torch_{mode}"] = step
        else:
            out[f"torch_{mode}"] = opt.step
    if compiled:
        opt = cls(params, **kwargs, foreach=True)
        out["torch_compiled"] = torch.compile(opt.step, fullgraph=False)
    return out


def bench_case(case: str, layout: str, dtype_name: str, args: Any, bandwidth: float) -> dict:
    import torch

    import gradstep
    import gradstep.torch as gt

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator(device="cuda").manual_seed(0)
    shapes = layout_shapes(layout)
    params = [
        torch.nn.Parameter((torch.randn(s, generator=gen, device="cuda") * 0.02).to(dtype))
        for s in shapes
    ]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen, device="cuda") * 1e-3).to(dtype)
    n = sum(p.numel() for p in params)
    slots = CASES[case][3]
    moved = (3 + 2 * slots) * n * params[0].element_size()
    row: dict[str, Any] = {
        "optimizer": case,
        "layout": layout,
        "dtype": dtype_name,
        "tensors": len(params),
        "parameters": n,
        "bytes_per_step": moved,
        "floor_s": moved / bandwidth,
    }
    contenders: dict[str, Callable] = {
        "gradstep": gradstep_optimizer(case, params, gt, gradstep).step
    }
    if case in GRAPH_CASES:
        try:
            contenders["gradstep_graph"] = captured_step(case, params, gt, gradstep)
        except Exception as error:  # reported, not fatal: the other contenders still run
            row["gradstep_graph_error"] = f"{type(error).__name__}: {error}"[:300]
    compiled = (
        args.compile_torch and case == "adam" and layout == "gpt2" and dtype_name == "float32"
    )
    contenders.update(torch_contenders(case, params, torch, compiled))
    with torch.no_grad():
        for name, step in contenders.items():
            try:
                row[f"{name}_s"] = event_time(torch, step, args.steps, args.repeats)
            except Exception as error:  # a contender that cannot run here is reported
                row[f"{name}_error"] = f"{type(error).__name__}: {error}"[:300]
    del params, contenders
    torch.cuda.empty_cache()
    return row


def format_rows(rows: list[dict]) -> str:
    head = ("optimizer", "layout", "dtype", "gradstep ms", "graph ms", "torch fused ms",
            "torch foreach ms", "gs/fused", "gs/floor", "GB/s")  # fmt: skip
    cells = []
    for r in rows:
        gs, fused = r.get("gradstep_s"), r.get("torch_fused_s")
        cells.append([
            r["optimizer"], r["layout"], r["dtype"], ms(gs, 3), ms(r.get("gradstep_graph_s"), 3),
            ms(fused, 3), ms(r.get("torch_foreach_s"), 3), ratio(gs, fused),
            ratio(gs, r["floor_s"]),
            "n/a" if gs is None else f"{r['bytes_per_step'] / gs / 1e9:.0f}",
        ])  # fmt: skip
    return markdown_table(head, cells)


def run_cuda(args: Any) -> int:
    import torch

    if not torch.cuda.is_available():
        print("gradstep bench: --device cuda needs a CUDA GPU", file=sys.stderr)
        return 2
    import triton

    cases = list(CASES) if args.optimizers == "all" else args.optimizers.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(
            f"gradstep bench: unknown CUDA case(s) {unknown}; known: {', '.join(CASES)}",
            file=sys.stderr,
        )
        return 2
    layouts = args.cuda_layouts  # parsed by parse_cuda_layouts
    bandwidth = copy_bandwidth(torch, "cuda")
    print(f"{torch.cuda.get_device_name()}: copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    rows: list[dict] = []
    report = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "copy_bandwidth_Bps": bandwidth,
        "results": rows,
    }
    plan = [(c, lay, "float32") for c in cases for lay in layouts]
    plan += [(c, "gpt2", "bfloat16") for c in ("adam", "adamw") if c in cases]
    for case, layout, dtype in plan:
        rows.append(bench_case(case, layout, dtype, args, bandwidth))
        print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
        if args.json:  # rewritten after each row: a run cut short keeps what it measured
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    print()
    print(format_rows(rows))
    write_report(args.json, report)
    return 0
