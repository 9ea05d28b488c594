"""optax.contrib 0.2.8's COCOB, D-Adaptation, DoG, DoWG and Prodigy on gradstep's rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from .._core.stages import add_decayed_weights as _add_decayed_weights
from .._core.stages import rule as _rule
from .._core.stages import scale as _scale
from .._core.stages import scale_by_learning_rate as _scale_by_lr
from .._core.validate import BOOL, Interval, OneOf, check, hyperparams, nonnegative
from ..jax import GradstepTransformation
from ..rules.cocob import cocob as _cocob
from ..rules.dadapt_adam import scale_by_dadapt_adam as _scale_by_dadapt_adam
from ..rules.dog import INIT_STEPS
from ..rules.dog import scale_by_dog as _scale_by_dog
from ..rules.dowg import scale_by_dowg as _scale_by_dowg
from ..rules.prodigy import scale_by_prodigy as _scale_by_prodigy
from ._optax_base import DECAY, EPS, LR, wrap
from ._optax_layouts import all_or, decay_state
from ._optax_state import EMPTY, Layout, Scalar, Seq, Slots, Tree, schedule_state, state_class

_CONTRIB = "optax.contrib"
COCOBState = state_class(
    "COCOBState",
    ("init_particles", "cumulative_gradients", "scale", "subgradients", "reward"),
    _CONTRIB,
)
DAdaptAdamWState = state_class(
    "DAdaptAdamWState",
    ("exp_avg", "exp_avg_sq", "grad_sum", "estim_lr", "numerator_weighted", "count"),
    _CONTRIB,
)
DoGState = state_class(
    "DoGState", ("is_init_step", "init_params", "max_dist", "sum_sq_norm_grads"), _CONTRIB
)
DoWGState = state_class(
    "DoWGState", ("init_params", "weighted_sq_norm_grads", "estim_sq_dist"), _CONTRIB
)
ProdigyState = state_class(
    "ProdigyState",
    ("exp_avg", "exp_avg_sq", "grad_sum", "params0", "estim_lr", "numerator_weighted", "count"),
    _CONTRIB,
)

_POSITIVE = Interval(0.0, lo_open=True)
_POSITIVE_LR = Interval(0.0, lo_open=True, schedulable=True)

# -- a layout over the slots of several stages ---------------------------------------

#: a field of :class:`Flat`: ``(get(parts, ctx), put(value, parts, ctx))``; ``parts``
#: are the core states of the chain's stages (dicts), ``put`` None: read-only
Field = tuple[Callable[[list, Any], Any], Callable[[Any, list, Any], None] | None]


def tree(i: int, key: str) -> Field:
    def put(v, parts, ctx):
        parts[i][key] = ctx.compress(v)

    return (lambda parts, ctx: ctx.expand(parts[i][key])), put


def scalar(i: int, key: str, *also: tuple[int, str]) -> Field:
    """Stage ``i``'s scalar ``key``; read back into it and into each ``(stage, key)``
    of ``also`` (a core scalar the optax state keeps once)."""

    def put(v, parts, ctx):
        for j, k in ((i, key), *also):
            parts[j][k] = v

    return (lambda parts, ctx: parts[i][key]), put


def _float_dtype(part: dict) -> Any:
    """The dtype of the carried scalars of a global reduction's state ``part``."""
    scalars = [
        v
        for v in part.values()
        if hasattr(v, "dtype") and jnp.ndim(v) == 0 and jnp.issubdtype(v.dtype, jnp.floating)
    ]
    return scalars[0].dtype if scalars else jnp.result_type(float)


def int32(i: int, key: str) -> Field:
    """Stage ``i``'s integer scalar ``key`` shown as optax's int32."""

    def put(v, parts, ctx):
        parts[i][key] = v

    return (lambda parts, ctx: jnp.asarray(parts[i][key], jnp.int32)), put


