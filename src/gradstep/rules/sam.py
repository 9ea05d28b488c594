r"""Sharpness-aware minimisation (SAM) and its adaptive form (ASAM): the base rule
steps with the gradient taken at a point pushed uphill, which prefers flat minima.

Symbols: :math:`w` the parameters (all tensors together), :math:`g = \nabla L(w)`,
:math:`\rho` ``rho``, :math:`\epsilon` ``epsilon``, :math:`T_w = \mathrm{diag}(|w|)`
(``adaptive=True``) or :math:`I` (SAM), :math:`\mathcal{B}` the base rule
(``base``: a transform, or plain SGD with ``learning_rate``).

.. math::

    e = \rho\, \frac{T_w^2\, g}{\lVert T_w\, g\rVert_2 + \epsilon},\qquad
    \tilde g = \nabla L(w + e),\qquad
    w \leftarrow w + \mathcal{B}(\tilde g;\ w)

The norm runs over every parameter tensor at once; the base rule sees the
parameters :math:`w` (for its weight decay) and the gradient at :math:`w + e`.

**Two ways to step.** With a closure (two gradient evaluations per step):
``gradstep.closure_step(opt, closure)`` on the NumPy front, ``opt.step(closure)`` on
the torch front (the closure is called twice, the loss of the first call is
returned), or the transform's functional ``step_with_closure(loss_and_grad, params,
state)`` (JAX, any front). Without one, :meth:`update` alternates: an even update
(0, 2, ...) moves the parameters to :math:`w + e` (the ascent); the next, fed the
gradient there, moves them back to :math:`w` and applies the base rule (the
descent), as ``optax.contrib.sam``'s default mode. Both give the same iterates
:math:`w`; the alternating form shows the perturbed point every other update.

The perturbation is written against the array namespace (NumPy, torch on the
tensors' device, JAX under ``jax.jit``, where the alternation is selected with
``jnp.where``).

References:
  Foret, Kleiner, Mobahi & Neyshabur (2021): Sharpness-Aware Minimization for
  Efficiently Improving Generalization. ICLR, arXiv:2010.01412.
  Kwon, Kim, Park & Choi (2021): ASAM: Adaptive Sharpness-Aware Minimization for
  Scale-Invariant Learning of Deep Neural Networks. ICML, arXiv:2102.11600.
"""

from __future__ import annotations

from typing import Any

from .._core.sharpness import SharpnessAware, perturbation
from .._core.stages import scale_by_learning_rate
from .._core.transform import Transform
from .._core.validate import BOOL, Constraint, hyperparams, nonnegative

__all__ = ["SharpnessAware", "perturbation", "sam"]


class _TransformOrNone(Constraint):
    """A transform, or ``None``."""

    def contains(self, value: Any) -> bool:
        return value is None or isinstance(value, Transform)

    def describe(self) -> str:
        return "a transform or None"

    def invalid_example(self) -> Any:
        return "adam"


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    rho=nonnegative(),
    adaptive=BOOL,
    epsilon=nonnegative(),
    base=_TransformOrNone(),
)
def sam(
    learning_rate: Any = 0.1,
    rho: float = 0.05,
    adaptive: bool = False,
    epsilon: float = 1e-12,
    *,
    base: Transform | None = None,
) -> SharpnessAware:
    r"""SAM, or ASAM with ``adaptive=True``, around ``base`` (see the module
    docstring for the math and the two ways to step).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule: the step of the default base
        rule, SGD (:math:`\mathcal{B}(\tilde g) = -\eta \tilde g`). Default 0.1.
        Leave it at its default when giving ``base``.
      rho: :math:`\rho` >= 0, the radius of the perturbation. Default 0.05 (the
        paper's; ASAM uses larger values, e.g. 0.5 to 2).
      adaptive: scale the perturbation by :math:`|w|` (ASAM). Default False.
      epsilon: :math:`\epsilon` >= 0, added to the norm. Default 1e-12.
      base: the base rule, a transform (e.g. ``gradstep.adamw(1e-3)``), or
        ``None`` (default) for SGD with ``learning_rate``.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 0.0])
      >>> def closure():  # loss w0^4 + w1^2 and its gradient at the current w
      ...     return w[0] ** 4 + w[1] ** 2, np.array([4 * w[0] ** 3, 2 * w[1]])
      >>> opt = gradstep.Optimizer(w, gradstep.sam(0.1, rho=0.5))
      >>> print(gradstep.closure_step(opt, closure))  # the loss at the start
      1.0
      >>> w  # the gradient at w + e = (1.5, 0) is 13.5, not 4
      array([-0.35,  0.  ])

    Differences: pytorch_optimizer's ``SAM(params, base_optimizer, rho, adaptive,
    perturb_eps=1e-12)`` computes the norm in float32 even for float64
    parameters and expects the first gradient to be computed before
    ``step(closure)``, which calls the closure once; gradstep's torch front
    evaluates both gradients through the closure. ``optax.contrib.sam(optimizer,
    chain(contrib.normalize(), sgd(rho)), sync_period=2)`` is the alternating form
    with :math:`\epsilon = 0` (its longer ``sync_period``, several ascent steps, is
    not offered here).
    """
    if base is not None and learning_rate != 0.1:
        raise ValueError(
            f"sam: invalid learning_rate={learning_rate!r} with a base rule; valid values: "
            "the default (learning_rate is the step of the default SGD base only)"
        )
    inner = scale_by_learning_rate(learning_rate) if base is None else base
    return SharpnessAware(inner, rho, adaptive, epsilon)
