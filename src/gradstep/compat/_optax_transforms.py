"""optax 0.2.8's gradient transformations and combinators, and
``inject_hyperparams``, mapped onto gradstep stages."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._core.combine import masked as _masked
from .._core.combine import partition as _partition
from .._core.stages import add_decayed_weights as _add_decayed_weights
from .._core.stages import scale as _scale
from .._core.stages import scale_by_learning_rate as _scale_by_lr
from .._core.transform import chain as _chain
from .._core.transform import identity as _identity
from .._core.validate import BOOL, Interval, check, hyperparams, nonnegative
from ..jax import GradstepTransformation
from ..rules.rmsprop import scale_by_rms as _scale_by_rms
from ..rules.sgd import apply_momentum, apply_nesterov_momentum
from ..transforms.clipping import clip as _clip
from ..transforms.clipping import clip_by_global_norm as _clip_by_global_norm
from ..transforms.nonfinite import skip_nonfinite as _skip_nonfinite
from ._optax_base import ADAM_NAMES, DECAY, EPS, LR, MOMENTUM, WD, as_stage, stored_in, wrap
from ._optax_optimizers import adam_direction

# -- transforms ---------------------------------------------------------------------


def chain(*args: Any) -> GradstepTransformation:
    """optax's ``chain``: one gradstep chain of the given transforms (real optax
    transforms become stages via :func:`gradstep.jax.from_optax`)."""
    return wrap(_chain(*[as_stage(t) for t in args]))


@hyperparams(max_norm=Interval(0.0, lo_open=True))
def clip_by_global_norm(max_norm: float) -> GradstepTransformation:
    """optax's ``clip_by_global_norm``: unchanged when the global norm :math:`N` is
    below ``max_norm``, else everything times ``max_norm / N``."""
    return wrap(_clip_by_global_norm(max_norm))


@hyperparams(max_delta=nonnegative())
def clip(max_delta: float) -> GradstepTransformation:
    """optax's ``clip``: each element limited to ``[-max_delta, max_delta]``."""
    return wrap(_clip(max_delta))


def scale(step_size: Any) -> GradstepTransformation:
    """optax's ``scale``: multiply the updates by ``step_size``."""
    return wrap(_scale(step_size))


def scale_by_learning_rate(learning_rate: Any, *, flip_sign: bool = True) -> GradstepTransformation:
    """optax's ``scale_by_learning_rate``: times :math:`-\\eta` (:math:`\\eta` without
    ``flip_sign``); a schedule is evaluated at the stage's own count from 0."""
    check("scale_by_learning_rate", "learning_rate", learning_rate, LR)
    check("scale_by_learning_rate", "flip_sign", flip_sign, BOOL)
    return wrap(_scale_by_lr(learning_rate) if flip_sign else _scale(learning_rate))


@hyperparams(weight_decay=WD)
def add_decayed_weights(weight_decay: Any = 0.0, mask: Any = None) -> GradstepTransformation:
    """optax's ``add_decayed_weights``: :math:`u + \\lambda w` on the leaves of ``mask``."""
    return wrap(_add_decayed_weights(weight_decay, mask))


@hyperparams(decay=MOMENTUM, nesterov=BOOL)
def trace(
    decay: float, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradstepTransformation:
    """optax's ``trace``: :math:`b \\leftarrow u + \\mu b`, output :math:`b` (or
    :math:`u + \\mu b` with ``nesterov``)."""
    stage = (apply_nesterov_momentum if nesterov else apply_momentum)(decay)
    stage = stored_in("trace", "accumulator_dtype", accumulator_dtype, stage, "velocity")
    return wrap(stage, decay="momentum")


@hyperparams(b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS, nesterov=BOOL)
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
    direction = adam_direction(b1, b2, eps, eps_root, nesterov, "scale_by_adam")
    direction = stored_in("scale_by_adam", "mu_dtype", mu_dtype, direction, "mu")
    return wrap(direction, **ADAM_NAMES)


@hyperparams(
    decay=Interval(0.0, 1.0),
    eps=EPS,
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
    return wrap(
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
    return wrap(_identity())


def masked(inner: Any, mask: Any) -> GradstepTransformation:
    """optax's ``masked``: ``inner`` on the leaves where ``mask`` is true; the other
    updates pass through unchanged."""
    return wrap(_masked(as_stage(inner), mask))


def multi_transform(
    transforms: Mapping[Hashable, Any], param_labels: Any
) -> GradstepTransformation:
    """optax's ``multi_transform``/``partition``: ``transforms[label]`` on the leaves
    labelled ``label``."""
    return wrap(_partition({k: as_stage(t) for k, t in transforms.items()}, param_labels))


partition = multi_transform


def apply_if_finite(inner: Any, max_consecutive_errors: int) -> GradstepTransformation:
    """optax's ``apply_if_finite``: a step with a non-finite gradient gives zero
    updates and keeps ``inner``'s state, unless it is more than
    ``max_consecutive_errors`` such steps in a row. (optax tests the *updates* it
    receives; so does this, since it wraps the transform at the same place.)"""
    return wrap(_skip_nonfinite(as_stage(inner), max_consecutive_errors))


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
