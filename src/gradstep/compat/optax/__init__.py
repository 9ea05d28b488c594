r"""optax's API on gradstep's rules: ``import gradstep.compat.optax as optax``.

The names, argument names and defaults of optax 0.2.8, each mapped onto a gradstep
rule and its options, so that the trajectories are optax's (the conformance
fixtures in ``tests/conformance/fixtures/optax_compat/`` were recorded from optax
0.2.8 and are replayed through this module under ``jax.jit``). Every optimizer
returns a :class:`gradstep.jax.GradstepTransformation`: an
``optax.GradientTransformationExtraArgs`` that runs on the JAX engine and also
works inside real ``optax.chain``; its ``transform`` attribute is the gradstep
transform (usable with :class:`gradstep.Optimizer` on NumPy arrays).

The state is optax's: a chain's state is the tuple of its stages' states, each
optax's own NamedTuple with optax's field names (``state[0].mu``,
``ScaleByAdamState``, ``MaskedState`` whose trees hold ``MaskedNode()``,
``InjectStatefulHyperparamsState.hyperparams["learning_rate"]``,
``ApplyIfFiniteState.last_finite``), so optax code that reads or edits the state
(``optax.tree_utils.tree_get(state, "count")``, ``tree_set``, ``_replace``) works
unchanged; optax's own classes are used when optax is installed. The core keeps
its named dicts; :mod:`gradstep.compat._optax_state` maps them to optax's
structures and back at every call. ``init`` takes abstract parameters
(``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``; zeros of their shape,
dtype and sharding, as optax's ``zeros_like``) and is traceable (``jax.eval_shape``,
``jax.jit`` with ``out_shardings``). Masks and labels are taken as optax takes
them: full trees, prefix trees (``{"encoder": False, "head": True}``) or functions
of the parameters. Inside a mask or a partition, at any depth, every mask, label
and state sees optax's tree: the parameters' with ``MaskedNode()`` in place of
each subtree an enclosing mask left out (``masked(chain(masked(t, m2), ...), m1)``:
``m2`` is a tree, prefix or function over that tree, as in optax; the state holds
the same holes). ``tree``, ``tree_utils`` and ``tree_map_params`` are optax's
own, reached through this module when optax is installed.

What differs from optax, on purpose:

- Hyperparameters are numbers (a 0-d array, ``jnp.asarray(1e-3)``, counts as the
  number it holds) or schedules. Any number optax takes is taken (a negative
  learning rate, ``b1=1.0``, ``clip_by_global_norm(0.0)``: no range optax does not
  check itself is checked, when the optimizer is made or at its steps, where an
  injected value or a schedule out of range is stepped with as optax does, not
  skipped); what optax refuses, a value of the wrong kind (a string, a schedule
  where the rule takes a number) and what gradstep cannot compute as optax does
  (``lookahead(sync_period=0)``, a negative ``exponential_decay`` rate, Sophia's
  ``gamma <= 0``, the line searches' ranges) raise ``ValueError``; a per-step
  value is passed to ``update`` by its gradstep name
  (``update(g, s, p, learning_rate=lr)``) or injected with
  :func:`inject_hyperparams`, which puts into ``state.hyperparams`` the arguments
  that set a per-step hyperparameter of the rule (``learning_rate``, ``b1``,
  ``b2``, ``decay``, ``momentum``, ``weight_decay``, and the constants ``eps``,
  ``eps_root``, RAdam's ``threshold``, which the compat optimizers take per step);
  optax also puts arguments that act only when the state is made
  (``initial_scale``, ``initial_accumulator_value``) there, and a change to them
  would be ignored: they are left out. optax's own ``inject_hyperparams`` around a
  factory of this module works outside ``jax.jit`` (it makes the optimizer again at
  every step, from 0-d arrays); inside, the values it passes are traced, unknown
  while the optimizer is made, and refused with a ``ValueError`` that points here.
- ``mu_dtype``/``accumulator_dtype`` store that slot (the same field of optax's
  state) in the given dtype (e.g. ``jnp.bfloat16``), as optax does; the arithmetic
  stays in float32 or wider (optax multiplies the stored moment by its decay in the
  stored dtype: an extra rounding gradstep does not make, see
  :mod:`gradstep._core.precision`). No argument is accepted and ignored.
- Schedules are gradstep schedules (Python functions of the step count); called
  with a traced count they evaluate on the host, so they also work inside real
  optax; called with an array of counts they give an array of values.
- Complex parameters are stepped with optax's meaning (complex first moments,
  second moments from :math:`|g|^2 = \mathrm{Re}(g \bar g)`, the state complex like
  the parameter) by the stages whose element math is written for it (conjugate
  products; :func:`gradstep._core.xmath.complex_ready`): ``adam``, ``adamw``,
  ``amsgrad``, ``nadam``, ``nadamw``, ``radam``, ``adamax``, ``adamaxw``,
  ``adagrad``, ``rmsprop``, ``lamb``, ``lars``, ``sgd`` and their ``scale_by_*``
  stages, ``trace``, ``ema``, ``clip_by_global_norm``, the scalings and the combinators
  (``tests/jax_front/test_optax_complex.py``). Every other stage (``lion``,
  ``adadelta``, ``sign_sgd``, ``clip``, ...) and a ``mu_dtype``/``accumulator_dtype``
  refuse complex parameters with a ``ValueError`` naming the stage.
  (:func:`gradstep.jax.to_optax` keeps torch's meaning: real and imaginary parts.)

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
- ``rmsprop(bias_correction=True)``, ``scale_by_rms``/``scale_by_stddev`` with it
  -> ``scale_by_rms(bias_correction=True)``.
- ``sign_sgd`` -> ``scale_by_sign`` + learning rate; ``signum`` ->
  ``scale_by_signum(beta)`` + learning rate (optax's ``ema(debias=False)`` and
  ``scale_by_sign``: one gradstep stage shown as optax's two states).
- ``clip_by_global_norm``, ``clip``, ``scale``, ``scale_by_learning_rate``,
  ``scale_by_schedule``, ``add_decayed_weights``, ``trace``, ``scale_by_adam``,
  ``scale_by_amsgrad``, ``scale_by_adamax``, ``scale_by_radam``, ``scale_by_lion``,
  ``scale_by_adadelta``, ``scale_by_rss``, ``scale_by_rms``, ``scale_by_stddev``,
  ``scale_by_trust_ratio``, ``scale_by_sign``, ``ema``, ``identity``, ``set_to_zero``,
  ``stateless``, ``stateless_with_tree_map``, ``chain``, ``named_chain``,
  ``masked``, ``multi_transform``/``partition``, ``apply_if_finite``,
  ``inject_hyperparams``/``inject_stateful_hyperparams`` -> the gradstep stage or
  combinator of the same meaning; ``global_norm`` and ``safe_norm`` as optax's.
- ``adafactor``, ``scale_by_factored_rms`` -> gradstep's Adafactor stages in
  optax's order, with optax's ``FactoredState``.
- ``MultiSteps``, ``apply_every``, ``lookahead``, ``flatten``,
  ``conditionally_mask``, ``conditionally_transform``, ``zero_nans``,
  ``skip_not_finite``, ``periodic_update``, ``incremental_update``,
  ``with_extra_args_support`` -> wrappers written with ``jax.numpy`` around the
  wrapped transformation (:mod:`gradstep.compat._optax_wrappers`), with optax's
  state NamedTuples; ``microbatching`` is optax's module.
- Schedules: ``constant_schedule``, ``linear_schedule``, ``polynomial_schedule``,
  ``cosine_decay_schedule``, ``warmup_cosine_decay_schedule``,
  ``warmup_constant_schedule``, ``exponential_decay``,
  ``piecewise_constant_schedule``, ``join_schedules``.
- ``noisy_sgd``/``add_noise`` -> :func:`gradstep.noisy_sgd` (the noise drawn by
  gradstep from the integer ``key``, not optax's draws); ``polyak_sgd``/
  ``scale_by_polyak`` -> :func:`gradstep.polyak_sgd` (``update(..., value=loss)``);
  ``contrib.mechanize`` as ``mechanize`` -> :func:`gradstep.rules.mechanize`, its
  state optax's ``MechanicState``.
- ``adabelief``/``scale_by_belief`` -> :func:`gradstep.rules.scale_by_belief`;
  ``yogi``/``scale_by_yogi`` -> :func:`gradstep.rules.scale_by_yogi`;
  ``novograd``/``scale_by_novograd`` -> :func:`gradstep.rules.scale_by_novograd` (optax's
  per-tensor ``nu`` a 0-d array per tensor in the state); ``adan``/``scale_by_adan`` ->
  :func:`gradstep.rules.scale_by_adan` with ``correction_weight="one_minus_beta2"``
  (+ decoupled ``add_decayed_weights(mask)``); each + learning rate.
- ``fromage`` -> :func:`gradstep.fromage` (shown as optax's three states);
  ``sm3``/``scale_by_sm3`` -> SM3's accumulators and momentum
  (:mod:`gradstep.rules.sm3`, ``mu`` optax's list of per-axis vectors);
  ``rprop``/``scale_by_rprop`` -> :func:`gradstep.rules.scale_by_rprop` with
  ``lagged_step=True`` (optax applies each step one call late; a ``learning_rate``
  within ``[min_step_size, max_step_size]``).
- ``optimistic_gradient_descent``, ``optimistic_adam``, ``optimistic_adam_v2``,
  ``scale_by_optimistic_gradient`` -> :func:`gradstep.rules.scale_by_optimistic_gradient`
  after Adam's direction (Nesterov's form by default) where optax has it.
- ``scale_by_distance_over_gradients`` -> :func:`gradstep.rules.ldog.scale_by_ldog`
  (layer-wise DoG); ``scale_by_param_block_norm``, ``scale_by_param_block_rms``,
  ``normalize_by_update_norm`` -> :mod:`gradstep.transforms.block_scaling`;
  ``centralize`` -> :func:`gradstep.transforms.centralize`; ``scale_gradient`` (a
  function of arrays: identity forward, gradient times ``scale`` backward);
  ``radam``/``scale_by_radam`` take ``threshold`` from 4 (optax's NaN below).
- ``lbfgs``, ``scale_by_lbfgs`` -> :func:`gradstep.rules.lbfgs_two_loop.two_loop` with
  optax's memory ring and initial scaling; ``scale_by_zoom_linesearch``,
  ``scale_by_backtracking_linesearch``, ``value_and_grad_from_state`` -> ``jax.lax``
  loops (:mod:`gradstep.compat._optax_zoom`, :mod:`gradstep.compat._optax_linesearch`),
  with optax's states
  (``ScaleByLBFGSState``, ``ScaleByZoomLinesearchState``, ``ZoomLinesearchInfo``,
  ``ScaleByBacktrackingLinesearchState``).
- ``contrib`` -> :mod:`gradstep.compat.optax.contrib` (optax.contrib's optimizers on
  gradstep's rules; the few it has no rule for raise ``AttributeError`` by name).
- Names that hold no optimizer (the losses such as
  ``softmax_cross_entropy_with_integer_labels``, ``update_moment`` and the other
  numerics, type aliases, optax's other modules; listed in
  :mod:`gradstep.compat._optax_passthrough`) are optax's own objects, reached here
  when optax is installed: every public name of optax 0.2.8 resolves.
"""

