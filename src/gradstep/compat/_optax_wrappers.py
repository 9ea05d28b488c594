r"""optax 0.2.8's wrappers around another transformation, and its small tree helpers:
``MultiSteps``, ``apply_every``, ``lookahead``, ``flatten``, ``conditionally_mask``,
``conditionally_transform``, ``zero_nans``, ``skip_not_finite``, ``periodic_update``,
``incremental_update``, ``with_extra_args_support``.

These wrappers decide *when* and *on what* the wrapped transformation runs; they
hold no optimizer math of their own, so they are written once with ``jax.numpy``
over the wrapped transformation's ``init``/``update`` (any optax transformation,
this module's included). Their state is optax's NamedTuple, with the wrapped
state inside it as that transformation keeps it.

Symbols (``MultiSteps``): :math:`g_i` the updates of mini-step :math:`i` (0-based in
its window), :math:`a` field ``acc_grads``, :math:`k` ``every_k_schedule`` at the
current ``gradient_step``:

.. math::

    \text{mean: } a \leftarrow a + (g_i - a)/(i+1) \qquad
    \text{sum: } a \leftarrow a + g_i

the wrapped transformation runs on :math:`a` at every mini-step, and its output and
new state are kept only on the last one (:math:`i = k-1`), after which :math:`a`
returns to 0 (the running mean is :math:`gradstep.transforms.accumulate`'s).
``apply_every(k)`` sums :math:`k` updates and emits the sum every :math:`k`-th call.
``lookahead`` (Zhang et al. 2019) moves the slow weights :math:`\phi` of optax's
``LookaheadParams(fast, slow)`` every ``sync_period`` steps with the element math of
:func:`gradstep.transforms.lookahead`: :math:`\delta = \theta + u - \phi`,
:math:`\phi \leftarrow \phi + \alpha\delta`, :math:`\theta \leftarrow \phi`.

References:
  optax 0.2.8 documentation: ``MultiSteps``, ``apply_every``, ``lookahead``,
  ``flatten``, ``conditionally_mask``, ``conditionally_transform``, ``zero_nans``.
  Zhang, Lucas, Hinton & Ba (2019): Lookahead Optimizer: k steps forward, 1 step
  back. NeurIPS, arXiv:1907.08610.

Differences: ``apply_every``'s ``k`` and ``lookahead``'s ``sync_period`` must be
integers >= 1 and ``slow_step_size`` in [0, 1] (optax raises for ``sync_period < 1``
only); ``MultiSteps`` and ``conditionally_*`` select the result of a skipped step
with ``jnp.where`` where optax branches with ``lax.cond`` (the same numbers; the
wrapped update is traced once and computed on every step).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.validate import BOOL, Interval, check
from ..jax import GradstepTransformation, OptaxStage
from ..transforms.lookahead import _lookahead
from ._optax_state import safe_increment, state_class

__all__ = [
    "ApplyEvery",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "LookaheadParams",
    "LookaheadState",
    "MultiSteps",
    "MultiStepsState",
    "ZeroNansState",
    "apply_every",
    "conditionally_mask",
    "conditionally_transform",
    "flatten",
    "incremental_update",
    "lookahead",
    "periodic_update",
    "skip_not_finite",
    "with_extra_args_support",
    "zero_nans",
]

_log = logging.getLogger(__name__)

ZeroNansState = state_class("ZeroNansState", ("found_nan",))
ApplyEvery = state_class("ApplyEvery", ("count", "grad_acc"))
MultiStepsState = state_class(
    "MultiStepsState",
    ("mini_step", "gradient_step", "inner_opt_state", "acc_grads", "skip_state"),
)
ConditionallyMaskState = state_class("ConditionallyMaskState", ("step", "inner_state"))
ConditionallyTransformState = state_class("ConditionallyTransformState", ("inner_state", "step"))
LookaheadState = state_class("LookaheadState", ("fast_state", "steps_since_sync"))
LookaheadParams = state_class("LookaheadParams", ("fast", "slow"))
if not hasattr(LookaheadParams, "init_synced"):  # pragma: no cover - without optax
    LookaheadParams.init_synced = classmethod(lambda cls, params: cls(fast=params, slow=params))

_K = Interval(1, integer=True)


def _takes_extra_args(t: Any) -> bool:
    try:
        from optax import GradientTransformationExtraArgs
    except ImportError:  # pragma: no cover - without optax
        return isinstance(t, GradstepTransformation)
    return isinstance(t, GradientTransformationExtraArgs)


def with_extra_args_support(tx: Any) -> GradstepTransformation:
    """optax's ``with_extra_args_support``: ``tx`` whose ``update`` takes (and, if
    ``tx``'s does not, drops) extra keyword arguments."""
    if _takes_extra_args(tx):
        return tx
    return _transformation(tx.init, lambda u, s, p=None, **extra: tx.update(u, s, p), "optax")


