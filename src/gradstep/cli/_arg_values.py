"""Argument types shared by the ``gradstep`` commands: bad values are refused while the
command line is parsed, so they exit with status 2 and argparse's
``argument --OPTION: invalid value 'VALUE'; valid values: ...`` before any work starts
(and never as a traceback from deep inside a run)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def invalid(text: str, valid: str) -> argparse.ArgumentTypeError:
    """The error of a type function; argparse puts ``argument --OPTION: `` before it."""
    return argparse.ArgumentTypeError(f"invalid value {text!r}; valid values: {valid}")


def integer_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """A type function: an integer in ``[low, high]`` (``high`` None: no upper bound)."""
    valid = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise invalid(text, valid) from None
        if value < low or (high is not None and value > high):
            raise invalid(text, valid)
        return value

    return parse


def non_empty(what: str) -> Callable[[str], str]:
    """A type function: any text but an empty one (an empty path or name is most often
    an unset shell variable, and would otherwise mean the current folder or nothing)."""

    def parse(text: str) -> str:
        if not text.strip():
            raise invalid(text, what)
        return text

    return parse


def name_list(text: str) -> str:
    """A type function: comma-separated names, none of them empty."""
    if any(not item.strip() for item in text.split(",")):
        raise invalid(text, "comma-separated names, none of them empty, or 'all'")
    return text
