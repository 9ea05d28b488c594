"""Shared helpers of the JAX front tests (not a test module)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"


def recorder():
    """The optax-compat recording script as a module (its ``build`` and ``run``)."""
    path = CONFORMANCE / "record_optax_compat_fixtures.py"
    spec = importlib.util.spec_from_file_location("record_optax_compat_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
