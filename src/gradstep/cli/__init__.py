"""The ``gradstep`` command: ``gradstep compare``, ``gradstep bench`` and ``gradstep list``."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    import gradstep

    parser = argparse.ArgumentParser(prog="gradstep", description="gradstep optimizers")
    parser.add_argument("--version", action="version", version=f"gradstep {gradstep.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import bench, compare, listing

    compare_parser = sub.add_parser(
        "compare",
        help="race optimizers on test functions and real data; write a report",
        description=compare.DESCRIPTION,
    )
    compare.add_arguments(compare_parser)
    compare_parser.set_defaults(run=compare.run)
    bench_parser = sub.add_parser(
        "bench", help="step time against torch.optim and the memory-traffic floor"
    )
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench.run)
    list_parser = sub.add_parser("list", help="the registered optimizers")
    listing.add_arguments(list_parser)
    list_parser.set_defaults(run=listing.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
