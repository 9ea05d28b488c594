"""``gradstep bench``: step time of every elementwise optimizer against torch.optim and
against the memory-traffic floor (``--references``: also against each rule's
torch-family reference implementation, :mod:`gradstep.cli.bench_references`).

Backends, one module each: :mod:`gradstep.cli.bench_numpy` (the engines on arrays, the
default), :mod:`gradstep.cli.bench_torch` (the torch front on CPU) and
:mod:`gradstep.cli.bench_cuda` (the Triton engine on a GPU). Times are medians; a
benchmark on a shared machine is noisy, so compare ratios from one run.
"""

from __future__ import annotations

import argparse
import sys

from .bench_numpy import DEFAULT_LAYOUTS
from .bench_torch import transformer_shapes  # noqa: F401 - part of this module's API

DESCRIPTION = (
    "Time every elementwise optimizer's step (or the gradstep.torch classes with "
    "--backend torch, on a GPU with --device cuda) against torch.optim fused, foreach and "
    "for-loop steps and against the memory-traffic floor measured in the same run. "
    "Prints a table of medians and warns when the machine looks contended."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
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
    parser.add_argument(
        "--state-dtypes",
        default="param",
        help="comma-separated storage dtypes of the optimizer state to time and size: "
        "param (the parameters' float32, default), float32, bfloat16, float16, "
        "bfloat16-sr (bfloat16, rounded stochastically), "
        "blockwise8 or int8 (8-bit codes and a scale per 256 elements)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per case")
    parser.add_argument("--no-torch", action="store_true", help="skip torch.optim")
    parser.add_argument(
        "--references",
        action="store_true",
        help="also time each rule's torch-family reference (pytorch-optimizer, timm, "
        "prodigyopt, dadaptation, schedulefree, came-pytorch: those installed; "
        "pip install gradstep[bench-references]) against gradstep on the same layouts "
        "(see gradstep.cli.bench_references)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also measure cold and warm compile time per optimizer",
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the results as JSON to PATH"
    )


def run(args: argparse.Namespace) -> int:
    if getattr(args, "backend", "numpy") == "torch":
        if getattr(args, "references", False):
            print(
                "gradstep bench: --references runs with the default backend (numpy) only",
                file=sys.stderr,
            )
            return 2
        if getattr(args, "device", "cpu") == "cuda":
            from .bench_cuda import run_cuda

            return run_cuda(args)
        from .bench_torch import run_torch

        return run_torch(args)
    from .bench_numpy import run_numpy

    return run_numpy(args)
