"""Registry entries, one module per area. Importing this package fills
:data:`gradstep.registry.REGISTRY`; each module registers its optimizers in order."""

# entry modules (one import line per module; the order is the registry's order):
from . import classic  # noqa: F401
