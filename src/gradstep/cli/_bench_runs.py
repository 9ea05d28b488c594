"""Which of the three ``gradstep bench`` runs uses which option.

The runs: ``numpy`` (the default backend, :mod:`gradstep.cli.bench_numpy`), ``torch``
(``--backend torch`` on the CPU, :mod:`gradstep.cli.bench_torch`) and ``cuda``
(``--backend torch --device cuda``, :mod:`gradstep.cli.bench_cuda`). An option that the
chosen run does not use is refused rather than ignored: a user who passes ``--vocab``
to the numpy run expects a different measurement from the one they would get. So
these options default to None on the command line (given or not can be told apart,
even when given their default value) and their defaults are filled in here.
"""

from __future__ import annotations

from typing import Any

from .bench_cuda import LAYOUTS as CUDA_LAYOUTS
from .bench_numpy import DEFAULT_LAYOUTS, parse_layouts

RUN_NAMES = {
    "numpy": "--backend numpy",
    "torch": "--backend torch --device cpu",
    "cuda": "--backend torch --device cuda",
}

#: option (its argparse dest) -> (the runs that use it, its default, parsed as its type
#: parses a value); the options every run uses (--optimizers, --repeats, --json) and
#: --backend and --device are not here
RUN_OPTIONS: dict[str, tuple[tuple[str, ...], Any]] = {
    "layouts": (("numpy",), tuple(parse_layouts(DEFAULT_LAYOUTS))),
    "state_dtypes": (("numpy",), (None,)),
    "no_torch": (("numpy",), False),
    "references": (("numpy",), False),
    "compile": (("numpy",), False),
    "model": (("torch",), (12, 768)),
    "vocab": (("torch",), 50257),
    "context": (("torch",), 1024),
    "torch_loop": (("torch",), False),
    "cuda_layouts": (("cuda",), CUDA_LAYOUTS),
    "steps": (("cuda",), 20),
    "compile_torch": (("cuda",), False),
}


def run_name(args: Any) -> str:
    if args.backend == "torch":
        return "cuda" if args.device == "cuda" else "torch"
    return "numpy"


def option_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def unused_options_message(args: Any) -> str | None:
    """Why the options given are refused (None: the chosen run uses every one)."""
    if args.backend == "numpy" and args.device == "cuda":
        return (
            "--device cuda is an option of --backend torch (the Triton engine against "
            "torch.optim on a GPU); --backend numpy runs on the CPU"
        )
    run = run_name(args)
    unused = [
        (dest, runs)
        for dest, (runs, _) in RUN_OPTIONS.items()
        if run not in runs and getattr(args, dest) not in (None, False)
    ]
    if not unused:
        return None
    named = ", ".join(
        f"{option_name(dest)} (used by {' and '.join(RUN_NAMES[r] for r in runs)})"
        for dest, runs in unused
    )
    them = "them" if len(unused) > 1 else "it"
    return f"{named}: not used by this run ({RUN_NAMES[run]}); leave {them} out"


def fill_defaults(args: Any) -> None:
    """Give the options that were not given their defaults."""
    for dest, (_, default) in RUN_OPTIONS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
