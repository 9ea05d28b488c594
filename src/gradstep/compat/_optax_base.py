"""What the optax-compatible modules share: argument ranges, wrapping a gradstep
transform as an optax transformation (complex parameters stepped with optax's
meaning where the rules' math is written for it), and refusing dtype arguments."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._core.combine import Masked, Partition
from .._core.elementwise import Elementwise
from .._core.precision import StateDtype, dtype_name, with_state_dtype
from .._core.skip import SkipNonfinite
from .._core.transform import Chain, FunctionTransform, Transform
from .._core.validate import (
    Interval,
    decay_rate,
    nonnegative,
    ranges_are_waived,
    ranges_waived,
    remember_recipe,
)
from .._core.xmath import is_complex_ready
from ..jax import GradstepTransformation, JaxEngine, OptaxStage, _transformation, from_optax
from ._optax_state import RAW, Ctx, Layout, MaskedNode

LR = nonnegative(schedulable=True)
DECAY = decay_rate()
EPS = nonnegative()
MOMENTUM = Interval(0.0, 1.0)
WD = nonnegative(schedulable=True)


def wrap(transform: Transform, layout: Layout = RAW, **names: str) -> GradstepTransformation:
    """``transform`` as an optax transformation whose state is optax's (``layout``
    maps the core's state to it and back); ``names`` maps optax's argument names to
    the gradstep hyperparameters they set (for :func:`inject_hyperparams`)."""
    # complex leaves run as they are (complex element math, optax's meaning), which
    # every stage must be written for (complex_unsupported), not as real views
    # masks and partitions hand their inner stages optax's tree with MaskedNode()
    # holes (what optax's masked gives its inner transformation), at any depth
    engine = JaxEngine(transform, holes=MaskedNode)
    core = _transformation(transform, engine, real_views=False)
    unsupported = complex_unsupported(transform)

    def init(params: Any) -> Any:
        params = concrete(params)
        refuse_complex(params, unsupported)
        inner = core.init(params)
        return layout.to_optax(inner, transform, Ctx.of(params, None), None)

    def update(updates: Any, state: Any, params: Any = None, **extra: Any):
        refuse_complex(updates, unsupported)
        ctx = Ctx.of(params, updates)
        inner = layout.from_optax(state, transform, ctx)
        updates, inner = core.update(updates, inner, params, **extra)
        return updates, layout.to_optax(inner, transform, ctx, state)

    out = GradstepTransformation(init, update)
    out.transform = transform
    out.engine = core.engine
    out.layout = layout
    out.hyperparam_names = names
    return out


#: the stage kinds that only route leaves to their children (no math of their own)
_ROUTING = (Chain, Masked, Partition, SkipNonfinite)


def complex_unsupported(transform: Transform) -> list[str]:
    """The names of the stages of ``transform`` whose math is not written for
    complex values (:func:`gradstep._core.xmath.complex_ready`); empty: complex
    parameters are stepped as optax steps them (complex first moments, second
    moments from :math:`|g|^2`). A slot stored in another dtype (``mu_dtype``) is
    not: optax would cast a complex moment to a real dtype."""
    if isinstance(transform, (OptaxStage, FunctionTransform)):
        return []  # optax's own math; a function of the updates (``stateless``)
    if isinstance(transform, Elementwise):
        ready = is_complex_ready(transform.element)
        ready = ready and all(slot.dtype is None for slot in transform.slots)
        return [] if ready else [transform.name]
    if type(transform) in _ROUTING:
        return [name for child in transform.children() for name in complex_unsupported(child)]
    return [transform.name]


def refuse_complex(tree: Any, unsupported: list[str]) -> None:
    """Complex parameters or updates of a transform with stages whose complex meaning
    is not written (``unsupported``) raise: their steps would not be optax's."""
    if not unsupported:
        return
    complex_leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.iscomplexobj(x)]
    if complex_leaves:
        raise ValueError(
            f"gradstep.compat.optax: invalid parameters of dtype {complex_leaves[0].dtype} "
            f"for {', '.join(dict.fromkeys(unsupported))}; valid values: real floating "
            "arrays (complex parameters are stepped with optax's meaning by the stages "
            "whose math is written for them: adam, adamw, amsgrad, nadam, radam, "
            "adamax, adagrad, rmsprop, lamb, sgd and their scale_by_* transforms, "
            "without mu_dtype/accumulator_dtype)"
        )


