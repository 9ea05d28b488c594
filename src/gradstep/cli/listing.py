"""``gradstep list``: the registry as a table (the README's optimizer table is its
``--markdown`` output)."""

from __future__ import annotations

import argparse
import inspect

import gradstep
from gradstep._core.precision import PRECISION_OPTIONS


def signature(spec: gradstep.OptimizerSpec) -> str:
    """``name(arg=default, ...)`` with the positional arguments of the factory."""
    parts = []
    for name, p in inspect.signature(spec.factory).parameters.items():
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            break
        parts.append(name if p.default is inspect.Parameter.empty else f"{name}={p.default!r}")
    return f"{spec.name}({', '.join(parts)}{', ...' if _has_options(spec) else ''})"


def _has_options(spec: gradstep.OptimizerSpec) -> bool:
    """Keyword-only options of the rule's own (the state-precision options every rule
    takes are documented once, in docs/precision.md)."""
    return any(
        p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in PRECISION_OPTIONS
        for p in inspect.signature(spec.factory).parameters.values()
    )


def engine(spec: gradstep.OptimizerSpec) -> str:
    """The NumPy front's engine for the rule: ``fused`` (elementwise: one compiled
    pass), ``fused/reduction`` (compiled: reduction passes, then the main pass),
    ``fused/eager`` (compiled for the tensor shapes its fused forms cover, the others
    eager), ``eager/reduction``, ``eager`` (stochastic) or ``closure``. The fused
    engine itself says what it compiles (at the spec's test settings)."""
    caps = spec.capabilities
    if "needs_closure" in caps:
        return "closure"
    if "elementwise" in caps:
        return "fused"
    from gradstep._core.elementwise import Elementwise
    from gradstep._core.fused_form import every_shape
    from gradstep.engines.fused import FusedEngine
    from gradstep.engines.plan import NotFusable

    try:
        fused = FusedEngine(spec.factory(**spec.test_hyperparams))
    except NotFusable:
        return "eager" if "stochastic" in caps else "eager/reduction"
    if any(f.accepts is not every_shape or f.rounds_16bit for f in fused.forms):
        return "fused/eager"
    if fused.forms and all(type(st.stage) is Elementwise for st in fused.stages):
        return "fused"  # forms over every tensor, with at most a host step (Sophia's)
    return "fused/reduction"


def rows() -> list[tuple[str, ...]]:
    return [
        (f"`{signature(s)}`", s.family, s.summary, engine(s), ", ".join(s.fixtures))
        for s in gradstep.REGISTRY
    ]


def markdown() -> str:
    head = "| optimizer | rule file | what | NumPy engine | matches |\n|---|---|---|---|---|"
    return head + "\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown())
    else:
        print(plain())
    return 0


def plain(width: int = 100, column: int = 56) -> str:
    """Signature and summary in two columns; a signature too long for its column gets
    a line of its own and the summary goes under it, so the columns stay aligned. Long
    summaries wrap inside their column."""
    import textwrap

    lines = []
    for spec in gradstep.REGISTRY:
        sig = signature(spec)
        summary = textwrap.wrap(spec.summary, max(20, width - column - 1)) or [""]
        if len(sig) > column:
            lines.append(sig)
            first = " " * column
        else:
            first = sig.ljust(column)
        lines.append(f"{first} {summary[0]}")
        lines += [" " * column + " " + rest for rest in summary[1:]]
    return "\n".join(lines)
