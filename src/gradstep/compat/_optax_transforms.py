"""optax 0.2.8's gradient transformations and combinators, and
``inject_hyperparams``, mapped onto gradstep stages."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.combine import masked as _masked
from .._core.combine import partition as _partition
from .._core.stages import add_decayed_weights as _add_decayed_weights
from .._core.stages import scale as _scale
from .._core.stages import scale_by_learning_rate as _scale_by_lr
from .._core.transform import Transform
from .._core.transform import chain as _chain
from .._core.transform import identity as _identity
from .._core.validate import BOOL, Interval, check, hyperparams, nonnegative
from ..jax import GradstepTransformation
from ..rules.rmsprop import scale_by_rms as _scale_by_rms
from ..rules.sgd import apply_momentum, apply_nesterov_momentum
from ..transforms.clipping import clip as _clip
from ..transforms.clipping import clip_by_global_norm as _clip_by_global_norm
from ..transforms.nonfinite import skip_nonfinite as _skip_nonfinite
from ._optax_base import (
    ADAM_NAMES,
    DECAY,
    EPS,
    LR,
    MOMENTUM,
    WD,
    as_stage,
    concrete,
    injectable,
    stored_in,
    with_update,
    wrap,
)
from ._optax_layouts import ADAM_STATE, TRACE_STATE, decay_state, rms_state
from ._optax_optimizers import adam_direction
from ._optax_state import (
    EMPTY,
    ApplyIfFinite,
    InjectStatefulHyperparamsState,
    Masked,
    Partition,
    Seq,
    layout_of,
    safe_increment,
    schedule_state,
    state_class,
)

try:  # real optax's factories may return transformations without extra args
    from optax import GradientTransformationExtraArgs
except ImportError:  # pragma: no cover - without optax
    GradientTransformationExtraArgs = GradstepTransformation

# -- transforms ---------------------------------------------------------------------


def chain(*args: Any) -> GradstepTransformation:
    """optax's ``chain``: one gradstep chain of the given transforms (real optax
    transforms become stages via :func:`gradstep.jax.from_optax`)."""
    core = _chain(*[as_stage(t) for t in args])
    return wrap(core, Seq([(i, layout_of(t)) for i, t in enumerate(args)]))


@hyperparams(max_norm=Interval(0.0, lo_open=True))
def clip_by_global_norm(max_norm: float) -> GradstepTransformation:
    """optax's ``clip_by_global_norm``: unchanged when the global norm :math:`N` is
    below ``max_norm``, else everything times ``max_norm / N``."""
    return wrap(_clip_by_global_norm(max_norm), EMPTY)


@hyperparams(max_delta=nonnegative())
def clip(max_delta: float) -> GradstepTransformation:
    """optax's ``clip``: each element limited to ``[-max_delta, max_delta]``."""
    return wrap(_clip(max_delta), EMPTY)


def scale(step_size: Any) -> GradstepTransformation:
    """optax's ``scale``: multiply the updates by ``step_size``."""
    return wrap(_scale(step_size), schedule_state(step_size))


def scale_by_learning_rate(
    learning_rate: Any = None, *, flip_sign: bool = True
) -> GradstepTransformation:
    """optax's ``scale_by_learning_rate``: times :math:`-\\eta` (:math:`\\eta` without
    ``flip_sign``); a schedule is evaluated at the stage's own count from 0; ``None``
    scales nothing (optax's ``identity()``)."""
    check("scale_by_learning_rate", "flip_sign", flip_sign, BOOL)
    if learning_rate is None:
        return identity()
    check("scale_by_learning_rate", "learning_rate", learning_rate, LR)
    stage = _scale_by_lr(learning_rate) if flip_sign else _scale(learning_rate)
    return wrap(stage, schedule_state(learning_rate))


@hyperparams(weight_decay=WD)
def add_decayed_weights(weight_decay: Any = 0.0, mask: Any = None) -> GradstepTransformation:
    """optax's ``add_decayed_weights``: :math:`u + \\lambda w` on the leaves of ``mask``."""
    out = wrap(_add_decayed_weights(weight_decay, mask), decay_state(weight_decay, mask))
    update = out.update

    def update_none(updates: Any, state: Any, params: Any = None, **extra: Any):
        if updates is None and params is not None:
            # optax maps the decay over the updates' leaves: no updates, no decay (a
            # schedule's count still advances, as optax's does)
            zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
            return None, update(zeros, state, params, **extra)[1]
        return update(updates, state, params, **extra)

    return with_update(out, update_none)