def step_count(i: int, key: str, *counts: tuple[int, str]) -> Field:
    """optax's int32 step count over the core's float count ``key`` of stage ``i``
    (a carried scalar of a global reduction), also read back into the integer
    schedule counts ``counts``; put after the stage's float scalars."""

    def put(v, parts, ctx):
        parts[i][key] = jnp.asarray(v, _float_dtype(parts[i]))
        for j, k in counts:
            parts[j][k] = v

    return (lambda parts, ctx: jnp.asarray(parts[i][key], jnp.int32)), put


def derived(fn: Callable[[list], Any]) -> Field:
    return (lambda parts, ctx: fn(parts)), None


class Flat(Layout):
    """One optax NamedTuple over the slots of a core chain's stages (``stages``, by
    identity) or of one stage (``stages`` of one, ``chain=False``)."""

    def __init__(self, cls: type, stages: list, fields: dict[str, Field], chain: bool = True):
        self.cls = cls
        self.stages = stages
        self.fields = fields
        self.chain = chain

    def _split(self, node):
        if not self.chain:
            return None, None
        children, keys = node.children(), node.child_state_keys()
        order = [next(j for j, c in enumerate(children) if c is s) for s in self.stages]
        return keys, order

    def to_optax(self, core, node, ctx, prev):
        keys, order = self._split(node)
        parts = [core] if keys is None else [core[keys[j]] for j in order]
        return self.cls(**{n: get(parts, ctx) for n, (get, _) in self.fields.items()})

    def from_optax(self, state, node, ctx):
        keys, order = self._split(node)
        parts: list[dict] = [{} for _ in self.stages]
        for name, (_, put) in self.fields.items():
            if put is not None:
                put(getattr(state, name), parts, ctx)
        if keys is None:
            return parts[0]
        out = {k: {} for k in keys}
        out.update({keys[j]: p for j, p in zip(order, parts)})
        return out


def _schedule_counts(learning_rate: Any, *stages: int) -> list[tuple[int, str]]:
    """The integer schedule counts the core keeps when ``learning_rate`` is one."""
    return [(i, "count") for i in stages] if callable(learning_rate) else []


# -- COCOB ----------------------------------------------------------------------------

_COCOB_STATE = Slots(
    COCOBState,
    init_particles=Tree("p0"),
    cumulative_gradients=Tree("cumulative"),
    scale=Tree("scale"),
    subgradients=Tree("total"),
    reward=Tree("reward"),
)


@hyperparams(alpha=_POSITIVE, eps=_POSITIVE)
def scale_by_cocob(alpha: float = 100.0, eps: float = 1e-8) -> GradstepTransformation:
    """optax.contrib's ``scale_by_cocob``: :func:`gradstep.rules.scale_by_cocob`,
    state ``COCOBState``."""
    stage = _cocob(1.0, alpha, eps).children()[-1]
    return wrap(stage, _COCOB_STATE)


