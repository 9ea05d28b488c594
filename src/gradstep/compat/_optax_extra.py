"""optax 0.2.8's names for gradstep's further schedules and transforms: SGDR, one-cycles,
piecewise interpolation, warm-up + exponential decay, reduce-on-plateau, block and
adaptive clipping, freezing, non-negative parameters, skipping large steps, per-example
clipping and DP aggregation, monitoring; optax's tail: noisy SGD, Polyak SGD, Mechanic."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import schedules as _sched
from .._core.mechanic import VECTORS as _MECHANIC_VECTORS
from ..jax import GradstepTransformation
from ..rules.mechanic import mechanize as _mechanize
from ..rules.noisy_sgd import add_noise as _add_noise
from ..rules.polyak import scale_by_polyak as _scale_by_polyak
from ..transforms import block_clipping as _block
from ..transforms import freezing as _freezing
from ..transforms import monitoring as _monitoring
from ..transforms import privacy as _privacy
from ..transforms.nonnegative import keep_params_nonnegative as _keep_params_nonnegative
from ..transforms.plateau import reduce_on_plateau as _reduce_on_plateau
from . import _optax_contrib_free as _contrib
from ._optax_base import as_stage, no_dtype, wrap
from ._optax_layouts import lr_stage, optimizer
from ._optax_optimizers import sgd
from ._optax_schedules import (
    Schedule,
    _as_compat,
    _constant,
    exponential_decay,
    join_schedules,
    linear_schedule,
    warmup_cosine_decay_schedule,
)
from ._optax_state import EMPTY, Layout, Scalar, Slots, layout_of, state_class
from ._optax_state import Masked as _Masked
from ._optax_state import Partition as _Partition

__all__ = [
    "adaptive_grad_clip",
    "add_noise",
    "mechanize",
    "noisy_sgd",
    "polyak_sgd",
    "scale_by_polyak",
    "clip_by_block_rms",
    "cosine_onecycle_schedule",
    "differentially_private_aggregate",
    "freeze",
    "keep_params_nonnegative",
    "linear_onecycle_schedule",
    "measure_with_ema",
    "monitor",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "piecewise_interpolate_schedule",
    "reduce_on_plateau",
    "selective_transform",
    "sgdr_schedule",
    "snapshot",
    "skip_large_updates",
    "warmup_exponential_decay_schedule",
]

# -- schedules ----------------------------------------------------------------------

_INTERPOLATIONS = {"linear": "linear", "cosine": "cos"}


def piecewise_interpolate_schedule(
    interpolate_type: str, init_value: float, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    """optax's ``piecewise_interpolate_schedule``: from each boundary on the value is
    multiplied by its scale, and interpolated (``"linear"`` or ``"cosine"``) between
    the boundaries (:func:`gradstep.schedules.piecewise_interpolate`)."""
    if interpolate_type not in _INTERPOLATIONS:
        raise ValueError(
            f"piecewise_interpolate_schedule: invalid interpolate_type={interpolate_type!r}; "
            "valid values: 'linear', 'cosine'"
        )
    items = sorted((boundaries_and_scales or {}).items())
    if any(s < 0 for _, s in items):
        raise ValueError(
            "piecewise_interpolate_schedule: invalid boundaries_and_scales; valid values: "
            "non-negative scale factors"
        )
    if not items:
        return _constant(init_value)
    values, value = [], float(init_value)
    for _, s in items:
        value *= s
        values.append(value)
    return _as_compat(
        _sched.piecewise_interpolate(
            init_value, [int(b) for b, _ in items], values, _INTERPOLATIONS[interpolate_type]
        )
    )


def _positive_steps(owner: str, transition_steps: int) -> None:
    if not transition_steps > 0:
        raise ValueError(
            f"{owner}: invalid transition_steps={transition_steps!r}; valid values: a "
            "positive integer"
        )


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """optax's ``linear_onecycle_schedule``: three linear phases, ``peak / div`` up to
    ``peak``, back down to ``peak / div``, then to ``peak / (div * final_div)``."""
    _positive_steps("linear_onecycle_schedule", transition_steps)
    return piecewise_interpolate_schedule(
        "linear",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(pct_final * transition_steps): 1.0 / div_factor,
            transition_steps: 1.0 / final_div_factor,
        },
    )


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """optax's ``cosine_onecycle_schedule``: ``peak / div`` up to ``peak`` along half a
    cosine, then down to ``peak / (div * final_div)``."""
    _positive_steps("cosine_onecycle_schedule", transition_steps)
    return piecewise_interpolate_schedule(
        "cosine",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(transition_steps): 1.0 / (div_factor * final_div_factor),
        },
    )


def warmup_exponential_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """optax's ``warmup_exponential_decay_schedule``: linear ``init -> peak`` over
    ``warmup_steps``, then ``exponential_decay`` of ``peak`` counted from there."""
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            exponential_decay(
                peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
            ),
        ],
        [warmup_steps],
    )


def sgdr_schedule(cosine_kwargs: Iterable[dict[str, Any]]) -> Schedule:
    """optax's ``sgdr_schedule``: one ``warmup_cosine_decay_schedule`` per dict of
    ``cosine_kwargs``, each lasting its ``decay_steps``, joined end to end (warm
    restarts; :func:`gradstep.schedules.cosine_warm_restarts` is the closed form of
    torch's periodic version)."""
    schedules, boundaries, step = [], [], 0
    for kwargs in cosine_kwargs:
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        step += kwargs["decay_steps"]
        boundaries.append(step)
    return join_schedules(schedules, boundaries[:-1])


# -- transforms -----------------------------------------------------------------------


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> GradstepTransformation:
    """optax.contrib's ``reduce_on_plateau``: updates times a scale that drops by
    ``factor`` after ``patience`` evaluations in a row without improvement of the
    ``value`` given to ``update`` (:func:`gradstep.transforms.reduce_on_plateau` with
    ``patience - 1``: optax counts the evaluation that triggers the drop). An update
    without ``value`` leaves the state unchanged (optax requires one)."""
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(
            f"reduce_on_plateau: invalid patience={patience!r}; valid values: an integer "
            ">= 1 (optax's patience=0 never reduces on a plateau)"
        )
    if rtol == 0.0 and atol == 0.0:
        raise ValueError(
            "reduce_on_plateau: invalid rtol=0.0 with atol=0.0; valid values: at least one "
            "of them positive (as optax)"
        )
    core = _reduce_on_plateau(
        factor, patience - 1, rtol, atol, cooldown, accumulation_size, min_scale
    )
    return wrap(core, _PLATEAU_STATE)


ReduceLROnPlateauState = state_class(
    "ReduceLROnPlateauState",
    ("scale", "best_value", "plateau_count", "cooldown_count", "count", "avg_value"),
    "optax.contrib",
)
#: optax.contrib's ``ReduceLROnPlateauState`` (its ``count``: the values averaged so far)
_PLATEAU_STATE = _contrib.Flat(
    ReduceLROnPlateauState,
    [None],
    {
        "scale": _contrib.scalar(0, "scale"),
        "best_value": _contrib.scalar(0, "best_value"),
        "plateau_count": _contrib.int32(0, "plateau_count"),
        "cooldown_count": _contrib.int32(0, "cooldown_count"),
        "count": _contrib.int32(0, "value_count"),
        "avg_value": _contrib.scalar(0, "avg_value"),
    },
    chain=False,
)


def clip_by_block_rms(threshold: float) -> GradstepTransformation:
    """optax's ``clip_by_block_rms``: each tensor divided by ``max(1, rms / threshold)``."""
    return wrap(_block.clip_by_block_rms(threshold), EMPTY)


def adaptive_grad_clip(
    clipping: float, eps: float = 1e-3, axis: Any = None
) -> GradstepTransformation:
    """optax's ``adaptive_grad_clip``: AGC with optax's units
    (:func:`gradstep.transforms.adaptive_clip` with ``layout="jax"``)."""
    return wrap(_block.adaptive_clip(clipping, eps, layout="jax", axis=axis), EMPTY)


def keep_params_nonnegative() -> GradstepTransformation:
    """optax's ``keep_params_nonnegative``: a step never takes a parameter below 0."""
    return wrap(_keep_params_nonnegative(), EMPTY)


def freeze(mask: Any) -> GradstepTransformation:
    """optax's ``freeze``: zero updates where ``mask`` (a tree or one boolean) is true;
    the state optax's ``MaskedState(EmptyState())``."""
    core = _freezing.freeze(mask)
    return wrap(core, _Masked(EMPTY, core.mask))


def selective_transform(optimizer: Any, *, freeze_mask: Any) -> GradstepTransformation:
    """optax's ``selective_transform``: ``optimizer`` on the leaves not frozen, zero
    updates and no optimizer state on the frozen ones; the state optax's
    ``PartitionState`` of ``"train"`` and ``"freeze"``."""
    core = _freezing.selective_transform(as_stage(optimizer), freeze_mask=freeze_mask)
    return wrap(core, _Partition({"train": layout_of(optimizer), "freeze": EMPTY}, core.labels))


def skip_large_updates(
    updates: Any, gradient_step: Any, params: Any, max_squared_norm: float
) -> tuple[Any, dict]:
    """optax's ``skip_large_updates``: the ``should_skip_update_fn`` of
    ``optax.MultiSteps`` that skips when the squared norm of ``updates`` is not below
    ``max_squared_norm`` (NaN included); returns ``(should_skip, {"norm_squared": ...})``.
    As a wrapper of any transform: :func:`gradstep.transforms.skip_large_updates`."""
    del gradient_step, params
    leaves = jax.tree_util.tree_leaves(updates)
    norm_sq = jnp.sum(jnp.asarray([jnp.sum(jnp.square(x)) for x in leaves]))
    return jnp.logical_not(norm_sq < max_squared_norm), {"norm_squared": norm_sq}


def per_example_global_norm_clip(grads: Any, l2_norm_clip: float) -> tuple[Any, Any]:
    """optax's ``per_example_global_norm_clip``: ``(sum of the per-example gradients
    each clipped to a global norm of l2_norm_clip, number clipped)``."""
    return _privacy.per_example_global_norm_clip(grads, l2_norm_clip)


def per_example_layer_norm_clip(
    grads: Any, global_l2_norm_clip: float, uniform: bool = True
) -> tuple[Any, Any]:
    """optax's ``per_example_layer_norm_clip``: each leaf clipped per example on its
    own, to ``C / sqrt(K)`` (``uniform``) or ``C * sqrt(D_i / D)``."""
    return _privacy.per_example_layer_norm_clip(grads, global_l2_norm_clip, uniform)


def differentially_private_aggregate(
    l2_norm_clip: float, noise_multiplier: float, key: Any = None, *, seed: int | None = None
) -> GradstepTransformation:
    """optax.contrib's ``differentially_private_aggregate``: per-example gradients in,
    their clipped sum plus Gaussian noise (``noise_multiplier * l2_norm_clip``), over
    the batch size, out. ``key`` (or the deprecated ``seed``) is an integer seed; the
    noise is gradstep's (drawn from the seed and the step count), not optax's draws."""
    chosen = _seed("differentially_private_aggregate", key, seed)
    return wrap(
        _privacy.differentially_private_aggregate(l2_norm_clip, noise_multiplier, chosen),
        _DP_STATE,
    )


def _put_key(v: Any, parts: list, ctx: Any) -> None:
    parts[0]["seed"], parts[0]["count"] = v[0], v[1]


DifferentiallyPrivateAggregateState = state_class(
    "DifferentiallyPrivateAggregateState", ("rng_key",), "optax.contrib"
)
#: optax.contrib's ``DifferentiallyPrivateAggregateState``; its ``rng_key`` holds
#: gradstep's integer seed and step count ``[seed, count]``, which make the noise key
_DP_STATE = _contrib.Flat(
    DifferentiallyPrivateAggregateState,
    [None],
    {
        "rng_key": (
            lambda parts, ctx: jnp.stack([parts[0]["seed"], parts[0]["count"]]).astype(jnp.int32),
            _put_key,
        )
    },
    chain=False,
)


def _measure(measure: Any) -> Any:
    """A compat measure: a transformation (``measure_with_ema``) or a function."""
    if hasattr(measure, "init") and hasattr(measure, "update"):
        return as_stage(measure)
    return measure


def snapshot(measure_name: str, measure: Any) -> GradstepTransformation:
    """optax's ``snapshot``: updates unchanged, ``measure(updates)`` kept in the state
    (``optax.tree.get(state, measure_name)`` finds it)."""
    return wrap(_monitoring.monitor({measure_name: measure}))


def measure_with_ema(
    measure: Any, decay: float, debias: bool = True, accumulator_dtype: Any = None
) -> GradstepTransformation:
    """optax's ``measure_with_ema``: outputs the (debiased) moving average of
    ``measure(updates)``; used inside :func:`monitor`."""
    no_dtype("measure_with_ema", "accumulator_dtype", accumulator_dtype)
    return wrap(_monitoring.measure_with_ema(measure, decay, debias))


def monitor(measures: dict[str, Any]) -> GradstepTransformation:
    """optax's ``monitor``: updates unchanged, each measure's value kept in the state
    under its name."""
    return wrap(_monitoring.monitor({k: _measure(m) for k, m in measures.items()}))


# -- optimizers of optax's tail ------------------------------------------------------

AddNoiseState = state_class("AddNoiseState", ("count", "rng_key"), "optax._src.transform")
MechanicState = state_class(
    "MechanicState", ("base_optimizer_state", "count", "r", "m", "v", "s", "x0"), "optax.contrib"
)
#: optax's ``AddNoiseState``; its ``rng_key`` holds gradstep's integer seed
_NOISE_STATE = Slots(AddNoiseState, count=Scalar("count"), rng_key=Scalar("seed"))


def _seed(owner: str, key: Any, seed: Any) -> int:
    """optax's ``key`` (or its deprecated ``seed``) as gradstep's integer seed (optax
    uses 0 when neither is given). A JAX key array (``jax.random.key(0)``, or a raw
    ``PRNGKey``) gives a seed of its bits: the same key, the same noise (gradstep's
    draws, not optax's)."""
    if key is not None and seed is not None:
        raise ValueError(f"{owner}: give key or seed, not both")
    chosen = key if key is not None else seed
    if chosen is None:
        return 0
    if isinstance(chosen, (int, np.integer)) and not isinstance(chosen, bool):
        return int(chosen)
    words = _key_words(chosen)
    if words is None:
        raise ValueError(
            f"{owner}: invalid key={chosen!r}; valid values: an integer seed, a JAX key "
            "array with a value (not one traced under jax.jit) or None"
        )
    # 31 bits, so the state's seed fits JAX's default int32
    return int(np.random.SeedSequence(words).generate_state(1, np.uint32)[0] >> np.uint32(1))


def _key_words(key: Any) -> list[int] | None:
    """The 32-bit words of a concrete JAX key array (typed or raw uint32), else None."""
    if isinstance(key, jax.core.Tracer) or not isinstance(key, (jax.Array, np.ndarray)):
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    if key.dtype != jnp.uint32 or key.size == 0:
        return None
    return [int(w) for w in np.asarray(key).ravel()]


def add_noise(eta: float, gamma: float, key: Any = None, *, seed: Any = None):
    """optax's ``add_noise``: Gaussian noise of variance ``eta / t**gamma`` added to
    the updates (:func:`gradstep.rules.add_noise`). The noise is gradstep's, drawn
    from the integer ``key`` and the step count (each library with its own
    generator), not optax's draws; the state's ``rng_key`` is that integer."""
    return wrap(_add_noise(eta, gamma, _seed("add_noise", key, seed)), _NOISE_STATE)


def noisy_sgd(
    learning_rate: Any, eta: float = 0.01, gamma: float = 0.55, key: Any = None, *, seed: Any = None
):
    """optax's ``noisy_sgd``: :func:`add_noise` then the learning rate
    (:func:`gradstep.noisy_sgd`), with the noise of :func:`add_noise`."""
    noise = _add_noise(eta, gamma, _seed("noisy_sgd", key, seed))
    return optimizer("noisy_sgd", (noise, _NOISE_STATE), lr_stage(learning_rate))


def scale_by_polyak(
    f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0, variant: str = "sps"
):
    """optax's ``scale_by_polyak``: updates times ``min((value - f_min) / (|u|^2 +
    eps), max_learning_rate)``, ``value`` the loss given to ``update``
    (:func:`gradstep.rules.scale_by_polyak`)."""
    return wrap(_scale_by_polyak(f_min, max_learning_rate, eps, variant), EMPTY)


def polyak_sgd(
    max_learning_rate: float = 1.0,
    scaling: Any = 1.0,
    f_min: float = 0.0,
    eps: float = 0.0,
    variant: str = "sps",
):
    """optax's ``polyak_sgd``: ``sgd(scaling)`` then :func:`scale_by_polyak`
    (:func:`gradstep.polyak_sgd`); ``update`` takes the loss as ``value=``."""
    descent = sgd(scaling)
    polyak = _scale_by_polyak(f_min, max_learning_rate, eps, variant)
    return optimizer(
        "polyak_sgd", (descent.transform, descent.layout), (polyak, EMPTY), scaling="learning_rate"
    )


class _Mechanic(Layout):
    """optax's ``MechanicState``: the base optimizer's state in its own layout, the
    per-beta scalars of the core (``r1, r2, ...``) as optax's vectors ``r, m, v, s``,
    the reference point as ``x0``."""

    def __init__(self, inner: Layout):
        self.inner = inner

    def to_optax(self, core, node, ctx, prev):
        n = node.num_betas

        def vector(name: str) -> Any:
            return jnp.stack([jnp.asarray(core[f"{name}{j}"]) for j in range(1, n + 1)])

        base = None if prev is None else prev.base_optimizer_state
        return MechanicState(
            base_optimizer_state=self.inner.to_optax(core["inner"], node.children()[0], ctx, base),
            count=core["count"],
            **{name: vector(name) for name in _MECHANIC_VECTORS},
            x0=ctx.expand(core["reference"]),
        )

    def from_optax(self, state, node, ctx):
        core = {
            "count": state.count,
            "inner": self.inner.from_optax(state.base_optimizer_state, node.children()[0], ctx),
            "reference": ctx.compress(state.x0),
        }
        for name in _MECHANIC_VECTORS:
            vector = getattr(state, name)
            for j in range(1, node.num_betas + 1):
                core[f"{name}{j}"] = vector[j - 1]
        return core


def mechanize(
    base_optimizer: Any,
    weight_decay: float = 1e-2,
    eps: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
):
    """optax.contrib's ``mechanize``: ``base_optimizer``'s cumulative step rescaled by
    Mechanic's learned scale (:func:`gradstep.rules.mechanize`); the state is optax's
    ``MechanicState`` around the base's own state."""
    core = _mechanize(as_stage(base_optimizer), weight_decay, eps, s_init, num_betas)
    return wrap(core, _Mechanic(layout_of(base_optimizer)))