def _transformation(init: Callable, update: Callable, name: str) -> GradstepTransformation:
    """``init``/``update`` written with ``jax.numpy`` as a compat transformation; as
    a stage of a gradstep chain it runs as it is (its state is optax's)."""
    out = GradstepTransformation(init, update)
    out.transform = OptaxStage(out, name)
    out.engine = None
    return out


def _select(flag: Any, new: Any, old: Any) -> Any:
    """``new`` where ``flag`` else ``old``, leaf by leaf, in ``old``'s dtypes."""
    return jax.tree_util.tree_map(
        lambda n, o: jnp.where(flag, n, o).astype(jnp.result_type(o)), new, old
    )


# -- NaNs -----------------------------------------------------------------------------


def zero_nans() -> GradstepTransformation:
    """optax's ``zero_nans``: NaN elements of the updates become 0 (infinities are
    kept); ``ZeroNansState.found_nan`` tells, per leaf, whether the last updates had
    a NaN. (:func:`gradstep.transforms.zero_nonfinite` zeroes infinities too.)"""

    def init(params):
        return ZeroNansState(jax.tree_util.tree_map(lambda _: jnp.asarray(False), params))

    def update(updates, state, params=None, **extra):
        found = jax.tree_util.tree_map(lambda u: jnp.any(jnp.isnan(u)), updates)
        zeroed = jax.tree_util.tree_map(lambda u: jnp.where(jnp.isnan(u), 0, u), updates)
        return zeroed, ZeroNansState(found)

    return _transformation(init, update, "zero_nans")


def skip_not_finite(updates: Any, gradient_step: Any, params: Any) -> tuple[Any, dict]:
    """optax's ``skip_not_finite``, a ``should_skip_update_fn`` of :class:`MultiSteps`:
    ``(any element not finite, {"should_skip": ..., "num_not_finite": ...})``."""
    del gradient_step, params
    counts = [jnp.sum(~jnp.isfinite(u)) for u in jax.tree_util.tree_leaves(updates)]
    num = jnp.sum(jnp.asarray(counts)) if counts else jnp.zeros((), jnp.int32)
    should_skip = num > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num}


# -- accumulation -----------------------------------------------------------------------


def apply_every(k: int = 1) -> GradstepTransformation:
    """optax's ``apply_every``: sums ``k`` consecutive updates and emits the sum on
    every ``k``-th call (zeros on the others). ``ApplyEvery(count, grad_acc)``."""
    check("apply_every", "k", k, _K)

    def init(params):
        return ApplyEvery(jnp.zeros((), jnp.int32), jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None, **extra):
        phase = state.count % k
        keep = phase != 0  # a window starts from this call's updates
        acc = jax.tree_util.tree_map(lambda u, a: keep * a + u, updates, state.grad_acc)
        emit = phase == k - 1
        out = jax.tree_util.tree_map(lambda a: emit * a, acc)
        return out, ApplyEvery(safe_increment(state.count) % k, acc)

    return _transformation(init, update, "apply_every")


def _no_skip(updates: Any, gradient_step: Any, params: Any) -> tuple[Any, Any]:
    return jnp.asarray(False), ()


