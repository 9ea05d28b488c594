"""optax.contrib 0.2.8's SAM, normalize, Sophia, DP-SGD and complex splitting on gradstep."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core import tree as _tree
from .._core.elementwise import NormScaled
from .._core.stages import add_decayed_weights as _add_decayed_weights
from .._core.stages import rule as _rule
from .._core.stages import scale_by_learning_rate as _scale_by_lr
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, check, decay_rate, nonnegative
from ..jax import GradstepTransformation
from ..rules.sam import SharpnessAware
from ..rules.sophia import HessianAverage, hutchinson, scale_by_sophia_step
from ._optax_base import LR, as_stage, stored_in, wrap
from ._optax_extra import differentially_private_aggregate
from ._optax_layouts import all_or, decay_state
from ._optax_state import (
    EMPTY,
    Layout,
    Seq,
    layout_of,
    schedule_state,
    state_class,
)
from ._optax_transforms import chain, identity, scale_by_learning_rate, trace

_CONTRIB = "optax.contrib"
NormalizeState = state_class("EmptyState", ())  # optax's alias of EmptyState
SAMState = state_class(
    "SAMState", ("steps_since_sync", "opt_state", "adv_state", "cache"), _CONTRIB
)
SophiaState = state_class("SophiaState", ("count", "mu", "nu", "hessian_fn_state"), _CONTRIB)
HutchinsonState = state_class("HutchinsonState", ("key",), _CONTRIB)
SplitRealAndImaginaryState = state_class("SplitRealAndImaginaryState", ("inner_state",), _CONTRIB)
SplitRealAndImaginaryArrays = state_class(
    "SplitRealAndImaginaryArrays", ("real", "imaginary"), "optax.contrib._complex_valued"
)

# -- normalize, SAM --------------------------------------------------------------------


def _unit(norm: Any, h: dict) -> Any:
    return 1.0 / norm


def normalize() -> GradstepTransformation:
    """optax.contrib's ``normalize``: the updates divided by their global L2 norm (a
    gradstep norm-scaled stage, factor :math:`1/\\lVert u\\rVert`)."""
    return wrap(NormScaled("normalize", _unit, {}, per_tensor=False), EMPTY)


def _leaf_stages(t: Any) -> list:
    if isinstance(t, Chain):
        return [s for c in t.children() for s in _leaf_stages(c)]
    return [t]


def _ascent_radius(adv_optimizer: Any) -> float:
    """:math:`\\rho` of an ``adv_optimizer`` that is ``chain(normalize(), sgd(rho))``
    (the ascent of SAM, which gradstep's rule computes): anything else raises."""
    stages = _leaf_stages(as_stage(adv_optimizer))
    ok = (
        len(stages) == 2
        and isinstance(stages[0], NormScaled)
        and stages[0].factor is _unit
        and stages[1].name == "learning_rate"
        and not callable(stages[1].hyperparams.get("learning_rate"))
    )
    if not ok:
        raise ValueError(
            "sam: invalid adv_optimizer; valid values: chain(contrib.normalize(), "
            "sgd(rho)) (gradstep's SAM ascends by rho * g / |g|; other ascents are not "
            "offered)"
        )
    return float(stages[1].hyperparams["learning_rate"])


class _Sam(Layout):
    """optax's ``SAMState``: ``steps_since_sync`` the core's phase, ``opt_state`` the
    inner rule's state in its layout, ``adv_state`` the (stateless) ascent's state,
    ``cache`` the parameters before the ascent."""

    def __init__(self, inner: Layout, adv: Any):
        self.inner = inner
        self.adv = adv

    def to_optax(self, core, node, ctx, prev):
        adv_core = self.adv.transform
        adv = self.adv.layout.to_optax(adv_core.init(ctx.tree()), adv_core, ctx, None)
        return SAMState(
            steps_since_sync=jnp.asarray(core["phase"], jnp.int32),
            opt_state=self.inner.to_optax(
                core["inner"], node.inner, ctx, None if prev is None else prev.opt_state
            ),
            adv_state=adv,
            cache=ctx.expand(core["cache"]),
        )

    def from_optax(self, state, node, ctx):
        return {
            "phase": state.steps_since_sync,
            "inner": self.inner.from_optax(state.opt_state, node.inner, ctx),
            "cache": ctx.compress(state.cache),
        }


def sam(
    optimizer: Any,
    adv_optimizer: Any,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradstepTransformation:
    r"""optax.contrib's ``sam``. Transparent mode (default): updates alternate between
    the ascent to :math:`w + \rho g/\lVert g\rVert` and the descent back to
    :math:`w` plus ``optimizer``'s step for the gradient there (:func:`gradstep.sam`
    around ``optimizer``, :math:`\epsilon = 0`). Opaque mode: each update makes the
    ascent itself, takes the gradient there from ``update(..., grad_fn=f)``
    (``f(params, i)``; averaged over ``batch_axis_name`` if given) and returns
    ``optimizer``'s step. The ascent must be ``chain(contrib.normalize(), sgd(rho))``
    and ``sync_period`` 2 (one ascent per descent); ``reset_state`` acts on that
    stateless ascent, so either value gives the same steps."""
    check("sam", "sync_period", sync_period, Interval(1, integer=True))
    check("sam", "reset_state", reset_state, BOOL)
    check("sam", "opaque_mode", opaque_mode, BOOL)
    if sync_period != 2:
        raise ValueError(
            f"sam: invalid sync_period={sync_period!r}; valid values: 2 (gradstep's SAM "
            "takes one ascent per descent)"
        )
    if batch_axis_name is not None and not opaque_mode:
        raise ValueError(
            f"sam: invalid batch_axis_name={batch_axis_name!r} with opaque_mode=False; "
            "valid values: None (optax uses it in opaque mode only)"
        )
    rho = _ascent_radius(adv_optimizer)
    core = SharpnessAware(as_stage(optimizer), rho, False, 0.0)
    transparent = wrap(core, _Sam(layout_of(optimizer), adv_optimizer))
    if not opaque_mode:
        return transparent

    def init(params: Any) -> Any:
        return SAMState(
            steps_since_sync=jnp.zeros((), jnp.int32),
            opt_state=optimizer.init(params),
            adv_state=adv_optimizer.init(params),
            cache=None,
        )

    def update(updates: Any, state: Any, params: Any = None, *, grad_fn: Any = None):
        if grad_fn is None:
            raise ValueError("sam: update needs grad_fn with opaque_mode=True")
        ascent = core.ascend(updates, params)
        grads = grad_fn(jax.tree_util.tree_map(lambda w, e: w + e, params, ascent), 0)
        if batch_axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name=batch_axis_name)
        out, opt_state = optimizer.update(grads, state.opt_state, params)
        return out, state._replace(opt_state=opt_state)

    return GradstepTransformation(init, update)


# -- Sophia ---------------------------------------------------------------------------


class HutchinsonEstimator(GradstepTransformation):
    """optax.contrib's Hutchinson estimator as :func:`sophia` uses it: its ``update``
    takes ``obj_fn`` and returns :math:`z \\odot \\nabla^2 f\\, z` with Rademacher
    :math:`z` drawn by gradstep (:func:`gradstep.rules.sophia.hutchinson`) from the
    integer seed and the number of draws so far, the two held in ``state.key``."""


def hutchinson_estimator_diag_hessian(random_seed: Any = None) -> GradstepTransformation:
    """optax.contrib's ``hutchinson_estimator_diag_hessian``: Hutchinson's estimate of
    the Hessian diagonal of ``obj_fn`` (given to ``update``) at ``params``. The
    probes are gradstep's (drawn from the integer ``random_seed``, default 0, and the
    draw count), not optax's draws; ``state.key`` holds ``[seed, draws]``."""
    if random_seed is not None and not isinstance(random_seed, (int, np.integer)):
        raise ValueError(
            f"hutchinson_estimator_diag_hessian: invalid random_seed={random_seed!r}; "
            "valid values: an integer seed or None (a JAX key array is not taken: "
            "gradstep's probes are drawn from an integer seed and the draw count)"
        )
    seed = 0 if random_seed is None else int(random_seed)

    def init(params: Any) -> Any:
        return HutchinsonState(key=jnp.asarray([seed, 0], jnp.int32))

    def update(updates: Any, state: Any, params: Any = None, obj_fn: Any = None, **extra: Any):
        if params is None or obj_fn is None:
            raise ValueError("hutchinson_estimator_diag_hessian: update needs params and obj_fn")
        leaves, td = _tree.flatten(params)

        def hvp(z: Any) -> Any:
            return jax.jvp(jax.grad(obj_fn), (params,), (z,))[1]

        estimate = hutchinson(hvp, leaves, td, int(seed), state.key[1])
        key = state.key.at[1].add(1)
        return _tree.unflatten(td, estimate), HutchinsonState(key=key)

    return HutchinsonEstimator(init, update)


class _SophiaState(Layout):
    """optax's ``SophiaState`` over the core's Hessian-average stage; the estimator's
    state (``hessian_fn_state``) is kept by :func:`sophia`'s update."""

    def to_optax(self, core, node, ctx, prev):
        inner = core["inner"]
        return SophiaState(
            count=jnp.asarray(inner["count"], jnp.int32),
            mu=ctx.expand(inner["mu"]),
            nu=ctx.expand(inner["nu"]),
            hessian_fn_state=NormalizeState() if prev is None else prev.hessian_fn_state,
        )

    def from_optax(self, state, node, ctx):
        return {
            "inner": {
                "count": state.count,
                "mu": ctx.compress(state.mu),
                "nu": ctx.compress(state.nu),
            }
        }


def sophia(
    learning_rate: Any,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: Any = 1e-4,
    weight_decay_mask: Any = None,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: Any = None,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradstepTransformation:
    """optax.contrib's ``sophia``: :func:`gradstep.sophia` with ``bias_correction=True``
    and ``refresh="after"``, then decoupled decay and the learning rate. Every
    ``update_interval`` steps (from the first) ``hessian_diagonal_fn`` (default
    :func:`hutchinson_estimator_diag_hessian`, called with ``update``'s extra
    arguments, e.g. ``obj_fn``) gives the estimate folded into ``nu``. The win-rate
    printing (``verbose``) is not offered. optax's own estimator may be given too
    (its probes are then optax's draws). As optax's, this works as the outermost
    transformation (inside a chain the estimator is not called)."""
    check("sophia", "learning_rate", learning_rate, LR)
    check("sophia", "b1", b1, decay_rate())
    check("sophia", "b2", b2, decay_rate())
    check("sophia", "weight_decay", weight_decay, nonnegative(schedulable=True))
    check("sophia", "update_interval", update_interval, Interval(1, integer=True))
    # gradstep's Sophia step was not compared with optax's outside these ranges
    positive = Interval(0.0, lo_open=True, always_checked=True)
    check("sophia", "eps", eps, positive)
    check("sophia", "gamma", gamma, positive)
    if clip_threshold is not None:
        check("sophia", "clip_threshold", clip_threshold, positive)
    if verbose or print_win_rate_every_n_steps:
        raise ValueError(
            "sophia: invalid verbose=True or print_win_rate_every_n_steps; valid values: "
            "the defaults (gradstep does not print the win rate)"
        )
    estimator = hessian_diagonal_fn
    if estimator is None:
        estimator = hutchinson_estimator_diag_hessian()
    step = scale_by_sophia_step(b1, gamma, eps, clip_threshold, bias_correction=True)
    step = stored_in("sophia", "mu_dtype", mu_dtype, step, "mu")
    average = HessianAverage(step, b2, update_interval, "after", 0)
    decay = _add_decayed_weights(weight_decay, all_or(weight_decay_mask))
    rate = _scale_by_lr(learning_rate)
    core = _rule("sophia", average, decay, rate)
    base = wrap(
        core,
        Seq.of(
            core,
            (average, _SophiaState()),
            (decay, decay_state(weight_decay, all_or(weight_decay_mask))),
            (rate, schedule_state(learning_rate)),
        ),
    )
    takes_extra = isinstance(estimator, HutchinsonEstimator) or not isinstance(
        estimator, GradstepTransformation
    )

    def init(params: Any) -> Any:
        state = base.init(params)
        return (state[0]._replace(hessian_fn_state=estimator.init(params)), *state[1:])

    def update(updates: Any, state: Any, params: Any = None, **extra: Any):
        if params is None:
            raise ValueError("sophia: update needs params")
        kwargs = extra if takes_extra else {}

        def estimate(hstate):
            h, hstate = estimator.update(updates, hstate, params, **kwargs)
            return jax.tree_util.tree_map(lambda a, u: jnp.asarray(a, u.dtype), h, updates), hstate

        def keep(hstate):
            return jax.tree_util.tree_map(jnp.zeros_like, updates), hstate

        due = state[0].count % update_interval == 0
        h, hstate = jax.lax.cond(due, estimate, keep, state[0].hessian_fn_state)
        out, new = base.update(updates, state, params, hessian=h)
        return out, (new[0]._replace(hessian_fn_state=hstate), *new[1:])

    out = GradstepTransformation(init, update)
    out.__dict__.update({k: v for k, v in base.__dict__.items() if k not in ("init", "update")})
    return out


# -- DP-SGD, complex splitting --------------------------------------------------------


def dpsgd(
    learning_rate: Any,
    l2_norm_clip: float,
    noise_multiplier: float,
    seed: int,
    momentum: float | None = None,
    nesterov: bool = False,
) -> GradstepTransformation:
    """optax.contrib's ``dpsgd``: per-example gradients clipped, summed, noised and
    averaged (:func:`differentially_private_aggregate`, gradstep's noise from the
    integer ``seed``), optional momentum (``trace``), learning rate."""
    check("dpsgd", "nesterov", nesterov, BOOL)
    return chain(
        differentially_private_aggregate(l2_norm_clip, noise_multiplier, seed),
        identity() if momentum is None else trace(momentum, nesterov),
        scale_by_learning_rate(learning_rate),
    )


def _split(x: Any) -> Any:
    if jnp.iscomplexobj(x):
        return SplitRealAndImaginaryArrays(jnp.real(x), jnp.imag(x))
    return x


def _join(x: Any) -> Any:
    if isinstance(x, SplitRealAndImaginaryArrays):
        return jax.lax.complex(x.real, x.imaginary)
    return x


def _is_pair(x: Any) -> bool:
    return isinstance(x, SplitRealAndImaginaryArrays)


def split_real_and_imaginary(inner: Any) -> GradstepTransformation:
    """optax.contrib's ``split_real_and_imaginary``: ``inner`` sees each complex leaf
    as the pair ``SplitRealAndImaginaryArrays(real, imaginary)`` of real leaves
    (gradstep's rules are real), and its updates are joined back."""

    def init(params: Any) -> Any:
        return SplitRealAndImaginaryState(inner.init(jax.tree_util.tree_map(_split, params)))

    def update(updates: Any, state: Any, params: Any = None, **extra: Any):
        updates = jax.tree_util.tree_map(_split, updates)
        params = None if params is None else jax.tree_util.tree_map(_split, params)
        out, inner_state = inner.update(updates, state.inner_state, params, **extra)
        out = jax.tree_util.tree_map(_join, out, is_leaf=_is_pair)
        return out, SplitRealAndImaginaryState(inner_state)

    return GradstepTransformation(init, update)


__all__ = [
    "HutchinsonState",
    "NormalizeState",
    "SAMState",
    "SophiaState",
    "SplitRealAndImaginaryState",
    "dpsgd",
    "hutchinson_estimator_diag_hessian",
    "normalize",
    "sam",
    "sophia",
    "split_real_and_imaginary",
]