@hyperparams(decay=MOMENTUM, nesterov=BOOL)
def trace(
    decay: float, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradstepTransformation:
    """optax's ``trace``: :math:`b \\leftarrow u + \\mu b`, output :math:`b` (or
    :math:`u + \\mu b` with ``nesterov``)."""
    stage = (apply_nesterov_momentum if nesterov else apply_momentum)(decay)
    stage = stored_in("trace", "accumulator_dtype", accumulator_dtype, stage, "velocity")
    return wrap(stage, TRACE_STATE, decay="momentum")


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
    return wrap(direction, ADAM_STATE, **ADAM_NAMES)


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
    stage = _scale_by_rms(
        decay,
        eps,
        epsilon_placement="inside" if eps_in_sqrt else "outside",
        initial_scale=initial_scale,
        bias_correction=bias_correction,
    )
    stage = injectable(stage, epsilon=("eps_in" if eps_in_sqrt else "eps_out", EPS))
    return wrap(stage, rms_state(False, bias_correction), decay="rho", eps="epsilon")


def identity() -> GradstepTransformation:
    """optax's ``identity``: updates unchanged, no state."""
    return wrap(_identity(), EMPTY)


def _extra_args_unmasked(owner: str, mask_compatible_extra_args: Any) -> None:
    """optax's ``mask_compatible_extra_args=True`` masks the extra arguments of
    ``update`` shaped like the parameters; gradstep hands them on whole: only the
    default is taken."""
    check(owner, "mask_compatible_extra_args", mask_compatible_extra_args, BOOL)
    if mask_compatible_extra_args:
        raise ValueError(
            f"{owner}: mask_compatible_extra_args=True is not supported (gradstep hands "
            "the extra arguments of update to the inner transformations whole); valid "
            "values: False"
        )


def masked(
    inner: Any, mask: Any, *, mask_compatible_extra_args: bool = False
) -> GradstepTransformation:
    """optax's ``masked``: ``inner`` on the leaves where ``mask`` is true; the other
    updates pass through unchanged. ``inner`` sees, as in optax, the tree with
    ``MaskedNode()`` in place of what the mask left out (so does any mask, label or
    state further in, at any depth). ``mask_compatible_extra_args`` must be False."""
    _extra_args_unmasked("masked", mask_compatible_extra_args)
    return wrap(_masked(as_stage(inner), mask), Masked(layout_of(inner), mask))


def multi_transform(
    transforms: Mapping[Hashable, Any],
    param_labels: Any,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradstepTransformation:
    """optax's ``multi_transform``/``partition``: ``transforms[label]`` on the leaves
    labelled ``label`` (``mask_compatible_extra_args`` must be False)."""
    _extra_args_unmasked("multi_transform", mask_compatible_extra_args)
    core = _partition({k: as_stage(t) for k, t in transforms.items()}, param_labels)
    return wrap(core, Partition({k: layout_of(t) for k, t in transforms.items()}, param_labels))


partition = multi_transform


def apply_if_finite(inner: Any, max_consecutive_errors: int) -> GradstepTransformation:
    """optax's ``apply_if_finite``: a step with a non-finite gradient gives zero
    updates and keeps ``inner``'s state, unless it is more than
    ``max_consecutive_errors`` such steps in a row. (optax tests the *updates* it
    receives; so does this, since it wraps the transform at the same place.)"""
    core = _skip_nonfinite(as_stage(inner), max_consecutive_errors)
    return wrap(core, ApplyIfFinite(layout_of(inner)))


# -- inject_hyperparams ---------------------------------------------------------------

WrappedScheduleState = state_class("WrappedScheduleState", ("count",), "optax.schedules._inject")


class _Wrapped:
    """A schedule of the step count as optax's stateful schedule (a count of its own)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def init(self) -> Any:
        return WrappedScheduleState(jnp.zeros((), jnp.int32))

    def update(self, state: Any, **extra: Any) -> Any:
        return WrappedScheduleState(safe_increment(state.count))

    def __call__(self, state: Any, **extra: Any) -> Any:
        return self.fn(state.count)


def _convert_floats(x: Any, dtype: Any) -> Any:
    """optax's rule: a strongly typed JAX array keeps its dtype; other floating
    values become ``dtype``; anything else passes through."""
    if isinstance(x, jax.Array) and not getattr(x, "weak_type", False):
        return x
    current = x.dtype if hasattr(x, "dtype") else type(x)
    if jnp.issubdtype(current, jnp.floating):
        return jnp.asarray(x, dtype=dtype)
    return x


def _real(x: Any) -> Any:
    """The real part of a complex hyperparameter; anything else as it is."""
    return jnp.real(x) if jnp.iscomplexobj(x) else x


def _highest_dtype(params: Any, fallback: Any) -> Any:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        return fallback
    return functools.reduce(jnp.promote_types, [jnp.result_type(x) for x in leaves])


def _is_dtype(value: Any) -> bool:
    """A dtype argument such as adafactor's ``dtype_momentum=jnp.float32``: callable,
    but no schedule (optax would call it as one and inject a meaningless 0.0)."""
    if isinstance(value, type) and issubclass(value, np.generic):
        return True
    return callable(value) and isinstance(getattr(value, "dtype", None), np.dtype)


def _number(value: Any) -> Any:
    """A one-element array as a Python number (the inner optimizer is built from
    numbers; the injected arrays reach each step as overrides in their own dtype)."""
    if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0:
        return np.asarray(value).item()
    return value


def _stand_in(signature: inspect.Signature, name: str) -> Any:
    """A number to build the optimizer from in place of a traced ``name``: its
    default where that is a number, else a learning rate's usual value."""
    default = signature.parameters[name].default
    return default if isinstance(default, (int, float)) and not isinstance(default, bool) else 1e-3


def _first_value(schedule: Any) -> Any:
    """A schedule's value at its initial state, as a Python number where it is one."""
    value = np.asarray(schedule(schedule.init()))
    return value.item() if value.shape == () else value


def inject_hyperparams(
    inner_factory: Callable, static_args: str | Any = (), hyperparam_dtype: Any = None
) -> Callable:
    """optax's ``inject_hyperparams``: numeric arguments become state.

    The arguments of ``inner_factory`` are sorted as optax sorts them: those named in
    ``static_args`` and booleans stay fixed; a callable is a schedule of the step
    count (or a stateful schedule with ``init``/``update``); ``int``, ``float`` and
    arrays are numeric. The state is optax's ``InjectStatefulHyperparamsState(count,
    hyperparams, hyperparams_states, inner_state)``: ``hyperparams`` holds the
    numeric values (floats in ``hyperparam_dtype``, default the parameters' highest
    dtype; a strongly typed array keeps its own) and, after each step, the value
    each schedule gave for it; change them between steps
    (``state.hyperparams["learning_rate"] = 0.01``).

    ``inner_factory`` may be any optax factory. For a factory of this module the
    optimizer is built once and each injected value reaches the step as an override
    of the gradstep hyperparameter it sets (``learning_rate``, ``b1``/``b2``,
    ``momentum``, ``decay``, ``weight_decay``, ...); a numeric argument that sets no
    per-step hyperparameter of the rule (``eps``, ``eps_root``,
    ``initial_accumulator_value``, ...) stays fixed and is not put into
    ``hyperparams``, so changing it cannot be silently ignored (a key of
    ``state.hyperparams`` that sets nothing is refused). Any other factory (real
    optax's) is called again at every step with the current values, as optax does.
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)

    @functools.wraps(inner_factory)
    def factory(*args: Any, **kwargs: Any) -> GradstepTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        scheduled, numeric, fixed = {}, {}, {}
        for name, value in bound.arguments.items():
            if name in static or isinstance(value, bool) or _is_dtype(value):
                fixed[name] = value
            elif hasattr(value, "init") and hasattr(value, "update") and callable(value):
                scheduled[name] = value
            elif callable(value):
                scheduled[name] = _Wrapped(value)
            elif isinstance(value, (int, float, jax.Array, np.ndarray)):
                numeric[name] = value
            else:
                fixed[name] = value
        # optax builds the inner transformation from numbers: a schedule's first value
        # stands for it (the state of a stage with a number, e.g. EmptyState())
        first = {k: _first_value(f) for k, f in scheduled.items()}
        # a traced value (made under jax.jit, jax.grad, jax.vmap) has no number to
        # build from: a stand-in builds the optimizer, the value itself reaches every
        # step as an override, so derivatives and batches flow through it
        traced = {k for k, v in numeric.items() if isinstance(v, jax.core.Tracer)}
        built = {
            k: _stand_in(signature, k) if k in traced else _number(v) for k, v in numeric.items()
        }
        probe = inner_factory(**fixed, **built, **first)
        if isinstance(getattr(probe, "transform", None), Transform) and hasattr(probe, "layout"):
            names = getattr(probe, "hyperparam_names", {})
            known = probe.transform.hyperparameters()
            live = {k for k in {**numeric, **scheduled} if names.get(k, k) in known}
            if traced - live:
                raise ValueError(
                    f"inject_hyperparams: {sorted(traced - live)} of "
                    f"{getattr(inner_factory, '__name__', inner_factory)} is a traced array, "
                    f"but sets no per-step hyperparameter in gradstep, so the optimizer is "
                    f"built from its number, which a traced array does not have; traceable: "
                    f"{sorted(live)}"
                )
            numeric = {k: v for k, v in numeric.items() if k in live}
            if set(scheduled) - live:
                raise ValueError(
                    f"inject_hyperparams: {sorted(set(scheduled) - live)} of "
                    f"{getattr(inner_factory, '__name__', inner_factory)} cannot follow a "
                    f"schedule in gradstep (it sets no per-step hyperparameter); "
                    f"schedulable: {sorted(live)}"
                )

            def inner_update(updates, inner_state, params, hparams, extra):
                unknown = set(hparams) - live
                if unknown:
                    raise ValueError(
                        f"inject_hyperparams: state.hyperparams has {sorted(unknown)}, "
                        f"which set nothing; injectable: {sorted(live)}"
                    )
                # optax keeps them in the parameters' highest dtype, complex for complex
                # parameters: the rules' hyperparameters are real (the real part)
                overrides = {names.get(k, k): _real(v) for k, v in hparams.items()}
                return probe.update(updates, inner_state, params, **extra, **overrides)

        else:

            def inner_update(updates, inner_state, params, hparams, extra):
                tx = inner_factory(**fixed, **hparams)
                if isinstance(tx, GradientTransformationExtraArgs):
                    return tx.update(updates, inner_state, params, **extra)
                return tx.update(updates, inner_state, params)

        def init(params: Any) -> Any:
            params = concrete(params)
            dtype = hyperparam_dtype or _highest_dtype(params, jnp.float32)
            hparams = {k: jnp.asarray(_convert_floats(v, dtype)) for k, v in numeric.items()}
            states = {k: f.init() for k, f in scheduled.items()}
            hparams.update({k: _convert_floats(f(states[k]), dtype) for k, f in scheduled.items()})
            return InjectStatefulHyperparamsState(
                count=jnp.zeros((), jnp.int32),
                hyperparams=hparams,
                hyperparams_states=states,
                inner_state=probe.init(params),
            )

        def update(updates: Any, state: Any, params: Any = None, **extra: Any):
            dtype = hyperparam_dtype
            if dtype is None:
                dtype = _highest_dtype(params, None) if params is not None else None
            convert = (lambda v: v) if dtype is None else (lambda v: _convert_floats(v, dtype))
            hparams = {k: convert(v) for k, v in state.hyperparams.items()}
            hparams.update(
                {k: convert(f(state.hyperparams_states[k], **extra)) for k, f in scheduled.items()}
            )
            states = {
                k: f.update(state.hyperparams_states[k], **extra) for k, f in scheduled.items()
            }
            updates, inner = inner_update(updates, state.inner_state, params, hparams, extra)
            return updates, InjectStatefulHyperparamsState(
                safe_increment(state.count), hparams, states, inner
            )

        out = GradstepTransformation(init, update)
        out.transform = getattr(probe, "transform", None)
        out.engine = getattr(probe, "engine", None)
        out.hyperparam_names = getattr(probe, "hyperparam_names", {})
        # inside chain, masked, multi_transform, ...: kept whole, with its own state
        out.own_state = True
        out.stage_name = "inject_hyperparams"
        return out

    return factory


def inject_stateful_hyperparams(
    inner_factory: Callable, static_args: str | Any = (), hyperparam_dtype: Any = None
) -> Callable:
    """optax's ``inject_stateful_hyperparams`` (deprecated there in favour of
    :func:`inject_hyperparams`, which takes stateful schedules too): the same."""
    return inject_hyperparams(inner_factory, static_args, hyperparam_dtype)
