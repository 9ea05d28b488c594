r"""Keep the parameters non-negative: a step that would take a parameter element
below 0 takes it to 0 instead.

Symbols: :math:`w` the parameter, :math:`u` the update.

.. math::

    u \leftarrow \begin{cases} -w & w + u < 0 \\ u & \text{otherwise} \end{cases}

so :math:`w + u \ge 0` (a projection onto the non-negative orthant after the step).
Place it last in the chain. Elementwise: the fused engine runs it in the optimizer's
pass.

References:
  optax ``keep_params_nonnegative`` (google-deepmind/optax,
  ``optax/transforms/_constraining.py``); projected gradient descent, e.g. Bertsekas
  (1999): Nonlinear Programming, sec. 2.3.
"""

from __future__ import annotations

from .._core.elementwise import Elementwise
from .._core.xmath import where


def _nonnegative(g, w, zero):
    return where(w + g < zero, -w, g)


def _zero_scalar(h: dict, count: int) -> dict:
    return {"zero": 0.0}


def keep_params_nonnegative() -> Elementwise:
    """Clip steps so that every parameter element stays >= 0 (see the module docstring).

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import chain, keep_params_nonnegative
      >>> w = np.array([1.0, 0.5])
      >>> opt = gradstep.Optimizer(w, chain(gradstep.sgd(1.0), keep_params_nonnegative()))
      >>> opt.step(np.array([0.25, 2.0])); w
      array([0.75, 0.  ])

    Differences: optax's is the same; a parameter that is already negative is set
    to 0 by the next step here and in optax. torch has no such transform.
    """
    return Elementwise(
        "keep_params_nonnegative", _nonnegative, prepare=_zero_scalar, uses_params=True
    )
