"""The source text of element functions and the element helpers they call, for the
code generators (the numba fused engine, the Triton engine)."""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from .._core.xmath import HELPERS, referenced_helpers


class SourceError(Exception):
    """An element function whose source cannot be read as one ``def``."""


@functools.cache
def function_source(fn: Callable, new_name: str) -> str:
    """``fn``'s ``def`` (without decorators or annotations) renamed ``new_name``.

    Remembered per function and name: every engine built for a rule reads the same
    few functions again, and reading a source from its file costs milliseconds."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError) as err:
        raise SourceError(f"cannot read the element function {fn.__qualname__}: {err}") from None
    func = tree.body[0]
    if not isinstance(func, ast.FunctionDef):
        raise SourceError(f"cannot read the element function {fn.__qualname__}")
    func.name = new_name
    func.decorator_list = []
    func.returns = None
    for arg in func.args.args:
        arg.annotation = None
    return ast.unparse(func)


def element_sources(stages: list[Any]) -> list[str]:
    """The ``def`` statements a generated kernel module needs for ``stages``.

    Contract (shared by every code generator):

    - ``stages``: objects with ``index`` (an int) and ``stage.element`` (the
      element function), such as the fused engine's ``Stage``.
    - Returns plain ``def`` sources, without decorators: first every element helper
      (:func:`gradstep._core.xmath.element_helper`) that any stage's element
      function (or a reduction stage's ``terms`` or ``norms``) calls, directly or
      through another helper, each once and under its own name, in an order where a
      helper comes after the helpers it calls; then
      each stage's element function, renamed ``_e{index}``, in the order of
      ``stages``.
    - The sources refer only to their arguments, to each other and to the names of
      :data:`gradstep._core.xmath.OPERATIONS`: the caller decorates each ``def`` for
      its compiler (numba ``@njit``, ``@triton.jit``) and puts implementations of the
      operations in the module's namespace under those names.
    - Raises :class:`SourceError` when a function's source cannot be read.
    """
    helpers: list[str] = []
    for st in stages:
        functions = [st.stage.element]
        functions += [getattr(st.stage, f) for f in ("terms", "norms") if hasattr(st.stage, f)]
        for name in (n for fn in functions for n in referenced_helpers(fn)):
            if name not in helpers:
                helpers.append(name)
    out = [function_source(HELPERS[name], name) for name in helpers]
    out += [function_source(st.stage.element, f"_e{st.index}") for st in stages]
    return out
