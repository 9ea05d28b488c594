"""The registry: one spec per public optimizer.

Tests, the command line and the documentation iterate over the registry instead of
naming optimizers, so adding an optimizer is one rule file plus one catalog entry
(see ``CONTRIBUTING.md``), and every generic test then covers it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .precision import with_precision_option
from .validate import Constraint, declared_ranges

#: capabilities a spec may declare
CAPABILITIES = frozenset(
    {
        "elementwise",  # every stage is elementwise: the fused engine can run it whole
        "reduction",  # some stage needs a reduction over a tensor or the whole tree
        "needs_closure",  # the step re-evaluates the loss
        "needs_value",  # every step takes the loss at the current parameters (value=)
        "stochastic",  # the update draws random numbers
        "nan_policy",  # accepts clear_nan (Dandelion's NaN handling)
    }
)


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything the project states about one public optimizer.

    Args:
      name: the public name (``gradstep.<name>``).
      factory: the functional factory returning a transform; the spec keeps it
        with the state-precision options added (``state_dtype`` and optax's names:
        :func:`gradstep._core.precision.with_precision_option`).
      family: the rule file it lives in (``"adam"``, ``"sgd"``, ...).
      summary: one line.
      capabilities: a subset of :data:`CAPABILITIES`.
      references: papers, as "Authors (year): Title. Venue/arXiv".
      fixtures: ids of the recorded reference trajectories it must match.
      test_hyperparams: arguments for the generic property tests (convergence on a
        quadratic and on Rosenbrock); they must make the optimizer converge there.
      rosenbrock_hyperparams: overrides of ``test_hyperparams`` for Rosenbrock.
      torch_equivalent: ``(torch.optim class name, kwargs)`` computing the same
        algorithm as ``factory(**test_hyperparams)``, for benchmarks.
    """

    name: str
    factory: Callable[..., Any]
    family: str
    summary: str
    capabilities: frozenset = frozenset()
    references: tuple[str, ...] = ()
    fixtures: tuple[str, ...] = ()
    test_hyperparams: dict = field(default_factory=dict)
    rosenbrock_hyperparams: dict | None = None
    torch_equivalent: tuple[str, dict] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(f"{self.name}: unknown capabilities {sorted(unknown)}")
        # every optimizer takes the state-precision options (one declaration for all)
        object.__setattr__(self, "factory", with_precision_option(self.factory, self.name))

    @property
    def defaults(self) -> dict[str, Any]:
        """The factory's default argument values."""
        sig = inspect.signature(self.factory)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    @property
    def required(self) -> tuple[str, ...]:
        """Arguments without a default."""
        sig = inspect.signature(self.factory)
        return tuple(k for k, p in sig.parameters.items() if p.default is inspect.Parameter.empty)

    @property
    def ranges(self) -> dict[str, Constraint]:
        """The declared valid values of each validated argument."""
        return declared_ranges(self.factory)


class Registry:
    """An ordered collection of specs, by name."""

    def __init__(self) -> None:
        self._specs: dict[str, OptimizerSpec] = {}

    def register(self, spec: OptimizerSpec) -> OptimizerSpec:
        if spec.name in self._specs:
            raise ValueError(f"optimizer {spec.name!r} is registered twice")
        self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> OptimizerSpec:
        """Remove and return the entry ``name`` (a temporary entry: a plugin's, a test's)."""
        try:
            return self._specs.pop(name)
        except KeyError:
            raise KeyError(f"unknown optimizer {name!r}") from None

    def __getitem__(self, name: str) -> OptimizerSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"unknown optimizer {name!r}; known: {', '.join(self._specs)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)