from __future__ import annotations

from ...jax import GradstepTransformation, apply_updates
from .._optax_adafactor import FactoredState, adafactor, scale_by_factored_rms
from .._optax_aliases import (
    EmaState,
    ema,
    global_norm,
    named_chain,
    safe_norm,
    scale_by_adadelta,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_lion,
    scale_by_radam,
    scale_by_rss,
    scale_by_schedule,
    scale_by_sign,
    scale_by_stddev,
    scale_by_trust_ratio,
    set_to_zero,
    sign_sgd,
    signum,
    stateless,
    stateless_with_tree_map,
)
from .._optax_base import taking_what_optax_takes
from .._optax_extra import *  # noqa: F403  (schedules and transforms beyond the above)
from .._optax_lbfgs import (
    ScaleByBacktrackingLinesearchState,
    ScaleByLBFGSState,
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    lbfgs,
    scale_by_backtracking_linesearch,
    scale_by_lbfgs,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)
from .._optax_optimizers import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamaxw,
    adamw,
    amsgrad,
    lamb,
    lars,
    lion,
    radam,
    rmsprop,
    sgd,
)
from .._optax_passthrough import passed_through
from .._optax_schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    join_schedules,
    linear_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
)
from .._optax_state import (
    ApplyIfFiniteState,
    EmptyState,
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    MaskedNode,
    MaskedState,
    PartitionState,
    ScaleByAdaDeltaState,
    ScaleByAdamState,
    ScaleByAmsgradState,
    ScaleByLionState,
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRssState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    ScaleByScheduleState,
    TraceState,
)
from .._optax_tail import (
    ScaleByAdanState,
    ScaleByBeliefState,
    ScaleByNovogradState,
    ScaleByRpropState,
    ScaleBySM3State,
    ScaleByTrustRatioState,
    centralize,
    normalize_by_update_norm,
    scale_by_adan,
    scale_by_belief,
    scale_by_distance_over_gradients,
    scale_by_novograd,
    scale_by_optimistic_gradient,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_rprop,
    scale_by_sm3,
    scale_by_yogi,
    scale_gradient,
)
from .._optax_tail_optimizers import (
    adabelief,
    adan,
    fromage,
    novograd,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    rprop,
    sm3,
    yogi,
)
from .._optax_transforms import (
    add_decayed_weights,
    apply_if_finite,
    chain,
    clip,
    clip_by_global_norm,
    identity,
    inject_hyperparams,
    inject_stateful_hyperparams,
    masked,
    multi_transform,
    partition,
    scale,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    trace,
)
from .._optax_variants import nadam, nadamw
from .._optax_wrappers import *  # noqa: F403  (wrappers: MultiSteps, lookahead, flatten, ...)

