"""How the fused engine's reduction kernels add up their terms: exact terms, added in
float64 vector lanes, in the element loop or per block of elements.

A reduction kernel adds float64 terms into a total per chunk. Added strictly in
order, each addition waits for the one before, and the loop cannot use the vector
units: it ran 3-5 times slower than a copy of the same bytes. The additions may be
reassociated (``fastmath={'reassoc'}``: LLVM adds in vector lanes, a fixed order for
a given CPU) while the terms stay exact, in one of two ways:

- **In the loop** (:func:`summing`): the kernel reassociates, and the element
  functions it calls are strict copies (:func:`strict_copies`), compiled apart and
  not inlined by numba, so that LLVM inlines them with their own flags. The float64
  totals set the loop's vector width: four float32 elements at a time, where the step
  kernel takes eight. That is enough for a loop that only loads its terms (a norm of
  the gradient, Fromage's norms of the gradient and the parameters).
- **In blocks** (:func:`in_lanes`), where the loop computes (:func:`blocked`): at
  four elements a time, a loop with square roots and divisions (the Adam direction
  of a cautious mask's count, StableAdamW's RMS) ran compute-bound, at twice the time
  of the step kernel, which reads and writes more. The kernel is then strict, as the
  step kernel is, and walks each chunk in blocks of :data:`LANES` elements: its
  element loop writes each term into a buffer of the math dtype (the value it has:
  element functions keep to the math dtype), at the step kernel's vector width, and
  one of the :func:`lane_sums` helpers adds the block's buffer into the chunk's
  totals. A loop that only loads is faster in the loop: the block's sums stop its
  stream of loads from memory.

Every function compiled with fast-math flags, or without, says so: numba compiles a
called function that sets none with its caller's flags (strict copies that did not
say ``fastmath=False`` were reassociated with the kernel). Either way only the order
of the float64 additions changes, and a count (of ones and zeros) is exact in any
order.
"""

from __future__ import annotations

import ast
import re

from .._core.blockwise8 import BLOCK
from . import kernel_plan as kp

#: elements per block: the buffers of a few terms stay in the L1 cache; a multiple
#: of the 8-bit block, so that a block's views of block scales start at a block
LANES = 2048
assert LANES % BLOCK == 0

#: how each kind of :class:`~gradstep.engines.kernel_plan.Accumulate` adds term
#: ``q[i]`` of a block: the total's zero and the term. ``positive``: ``q`` is the
#: product ``u * g`` of a cautious mask, and its count of at most LANES ones is exact
#: in float32, whose lanes are twice as many
LANE_TERMS = {
    "sums": ("0.0", "np.float64(q[i])"),
    "squares": ("0.0", "np.float64(q[i]) * np.float64(q[i])"),
    "positive": ("np.float32(0.0)", "np.float32(1.0) if q[i] > 0 else np.float32(0.0)"),
}
assert LANES < 1 << 24

_CALL = re.compile(r"\b(_[en]\d+)\(")


def strict_copies(sources: list[str]) -> list[str]:
    """The element functions and reduction terms again, as ``<name>_strict``."""
    out = []
    for source in sources:
        match = re.match(r"def (_[en]\d+)\(", source)
        if match is None:  # an element helper: inlined into whatever calls it
            continue
        out += [
            "@njit(cache=True, error_model='numpy', fastmath=False)",
            f"def {match.group(1)}_strict(" + source[match.end() :],
            "",
        ]
    return out


def summing(source: list[str]) -> list[str]:
    """A reduction kernel's lines with reassociable additions and strict terms."""
    decorator = source[0].replace(
        "error_model='numpy'", "error_model='numpy', fastmath={'reassoc'}"
    )
    return [decorator] + [_CALL.sub(r"\1_strict(", line) for line in source[1:]]


def computing(sources: list[str]) -> set[str]:
    """The names of the element functions and reduction terms among ``sources`` that
    compute: whose body is more than returning some of their arguments."""
    out = set()
    for source in sources:
        function = ast.parse(source).body[0]
        if not isinstance(function, ast.FunctionDef) or not _CALL.match(function.name + "("):
            continue
        body = [
            s
            for s in function.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        ]
        value = body[0].value if len(body) == 1 and isinstance(body[0], ast.Return) else None
        values = value.elts if isinstance(value, ast.Tuple) else [value]
        if not all(isinstance(v, ast.Name) for v in values):
            out.add(function.name)
    return out


def blocked(kernel: kp.Kernel, computing: set[str]) -> bool:
    """Whether reduction kernel ``kernel`` adds its terms in blocks: whether its
    element loop calls a function of ``computing``."""
    steps = kp.element_steps(kernel.body, False) + kp.reduction_steps(kernel)
    return any(name in computing for value in _values(steps) for name in _CALL.findall(value))


def _values(steps: list) -> list[str]:
    out = []
    for step in steps:
        if isinstance(step, kp.IfCovered):
            out += _values(list(step.steps))
        elif isinstance(step, kp.Let):
            out.append(step.value)
    return out


def lane_sums() -> list[str]:
    """The source of the helpers ``lanes_<how>(q, m)``: the sum of the first ``m``
    terms of buffer ``q``, each added as :data:`LANE_TERMS` says, as a float64."""
    out = []
    for how, (zero, term) in LANE_TERMS.items():
        out += [
            "@njit(cache=True, error_model='numpy', fastmath={'reassoc'})",
            f"def lanes_{how}(q, m):",
            f"    total = {zero}",
            "    for i in range(m):",
            f"        total += {term}",
            "    return np.float64(total)",
            "",
        ]
    return out


def in_lanes(body: list[str], steps: list, terms: int, math: str) -> list[str]:
    """A reduction kernel's chunk lines from its views on, ``body`` (views of ``n``
    elements from ``off``, then element loops over ``range(n)`` storing term ``t``
    as ``lanes[t, i]``), run for each block of the chunk of ``n0`` elements from
    ``off0``, the block's terms then added to ``total{t}``. ``steps``: the kernel's
    element steps, whose :class:`~gradstep.engines.kernel_plan.Accumulate` say how
    each term is added."""
    how = {}
    for step in steps:
        if isinstance(step, kp.Accumulate):
            how.update({step.first + t: step.how for t in range(len(step.values))})
    out = [
        f"        lanes = np.empty(({terms}, {LANES}), np.{math})",
        f"        for start in range(0, n0, {LANES}):",
        "            off = off0 + start",
        f"            n = min(n0 - start, {LANES})",
    ]
    out += ["    " + line for line in body]
    out += [f"            total{t} += lanes_{how[t]}(lanes[{t}], n)" for t in range(terms)]
    return out
