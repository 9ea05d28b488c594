"""What happens to NaN and infinite gradients: an explicit policy.

- ``"propagate"``: nothing special; NaN spreads into the state and parameters.
- ``"clear_nan"``: Dandelion's ``clear_nan``, exactly (:func:`with_clear_nan`): NaN
  in the new state and parameters becomes 0 after the step, infinities are kept, so
  an infinite gradient element leaves Adam's moments infinite and pins that
  parameter element at 0 for good. For reproducing Dandelion only.
- ``"zero"`` (recommended): non-finite gradient elements are replaced by 0 before
  the rule (:func:`zero_nonfinite`): the rest of the step goes ahead and the state
  stays finite.
- ``"skip"``: a step whose gradients are not all finite changes nothing, neither the
  parameters nor the state (:func:`skip_nonfinite`).
"""

from __future__ import annotations

from .._core.elementwise import Elementwise
from .._core.skip import SkipNonfinite
from .._core.stages import with_clear_nan
from .._core.transform import Chain, Transform
from .._core.validate import Interval, OneOf, check
from .._core.xmath import finite_or_zero

POLICIES = ("propagate", "clear_nan", "zero", "skip")


def _finite_or_zero(g):
    return finite_or_zero(g)


def zero_nonfinite() -> Elementwise:
    """Replace NaN and infinite gradient elements by 0."""
    return Elementwise("zero_nonfinite", _finite_or_zero)


def skip_nonfinite(inner: Transform, max_consecutive_errors: int | None = None) -> Transform:
    """Skip steps with NaN or infinite gradients: zero updates, ``inner``'s state kept.

    With ``max_consecutive_errors=k``, the (k+1)-th non-finite step in a row is
    applied anyway (optax's ``apply_if_finite``), so a run that keeps producing NaN
    does not stall silently. The state counts ``notfinite_count`` (the current run)
    and ``total_notfinite``.
    """
    if max_consecutive_errors is not None:
        check(
            "skip_nonfinite",
            "max_consecutive_errors",
            max_consecutive_errors,
            Interval(0, integer=True),
        )
    return SkipNonfinite(inner, max_consecutive_errors)


def skip_large_updates(inner: Transform, max_squared_norm: float) -> Transform:
    r"""Skip steps whose gradients have a squared global L2 norm of at least
    ``max_squared_norm`` (or any NaN or infinite element): zero updates, ``inner``'s
    state kept.

    Symbols: :math:`g` the gradients of all leaves, :math:`M` ``max_squared_norm``.
    The step runs ``inner`` iff :math:`\sum g^2 < M` (false for NaN). The state's
    ``notfinite_count`` and ``total_notfinite`` count the skipped steps. On the
    torch front the sum covers the parameter group (one decision per step, however
    many calls the group is stepped in).

    Args:
      inner: the optimizer to protect.
      max_squared_norm: :math:`M` > 0.

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import skip_large_updates
      >>> w = np.array([0.0, 0.0])
      >>> opt = gradstep.Optimizer(w, skip_large_updates(gradstep.sgd(1.0), 4.0))
      >>> opt.step(np.array([1.0, 1.0])); opt.step(np.array([2.0, 0.0])); w
      array([-1., -1.])

    Differences: optax's ``skip_large_updates`` is a ``should_skip_update_fn`` for
    ``MultiSteps`` (the same test, on the gradients given to it); here it wraps any
    transform and runs on every engine's skip path (JAX: in the graph).
    """
    check("skip_large_updates", "max_squared_norm", max_squared_norm, Interval(0.0, lo_open=True))
    if not isinstance(inner, Transform):
        raise TypeError(f"skip_large_updates: expected a transform, got {type(inner).__name__}")
    return SkipNonfinite(inner, None, max_squared_norm)


def nonfinite_policy(transform: Transform, policy: str) -> Transform:
    """``transform`` with the named non-finite policy (see the module docstring)."""
    check("nonfinite_policy", "policy", policy, OneOf(POLICIES))
    if policy == "clear_nan":
        return with_clear_nan(transform)
    if policy == "zero":
        return Chain((zero_nonfinite(), transform), name=transform.name)
    if policy == "skip":
        return skip_nonfinite(transform)
    return transform
