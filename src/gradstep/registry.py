"""Every public optimizer, registered once.

Tests, the command line and the documentation read :data:`REGISTRY`; adding an
optimizer is one rule file plus one entry in a module of :mod:`gradstep.catalog`.

``fixtures`` names the reference implementations whose recorded trajectories the
optimizer must match (``tests/conformance/fixtures``); ``test_hyperparams`` are the
arguments the generic property tests use.
"""

from __future__ import annotations

from ._core.registry import OptimizerSpec, Registry

REGISTRY = Registry()

from . import catalog  # noqa: E402,F401  (fills REGISTRY)

__all__ = ["REGISTRY", "OptimizerSpec"]