def with_update(t: GradstepTransformation, update: Any) -> GradstepTransformation:
    """``t`` with another ``update`` (its transform, engine and layout kept)."""
    out = GradstepTransformation(t.init, update)
    out.__dict__.update(t.__dict__)
    return out


def concrete(params: Any) -> Any:
    """Abstract leaves (``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``) as
    zeros of their shape, dtype and sharding: optax's ``init`` accepts them (its
    state starts from ``zeros_like``), and so does this layer's."""

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.ShapeDtypeStruct):
            return jnp.zeros(x.shape, x.dtype, device=x.sharding)
        return x

    return jax.tree_util.tree_map(leaf, params)


ADAM_NAMES = {"b1": "beta1", "b2": "beta2", "eps": "epsilon"}


def as_stage(t: Any) -> Transform:
    """A gradstep stage from a compat object, a gradstep transform or an optax one.
    A compat object whose state is more than its transform's (``own_state``:
    :func:`inject_hyperparams`' ``InjectStatefulHyperparamsState``) runs as a whole,
    as an optax stage keeping that state, as optax's combinators keep it."""
    if isinstance(t, Transform):
        return t
    if getattr(t, "own_state", False):
        return OptaxStage(t, getattr(t, "stage_name", "optax"))
    return from_optax(t)


def stored_in(owner: str, option: str, value: Any, transform: Transform, slot: str) -> Transform:
    """``transform`` with its slot ``slot`` stored in ``value`` (optax's ``mu_dtype``,
    ``accumulator_dtype``; None: the parameter's dtype), the math still in float32 or
    wider (:mod:`gradstep._core.precision`)."""
    if value is None:
        return transform
    if not StateDtype(per_slot=False).contains(value) or dtype_name(value) == "blockwise8":
        # optax's state classes have no field for 8-bit block scales: gradstep's own
        # rules take it (gradstep.jax.to_optax(gradstep.adam(state_dtype="int8")))
        raise ValueError(
            f"{owner}: invalid {option}={value!r}; valid values: None, float16, bfloat16, "
            "float32, float64 (8-bit state: gradstep.jax.to_optax of a gradstep rule "
            "with state_dtype='int8')"
        )
    try:
        return with_state_dtype(transform, {slot: value}, owner)
    except ValueError:
        raise ValueError(
            f"{owner}: invalid {option}={value!r} with these options (their state is not "
            "kept in elementwise slots); valid values: None"
        ) from None


def no_dtype(owner: str, name: str, value: Any) -> None:
    """Refuses a dtype argument of a transform whose state is not kept in elementwise
    slots (so :func:`stored_in` could not reach it)."""
    if value is not None:
        raise ValueError(
            f"{owner}: invalid {name}={value!r}; valid values: None (this state is not "
            "kept in elementwise slots)"
        )


