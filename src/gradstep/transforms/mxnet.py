r"""MXNet's conventions as transforms: gradient rescaling and element-wise clipping
with weight decay inside or outside the clip, post-update weight clipping, and step
counts kept per parameter.

Symbols: :math:`g` gradient, :math:`w` parameter, :math:`s` ``rescale_grad``,
:math:`c` ``clip_gradient``, :math:`\lambda` ``weight_decay``, :math:`b` the weight
bound.

**Gradient handling** (:func:`gradient`). Every MXNet optimizer first multiplies the
gradient by ``rescale_grad`` (Gluon's ``Trainer.step(batch_size)`` sets it to
``1/batch_size`` on every step), then clips the *rescaled* gradient element by element
(MXNet's SGD docstring writes ``rescale_grad * clip(grad)``; every kernel clips
:math:`s g`), and adds coupled weight decay either inside or outside the clip:

- ``decay_in_clip=False``: :math:`u = \mathrm{clip}(s g, -c, c) + \lambda w` (MXNet 1.x
  SGD, NAG, Signum, SGLD, DCASGD; every optimizer of MXNet 2.x);
- ``decay_in_clip=True``: :math:`u = \mathrm{clip}(s g + \lambda w, -c, c)` (MXNet 1.x
  Adam, RMSProp, FTML, AdaMax, Nadam).

The rules that MXNet has take the same options directly (``rescale_grad``,
``clip_gradient``, ``decay_in_clip``, ``weight_decay``) with MXNet 1.x's placement as
their default; this stage is for composing other chains the MXNet way.
``clip_gradient=0`` clips to 0, as MXNet's Python-implemented updates (AdaGrad,
AdaDelta, AdaMax, Nadam, SGLD, DCASGD in 1.x) do; its C++ kernels (SGD, NAG, Signum,
Adam, RMSProp, FTML, FTRL) read 0 as "no clipping": pass ``None`` for those.

**Weight clipping** (:func:`clip_weights`): after the step, :math:`w \leftarrow
\mathrm{clip}(w, -b, b)` (MXNet RMSProp's ``clip_weights``).

**Step counts per parameter** (:func:`per_parameter`). MXNet counts updates per
parameter index, and so does torch: a parameter that gets no gradient on a step is
not updated and its count does not advance, so its bias corrections and schedules
lag behind the others'. gradstep's stages keep one count per transform, which is the
same while every parameter is updated on every step. ``per_parameter(t)`` gives each
parameter its own copy of ``t``'s state; a step names the parameters that received a
gradient with ``present=`` (a tree of booleans shaped like the parameters, or a flat
list); the others get a zero update and keep their state. It runs on the eager
engine (each parameter is a separate call of ``t``).

References:
  Apache MXNet 1.9.1 ``mxnet.optimizer`` (``Optimizer._update_count``,
  ``rescale_grad``, ``clip_gradient``) and ``src/operator/optimizer_op-inl.h``.
"""

from __future__ import annotations

from typing import Any

from .._core import tree as _tree
from .._core.elementwise import Elementwise
from .._core.gradients import CLIP_GRADIENT, RESCALE_GRAD, rescale_clip_decay
from .._core.gradients import clip_weights as _clip_weights
from .._core.namespaces import namespace_of
from .._core.transform import Transform
from .._core.validate import BOOL, Interval, hyperparams, nonnegative

__all__ = ["PerParameter", "clip_weights", "gradient", "per_parameter"]