class MultiSteps:
    """optax's ``MultiSteps``: ``opt`` takes one step per ``every_k_schedule`` calls,
    on the mean (``use_grad_mean``) or the sum of their updates; the other calls
    return zeros and leave ``opt``'s state unchanged. ``should_skip_update_fn(updates,
    gradient_step, params) -> (bool, info)`` (e.g. :func:`skip_not_finite`) skips a
    call as if it never happened (``info`` goes to ``state.skip_state``). The state
    is ``MultiStepsState(mini_step, gradient_step, inner_opt_state, acc_grads,
    skip_state)``; ``has_updated(state)`` says whether the last call stepped."""

    def __init__(
        self,
        opt: Any,
        every_k_schedule: int | Callable,
        use_grad_mean: bool = True,
        should_skip_update_fn: Callable | None = None,
        accumulator_dtype: Any = jnp.float32,
    ):
        if not callable(every_k_schedule):
            check("MultiSteps", "every_k_schedule", every_k_schedule, _K)
        check("MultiSteps", "use_grad_mean", use_grad_mean, BOOL)
        self._opt = with_extra_args_support(opt)
        k = every_k_schedule
        self._every_k = k if callable(k) else (lambda step: k)
        self._use_grad_mean = use_grad_mean
        self._should_skip = should_skip_update_fn or _no_skip
        self._acc_dtype = jnp.dtype(accumulator_dtype)

    @property
    def inner_opt(self) -> Any:
        return self._opt

    def init(self, params: Any) -> Any:
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        step = jnp.zeros((), jnp.int32)
        _, skip_state = self._should_skip(zeros, step, params)
        return MultiStepsState(
            mini_step=jnp.zeros((), jnp.int32),
            gradient_step=step,
            inner_opt_state=self._opt.init(params),
            acc_grads=jax.tree_util.tree_map(
                lambda p: jnp.zeros(jnp.shape(p), self._acc_dtype), params
            ),
            skip_state=skip_state,
        )

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any):
        k = self._every_k(state.gradient_step)
        skip, skip_state = self._should_skip(updates, state.gradient_step, params)
        skip = jnp.asarray(skip)
        if (skip.dtype, skip.shape) != (jnp.bool_, ()):
            raise ValueError(
                "The `should_skip_update_fn` function should return a boolean scalar "
                f"array, but it returned an array of dtype {skip.dtype} and shape {skip.shape}"
            )
        i = state.mini_step
        if self._use_grad_mean:
            acc = jax.tree_util.tree_map(
                lambda g, a: a + (g - a) / (i + 1), updates, state.acc_grads
            )
        else:
            acc = jax.tree_util.tree_map(lambda g, a: a + g, updates, state.acc_grads)
        as_updates = jax.tree_util.tree_map(lambda a, g: a.astype(jnp.result_type(g)), acc, updates)
        out, inner = self._opt.update(as_updates, state.inner_opt_state, params, **extra)
        emit = i == k - 1
        stepped = MultiStepsState(
            mini_step=safe_increment(i) % k,
            gradient_step=jnp.where(emit, safe_increment(state.gradient_step), state.gradient_step),
            inner_opt_state=_select(emit, inner, state.inner_opt_state),
            acc_grads=jax.tree_util.tree_map(
                lambda a: ((1 - emit) * a).astype(self._acc_dtype), acc
            ),
            skip_state=skip_state,
        )
        out = jax.tree_util.tree_map(lambda u: emit * u, out)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, out)
        kept = MultiStepsState(
            i, state.gradient_step, state.inner_opt_state, state.acc_grads, skip_state
        )
        return _select(skip, zeros, out), _select(skip, kept, stepped)

    def has_updated(self, state: Any) -> Any:
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradstepTransformation:
        return _transformation(self.init, self.update, "multi_steps")


# -- lookahead -----------------------------------------------------------------------


def lookahead(
    fast_optimizer: Any, sync_period: int, slow_step_size: float, reset_state: bool = False
) -> GradstepTransformation:
    """optax's ``lookahead``: ``fast_optimizer`` moves ``params.fast`` of
    ``LookaheadParams(fast, slow)``; every ``sync_period`` steps the slow weights move
    ``slow_step_size`` of the way to the fast ones and the fast restart from them
    (``reset_state``: the fast optimizer's state restarts too). Updates come back as
    ``LookaheadParams``; gradients are taken at ``params.fast``."""
    # optax refuses a period below 1 too
    check("lookahead", "sync_period", sync_period, Interval(1, integer=True, always_checked=True))
    check("lookahead", "slow_step_size", slow_step_size, Interval(0.0, 1.0))
    check("lookahead", "reset_state", reset_state, BOOL)
    fast = with_extra_args_support(fast_optimizer)

    def init(params):
        fast_params = getattr(params, "fast", None)
        if fast_params is None:
            _log.warning(  # optax's behaviour: take the parameters as the fast ones
                "`params` has no attribute `fast`. Continuing by assuming that only fast "
                "parameters were passed to lookahead init."
            )
            fast_params = params
        return LookaheadState(fast.init(fast_params), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None, **extra):
        if params is None or not hasattr(params, "fast"):
            raise ValueError("lookahead: update needs params=LookaheadParams(fast, slow)")
        steps, fast_state = fast.update(updates, state.fast_state, params.fast, **extra)
        sync = state.steps_since_sync == sync_period - 1
        push = jnp.where(sync, slow_step_size, 0.0)
        pull = jnp.where(sync, 1.0 - slow_step_size, 0.0)

        def pair(u, w, slow):
            fast_u, new_slow = _lookahead(
                u, w, slow, 0.0, pull.astype(u.dtype), push.astype(u.dtype)
            )
            return fast_u, new_slow - slow

        # leaf by leaf over the updates' structure (a tree of pairs would mistake the
        # user's own 2-tuples for pairs)
        leaves, td = jax.tree_util.tree_flatten(steps)
        fast_w, slow_w = td.flatten_up_to(params.fast), td.flatten_up_to(params.slow)
        pairs = [pair(u, w, slow) for u, w, slow in zip(leaves, fast_w, slow_w)]
        fast_updates = td.unflatten([fu for fu, _ in pairs])
        slow_updates = td.unflatten([su for _, su in pairs])
        if reset_state:
            fast_state = _select(sync, fast.init(params.fast), fast_state)
        return (
            LookaheadParams(fast=fast_updates, slow=slow_updates),
            LookaheadState(fast_state, (state.steps_since_sync + 1) % sync_period),
        )

    return _transformation(init, update, "lookahead")


