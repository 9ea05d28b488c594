"""Which Triton kernel shape (block, blocks per chunk, warps) is fastest, measured on a GPU.

python benchmarks/triton_shapes.py [--shapes 1024x4x4,2048x2x4,...]
    [--cases adam:1x20000000,adam:gpt2] [--steps 10] [--repeats 5] [--out FILE]

For each shape ``BLOCKxITERSxWARPS`` (elements per block, blocks per chunk, warps per
program) every case (a ``gradstep bench --device cuda`` optimizer and layout) is
stepped by a fresh optimizer whose Triton engine uses that shape, and timed by CUDA
events: stepped (``opt.step()`` in a loop, host work included) and, where the case
can be captured, as a CUDA-graph replay (the device time alone). Each time is also
given against the case's memory-traffic floor (bytes moved over the copy bandwidth
measured in the same run). The engine's defaults (``gradstep.engines.triton``) are
chosen from these tables; the script sets each shape as the engine's default in its
own process only.
"""

from __future__ import annotations

import argparse
import json

import torch

import gradstep
import gradstep.torch as gt
from gradstep.cli import bench_cuda as bc
from gradstep.engines.triton import TritonEngine

DEFAULT_SHAPES = (
    "1024x4x4,1024x8x4,1024x16x4,2048x2x4,2048x4x4,2048x4x8,2048x8x8,4096x1x4,4096x2x8,4096x4x8"
)
DEFAULT_CASES = (
    "adam:1x20000000,rmsprop:1x20000000,sgd_momentum:1x20000000,adam:gpt2,adam:5000x1000"
)


def make_params(layout: str) -> list:
    gen = torch.Generator(device="cuda").manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(s, generator=gen, device="cuda") * 0.02)
        for s in bc.layout_shapes(layout)
    ]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, device="cuda") * 1e-3
    return params


def measure(case: str, layout: str, args, bandwidth: float) -> dict:
    params = make_params(layout)
    n = sum(p.numel() for p in params)
    floor = (3 + 2 * bc.CASES[case][3]) * n * 4 / bandwidth
    row = {"case": case, "layout": layout, "floor_ms": 1e3 * floor}
    with torch.no_grad():
        opt = bc.gradstep_optimizer(case, params, gt, gradstep)
        row["stepped_ms"] = 1e3 * bc.event_time(torch, opt.step, args.steps, args.repeats)
        if case in bc.GRAPH_CASES:
            try:  # a chain whose scalars need the host cannot be captured: stepped only
                replay = bc.captured_step(case, params, gt, gradstep)
                row["replay_ms"] = 1e3 * bc.event_time(torch, replay, args.steps, args.repeats)
            except Exception as error:
                row["replay_error"] = f"{type(error).__name__}: {error}"[:200]
    for key in ("stepped_ms", "replay_ms"):
        if key in row:
            row[key.replace("_ms", "_floor")] = row[key] / row["floor_ms"]
    del params
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    bandwidth = bc.copy_bandwidth(torch, "cuda")
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    defaults = dict(TritonEngine.__init__.__kwdefaults__)
    rows = []
    try:
        for shape in args.shapes.split(","):
            block, iters, warps = (int(v) for v in shape.split("x"))
            TritonEngine.__init__.__kwdefaults__.update(block=block, iters=iters, num_warps=warps)
            for item in args.cases.split(","):
                case, _, layout = item.partition(":")
                try:
                    row = {"shape": shape, **measure(case, layout, args, bandwidth)}
                except Exception as error:  # reported; the other shapes still run
                    row = {"shape": shape, "case": case, "layout": layout,
                           "error": f"{type(error).__name__}: {error}"[:200]}  # fmt: skip
                rows.append(row)
                print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()},
                      flush=True)  # fmt: skip
                if args.out:
                    with open(args.out, "w") as f:
                        json.dump({"bandwidth_Bps": bandwidth, "rows": rows}, f, indent=1)
    finally:
        TritonEngine.__init__.__kwdefaults__.update(defaults)


if __name__ == "__main__":
    main()
