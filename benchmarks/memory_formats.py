"""The torch front's step on a ResNet-50's parameters in ``channels_last``, against torch.optim.

python benchmarks/memory_formats.py [--optimizers Adam,AdamW,SGD] [--repeats 15]
    [--device cpu] [--layout resnet50 | COUNTxSIZE] [--out FILE]

``--layout COUNTxSIZE`` steps COUNT vectors of SIZE elements instead (C order: many
small tensors, where the per-parameter work of a step shows).

ResNet-50's 161 parameter tensors (25.6M float32 values: the convolutions' weights
in ``channels_last``, as a vision model is trained for tensor cores, the batch norms'
and the classifier's in C order), with gradients laid out as their parameters (as
autograd leaves them). Each optimizer is timed in one process with its contenders
interleaved step by step (so a busy machine slows them alike): ``gradstep.torch``'s
class (default engine), the same class with ``fused=False`` (its eager engine on
torch operations), and torch.optim with ``fused=True`` and ``foreach=True`` where
torch has them. Medians in milliseconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time

import torch

import gradstep.torch as gt
from gradstep.cli._bench_report import machine

KWARGS = {"Adam": {"lr": 1e-3}, "AdamW": {"lr": 1e-3}, "SGD": {"lr": 0.1, "momentum": 0.9}}


def resnet50_shapes() -> list[tuple]:
    """The parameter shapes of torchvision's ResNet-50 (bottleneck blocks 3-4-6-3)."""
    shapes: list[tuple] = [(64, 3, 7, 7), (64,), (64,)]
    width_in = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            shapes += [(width, width_in, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if b == 0:  # the projection of the block's input
                shapes += [(4 * width, width_in, 1, 1), (4 * width,), (4 * width,)]
            width_in = 4 * width
    return shapes + [(1000, 2048), (1000,)]


def layout_shapes(layout: str) -> list[tuple]:
    if layout == "resnet50":
        return resnet50_shapes()
    count, _, size = layout.partition("x")
    return [(int(size),)] * int(count)


def parameters(device: str, layout: str = "resnet50") -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    out = []
    for shape in layout_shapes(layout):
        value = torch.randn(shape, generator=g) * 0.02
        if value.dim() == 4:
            value = value.to(memory_format=torch.channels_last)
        p = torch.nn.Parameter(value.to(device))
        p.grad = (torch.randn(shape, generator=g) * 1e-3).to(device)
        p.grad = p.grad.to(memory_format=torch.channels_last) if p.dim() == 4 else p.grad
        out.append(p)
    return out


def time_one(name: str, repeats: int, device: str, layout: str = "resnet50") -> dict:
    params = parameters(device, layout)
    kwargs = KWARGS[name]
    contenders = {
        "gradstep": getattr(gt, name)(params, **kwargs),
        # fused=False: the eager engine on torch operations
        "gradstep_eager": getattr(gt, name)(params, **kwargs, fused=False),
    }
    for mode in ("fused", "foreach"):
        try:
            contenders[f"torch_{mode}"] = getattr(torch.optim, name)(
                params, **kwargs, **{mode: True}
            )
        except (RuntimeError, TypeError, ValueError):
            pass
    times: dict[str, list[float]] = {k: [] for k in contenders}
    with torch.no_grad():
        for k in range(repeats + 2):
            for key, opt in contenders.items():
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                opt.step()
                if device == "cuda":
                    torch.cuda.synchronize()
                if k >= 2:  # the first steps make state and load kernels
                    times[key].append(time.perf_counter() - start)
    row = {"optimizer": name, "parameters": sum(p.numel() for p in params)}
    row.update({f"{k}_ms": round(statistics.median(v) * 1e3, 3) for k, v in times.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default="Adam,AdamW,SGD")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layout", default="resnet50")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    names = [n.strip() for n in args.optimizers.split(",")]
    rows = [time_one(n, args.repeats, args.device, args.layout) for n in names]
    for row in rows:
        print(row, flush=True)
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "layout": "ResNet-50, convolution weights channels_last"
        if args.layout == "resnet50"
        else f"{args.layout} float32 vectors",
        "results": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
