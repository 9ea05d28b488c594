"""``gradstep bench --backend torch``: the gradstep.torch classes against torch.optim on a
model's parameter list (CPU; ``--device cuda`` is :mod:`gradstep.cli.bench_cuda`).

``gradstep.torch.<Class>`` against ``torch.optim.<Class>(fused=True)``, ``foreach=True``
and the for-loop, all stepping the parameter list of a real model shape (by default
GPT-2 small: a 50257 x 768 embedding, 1024 positions and 12 transformer blocks, 124M
float32 parameters), with the steps of the implementations interleaved so that a busy
machine slows them alike.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import gradstep

from ._arg_values import invalid
from ._bench_report import load_warning, machine, markdown_table, ms, ratio, write_report

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
    """``--model``: ``12x768`` -> ``(12, 768)`` (0 layers: the embeddings and the final
    layer norm). An argparse type: a bad value is refused while parsing."""
    valid = "LAYERSxWIDTH, LAYERS >= 0 and WIDTH >= 1 (e.g. 12x768)"
    layers, _, width = text.partition("x")
    try:
        layers, width = int(layers), int(width)
    except ValueError:
        raise invalid(text, valid) from None
    if layers < 0 or width < 1:
        raise invalid(text, valid)
    return layers, width


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
    cells = [
        [
            r["optimizer"],
            f"{r['parameters'] / 1e6:.1f}M",
            str(r["tensors"]),
            ms(r["gradstep_s"]),
            ms(r["torch_fused_s"]),
            ms(r["torch_foreach_s"]),
            ms(r["torch_loop_s"]),
            ratio(r["gradstep_s"], r["torch_fused_s"]),
            ratio(r["gradstep_s"], r["torch_foreach_s"]),
        ]
        for r in rows
    ]
    return markdown_table(head, cells)


def run_torch(args: Any) -> int:
    try:
        import gradstep.torch as gt
    except ImportError:
        print("gradstep bench: --backend torch needs torch installed", file=sys.stderr)
        return 2

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
    layers, width = args.model  # parsed by parse_model
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
    warning = load_warning()
    if warning:
        print(warning)
    write_report(args.json, report)
    return 0
