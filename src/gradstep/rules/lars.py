r"""LARS: layer-wise adaptive rate scaling, in objax's, MXNet's and optax's forms.

Symbols: :math:`w` parameter tensor, :math:`g` its gradient, :math:`\eta`
``learning_rate``, :math:`\mu` ``momentum``, :math:`\lambda` ``weight_decay``,
:math:`\eta_c` ``trust_coefficient``, :math:`\epsilon` ``epsilon``, :math:`\rho` the
tensor's trust ratio, :math:`v` the slot ``velocity`` (it holds the signed,
learning-rate-scaled step, as MXNet's buffer).

Every form scales each tensor's step by its trust ratio and keeps the learning rate
inside the momentum buffer:

.. math::

    v \leftarrow \mu v - \eta\, \rho\, d,\qquad w \leftarrow w + v

(Nesterov: :math:`w \leftarrow w + \mu v - \eta \rho d` with the new :math:`v`).
The forms differ in :math:`\rho` and :math:`d` (``form``):

- ``"objax"`` (objax's ``LARS``, the seed): :math:`d = g + \lambda w`,
  :math:`\rho = \eta_c\|w\| / (\|g\| + \lambda\|w\| + \epsilon)`; when
  :math:`\|w\| = 0` or :math:`\|g\| = 0`, :math:`\rho \leftarrow \max(1, \rho)`.
- ``"mxnet"`` (MXNet's ``LARS``): the same :math:`d` and :math:`\rho`, but
  :math:`\rho = 1` when either norm is 0.
- ``"optax"`` (optax's ``lars``): :math:`d = g + \lambda w`,
  :math:`\rho = \eta_c\|w\| / (\|d\| + \epsilon)`, 1 when either norm is 0.

``momentum_correction`` (MXNet 1.x, Goyal et al.) multiplies :math:`\mu` by
:math:`\eta_t/\eta_{t-1}` when the learning rate changes. Tensors are excluded from
the scaling (:math:`\rho = 1`) by ``trust_ratio_mask`` and from the decay
(:math:`\lambda = 0`) by ``weight_decay_mask``: MXNet excludes the names ending in
``gamma``, ``beta`` and ``bias`` from the scaling and, in 1.x, every name not ending
in ``_weight`` from the decay. objax's documentation prescribes the learning rate
:math:`\eta_0 (1 - t/T)^2`: ``gradstep.schedules.polynomial_decay(eta0, 0.0, 2, T)``.

References:
  You, Gitman & Ginsburg (2017): Large Batch Training of Convolutional Networks.
  arXiv:1708.03888.
  Goyal, Dollar, Girshick, Noordhuis, Wesolowski, Kyrola, Tulloch, Jia & He (2017):
  Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour. arXiv:1706.02677.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.namespaces import NUMPY, namespace_of
from .._core.stages import add_decayed_weights, rule, scale, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Interval, OneOf, hyperparams, nonnegative
from .layerwise import NoneOr, scale_by_lars, scale_by_trust_ratio
from .sgd import apply_momentum, apply_nesterov_momentum

FORMS = ("objax", "mxnet", "optax")


def _scalar_dtype(leaf: Any) -> np.dtype:
    """Where a per-optimizer scalar of the state is kept: float32 next to float32
    (or narrower) parameters, float64 otherwise."""
    name = str(getattr(leaf, "dtype", "float64"))
    return np.dtype(np.float32) if name.endswith(("float32", "float16")) else np.dtype(np.float64)


_WIDE = np.zeros((), np.float64)


def _value(value: Any, count: int) -> Any:
    return value(count) if callable(value) else value


class MomentumCorrection(Transform):
    """Run the momentum stage ``inner`` with :math:`\\mu\\,\\eta_t/\\eta_{t-1}`.

    The state keeps the previous step's learning rate (``last_learning_rate``, in
    the parameters' floating dtype; the ratio is taken in that dtype, so an
    unchanged rate gives exactly 1). The first step, and a previous rate of 0, use
    :math:`\\mu` itself, as MXNet.
    """

    def __init__(self, inner: Transform, learning_rate: Any, momentum: Any):
        self.inner = inner
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.name = inner.name

    def init(self, params: Any) -> dict:
        leaves = _tree.leaves(params)
        dtype = _scalar_dtype(leaves[0]) if leaves else np.dtype(np.float64)
        return {
            "count": np.zeros((), np.int64),
            "last_learning_rate": np.zeros((), dtype),
            "inner": self.inner.init(params),
        }

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        count_ns = namespace_of(state["count"])
        count = count_ns.count(state["count"])
        last = state["last_learning_rate"]
        ns = namespace_of(last)
        # the ratio is taken in the state's dtype, so an unchanged rate gives exactly 1
        current = ns.astype(_value(ctx.get("learning_rate", self.learning_rate), count), last)
        momentum = _value(ctx.get("momentum", self.momentum), count)
        previous = ns.where(count == 0, current, last)
        usable = previous != 0
        ratio = current / ns.where(usable, previous, ns.astype(1.0, last))
        wide = ns.astype(ratio, _WIDE) if ns is NUMPY else ratio
        corrected = ns.where(usable, momentum * wide, momentum)
        updates, inner = self.inner.update(
            grads, state["inner"], params, **{**ctx, "momentum": corrected}
        )
        new_state = {
            "count": count_ns.count_array(count + 1, state["count"]),
            "last_learning_rate": ns.wrap(current),
            "inner": inner,
        }
        return updates, new_state


def _has_momentum(momentum: Any) -> bool:
    return callable(momentum) or momentum != 0


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    momentum=Interval(0.0, 1.0, schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    trust_coefficient=Interval(0.0, lo_open=True),
    epsilon=nonnegative(),
    form=OneOf(FORMS),
    nesterov=BOOL,
    momentum_correction=BOOL,
    rescale_grad=Interval(0.0, lo_open=True, schedulable=True),
    clip_gradient=NoneOr(nonnegative()),
)
def lars(
    learning_rate: Any,
    momentum: Any = 0.9,
    weight_decay: Any = 1e-4,
    trust_coefficient: float = 1e-3,
    epsilon: float = 1e-5,
    *,
    form: str = "objax",
    nesterov: bool = False,
    momentum_correction: bool = False,
    trust_ratio_mask: Any = None,
    weight_decay_mask: Any = None,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
) -> Chain:
    r"""LARS: SGD with momentum whose step for each tensor is scaled by its trust ratio.

    :math:`v \leftarrow \mu v - \eta\rho\,(g + \lambda w),\ w \leftarrow w + v` with
    :math:`\rho` by ``form`` (see the module docstring).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Required (objax and optax
        take it per call / as an argument; MXNet defaults to 0.01).
      momentum: :math:`\mu` in [0, 1], or a schedule. Default 0.9 (objax, optax;
        MXNet 0). 0 keeps no velocity.
      weight_decay: :math:`\lambda` >= 0, or a schedule. Default 1e-4 (objax;
        MXNet and optax 0).
      trust_coefficient: :math:`\eta_c` > 0 (MXNet's ``eta``, objax's ``tc``).
        Default 1e-3.
      epsilon: :math:`\epsilon` >= 0. Default 1e-5 (objax; MXNet 1.x and optax 0).
      form: ``"objax"`` (default), ``"mxnet"`` or ``"optax"``: the trust ratio's
        denominator and its value at a zero norm.
      nesterov: Nesterov momentum (optax's ``nesterov``). Needs ``momentum`` > 0.
      momentum_correction: scale :math:`\mu` by :math:`\eta_t/\eta_{t-1}` (MXNet
        1.x, where it is the default). Needs ``momentum`` > 0.
      trust_ratio_mask: a tree of booleans, or a function of the parameters
        returning one; tensors where it is false are not scaled (:math:`\rho = 1`).
        ``None``: all are scaled.
      weight_decay_mask: likewise; tensors where it is false are not decayed.
        Needs ``weight_decay`` > 0.
      rescale_grad: MXNet's :math:`s` > 0 (or a schedule): the gradient is multiplied
        by it first, so the norm is that of :math:`s g`. Default 1. ``form="mxnet"``
        only.
      clip_gradient: MXNet's :math:`c`: ``None`` (default) or >= 0; :math:`s g` is
        clipped element-wise to :math:`[-c, c]` after its norm is taken. ``form=
        "mxnet"`` only (0 clips every element to 0, where MXNet's kernel reads 0 as
        no clipping: pass ``None`` for that).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([3.0, 4.0])
      >>> opt = gradstep.Optimizer(w, gradstep.lars(0.1, momentum=0.0, weight_decay=0.0))
      >>> opt.step(np.array([0.0, 0.5])); w.round(8)
      array([3.        , 3.99950001])

    Differences: objax ``LARS(momentum=0.9, weight_decay=1e-4, tc=1e-3, eps=1e-5)``
    is ``form="objax"``; with a zero gradient its ratio is :math:`\max(1, \rho)`,
    which can exceed 1. MXNet 1.x ``LARS(momentum=0, eta=1e-3, eps=0,
    momentum_correction=True)`` is ``form="mxnet"`` with its ``rescale_grad`` and
    ``clip_gradient`` (MXNet sums the norms in float32, and excludes tensors by name;
    gradstep by masks). optax ``lars(learning_rate, weight_decay=0, trust_coefficient=
    1e-3, eps=0, momentum=0.9)`` is ``form="optax"``. MXNet 2.x drops the momentum
    correction and uses epsilon 1e-8. All three keep the learning rate inside the
    buffer, as gradstep; objax's buffer holds :math:`-v`.
    """
    has_momentum = _has_momentum(momentum)
    for name, value in (("nesterov", nesterov), ("momentum_correction", momentum_correction)):
        if value and not has_momentum:
            raise ValueError(
                f"lars: invalid {name}=True with momentum=0; valid values: {name}=True "
                "needs a momentum > 0"
            )
    if weight_decay_mask is not None and not callable(weight_decay) and weight_decay == 0:
        raise ValueError(
            "lars: invalid weight_decay_mask with weight_decay=0; valid values: a mask "
            "only together with a weight_decay > 0"
        )
    rescale = callable(rescale_grad) or rescale_grad != 1
    if form != "mxnet" and (rescale or clip_gradient is not None):
        name = "rescale_grad" if rescale else "clip_gradient"
        value = rescale_grad if rescale else clip_gradient
        raise ValueError(
            f"lars: invalid {name}={value!r} with form={form!r}; valid values: MXNet's "
            "gradient handling only with form='mxnet'"
        )
    if form == "optax":
        decay = weight_decay if callable(weight_decay) or weight_decay != 0 else None
        scaling = (
            None if decay is None else add_decayed_weights(decay, weight_decay_mask),
            scale_by_trust_ratio(trust_coefficient, epsilon, mask=trust_ratio_mask),
        )
    else:
        scaling = (
            scale(rescale_grad) if rescale else None,
            scale_by_lars(
                trust_coefficient,
                epsilon,
                weight_decay,
                zero_norm="max" if form == "objax" else "one",
                trust_ratio_mask=trust_ratio_mask,
                weight_decay_mask=weight_decay_mask,
                clip_gradient=clip_gradient,
            ),
        )
    trace: Transform | None = None
    if has_momentum:
        trace = (apply_nesterov_momentum if nesterov else apply_momentum)(momentum)
        if momentum_correction:
            trace = MomentumCorrection(trace, learning_rate, momentum)
    return rule("lars", *scaling, scale_by_learning_rate(learning_rate), trace)
