r"""Scaling each tensor's update by a norm: of its parameter (per tensor), or of the
whole update (one norm over every tensor).

**Parameter block norm / RMS.** Symbols: :math:`u` one tensor's update, :math:`w` its
parameter, :math:`n` its number of elements, :math:`s` ``min_scale``.

.. math::

    u \leftarrow u \cdot \max\big(\|w\|_2,\ s\big)
    \qquad\text{or}\qquad
    u \leftarrow u \cdot \max\big(\sqrt{\textstyle\sum w^2 / n},\ s\big)

so a tensor's step is measured relative to its own size (the floor :math:`s` lets
zero-initialised tensors move at all).

**Update-norm normalisation.** Symbols: :math:`\|u\|` the L2 norm over every element
of every tensor, :math:`c` ``scale_factor``, :math:`\epsilon` ``epsilon``.

.. math::

    u \leftarrow u \,/\, \big((\|u\| + \epsilon) / c\big)

a step of length about :math:`c` whatever the gradient's size.

None of them keeps state. The parameter-block scalings are not elementwise (norms of
the parameters); they are written against the array namespace, so they run on NumPy,
torch tensors on their device and under :func:`jax.jit`, on the eager path. The
update-norm normalisation is a global-norm scaling (as ``clip_by_global_norm``), run
fused where the engine fuses.
"""

from __future__ import annotations

from typing import Any

from .._core import tree as _tree
from .._core.elementwise import NormScaled
from .._core.namespaces import namespace_of
from .._core.validate import Interval, OneOf, hyperparams, nonnegative
from .block_clipping import Stateless

KINDS = ("norm", "rms")


class ParamBlockScale(Stateless):
    """See :func:`scale_by_param_block_norm` and :func:`scale_by_param_block_rms`."""

    def __init__(self, kind: str, min_scale: float):
        self.kind = kind
        self.min_scale = min_scale
        self.name = f"scale_by_param_block_{kind}"

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if params is None:
            raise ValueError(f"{self.name}: needs the parameters (update(..., params))")
        leaves, td = _tree.flatten(grads)
        out = []
        for u, w in zip(leaves, _tree.leaves_like(td, params)):
            ns = namespace_of(u)
            squares = w * w
            size = ns.mean(squares) if self.kind == "rms" else ns.sum(squares)
            norm = ns.sqrt(size)
            factor = ns.where(norm <= self.min_scale, ns.astype(self.min_scale, norm), norm)
            out.append(ns.wrap(u * factor))
        return _tree.unflatten(td, out), state


@hyperparams(kind=OneOf(KINDS), min_scale=nonnegative())
def scale_by_param_block(kind: str = "norm", min_scale: float = 1e-3) -> ParamBlockScale:
    r"""Each tensor's update times its parameter's L2 norm (``kind="norm"``) or root
    mean square (``"rms"``), floored at ``min_scale`` (see the module docstring)."""
    return ParamBlockScale(kind, min_scale)


@hyperparams(min_scale=nonnegative())
def scale_by_param_block_norm(min_scale: float = 1e-3) -> ParamBlockScale:
    r"""Each tensor's update times :math:`\max(\|w\|_2, s)`, its parameter's L2 norm
    floored at ``min_scale`` (see the module docstring).

    Args:
      min_scale: :math:`s` >= 0. Default 1e-3 (optax).

    Example:
      >>> import numpy as np
      >>> from gradstep.transforms import block_scaling
      >>> t = block_scaling.scale_by_param_block_norm()
      >>> u, _ = t.update([np.ones(2), np.ones(1)], {}, [np.array([3.0, 4.0]), np.zeros(1)])
      >>> u
      [array([5., 5.]), array([0.001])]

    Differences: optax ``scale_by_param_block_norm`` is the same.
    """
    return scale_by_param_block("norm", min_scale)


@hyperparams(min_scale=nonnegative())
def scale_by_param_block_rms(min_scale: float = 1e-3) -> ParamBlockScale:
    r"""Each tensor's update times :math:`\max(\sqrt{\sum w^2 / n}, s)`, its
    parameter's root mean square floored at ``min_scale`` (see the module docstring).

    Args:
      min_scale: :math:`s` >= 0. Default 1e-3 (optax).

    Example:
      >>> import numpy as np
      >>> from gradstep.transforms import block_scaling
      >>> t = block_scaling.scale_by_param_block_rms()
      >>> u, _ = t.update([np.ones(2)], {}, [np.array([1.0, 7.0])])
      >>> u
      [array([5., 5.])]

    Differences: optax ``scale_by_param_block_rms`` is the same.
    """
    return scale_by_param_block("rms", min_scale)


def _normalizing_factor(norm: Any, h: dict) -> Any:
    # the multiplier c / (||u|| + eps): the global-norm reduction of NormScaled (as
    # clip_by_global_norm), so every engine runs it, fused where it fuses
    return h["scale_factor"] / (norm + h["epsilon"])


_NONZERO = Interval(None, None)


@hyperparams(scale_factor=_NONZERO, epsilon=nonnegative())
def normalize_by_update_norm(scale_factor: float = 1.0, epsilon: float = 1e-6):
    r"""Every update divided by :math:`(\|u\| + \epsilon) / c`, :math:`\|u\|` the L2
    norm over all tensors (see the module docstring).

    Args:
      scale_factor: :math:`c`, a nonzero number: the length of the step (negative:
        a descent step from the gradient). Default 1.
      epsilon: :math:`\epsilon` >= 0, added to the norm. Default 1e-6 (optax).

    Example:
      >>> import numpy as np
      >>> from gradstep.transforms import block_scaling
      >>> t = block_scaling.normalize_by_update_norm(-1.0, epsilon=0.0)
      >>> u, _ = t.update([np.array([3.0]), np.array([4.0])], {})
      >>> u
      [array([-0.6]), array([-0.8])]

    Differences: optax ``normalize_by_update_norm(scale_factor, eps)`` is the same
    (optax also takes ``scale_factor=0``, which makes every update 0 or NaN: use
    ``optax.set_to_zero`` for that).
    """
    if scale_factor == 0:
        raise ValueError(
            "normalize_by_update_norm: invalid scale_factor=0; valid values: a nonzero "
            "number (0 would divide by zero)"
        )
    return NormScaled(
        "normalize_by_update_norm",
        _normalizing_factor,
        {"scale_factor": scale_factor, "epsilon": epsilon},
        per_tensor=False,
    )
