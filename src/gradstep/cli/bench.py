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

from ._arg_values import integer_in, name_list, non_empty
from ._bench_runs import fill_defaults, unused_options_message
from .bench_cuda import parse_cuda_layouts
from .bench_numpy import DEFAULT_LAYOUTS, parse_layouts, parse_state_dtypes
from .bench_torch import (
    parse_model,
    transformer_shapes,  # noqa: F401 - part of this module's API
)

DESCRIPTION = (
    "Time every elementwise optimizer's step (or the gradstep.torch classes with "
    "--backend torch, on a GPU with --device cuda) against torch.optim fused, foreach and "
    "for-loop steps and against the memory-traffic floor measured in the same run. "
    "Prints a table of medians and warns when the machine looks contended."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the options of one run only default to None: _bench_runs refuses them when given
    # to another run and fills in the defaults the help states
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
        type=name_list,
        default="all",
        help="comma-separated registry names, or 'all' (elementwise ones; with --backend "
        "torch: adam)",
    )
    parser.add_argument(
        "--model",
        type=parse_model,
        default=None,
        help="--backend torch: LAYERSxWIDTH of the GPT-2-style parameter list (default "
        "12x768, GPT-2 small)",
    )
    parser.add_argument(
        "--vocab",
        type=integer_in(1),
        default=None,
        help="--backend torch: vocabulary (default 50257)",
    )
    parser.add_argument(
        "--context",
        type=integer_in(1),
        default=None,
        help="--backend torch: positions (default 1024)",
    )
    parser.add_argument(
        "--torch-loop",
        action="store_true",
        help="--backend torch: also time torch's for-loop implementation (slow)",
    )
    parser.add_argument(
        "--layouts",
        type=parse_layouts,
        default=None,
        help=f"--backend numpy: comma-separated COUNTxSIZE (default {DEFAULT_LAYOUTS})",
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
        type=parse_cuda_layouts,
        default=None,
        help="--device cuda: comma-separated layouts among gpt2, COUNTxSIZE (default all: "
        "gpt2,200x100000,5000x1000,20000x64,1x20000000)",
    )
    parser.add_argument(
        "--steps",
        type=integer_in(1),
        default=None,
        help="--device cuda: steps per timed run (default 20)",
    )
    parser.add_argument(
        "--compile-torch",
        action="store_true",
        help="--device cuda: also time a torch.compile'd torch.optim.Adam step on GPT-2 small",
    )
    parser.add_argument(
        "--state-dtypes",
        type=parse_state_dtypes,
        default=None,
        help="--backend numpy: comma-separated storage dtypes of the optimizer state to "
        "time and size: param (the parameters' float32, default), float32, bfloat16, "
        "float16, bfloat16-sr (bfloat16, rounded stochastically), "
        "blockwise8 or int8 (8-bit codes and a scale per 256 elements)",
    )
    parser.add_argument(
        "--repeats", type=integer_in(1), default=7, help="timed steps per case (default 7)"
    )
    parser.add_argument("--no-torch", action="store_true", help="--backend numpy: skip torch.optim")
    parser.add_argument(
        "--references",
        action="store_true",
        help="--backend numpy: also time each rule's torch-family reference "
        "(pytorch-optimizer, timm, prodigyopt, dadaptation, schedulefree, came-pytorch: "
        "those installed; pip install gradstep[bench-references]) against gradstep on the "
        "same layouts (see gradstep.cli.bench_references)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="--backend numpy: also measure cold and warm compile time per optimizer",
    )
    parser.add_argument(
        "--json",
        type=non_empty("a file path"),
        default=None,
        metavar="PATH",
        help="also write the results as JSON to PATH",
    )


def run(args: argparse.Namespace) -> int:
    refusal = unused_options_message(args)
    if refusal:
        print(f"gradstep bench: {refusal}", file=sys.stderr)
        return 2
    fill_defaults(args)
    if args.backend == "torch":
        if args.device == "cuda":
            from .bench_cuda import run_cuda

            return run_cuda(args)
        from .bench_torch import run_torch

        return run_torch(args)
    from .bench_numpy import run_numpy

    return run_numpy(args)
