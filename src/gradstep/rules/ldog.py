r"""Layer-wise DoG (LDoG): DoG's "distance over gradients" step size, one per tensor.

Symbols: for one tensor, :math:`g` its update, :math:`w` its parameter, :math:`w_0`
slot ``p0`` (the parameter at ``init``), :math:`\bar r` state ``max_dist`` (the
largest distance from :math:`w_0` so far), :math:`G` state ``sum_sq_grads`` (its summed
squared gradient norms), :math:`r_\epsilon` ``reps_rel``, :math:`\epsilon`
``epsilon``, :math:`c` ``global_scale``.

.. math::

    \bar r_0 = r_\epsilon (1 + \|w_0\|),\qquad
    \bar r \leftarrow \max\big(\bar r, \|w - w_0\|\big),\qquad
    G \leftarrow G + \|g\|^2

    u = c\, \frac{\bar r}{\sqrt{G + \epsilon}}\, g

with norms over the tensor's elements (:func:`gradstep.dog` takes them over all
tensors together). The output is the step itself (no learning rate): with
``global_scale=-1`` it is a descent step from the gradient. :math:`\bar r_0` is taken
from the parameters given to ``init``.

The state is per tensor (a copy of :math:`w_0`, optionally in ``reference_dtype``, and
two 0-d arrays); the transform is written against the array namespace, so it runs on
NumPy, torch tensors on their device and under :func:`jax.jit`, on the eager path.

References:
  Ivgi, Hinder & Carmon (2023): DoG is SGD's Best Friend: A Parameter-Free Dynamic
  Step Size Schedule. ICML, arXiv:2302.12022 (LDoG: its layer-wise version).
"""

from __future__ import annotations

from typing import Any

from .._core import tree as _tree
from .._core.namespaces import element_for, namespace_of
from .._core.precision import dtype_name
from .._core.transform import Transform
from .._core.validate import Interval, hyperparams, nonnegative
from .dog import distance_over_gradients

_FLOATS = ("float16", "bfloat16", "float32", "float64")


class ScaleByLDoG(Transform):
    """See :func:`scale_by_ldog`."""

    per_parameter_state = ("p0", "max_dist", "sum_sq_grads")  # lists indexed by parameter

    name = "scale_by_ldog"

    def __init__(self, reps_rel: float, epsilon: float, reference_dtype: str | None, scale: float):
        self.reps_rel = reps_rel
        self.epsilon = epsilon
        self.reference_dtype = reference_dtype
        self.global_scale = scale

    def init(self, params: Any) -> dict:
        leaves, td = _tree.flatten(params)
        p0, max_dist, sum_sq = [], [], []
        for w in leaves:
            ns = namespace_of(w)
            copy = ns.copy(w)
            if self.reference_dtype is not None:
                copy = ns.stored(copy, self.reference_dtype)
            p0.append(copy)
            max_dist.append(ns.wrap(self.reps_rel * (1.0 + ns.sqrt(ns.sum(w * w)))))
            sum_sq.append(ns.zeros((), w))
        return {
            "p0": _tree.unflatten(td, p0),
            "max_dist": _tree.unflatten(td, max_dist),
            "sum_sq_grads": _tree.unflatten(td, sum_sq),
        }

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        if params is None:
            raise ValueError(f"{self.name}: needs the parameters (update(..., params))")
        leaves, td = _tree.flatten(grads)
        columns = [
            _tree.leaves_like(td, x)
            for x in (params, state["p0"], state["max_dist"], state["sum_sq_grads"])
        ]
        out, max_dists, sums = [], [], []
        for g, w, w0, r, s in zip(leaves, *columns):
            ns = namespace_of(g)
            moved = w - w0
            r, s, size = element_for(distance_over_gradients, ns)(
                r, s, ns.sum(moved * moved), ns.sum(g * g), self.epsilon
            )
            step = self.global_scale * size
            out.append(ns.wrap(step * g))
            max_dists.append(ns.wrap(r))
            sums.append(ns.wrap(s))
        new = {
            "p0": state["p0"],
            "max_dist": _tree.unflatten(td, max_dists),
            "sum_sq_grads": _tree.unflatten(td, sums),
        }
        return _tree.unflatten(td, out), new


class _StorageDtype(Interval):
    """``None`` or a floating dtype (a name, or a NumPy/torch/JAX dtype)."""

    def contains(self, value: Any) -> bool:
        if value is None:
            return True
        try:
            return dtype_name(value) in _FLOATS
        except (ValueError, TypeError):
            return False

    def describe(self) -> str:
        return "None or one of " + ", ".join(_FLOATS)

    def invalid_example(self) -> Any:
        return "int8"


#: the valid ``reference_dtype`` values
REFERENCE_DTYPE = _StorageDtype()


@hyperparams(
    reps_rel=Interval(0.0, lo_open=True),
    epsilon=nonnegative(),
    reference_dtype=REFERENCE_DTYPE,
    global_scale=Interval(None, None),
)
def scale_by_ldog(
    reps_rel: float = 1e-6,
    epsilon: float = 1e-8,
    reference_dtype: Any = None,
    global_scale: float = 1.0,
) -> ScaleByLDoG:
    r"""LDoG's step :math:`c\,\bar r\, g / \sqrt{G + \epsilon}` per tensor (see the
    module docstring).

    Args:
      reps_rel: :math:`r_\epsilon` > 0, the first distance relative to
        :math:`1 + \|w_0\|`. Default 1e-6 (the authors suggest 1e-4 for models with
        batch normalization).
      epsilon: :math:`\epsilon` >= 0, added to :math:`G`. Default 1e-8.
      reference_dtype: the dtype :math:`w_0` is kept in (``None``: the parameter's).
      global_scale: :math:`c`, a number multiplying the step (``-1``: descent).
        Default 1.

    Example:
      >>> import numpy as np
      >>> from gradstep.rules.ldog import scale_by_ldog
      >>> t = scale_by_ldog(reps_rel=0.1, epsilon=0.0)
      >>> w = np.array([3.0, 4.0])
      >>> state = t.init(w)
      >>> u, state = t.update(np.array([1.0, 0.0]), state, w)
      >>> u  # (0.1 * (1 + 5)) / |g| * g
      array([0.6, 0. ])

    Differences: optax's ``scale_by_distance_over_gradients(reps_rel, eps,
    param_dtype, global_scale)`` is this stage; its ``param_dtype`` (default
    float32, also under ``jax_enable_x64``) is ``reference_dtype`` here, and it keeps
    :math:`G` as an array of shape ``(1,)`` in JAX's default float dtype (gradstep: a
    0-d array in the parameter's dtype).
    """
    name = None if reference_dtype is None else dtype_name(reference_dtype)
    return ScaleByLDoG(reps_rel, epsilon, name, global_scale)