# -- layout and conditions -----------------------------------------------------------


def flatten(inner: Any) -> GradstepTransformation:
    """optax's ``flatten``: ``inner`` runs on one vector, the concatenation of the
    raveled leaves (of the updates and of the parameters); its state is over that
    vector."""
    inner = with_extra_args_support(inner)

    def ravel(tree):
        leaves = jax.tree_util.tree_leaves(tree)
        return jnp.concatenate([jnp.reshape(x, (-1,)) for x in leaves])

    def unravel(like, flat):
        leaves, td = jax.tree_util.tree_flatten(like)
        cuts = np.cumsum([np.size(x) for x in leaves])[:-1]
        parts = jnp.split(flat, cuts)
        return td.unflatten([jnp.reshape(p, jnp.shape(x)) for p, x in zip(parts, leaves)])

    def init(params):
        return inner.init(ravel(params))

    def update(updates, state, params=None, **extra):
        flat_params = None if params is None else ravel(params)
        flat, state = inner.update(ravel(updates), state, flat_params, **extra)
        return unravel(updates, flat), state

    return _transformation(init, update, "flatten")


def _conditional(owner: str, inner: Any, should_transform_fn: Callable, forward: bool):
    check(owner, "forward_extra_args", forward, BOOL)
    inner = with_extra_args_support(inner)

    def run(state_step, updates, inner_state, params, extra):
        kwargs = extra if forward else {}
        flag = jnp.asarray(should_transform_fn(state_step, **kwargs))
        return flag, inner.update(updates, inner_state, params, **extra)

    return inner, run


def conditionally_transform(
    inner: Any, should_transform_fn: Callable, forward_extra_args: bool = False
) -> GradstepTransformation:
    """optax's ``conditionally_transform``: ``inner`` runs on the steps where
    ``should_transform_fn(step)`` is true; on the others the updates pass through
    unchanged and ``inner``'s state is kept. ``ConditionallyTransformState(
    inner_state, step)``."""
    inner, run = _conditional(
        "conditionally_transform", inner, should_transform_fn, forward_extra_args
    )

    def init(params):
        return ConditionallyTransformState(inner.init(params), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None, **extra):
        flag, (new, inner_state) = run(state.step, updates, state.inner_state, params, extra)
        return (
            _select(flag, new, updates),
            ConditionallyTransformState(
                _select(flag, inner_state, state.inner_state), safe_increment(state.step)
            ),
        )

    return _transformation(init, update, "conditionally_transform")


def conditionally_mask(
    inner: Any, should_transform_fn: Callable, forward_extra_args: bool = False
) -> GradstepTransformation:
    """optax's ``conditionally_mask``: ``inner`` runs on the steps where
    ``should_transform_fn(step)`` is true; on the others the updates are zeros and
    ``inner``'s state is kept. ``ConditionallyMaskState(step, inner_state)``."""
    inner, run = _conditional("conditionally_mask", inner, should_transform_fn, forward_extra_args)

    def init(params):
        return ConditionallyMaskState(jnp.zeros((), jnp.int32), inner.init(params))

    def update(updates, state, params=None, **extra):
        flag, (new, inner_state) = run(state.step, updates, state.inner_state, params, extra)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, new)
        return (
            _select(flag, new, zeros),
            ConditionallyMaskState(
                safe_increment(state.step), _select(flag, inner_state, state.inner_state)
            ),
        )

    return _transformation(init, update, "conditionally_mask")


# -- tree helpers -------------------------------------------------------------------------


def incremental_update(new_tensors: Any, old_tensors: Any, step_size: Any) -> Any:
    """optax's ``incremental_update``: ``step_size * new + (1 - step_size) * old``
    leaf by leaf (Polyak averaging of target networks)."""
    return jax.tree_util.tree_map(
        lambda new, old: step_size * new + (1.0 - step_size) * old, new_tensors, old_tensors
    )


def periodic_update(new_tensors: Any, old_tensors: Any, steps: Any, update_period: Any) -> Any:
    """optax's ``periodic_update``: ``new_tensors`` when ``steps`` is a multiple of
    ``update_period``, else ``old_tensors``."""
    take = steps % update_period == 0
    return jax.tree_util.tree_map(
        lambda new, old: jnp.where(take, new, old), new_tensors, old_tensors
    )