def injectable(stage: Any, derived: Any = None, **promote: tuple[str, Any]) -> Any:
    """``stage`` (an elementwise rule stage) whose construction-time constants become
    per-step hyperparameters, as optax's ``inject_hyperparams`` treats every numeric
    argument: ``promote`` maps a hyperparameter name to ``(target, range)``, where
    ``target`` is the keyword of the stage's ``prepare`` (a ``functools.partial``)
    that the value sets, or else the name of a scalar ``prepare`` returns. The math
    stays the rule's: ``prepare`` runs with the step's value in place of the fixed
    one (a traced value too, so a changed ``eps`` changes the step under ``jax.jit``).
    ``derived(values)`` gives further ``prepare`` keywords that follow from the
    promoted values (Nadam's product of the :math:`\\beta_1`).
    """
    prepare = stage.prepare
    if not isinstance(prepare, functools.partial):
        raise TypeError(f"injectable: {stage.name}'s prepare is not a functools.partial")
    keywords = dict(prepare.keywords)
    constants = prepare.args[0] if prepare.args and isinstance(prepare.args[0], dict) else {}
    initial = {}
    for name, (target, _) in promote.items():
        if target in keywords:
            initial[name] = keywords[target]
        elif target in constants:
            initial[name] = constants[target]
        else:
            raise KeyError(f"injectable: {stage.name} has no constant {target!r}")

    def per_step(h: dict, count: Any) -> dict:
        given = {k: v for k, v in h.items() if k not in promote}
        kw = dict(keywords)
        kw.update({promote[k][0]: h[k] for k in promote if promote[k][0] in keywords})
        if derived is not None:
            kw.update(derived({k: h[k] for k in promote}))
        scalars = dict(prepare.func(*prepare.args, given, count, **kw))
        scalars.update({promote[k][0]: h[k] for k in promote if promote[k][0] not in keywords})
        return scalars

    out = stage.replace(hyperparams={**stage.hyperparams, **initial}, prepare=per_step)
    if not ranges_are_waived():  # as :func:`~gradstep._core.validate.hyperparams` does
        out.declared_ranges = {
            **getattr(stage, "declared_ranges", {}),
            **{name: constraint for name, (_, constraint) in promote.items()},
        }
    return out


#: the per-step constants of the Adam family (optax's eps, eps_root)
ADAM_EPS = {"epsilon": ("epsilon", EPS), "eps_root": ("eps_root", EPS)}


def one_rule_for_both(owner: str, bias_correction_mu: bool, bias_correction_nu: bool) -> None:
    """gradstep's AMSGrad corrects both moments or neither: refuse one flag alone."""
    if bias_correction_mu != bias_correction_nu:
        raise ValueError(
            f"{owner}: invalid bias_correction_mu={bias_correction_mu} with "
            f"bias_correction_nu={bias_correction_nu}; valid values: both True or both "
            "False (gradstep's rule corrects both moments or neither)"
        )


def taking_what_optax_takes(namespace: dict, module: str) -> None:
    """Make every factory in ``namespace`` (a module's globals) take the values optax
    takes: each call runs within :func:`~gradstep._core.validate.ranges_waived`, so no
    numeric range optax does not enforce itself is checked, when the optimizer is
    made or at its steps (optax computes with a negative learning rate, ``b1 = 1``, a
    schedule that goes below zero: so does this front); names, types and what optax
    itself refuses still raise. The wrapped factory is the module's name for it, so
    optimizers pickle as its call."""
    for name, obj in list(namespace.items()):
        if name.startswith("_") or not inspect.isfunction(obj) or name in _RANGES_KEPT:
            continue
        if not obj.__module__.startswith("gradstep.") or name == "__getattr__":
            continue
        namespace[name] = _as_optax_takes(obj, module)


#: factories whose ranges stay checked: optax's L-BFGS and line searches run as
#: gradstep's own ``jax.lax`` loops, not compared with optax's outside their ranges
_RANGES_KEPT = frozenset(
    {"lbfgs", "scale_by_lbfgs", "scale_by_zoom_linesearch", "scale_by_backtracking_linesearch"}
)


def _as_optax_takes(factory: Callable, module: str) -> Callable:
    @functools.wraps(factory)
    def taking(*args: Any, **kwargs: Any) -> Any:
        with ranges_waived():
            result = factory(*args, **kwargs)
        remember_recipe(result, taking, args, kwargs)
        return result

    taking.__module__ = module
    return taking
