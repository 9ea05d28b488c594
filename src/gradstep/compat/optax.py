r"""optax's API on gradstep's rules: ``import gradstep.compat.optax as optax``.

The names, argument names and defaults of optax 0.2.8, each mapped onto a gradstep
rule and its options, so that the trajectories are optax's (the conformance
fixtures in ``tests/conformance/fixtures/optax_compat/`` were recorded from optax
0.2.8 and are replayed through this module under ``jax.jit``). Every optimizer
returns a :class:`gradstep.jax.GradstepTransformation`: an
``optax.GradientTransformationExtraArgs`` that runs on the JAX engine and also
works inside real ``optax.chain``; its ``transform`` attribute is the gradstep
transform (usable with :class:`gradstep.Optimizer` on NumPy arrays).

What differs from optax, on purpose:

- The state is gradstep's: a dict named after the stages
  (``state["scale_by_adam"]["mu"]``), not optax's tuple of NamedTuples.
- Hyperparameters are Python numbers or schedules, validated when the optimizer is
  made; a per-step value is passed to ``update`` by its gradstep name
  (``update(g, s, p, learning_rate=lr)``) or injected with
  :func:`inject_hyperparams`.
- ``mu_dtype``/``accumulator_dtype`` other than ``None`` and ``rmsprop``'s
  ``bias_correction=True`` are refused (gradstep keeps state in the parameters'
  dtype and has no bias-corrected RMSProp); no argument is accepted and ignored.
- Schedules are gradstep schedules (Python functions of the step count); called
  with a traced count they evaluate on the host, so they also work inside real
  optax.

Mapping (optax name -> gradstep):

- ``adam`` -> ``scale_by_adam(eps_root=...)`` + learning rate (``epsilon_placement=
  "outside"``); ``nesterov=True`` and ``nadam`` -> the Nesterov form of
  :math:`\hat m` where the rules provide it.
- ``adamw`` -> ``scale_by_adam`` + decoupled ``add_decayed_weights(mask)`` + learning rate.
- ``amsgrad`` -> ``scale_by_adam(amsgrad="corrected")``.
- ``sgd`` -> ``sgd`` / ``momentum`` / ``nesterov_momentum`` with ``lr_in_buffer=False``.
- ``rmsprop`` -> ``scale_by_rms`` (``eps_in_sqrt`` = ``epsilon_placement``), learning
  rate, then momentum (learning rate inside the buffer, as optax).
- ``adagrad`` -> ``scale_by_adagrad(initial_accumulator_value, "inside")``.
- ``adadelta`` -> coupled decay + ``scale_by_adadelta`` (+ learning rate if given:
  with optax's default ``learning_rate=None`` the update is the *ascent* direction,
  exactly as optax returns it).
- ``adamax`` -> ``scale_by_adamax(epsilon_placement="in_max")``.
- ``clip_by_global_norm``, ``clip``, ``scale``, ``scale_by_learning_rate``,
  ``add_decayed_weights``, ``trace``, ``scale_by_adam``, ``scale_by_rms``,
  ``identity``, ``chain``, ``masked``, ``multi_transform``/``partition``,
  ``apply_if_finite`` -> the gradstep stage or combinator of the same meaning.
- Schedules: ``constant_schedule``, ``linear_schedule``, ``polynomial_schedule``,
  ``cosine_decay_schedule``, ``warmup_cosine_decay_schedule``,
  ``warmup_constant_schedule``, ``exponential_decay``,
  ``piecewise_constant_schedule``, ``join_schedules``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import schedules as _sched
from .._core.combine import masked as _masked
from .._core.combine import partition as _partition
from .._core.stages import add_decayed_weights as _add_decayed_weights
from .._core.stages import rule as _rule
from .._core.stages import scale as _scale
from .._core.stages import scale_by_learning_rate as _scale_by_lr
from .._core.transform import Transform
from .._core.transform import chain as _chain
from .._core.transform import identity as _identity
from .._core.validate import BOOL, Interval, check, decay_rate, hyperparams, nonnegative
from ..jax import GradstepTransformation, apply_updates, from_optax, to_optax
from ..rules.adadelta import scale_by_adadelta as _scale_by_adadelta
from ..rules.adagrad import scale_by_adagrad as _scale_by_adagrad
from ..rules.adam import scale_by_adam as _scale_by_adam
from ..rules.adamax import scale_by_adamax as _scale_by_adamax
from ..rules.rmsprop import scale_by_rms as _scale_by_rms
from ..rules.sgd import apply_momentum, apply_nesterov_momentum
from ..transforms.clipping import clip as _clip
from ..transforms.clipping import clip_by_global_norm as _clip_by_global_norm
from ..transforms.nonfinite import skip_nonfinite as _skip_nonfinite

_LR = nonnegative(schedulable=True)
_DECAY = decay_rate()
_EPS = nonnegative()
_MOMENTUM = Interval(0.0, 1.0)
_WD = nonnegative(schedulable=True)

__all__ = [
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "InjectHyperparamsState",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "add_decayed_weights",
    "amsgrad",
    "apply_if_finite",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "identity",
    "inject_hyperparams",
    "join_schedules",
    "lamb",
    "lars",
    "lion",
    "linear_schedule",
    "masked",
    "multi_transform",
    "nadam",
    "nadamw",
    "partition",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "radam",
    "rmsprop",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "sgd",
    "trace",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
]

GradientTransformation = GradstepTransformation
GradientTransformationExtraArgs = GradstepTransformation


def _wrap(transform: Transform, **names: str) -> GradstepTransformation:
    """``transform`` as an optax transformation; ``names`` maps optax's argument
    names to the gradstep hyperparameters they set (for :func:`inject_hyperparams`)."""
    out = to_optax(transform)
    out.hyperparam_names = names
    return out


_ADAM_NAMES = {"b1": "beta1", "b2": "beta2"}


def _stage(t: Any) -> Transform:
    """A gradstep stage from a compat object, a gradstep transform or an optax one."""
    if isinstance(t, Transform):
        return t
    return from_optax(t)


def _no_dtype(owner: str, name: str, value: Any) -> None:
    if value is not None:
        raise ValueError(
            f"{owner}: invalid {name}={value!r}; valid values: None (gradstep keeps "
            "every state slot in its parameter's dtype)"
        )


# -- optimizers ---------------------------------------------------------------------


def _adam_direction(b1, b2, eps, eps_root, nesterov: bool, owner: str, amsgrad=False):
    if nesterov:
        return _nesterov_adam(b1, b2, eps, eps_root, owner)
    return _scale_by_adam(b1, b2, eps, eps_root=eps_root, amsgrad=amsgrad)


def _nesterov_adam(b1, b2, eps, eps_root, owner: str) -> Transform:
    r"""optax's Nesterov form of Adam (``nadam``): gradstep's ``scale_by_nadam`` with
    a constant :math:`\beta_1` (``schedule_decay=None``)."""
    from ..rules.nadam import scale_by_nadam

    return scale_by_nadam(b1, b2, eps, eps_root=eps_root, schedule_decay=None)


@hyperparams(learning_rate=_LR, b1=_DECAY, b2=_DECAY, eps=_EPS, eps_root=_EPS, nesterov=BOOL)
def adam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradstepTransformation:
    """optax's ``adam``: :func:`gradstep.adam` with ``eps_root`` (epsilon outside the
    root on the bias-corrected scale, ``eps_root`` inside it)."""
    _no_dtype("adam", "mu_dtype", mu_dtype)
    return _wrap(
        _rule(
            "adam",
            _adam_direction(b1, b2, eps, eps_root, nesterov, "adam"),
            _scale_by_lr(learning_rate),
        ),
        **_ADAM_NAMES,
    )


@hyperparams(
    learning_rate=_LR,
    b1=_DECAY,
    b2=_DECAY,
    eps=_EPS,
    eps_root=_EPS,
    weight_decay=_WD,
    nesterov=BOOL,
)
def adamw(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
) -> GradstepTransformation:
    """optax's ``adamw``: Adam, then decoupled decay :math:`\\lambda w` (restricted to
    ``mask``), then the learning rate."""
    _no_dtype("adamw", "mu_dtype", mu_dtype)
    return _wrap(
        _rule(
            "adamw",
            _adam_direction(b1, b2, eps, eps_root, nesterov, "adamw"),
            _add_decayed_weights(weight_decay, mask),
            _scale_by_lr(learning_rate),
        ),
        **_ADAM_NAMES,
    )


@hyperparams(learning_rate=_LR, b1=_DECAY, b2=_DECAY, eps=_EPS, eps_root=_EPS)
def amsgrad(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
) -> GradstepTransformation:
    """optax's ``amsgrad``: the maximum is kept of the bias-corrected :math:`\\hat v`
    (``amsgrad="corrected"``)."""
    _no_dtype("amsgrad", "mu_dtype", mu_dtype)
    return _wrap(
        _rule(
            "amsgrad",
            _scale_by_adam(b1, b2, eps, eps_root=eps_root, amsgrad="corrected"),
            _scale_by_lr(learning_rate),
        ),
        **_ADAM_NAMES,
    )


@hyperparams(learning_rate=_LR, nesterov=BOOL)
def sgd(
    learning_rate: Any,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradstepTransformation:
    """optax's ``sgd``: :math:`b \\leftarrow g + \\mu b`, :math:`u = -\\eta b` (or
    :math:`-\\eta(g + \\mu b)` with ``nesterov``), the learning rate outside the buffer."""
    _no_dtype("sgd", "accumulator_dtype", accumulator_dtype)
    if momentum is not None:
        check("sgd", "momentum", momentum, _MOMENTUM)
    if momentum is None:
        if nesterov:
            raise ValueError(
                "sgd: invalid nesterov=True with momentum=None; valid values: nesterov "
                "only together with a momentum"
            )
        return _wrap(_rule("sgd", _scale_by_lr(learning_rate)))
    trace_ = (apply_nesterov_momentum if nesterov else apply_momentum)(momentum)
    return _wrap(_rule("sgd", trace_, _scale_by_lr(learning_rate)))


@hyperparams(
    learning_rate=_LR,
    decay=Interval(0.0, 1.0),
    eps=_EPS,
    initial_scale=nonnegative(),
    eps_in_sqrt=BOOL,
    centered=BOOL,
    nesterov=BOOL,
    bias_correction=BOOL,
)
def rmsprop(
    learning_rate: Any,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradstepTransformation:
    """optax's ``rmsprop``: :func:`gradstep.rules.scale_by_rms`, the learning rate,
    then momentum on the learning-rate-scaled steps."""
    if momentum is not None:
        check("rmsprop", "momentum", momentum, _MOMENTUM)
    if bias_correction:
        raise NotImplementedError(
            "rmsprop: bias_correction=True (optax's bias-corrected RMSProp) has no gradstep rule"
        )
    if momentum is None and nesterov:
        raise ValueError(
            "rmsprop: invalid nesterov=True with momentum=None; valid values: nesterov "
            "only together with a momentum"
        )
    direction = _scale_by_rms(
        decay,
        eps,
        centered=centered,
        epsilon_placement="inside" if eps_in_sqrt else "outside",
        initial_scale=initial_scale,
    )
    trace_ = None
    if momentum is not None:
        trace_ = (apply_nesterov_momentum if nesterov else apply_momentum)(momentum)
    return _wrap(_rule("rmsprop", direction, _scale_by_lr(learning_rate), trace_), decay="rho")


@hyperparams(learning_rate=_LR, initial_accumulator_value=nonnegative(), eps=_EPS)
def adagrad(
    learning_rate: Any, initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> GradstepTransformation:
    """optax's ``adagrad``: :math:`a \\leftarrow a + g^2`, :math:`u = -\\eta g /
    \\sqrt{a + \\epsilon}` (the accumulator starts at 0.1)."""
    if initial_accumulator_value == 0 and eps == 0:
        raise ValueError(
            "adagrad: invalid eps=0 with initial_accumulator_value=0; valid values: a "
            "positive eps or initial value (optax masks 0/0 to 0, gradstep does not "
            "special-case it)"
        )
    direction = _scale_by_adagrad(
        eps, initial_accumulator_value=initial_accumulator_value, epsilon_placement="inside"
    )
    return _wrap(_rule("adagrad", direction, _scale_by_lr(learning_rate)))


def adadelta(
    learning_rate: Any = None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
) -> GradstepTransformation:
    """optax's ``adadelta``: coupled decay, Zeiler's step, then the learning rate.

    With optax's default ``learning_rate=None`` there is no learning-rate stage and
    the returned update is the ascent direction :math:`+\\Delta` (optax's behaviour,
    reproduced); pass ``learning_rate=1.0`` to descend.
    """
    if learning_rate is not None:
        check("adadelta", "learning_rate", learning_rate, _LR)
    check("adadelta", "rho", rho, Interval(0.0, 1.0))
    check("adadelta", "eps", eps, _EPS)
    check("adadelta", "weight_decay", weight_decay, nonnegative())
    if weight_decay_mask is not None and weight_decay == 0:
        raise ValueError(
            "adadelta: invalid weight_decay_mask with weight_decay=0; valid values: a "
            "mask only together with a weight_decay > 0"
        )
    return _wrap(
        _rule(
            "adadelta",
            _add_decayed_weights(weight_decay, weight_decay_mask) if weight_decay else None,
            _scale_by_adadelta(rho, eps),
            None if learning_rate is None else _scale_by_lr(learning_rate),
        )
    )


@hyperparams(learning_rate=_LR, b1=_DECAY, b2=_DECAY, eps=_EPS)
def adamax(
    learning_rate: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradstepTransformation:
    """optax's ``adamax``: :math:`u \\leftarrow \\max(\\beta_2 u, |g| + \\epsilon)`
    (``epsilon_placement="in_max"``), :math:`-\\eta \\hat m / u`."""
    return _wrap(
        _rule(
            "adamax",
            _scale_by_adamax(b1, b2, eps, epsilon_placement="in_max"),
            _scale_by_lr(learning_rate),
        ),
        **_ADAM_NAMES,
    )


@hyperparams(learning_rate=_LR, b1=_DECAY, b2=_DECAY, eps=_EPS, eps_root=_EPS, nesterov=BOOL)
def nadam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradstepTransformation:
    r"""optax's ``nadam``: :math:`\hat m = \beta_1 m/(1-\beta_1^{t+1}) + (1-\beta_1) g
    /(1-\beta_1^t)` with a constant :math:`\beta_1` (gradstep's ``scale_by_nadam``
    with ``schedule_decay=None``); ``nesterov=False`` is :func:`adam`."""
    _no_dtype("nadam", "mu_dtype", mu_dtype)
    return _wrap(
        _rule(
            "nadam",
            _adam_direction(b1, b2, eps, eps_root, nesterov, "nadam"),
            _scale_by_lr(learning_rate),
        ),
        **_ADAM_NAMES,
    )


@hyperparams(
    learning_rate=_LR,
    b1=_DECAY,
    b2=_DECAY,
    eps=_EPS,
    eps_root=_EPS,
    threshold=Interval(4.0, lo_open=True),
    nesterov=BOOL,
)
def radam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradstepTransformation:
    r"""optax's ``radam``: rectified when :math:`\rho_t \ge` ``threshold``
    (``threshold_rule="greater_equal"``), epsilon on the bias-corrected root
    (``epsilon_placement="outside"``). ``threshold`` must exceed 4: the rectification
    takes :math:`\sqrt{\rho_t - 4}` (optax accepts lower values and gives NaN)."""
    from ..rules.radam import scale_by_radam

    direction = scale_by_radam(
        b1,
        b2,
        eps,
        eps_root=eps_root,
        threshold=threshold,
        threshold_rule="greater_equal",
        epsilon_placement="outside",
        nesterov=nesterov,
    )
    return _wrap(_rule("radam", direction, _scale_by_lr(learning_rate)), **_ADAM_NAMES)


@hyperparams(learning_rate=_LR, b1=Interval(0.0, 1.0), b2=Interval(0.0, 1.0), weight_decay=_WD)
def lion(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-3,
    mask: Any = None,
) -> GradstepTransformation:
    r"""optax's ``lion``: :math:`-\eta(\mathrm{sign}((1-\beta_1) g + \beta_1 m) +
    \lambda w)`, :math:`m \leftarrow (1-\beta_2) g + \beta_2 m` (default decay 1e-3)."""
    from ..rules.lion import scale_by_lion

    _no_dtype("lion", "mu_dtype", mu_dtype)
    return _wrap(
        _rule(
            "lion",
            scale_by_lion(b1, b2),
            _add_decayed_weights(weight_decay, mask),
            _scale_by_lr(learning_rate),
        ),
        **_ADAM_NAMES,
    )


@hyperparams(learning_rate=_LR, b1=_DECAY, b2=_DECAY, eps=_EPS, eps_root=_EPS, weight_decay=_WD)
def lamb(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> GradstepTransformation:
    r"""optax's ``lamb``: Adam's direction plus :math:`\lambda w`, scaled per tensor by
    :math:`\|w\| / \|u\|` (1 when either is 0), then the learning rate."""
    from ..rules.layerwise import scale_by_trust_ratio

    return _wrap(
        _rule(
            "lamb",
            _scale_by_adam(b1, b2, eps, eps_root=eps_root),
            _add_decayed_weights(weight_decay, mask),
            scale_by_trust_ratio(),
            _scale_by_lr(learning_rate),
        ),
        **_ADAM_NAMES,
    )


def _all_or(mask: Any) -> Any:
    """optax's ``True`` mask (every leaf) as gradstep's ``None``."""
    return None if mask is True else mask


@hyperparams(
    learning_rate=_LR,
    weight_decay=_WD,
    trust_coefficient=Interval(0.0, lo_open=True),
    eps=_EPS,
    momentum=_MOMENTUM,
    nesterov=BOOL,
)
def lars(
    learning_rate: Any,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: Any = True,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> GradstepTransformation:
    r"""optax's ``lars``: :math:`a = g + \lambda w`, scaled per tensor by
    :math:`\eta_c \|w\| / (\|a\| + \epsilon)` (1 when either norm is 0), times
    :math:`-\eta`, then momentum on the scaled steps (gradstep's ``lars(form="optax")``
    stages)."""
    from ..rules.layerwise import scale_by_trust_ratio

    trace_ = (apply_nesterov_momentum if nesterov else apply_momentum)(momentum)
    return _wrap(
        _rule(
            "lars",
            _add_decayed_weights(weight_decay, _all_or(weight_decay_mask)),
            scale_by_trust_ratio(trust_coefficient, eps, mask=_all_or(trust_ratio_mask)),
            _scale_by_lr(learning_rate),
            trace_,
        ),
    )


@hyperparams(
    learning_rate=_LR,
    b1=_DECAY,
    b2=_DECAY,
    eps=_EPS,
    eps_root=_EPS,
    weight_decay=_WD,
    nesterov=BOOL,
)
def nadamw(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = True,
) -> GradstepTransformation:
    """optax's ``nadamw``: :func:`adamw` with the Nesterov direction of :func:`nadam`."""
    return adamw(
        learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov
    )


@hyperparams(learning_rate=_LR, b1=_DECAY, b2=_DECAY, eps=_EPS, weight_decay=_WD)
def adamaxw(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: Any = 1e-4,
    mask: Any = None,
) -> GradstepTransformation:
    """optax's ``adamaxw``: AdaMax's direction, then decoupled decay :math:`\\lambda w`
    (restricted to ``mask``), then the learning rate."""
    return _wrap(
        _rule(
            "adamaxw",
            _scale_by_adamax(b1, b2, eps, epsilon_placement="in_max"),
            _add_decayed_weights(weight_decay, mask),
            _scale_by_lr(learning_rate),
        ),
        **_ADAM_NAMES,
    )


# -- transforms ---------------------------------------------------------------------


def chain(*args: Any) -> GradstepTransformation:
    """optax's ``chain``: one gradstep chain of the given transforms (real optax
    transforms become stages via :func:`gradstep.jax.from_optax`)."""
    return _wrap(_chain(*[_stage(t) for t in args]))


@hyperparams(max_norm=Interval(0.0, lo_open=True))
def clip_by_global_norm(max_norm: float) -> GradstepTransformation:
    """optax's ``clip_by_global_norm``: unchanged when the global norm :math:`N` is
    below ``max_norm``, else everything times ``max_norm / N``."""
    return _wrap(_clip_by_global_norm(max_norm))


@hyperparams(max_delta=nonnegative())
def clip(max_delta: float) -> GradstepTransformation:
    """optax's ``clip``: each element limited to ``[-max_delta, max_delta]``."""
    return _wrap(_clip(max_delta))


def scale(step_size: Any) -> GradstepTransformation:
    """optax's ``scale``: multiply the updates by ``step_size``."""
    return _wrap(_scale(step_size))


def scale_by_learning_rate(learning_rate: Any, *, flip_sign: bool = True) -> GradstepTransformation:
    """optax's ``scale_by_learning_rate``: times :math:`-\\eta` (:math:`\\eta` without
    ``flip_sign``); a schedule is evaluated at the stage's own count from 0."""
    check("scale_by_learning_rate", "learning_rate", learning_rate, _LR)
    check("scale_by_learning_rate", "flip_sign", flip_sign, BOOL)
    return _wrap(_scale_by_lr(learning_rate) if flip_sign else _scale(learning_rate))


@hyperparams(weight_decay=_WD)
def add_decayed_weights(weight_decay: Any = 0.0, mask: Any = None) -> GradstepTransformation:
    """optax's ``add_decayed_weights``: :math:`u + \\lambda w` on the leaves of ``mask``."""
    return _wrap(_add_decayed_weights(weight_decay, mask))


@hyperparams(decay=_MOMENTUM, nesterov=BOOL)
def trace(
    decay: float, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradstepTransformation:
    """optax's ``trace``: :math:`b \\leftarrow u + \\mu b`, output :math:`b` (or
    :math:`u + \\mu b` with ``nesterov``)."""
    _no_dtype("trace", "accumulator_dtype", accumulator_dtype)
    return _wrap((apply_nesterov_momentum if nesterov else apply_momentum)(decay), decay="momentum")


@hyperparams(b1=_DECAY, b2=_DECAY, eps=_EPS, eps_root=_EPS, nesterov=BOOL)
def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradstepTransformation:
    """optax's ``scale_by_adam``: Adam's direction, no learning rate."""
    _no_dtype("scale_by_adam", "mu_dtype", mu_dtype)
    return _wrap(_adam_direction(b1, b2, eps, eps_root, nesterov, "scale_by_adam"), **_ADAM_NAMES)


@hyperparams(
    decay=Interval(0.0, 1.0),
    eps=_EPS,
    initial_scale=nonnegative(),
    eps_in_sqrt=BOOL,
    bias_correction=BOOL,
)
def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradstepTransformation:
    """optax's ``scale_by_rms``: :math:`g / \\sqrt{\\nu + \\epsilon}`."""
    if bias_correction:
        raise NotImplementedError("scale_by_rms: bias_correction=True has no gradstep rule")
    return _wrap(
        _scale_by_rms(
            decay,
            eps,
            epsilon_placement="inside" if eps_in_sqrt else "outside",
            initial_scale=initial_scale,
        ),
        decay="rho",
    )


def identity() -> GradstepTransformation:
    """optax's ``identity``: updates unchanged, no state."""
    return _wrap(_identity())


def masked(inner: Any, mask: Any) -> GradstepTransformation:
    """optax's ``masked``: ``inner`` on the leaves where ``mask`` is true; the other
    updates pass through unchanged."""
    return _wrap(_masked(_stage(inner), mask))


def multi_transform(
    transforms: Mapping[Hashable, Any], param_labels: Any
) -> GradstepTransformation:
    """optax's ``multi_transform``/``partition``: ``transforms[label]`` on the leaves
    labelled ``label``."""
    return _wrap(_partition({k: _stage(t) for k, t in transforms.items()}, param_labels))


partition = multi_transform


def apply_if_finite(inner: Any, max_consecutive_errors: int) -> GradstepTransformation:
    """optax's ``apply_if_finite``: a step with a non-finite gradient gives zero
    updates and keeps ``inner``'s state, unless it is more than
    ``max_consecutive_errors`` such steps in a row. (optax tests the *updates* it
    receives; so does this, since it wraps the transform at the same place.)"""
    return _wrap(_skip_nonfinite(_stage(inner), max_consecutive_errors))


# -- inject_hyperparams ---------------------------------------------------------------


class InjectHyperparamsState(NamedTuple):
    """optax's state of :func:`inject_hyperparams`: ``hyperparams`` may be changed
    between steps (``state.hyperparams["learning_rate"] = 0.01``)."""

    count: Any
    hyperparams: dict
    inner_state: Any


def inject_hyperparams(inner_factory: Callable, static_args: Any = (), hyperparam_dtype=None):
    """optax's ``inject_hyperparams``: numeric arguments become state.

    Each numeric argument (not in ``static_args``) that sets a hyperparameter of the
    gradstep transform (``learning_rate``, ``b1``, ``b2``, ``momentum``,
    ``weight_decay``, ``decay``, ...) is kept in ``state.hyperparams`` under optax's
    name, as an array of ``hyperparam_dtype`` (default: the parameters' float
    dtype), and passed to every step as an override; a schedule given for one is
    evaluated at ``state.count`` (from 0), as optax does. The other arguments (such
    as ``eps``) are fixed when the optimizer is made; a key of ``state.hyperparams``
    that sets nothing is refused at the next update.
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)

    def factory(*args: Any, **kwargs: Any) -> GradstepTransformation:
        import inspect

        bound = inspect.signature(inner_factory).bind(*args, **kwargs)
        bound.apply_defaults()
        opt = inner_factory(*bound.args, **bound.kwargs)
        known = opt.transform.hyperparameters()
        names = getattr(opt, "hyperparam_names", {})
        injectable = {
            k: names.get(k, k)
            for k in bound.arguments
            if k not in static and names.get(k, k) in known
        }
        numeric = {
            k: v
            for k, v in bound.arguments.items()
            if k in injectable and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        scheduled = {k: v for k, v in bound.arguments.items() if k in injectable and callable(v)}

        def init(params):
            dtype = hyperparam_dtype or _float_of(params)
            return InjectHyperparamsState(
                count=jnp.zeros((), jnp.int32),
                hyperparams={k: jnp.asarray(v, dtype) for k, v in numeric.items()},
                inner_state=opt.init(params),
            )

        def update(updates, state, params=None, **extra):
            unknown = set(state.hyperparams) - set(injectable)
            if unknown:
                raise ValueError(
                    f"inject_hyperparams: state.hyperparams has {sorted(unknown)}, which "
                    f"set nothing; injectable: {sorted(injectable)}"
                )
            overrides = {injectable[k]: v for k, v in state.hyperparams.items()}
            for name, schedule in scheduled.items():
                overrides[injectable[name]] = jnp.asarray(schedule(state.count))
            updates, inner = opt.update(updates, state.inner_state, params, **extra, **overrides)
            count = jnp.where(state.count < np.iinfo(np.int32).max, state.count + 1, state.count)
            return updates, InjectHyperparamsState(count, state.hyperparams, inner)

        out = GradstepTransformation(init, update)
        out.transform = opt.transform
        out.engine = opt.engine
        out.hyperparam_names = names
        return out

    return factory


def _float_of(params: Any):
    leaves = jax.tree_util.tree_leaves(params)
    for x in leaves:
        if jnp.issubdtype(jnp.result_type(x), jnp.floating):
            return jnp.result_type(x)
    return jnp.float32


# -- schedules ----------------------------------------------------------------------


class Schedule(_sched.Schedule):
    """A gradstep schedule that also accepts a traced step count (evaluated on the
    host through a callback), so it can be handed to real optax too."""

    evaluate_on_host = True

    def __call__(self, count: Any) -> Any:
        if isinstance(count, jax.core.Tracer):
            return _host_schedule(self, count)
        return super().__call__(count)


def _host_schedule(schedule: Schedule, count):
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

    def host(c):
        c = np.asarray(c)
        out = np.vectorize(lambda n: schedule._fn(int(n)), otypes=[np.float64])(c)
        return out.astype(dtype)

    return jax.pure_callback(
        host, jax.ShapeDtypeStruct(jnp.shape(count), dtype), count, vmap_method="expand_dims"
    )


def _as_compat(s: _sched.Schedule) -> Schedule:
    out = Schedule(s._fn, s.description)
    return out


def _constant(value: float) -> Schedule:
    return Schedule(lambda t: value, f"constant({value})")


def constant_schedule(value: float) -> Schedule:
    """optax's ``constant_schedule``."""
    return _as_compat(_sched.constant(value))


def polynomial_schedule(
    init_value: float,
    end_value: float,
    power: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """optax's ``polynomial_schedule``: ``transition_steps <= 0`` gives the constant
    ``init_value`` and a negative ``transition_begin`` counts as 0, as in optax."""
    if transition_steps <= 0:
        return _constant(init_value)
    return _as_compat(
        _sched.polynomial_decay(
            init_value, end_value, power, int(transition_steps), max(int(transition_begin), 0)
        )
    )


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """optax's ``linear_schedule``: ``polynomial_schedule`` with power 1."""
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    """optax's ``cosine_decay_schedule``; ``decay_steps`` must be positive."""
    if not decay_steps > 0:
        raise ValueError(
            f"cosine_decay_schedule: invalid decay_steps={decay_steps!r}; valid values: "
            "a positive integer"
        )
    return _as_compat(_sched.cosine_decay(init_value, int(decay_steps), alpha, exponent))


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule:
    """optax's ``warmup_cosine_decay_schedule``: linear ``init -> peak`` over
    ``warmup_steps``, then cosine to ``end_value``; ``decay_steps`` includes the warm-up."""
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )


def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int) -> Schedule:
    """optax's ``warmup_constant_schedule``: linear ``init -> peak``, then constant."""
    return join_schedules(
        [linear_schedule(init_value, peak_value, warmup_steps), constant_schedule(peak_value)],
        [warmup_steps],
    )


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """optax's ``exponential_decay``: ``transition_steps <= 0`` or ``decay_rate == 0``
    give the constant ``init_value``; a negative ``transition_begin`` counts as 0."""
    if transition_steps <= 0 or decay_rate == 0:
        return _constant(init_value)
    return _as_compat(
        _sched.exponential_decay(
            init_value,
            int(transition_steps),
            decay_rate,
            max(int(transition_begin), 0),
            staircase,
            end_value,
        )
    )


def piecewise_constant_schedule(
    init_value: float, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """optax's ``piecewise_constant_schedule``: from each boundary on, the value is
    multiplied by its scale."""
    items = sorted((boundaries_and_scales or {}).items())
    if any(scale_ < 0 for _, scale_ in items):
        raise ValueError(
            "piecewise_constant_schedule: invalid boundaries_and_scales; valid values: "
            "non-negative scale factors"
        )
    if not items:
        return _constant(init_value)
    values = [init_value]
    for _, scale_ in items:
        values.append(values[-1] * scale_)
    return _as_compat(_sched.piecewise_constant([int(b) for b, _ in items], values))


def join_schedules(schedules: list[Callable], boundaries: list[int]) -> Schedule:
    """optax's ``join_schedules``: schedule ``i`` from ``boundaries[i-1]`` on, with the
    count since that boundary."""
    return _as_compat(_sched.join(list(schedules), [int(b) for b in boundaries]))