@hyperparams(learning_rate=LR, alpha=_POSITIVE, eps=_POSITIVE, weight_decay=nonnegative())
def cocob(
    learning_rate: Any = 1.0,
    alpha: float = 100.0,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    mask: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``cocob``: coupled decay, the gradient times the learning
    rate, then the bet (:func:`gradstep.cocob`)."""
    stages = _cocob(learning_rate, alpha, eps).children()
    rate, bet = stages[-2], stages[-1]
    decay = _add_decayed_weights(weight_decay, all_or(mask))
    chain = _rule("cocob", decay, rate, bet)
    return wrap(
        chain,
        Seq.of(
            chain,
            (decay, decay_state(weight_decay, all_or(mask))),
            (rate, schedule_state(learning_rate)),
            (bet, _COCOB_STATE),
        ),
    )


# -- D-Adaptation AdamW ----------------------------------------------------------------


def _betas(owner: str, betas: Any) -> tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: invalid betas={betas!r}; valid values: a pair (b1, b2) in [0, 1)"
        ) from None
    # the learning-rate-free rules' estimates were not compared with optax's outside
    # these ranges: checked here too
    decay = Interval(0.0, 1.0, hi_open=True, always_checked=True)
    check(owner, "betas[0]", b1, decay)
    check(owner, "betas[1]", b2, decay)
    return float(b1), float(b2)


@hyperparams(
    learning_rate=_POSITIVE_LR, eps=_POSITIVE, estim_lr0=_POSITIVE, weight_decay=nonnegative()
)
def dadapt_adamw(
    learning_rate: Any = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float = 0.0,
) -> GradstepTransformation:
    """optax.contrib's ``dadapt_adamw``: :func:`gradstep.dadapt_adam` with Adam's
    bias correction in the step size, decoupled decay and ``d0=estim_lr0``, state
    ``DAdaptAdamWState`` (``estim_lr`` is :math:`d`). ``learning_rate`` must be > 0."""
    b1, b2 = _betas("dadapt_adamw", betas)
    direction = _scale_by_dadapt_adam(
        learning_rate,
        b1,
        b2,
        eps,
        weight_decay,
        decouple=True,
        use_bias_correction=True,
        d0=estim_lr0,
    )
    flip = _scale(-1.0)
    chain = _rule("dadapt_adamw", direction, flip)
    fields = {
        "exp_avg": tree(0, "mu"),
        "exp_avg_sq": tree(0, "nu"),
        "grad_sum": tree(0, "s"),
        "estim_lr": scalar(0, "d"),
        "numerator_weighted": scalar(0, "numerator"),
        "count": step_count(0, "k", *_schedule_counts(learning_rate, 0)),
    }
    return wrap(chain, Flat(DAdaptAdamWState, [direction, flip], fields))


# -- DoG, DoWG ------------------------------------------------------------------------


def _flag_field(i: int, key: str) -> Field:
    """optax's boolean ``is_init_step`` over the core's float flag ``first``."""

    def put(v, parts, ctx):
        parts[i][key] = jnp.where(v, 1.0, 0.0).astype(_float_dtype(parts[i]))

    return (lambda parts, ctx: parts[i][key] > 0), put


def _decay_or_none(owner: str, weight_decay: Any, mask: Any):
    """optax's ``add_decayed_weights`` when ``weight_decay`` is given, else its
    ``identity`` (both keep ``EmptyState``; a mask needs a decay)."""
    if weight_decay is None:
        if mask is not None:
            raise ValueError(
                f"{owner}: invalid mask with weight_decay=None; valid values: a mask only "
                "together with a weight_decay (optax ignores it)"
            )
        return None, EMPTY
    check(owner, "weight_decay", weight_decay, nonnegative())
    return _add_decayed_weights(weight_decay, all_or(mask)), decay_state(weight_decay, all_or(mask))


@hyperparams(learning_rate=LR, eps=EPS)
def dog(
    learning_rate: Any = 1.0,
    init_step: tuple[str, float] = ("heuristic", 1e-6),
    eps: float = 1e-8,
    weight_decay: float | None = None,
    mask: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``dog``: coupled decay (if given), DoG's step size, learning
    rate (:func:`gradstep.dog`; ``init_step=(kind, value)`` is its ``init_step`` and
    ``init_step_value``), state ``DoGState``."""
    try:
        kind, value = init_step
    except (TypeError, ValueError):
        raise ValueError(
            f"dog: invalid init_step={init_step!r}; valid values: a pair (kind, value), "
            f"kind one of {INIT_STEPS}"
        ) from None
    check("dog", "init_step[0]", kind, OneOf(INIT_STEPS))
    check("dog", "init_step[1]", value, _POSITIVE)
    decay, decay_layout = _decay_or_none("dog", weight_decay, mask)
    step = _scale_by_dog(kind, value, eps)
    rate = _scale_by_lr(learning_rate)
    chain = _rule("dog", decay, step, rate)
    fields = {  # optax's order is the NamedTuple's; the flag is read back last
        "init_params": tree(0, "p0"),
        "max_dist": scalar(0, "max_dist"),
        "sum_sq_norm_grads": scalar(0, "sum_sq_norm_grads"),
        "is_init_step": _flag_field(0, "first"),
    }
    return wrap(
        chain,
        Seq.of(
            chain,
            (decay, decay_layout),
            (step, Flat(DoGState, [step], fields, chain=False)),
            (rate, schedule_state(learning_rate)),
        ),
    )


_DOWG_STATE = Slots(
    DoWGState,
    init_params=Tree("p0"),
    weighted_sq_norm_grads=Scalar("weighted_sq_norm_grads"),
    estim_sq_dist=Scalar("estim_sq_dist"),
)


@hyperparams(learning_rate=LR, eps=_POSITIVE)
def dowg(
    learning_rate: Any = 1.0,
    init_estim_sq_dist: float | None = None,
    eps: float = 1e-4,
    weight_decay: float | None = None,
    mask: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``dowg``: coupled decay (if given), DoWG's step size, learning
    rate (:func:`gradstep.dowg`), state ``DoWGState``."""
    decay, decay_layout = _decay_or_none("dowg", weight_decay, mask)
    step = _scale_by_dowg(init_estim_sq_dist, eps)
    rate = _scale_by_lr(learning_rate)
    chain = _rule("dowg", decay, step, rate)
    return wrap(
        chain,
        Seq.of(
            chain,
            (decay, decay_layout),
            (step, _DOWG_STATE),
            (rate, schedule_state(learning_rate)),
        ),
    )


# -- Prodigy --------------------------------------------------------------------------


@hyperparams(
    learning_rate=_POSITIVE_LR,
    eps=_POSITIVE,
    estim_lr0=_POSITIVE,
    estim_lr_coef=_POSITIVE,
    weight_decay=nonnegative(),
    safeguard_warmup=BOOL,
)
def prodigy(
    learning_rate: Any = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
) -> GradstepTransformation:
    """optax.contrib's ``prodigy``: :func:`gradstep.prodigy` with Adam's bias
    correction in the step size, decoupled decay, no growth limit, ``d0=estim_lr0``
    and ``d_coef=estim_lr_coef``, state ``ProdigyState`` (``estim_lr`` is
    :math:`d`). ``learning_rate`` must be > 0; ``betas[0]`` must be > 0 (optax's
    :math:`\\beta_1 = 0` keeps a first moment of one gradient, gradstep's drops it)."""
    b1, b2 = _betas("prodigy", betas)
    if b1 == 0:
        raise ValueError(
            "prodigy: invalid betas[0]=0; valid values: (0, 1) (optax's b1=0 steps with the "
            "previous estimate d, gradstep's Prodigy without momentum with the new one)"
        )
    if beta3 is not None:
        check("prodigy", "beta3", beta3, DECAY)
    direction = _scale_by_prodigy(
        learning_rate,
        b1,
        b2,
        beta3,
        eps,
        weight_decay,
        decouple=True,
        use_bias_correction=True,
        safeguard_warmup=safeguard_warmup,
        d0=estim_lr0,
        d_coef=estim_lr_coef,
    )
    rate = _scale_by_lr(learning_rate)
    chain = _rule("prodigy", direction, rate)
    fields = {
        "exp_avg": tree(0, "mu"),
        "exp_avg_sq": tree(0, "nu"),
        "grad_sum": tree(0, "s"),
        "params0": tree(0, "p0"),
        # optax's estimate only grows: gradstep's d (= d_max without a growth limit)
        "estim_lr": scalar(0, "d", (0, "d_max")),
        "numerator_weighted": scalar(0, "numerator"),
        "count": step_count(0, "k", *_schedule_counts(learning_rate, 0, 1)),
    }
    return wrap(chain, Flat(ProdigyState, [direction, rate], fields))


__all__ = [
    "COCOBState",
    "DAdaptAdamWState",
    "DoGState",
    "DoWGState",
    "ProdigyState",
    "cocob",
    "dadapt_adamw",
    "dog",
    "dowg",
    "prodigy",
    "scale_by_cocob",
]
