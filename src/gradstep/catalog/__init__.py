"""Registry entries, one module per area. Importing this package fills
:data:`gradstep.registry.REGISTRY`; each module registers its optimizers in order."""

# entry modules (one import line per module; the order is the registry's order, so
# the block is deliberately not sorted):
# isort: off
from . import classic  # noqa: F401
from . import mxnet  # noqa: F401
from . import layerwise  # noqa: F401
from . import modern  # noqa: F401
from . import averaging  # noqa: F401
# isort: on
