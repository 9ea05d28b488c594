"""Every public optimizer, registered once.

Tests, the command line, the documentation and the package's exports read
:data:`REGISTRY`; it is assembled here from the entries of :mod:`gradstep.catalog`
(adding an optimizer: see ``CONTRIBUTING.md``).

``fixtures`` names the reference implementations whose recorded trajectories the
optimizer must match (``tests/conformance/fixtures``); ``test_hyperparams`` are the
arguments the generic property tests use.
"""

from __future__ import annotations

from . import catalog
from ._core.registry import OptimizerSpec, Registry

REGISTRY = Registry()
for _spec in catalog.specs():
    REGISTRY.register(_spec)

__all__ = ["REGISTRY", "OptimizerSpec"]