@hyperparams(
    rescale_grad=RESCALE_GRAD,
    clip_gradient=CLIP_GRADIENT,
    weight_decay=nonnegative(schedulable=True),
    decay_in_clip=BOOL,
)
def gradient(
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
    weight_decay: Any = 0.0,
    decay_in_clip: bool = False,
) -> Elementwise:
    r"""MXNet's gradient handling as one stage (see the module docstring).

    Args:
      rescale_grad: :math:`s` > 0, or a schedule. Default 1.
      clip_gradient: :math:`c` >= 0, or None (the default) for no clip.
      weight_decay: :math:`\lambda` >= 0, or a schedule: coupled decay. Default 0.
      decay_in_clip: clip :math:`s g + \lambda w` (True) or add :math:`\lambda w` after
        the clip (False, the default).

    Example:
      >>> import numpy as np
      >>> from gradstep.transforms import mxnet
      >>> w, g = np.array([10.0]), np.array([0.5])
      >>> for inside in (True, False):
      ...     t = mxnet.gradient(clip_gradient=1.0, weight_decay=0.1, decay_in_clip=inside)
      ...     print(t.update(g, t.init(w), w)[0])
      [1.]
      [1.5]
    """
    return rescale_clip_decay(rescale_grad, clip_gradient, weight_decay, decay_in_clip)


@hyperparams(bound=Interval(0.0, lo_open=True))
def clip_weights(bound: float) -> Elementwise:
    r"""Put last in a chain: the new parameter :math:`w + u` is clipped to
    :math:`[-b, b]`; elements inside the bound keep their update unchanged.

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import mxnet
      >>> w = np.array([0.4, -0.4])
      >>> t = gradstep.chain(gradstep.sgd(1.0), mxnet.clip_weights(0.5))
      >>> gradstep.Optimizer(w, t).step(np.array([-0.3, -0.05])); w
      array([ 0.5 , -0.35])
    """
    return _clip_weights(bound)


class PerParameter(Transform):
    """``inner`` run separately on each parameter, with its own state and step count."""

    per_parameter_state = ("params",)  # one inner state per parameter

    traceable = False  # Python branches on the flags: JAX runs it on the host (fallback="host")

    def __init__(self, inner: Transform):
        self.inner = inner
        self.name = inner.name

    def hyperparameters(self) -> dict[str, Any]:
        # ``present`` is per-step context, not a hyperparameter: no range to check
        return {**super().hyperparameters(), "present": None}

    def child_state_keys(self) -> tuple[str | None, ...]:
        return (None,)  # one state per parameter, under "params"

    def init(self, params: Any) -> dict:
        return {"params": [self.inner.init([p]) for p in _tree.leaves(params)]}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        present = ctx.pop("present", None)
        g_leaves, td = _tree.flatten(grads)
        p_leaves = None if params is None else _tree.leaves_like(td, params)
        flags = [True] * len(g_leaves) if present is None else _flags(present, len(g_leaves))
        out, new_states = [], []
        for i, (g, inner_state) in enumerate(zip(g_leaves, state["params"])):
            if flags[i]:
                w = None if p_leaves is None else [p_leaves[i]]
                (u,), inner_state = self.inner.update([g], inner_state, w, **ctx)
            else:
                u = namespace_of(g).zeros_like(g)  # a tensor stays one, on its device
            out.append(u)
            new_states.append(inner_state)
        return _tree.unflatten(td, out), {"params": new_states}


def _flags(present: Any, n: int) -> list[bool]:
    flags = [bool(f) for f in _tree.flatten(present, none_is_leaf=True)[0]]
    if len(flags) != n:
        raise ValueError(f"per_parameter: present has {len(flags)} entries for {n} parameters")
    return flags


def per_parameter(inner: Transform) -> PerParameter:
    """``inner`` with a state (and so a step count) per parameter (see the module
    docstring). ``update(..., present=flags)`` skips the parameters whose flag is
    false: zero update, state untouched.

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.transforms import mxnet
      >>> w = [np.zeros(1), np.zeros(1)]
      >>> opt = gradstep.Optimizer(w, mxnet.per_parameter(gradstep.adam(0.1)))
      >>> opt.step([np.ones(1), np.ones(1)], present=[True, False])
      >>> [float(x[0]) for x in w], [int(s["scale_by_adam"]["count"]) for s in
      ...                            opt.state["params"]]
      ([-0.1, 0.0], [1, 0])
    """
    if not isinstance(inner, Transform):
        raise TypeError(f"per_parameter: expected a transform, got {type(inner).__name__}")
    return PerParameter(inner)