__all__ = [
    "ApplyIfFiniteState",
    "EmaState",
    "EmptyState",
    "FactoredState",
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "MaskedNode",
    "MaskedState",
    "PartitionState",
    "ScaleByAdaDeltaState",
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "ScaleByLionState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsWithCountState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "TraceState",
    "adadelta",
    "adafactor",
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
    "ema",
    "cosine_decay_schedule",
    "exponential_decay",
    "global_norm",
    "identity",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "join_schedules",
    "lamb",
    "lars",
    "linear_schedule",
    "lion",
    "masked",
    "multi_transform",
    "nadam",
    "nadamw",
    "named_chain",
    "partition",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "radam",
    "rmsprop",
    "safe_norm",
    "scale",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_factored_rms",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_schedule",
    "scale_by_sign",
    "scale_by_stddev",
    "scale_by_trust_ratio",
    "set_to_zero",
    "sgd",
    "sign_sgd",
    "signum",
    "stateless",
    "stateless_with_tree_map",
    "trace",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    # optax's further optimizers and transforms (_optax_tail, _optax_tail_optimizers)
    "ScaleByAdanState",
    "ScaleByBeliefState",
    "ScaleByNovogradState",
    "ScaleByRpropState",
    "ScaleBySM3State",
    "ScaleByTrustRatioState",
    "centralize",
    "normalize_by_update_norm",
    "scale_by_adan",
    "scale_by_belief",
    "scale_by_distance_over_gradients",
    "scale_by_novograd",
    "scale_by_optimistic_gradient",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_rprop",
    "scale_by_sm3",
    "scale_by_yogi",
    "scale_gradient",
    "adabelief",
    "adan",
    "fromage",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "rprop",
    "sm3",
    "yogi",
    # optax's L-BFGS and its line searches (_optax_lbfgs, _optax_zoom, _optax_linesearch)
    "ScaleByBacktrackingLinesearchState",
    "ScaleByLBFGSState",
    "ScaleByZoomLinesearchState",
    "ZoomLinesearchInfo",
    "lbfgs",
    "scale_by_backtracking_linesearch",
    "scale_by_lbfgs",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
]


GradientTransformation = GradstepTransformation
GradientTransformationExtraArgs = GradstepTransformation


def __getattr__(name: str):
    return passed_through(__name__, name)


# every factory takes the values optax takes (no range optax does not check itself)
taking_what_optax_takes(globals(), __name__)


from . import contrib  # noqa: E402, F401  (optax.contrib's names)
