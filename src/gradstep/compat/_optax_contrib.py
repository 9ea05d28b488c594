"""optax.contrib 0.2.8's AdEMAMix, ADOPT, MADGRAD and Muon on gradstep's rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._core.stages import rule as _rule
from .._core.validate import BOOL, Interval, check, hyperparams, nonnegative
from ..jax import GradstepTransformation
from ..rules.ademamix import scale_by_ademamix as _scale_by_ademamix
from ..rules.ademamix import scale_by_simplified_ademamix as _scale_by_simplified
from ..rules.adopt import scale_by_adopt as _scale_by_adopt
from ..rules.madgrad import madgrad as _madgrad
from ..rules.muon import DEFAULT_COEFFICIENTS, Orthogonalise, muon_momentum
from ._optax_base import DECAY, EPS, LR, WD, stored_in, wrap
from ._optax_layouts import ADAM_STATE, decay_stage, lr_stage, optimizer
from ._optax_optimizers import adamw
from ._optax_state import EMPTY, Derived, Layout, Scalar, Seq, Slots, Tree, state_class
from ._optax_transforms import multi_transform

_CONTRIB = "optax.contrib"
ScaleByAdemamixState = state_class(
    "ScaleByAdemamixState", ("count", "count_m2", "m1", "m2", "nu"), _CONTRIB
)
ScaleBySimplifiedAdEMAMixState = state_class(
    "ScaleBySimplifiedAdEMAMixState", ("t", "m", "n"), _CONTRIB
)
MadgradState = state_class("MadgradState", ("count", "grad_sum_sq", "s", "x0"), _CONTRIB)
MuonState = state_class("MuonState", ("count", "mu", "ns_coeffs"), _CONTRIB)

_ADEMAMIX_STATE = Slots(
    ScaleByAdemamixState,
    count=Scalar("count"),
    count_m2=Derived(lambda core: core["count"]),  # optax counts both alike
    m1=Tree("m1"),
    m2=Tree("m2"),
    nu=Tree("nu"),
)
_SIMPLIFIED_STATE = Slots(
    ScaleBySimplifiedAdEMAMixState, t=Scalar("count"), m=Tree("m"), n=Tree("nu")
)
_MADGRAD_STATE = Slots(
    MadgradState,
    count=Scalar("count"),
    grad_sum_sq=Tree("grad_sum_sq"),
    s=Tree("grad_sum"),
    x0=Tree("initial"),
)
#: optax's argument names of the rules' per-step hyperparameters (inject_hyperparams)
_BETA_NAMES = {"b1": "beta1", "b2": "beta2"}
_ADEMAMIX_NAMES = {**_BETA_NAMES, "b3": "beta3"}
_SCHEDULABLE_DECAY = Interval(0.0, 1.0, hi_open=True, schedulable=True)
_ALPHA = nonnegative(schedulable=True)


class Only(Layout):
    """One optax state over a core chain whose stages but one keep no state (optax's
    single transformation that gradstep writes as a chain of stages)."""

    def __init__(self, stage: Any, inner: Layout):
        self.stage = stage
        self.inner = inner

    def _pos(self, node: Any) -> int:
        return next(i for i, s in enumerate(node.children()) if s is self.stage)

    def to_optax(self, core, node, ctx, prev):
        keys, pos = node.child_state_keys(), self._pos(node)
        if any(core[k] for i, k in enumerate(keys) if i != pos):
            raise RuntimeError(f"gradstep.compat.optax: {node.name} keeps state in two stages")
        return self.inner.to_optax(core[keys[pos]], self.stage, ctx, prev)

    def from_optax(self, state, node, ctx):
        keys, pos = node.child_state_keys(), self._pos(node)
        out = {k: {} for k in keys}
        out[keys[pos]] = self.inner.from_optax(state, self.stage, ctx)
        return out


def _no_mu_dtype(owner: str, mu_dtype: Any) -> None:
    if mu_dtype is not None:
        raise ValueError(
            f"{owner}: invalid mu_dtype={mu_dtype!r}; valid values: None (optax casts these "
            "moments only at init, its update promotes them back: gradstep keeps them in the "
            "parameters' dtype)"
        )


# -- AdEMAMix -------------------------------------------------------------------------


@hyperparams(b1=DECAY, b2=DECAY, b3=_SCHEDULABLE_DECAY, alpha=_ALPHA, eps=EPS, eps_root=EPS)
def scale_by_ademamix(
    b1: float = 0.9,
    b2: float = 0.999,
    b3: Any = 0.9999,
    alpha: Any = 6.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``scale_by_ademamix``: :func:`gradstep.rules.scale_by_ademamix`
    (the slow momentum not bias-corrected; ``b3`` and ``alpha`` may be schedules of
    the step count), state ``ScaleByAdemamixState``."""
    _no_mu_dtype("scale_by_ademamix", mu_dtype)
    stage = _scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root=eps_root)
    return wrap(stage, _ADEMAMIX_STATE, **_ADEMAMIX_NAMES)


@hyperparams(learning_rate=LR, weight_decay=WD)
def ademamix(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: Any = 0.9999,
    alpha: Any = 5.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``ademamix``: :func:`scale_by_ademamix`, decoupled decay
    (restricted to ``mask``), learning rate (:func:`gradstep.ademamix`)."""
    direction = scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype)
    return optimizer(
        "ademamix",
        (direction.transform, direction.layout),
        decay_stage(weight_decay, mask),
        lr_stage(learning_rate),
        **_ADEMAMIX_NAMES,
    )


@hyperparams(b1=DECAY, b2=DECAY, alpha=_ALPHA, eps=EPS, eps_root=EPS)
def scale_by_simplified_ademamix(
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: Any = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradstepTransformation:
    """optax.contrib's ``scale_by_simplified_ademamix``:
    :func:`gradstep.rules.scale_by_simplified_ademamix` (an undamped momentum
    :math:`m \\leftarrow \\beta_1 m + g`), state ``ScaleBySimplifiedAdEMAMixState``."""
    stage = _scale_by_simplified(b1, b2, alpha, eps, eps_root=eps_root)
    return wrap(stage, _SIMPLIFIED_STATE, **_BETA_NAMES)


@hyperparams(learning_rate=LR, weight_decay=WD)
def simplified_ademamix(
    learning_rate: Any,
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: Any = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``simplified_ademamix``: its direction, decoupled decay,
    learning rate (:func:`gradstep.simplified_ademamix`)."""
    direction = scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root)
    return optimizer(
        "simplified_ademamix",
        (direction.transform, direction.layout),
        decay_stage(weight_decay, mask),
        lr_stage(learning_rate),
        **_BETA_NAMES,
    )


# -- ADOPT ----------------------------------------------------------------------------


def _quarter_power(x: Any) -> Any:
    return x**0.25


@hyperparams(b1=DECAY, b2=DECAY, eps=Interval(0.0, lo_open=True), nesterov=BOOL, use_clipping=BOOL)
def scale_by_adopt(
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[Any], Any] = _quarter_power,
) -> GradstepTransformation:
    """optax.contrib's ``scale_by_adopt``: :func:`gradstep.rules.scale_by_adopt` with
    ``clip_step="update"`` (the bound :math:`(t-1)^{1/4}` of optax's default
    ``clip_value_fn``), state ``ScaleByAdamState``. ``clip_value_fn`` must be the
    default (gradstep's rule takes the exponent, not a function)."""
    if clip_value_fn is not _quarter_power:
        raise ValueError(
            f"scale_by_adopt: invalid clip_value_fn={clip_value_fn!r}; valid values: the "
            "default x ** 0.25 (gradstep's ADOPT bounds by a power of the step: "
            "gradstep.adopt(clip_exponent=...))"
        )
    stage = _scale_by_adopt(
        b1,
        b2,
        eps,
        clip_exponent=0.25 if use_clipping else None,
        clip_step="update",
        nesterov=nesterov,
    )
    stage = stored_in("scale_by_adopt", "mu_dtype", mu_dtype, stage, "mu")
    return wrap(stage, ADAM_STATE, **_BETA_NAMES)


@hyperparams(learning_rate=LR)
def adopt(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[Any], Any] = _quarter_power,
) -> GradstepTransformation:
    """optax.contrib's ``adopt``: :func:`scale_by_adopt` then the learning rate
    (:func:`gradstep.adopt` with ``clip_step="update"``)."""
    direction = scale_by_adopt(
        b1,
        b2,
        eps,
        mu_dtype,
        nesterov=nesterov,
        use_clipping=use_clipping,
        clip_value_fn=clip_value_fn,
    )
    return optimizer(
        "adopt", (direction.transform, direction.layout), lr_stage(learning_rate), **_BETA_NAMES
    )


# -- MADGRAD --------------------------------------------------------------------------


def _madgrad_rate(owner: str, learning_rate: Any) -> None:
    check(owner, "learning_rate", learning_rate, LR)
    if not callable(learning_rate) and learning_rate == 0:
        raise ValueError(
            f"{owner}: invalid learning_rate=0; valid values: > 0 or a schedule (optax adds "
            "eps to a zero rate and still steps; gradstep's MADGRAD stands still there)"
        )


@hyperparams(momentum=DECAY, eps=EPS)
def scale_by_madgrad(
    learning_rate: Any, momentum: float = 0.9, eps: float = 1e-6
) -> GradstepTransformation:
    """optax.contrib's ``scale_by_madgrad``: :func:`gradstep.madgrad`'s stage (the
    learning rate weighs the sums, so the stage holds it), state ``MadgradState``.
    A schedule reaching 0 stands still there (optax adds ``eps`` to it)."""
    _madgrad_rate("scale_by_madgrad", learning_rate)
    chain = _madgrad(learning_rate, momentum, eps)
    return wrap(chain.children()[0], _MADGRAD_STATE)


@hyperparams(weight_decay=nonnegative())
def madgrad(
    learning_rate: Any, momentum: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-6
) -> GradstepTransformation:
    """optax.contrib's ``madgrad``: coupled decay, then :func:`scale_by_madgrad`
    (:func:`gradstep.madgrad`)."""
    _madgrad_rate("madgrad", learning_rate)
    check("madgrad", "momentum", momentum, DECAY)
    check("madgrad", "eps", eps, EPS)
    chain = _madgrad(learning_rate, momentum, eps, weight_decay)
    stages = chain.children()
    decay = stages[0] if len(stages) == 2 else None
    return wrap(chain, Seq.of(chain, (decay, EMPTY), (stages[-1], _MADGRAD_STATE)))


# -- Muon -----------------------------------------------------------------------------


class MuonDimensionNumbers(NamedTuple):
    """optax.contrib's ``MuonDimensionNumbers``: the axes of a weight that Muon
    contracts (``reduction_axis``) and keeps (``output_axis``); gradstep takes the
    default (0, 1) of a matrix."""

    reduction_axis: Any = 0
    output_axis: Any = 1


try:  # optax's own class where installed, so isinstance checks of optax code hold
    from optax.contrib import MuonDimensionNumbers  # type: ignore[no-redef]  # noqa: F811
except ImportError:  # pragma: no cover - without optax
    pass

_PRESETS = {"standard": DEFAULT_COEFFICIENTS}


def _coefficients(owner: str, ns_coeffs: Any) -> tuple[float, float, float]:
    """optax's ``ns_coeffs`` as gradstep's one triple (optax's per-step tables, such
    as the ``"dion"`` preset, are not offered)."""
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in _PRESETS:
            raise ValueError(
                f"{owner}: invalid ns_coeffs={ns_coeffs!r}; valid values: 'standard' or a "
                "triple (a, b, c) (gradstep's Newton-Schulz takes one triple for every step)"
            )
        return _PRESETS[ns_coeffs]
    flat = jnp.asarray(ns_coeffs)
    if flat.shape != (3,):
        raise ValueError(
            f"{owner}: invalid ns_coeffs of shape {flat.shape}; valid values: a triple "
            "(a, b, c) (gradstep's Newton-Schulz takes one triple for every step)"
        )
    return tuple(float(v) for v in ns_coeffs)


def _muon_options(owner: str, adaptive: bool, preconditioning: str, dims: Any) -> None:
    check(owner, "adaptive", adaptive, BOOL)
    if adaptive:
        raise ValueError(
            f"{owner}: invalid adaptive=True; valid values: False (gradstep's Muon has no "
            "adaptive rescaling by <m, O>)"
        )
    if preconditioning != "frobenius":
        raise ValueError(
            f"{owner}: invalid preconditioning={preconditioning!r}; valid values: "
            "'frobenius' (gradstep's Muon normalises by the Frobenius norm)"
        )
    leaves = jax.tree_util.tree_leaves(
        dims, is_leaf=lambda x: x is None or isinstance(x, MuonDimensionNumbers)
    )
    if callable(dims) or any(x is not None and x != MuonDimensionNumbers() for x in leaves):
        raise ValueError(
            f"{owner}: invalid weight dimension numbers {dims!r}; valid values: None, "
            "MuonDimensionNumbers(0, 1) or a tree of them (gradstep's Muon takes matrices "
            "as they are)"
        )


def _muon_state(coefficients: tuple) -> Slots:
    return Slots(
        MuonState,
        count=Scalar("count"),
        mu=Tree("mu"),
        ns_coeffs=Derived(lambda core: jnp.asarray(coefficients)),
    )


def _muon_stages(coefficients, ns_steps, beta, eps, mu_dtype, nesterov, consistent_rms):
    momentum = muon_momentum(beta, nesterov, bias_correction=True)
    momentum = stored_in("muon", "mu_dtype", mu_dtype, momentum, "mu")
    if consistent_rms is None:
        scale, rms = "width_in_out", 0.2
    else:
        scale, rms = "rms", consistent_rms
    orth = Orthogonalise(coefficients, ns_steps, eps, "add", scale, rms)
    return momentum, orth


_MUON_RANGES = dict(
    ns_steps=Interval(0, 100, hi_open=True, integer=True),
    beta=Interval(0.0, 1.0, hi_open=True),
    eps=EPS,
    nesterov=BOOL,
)


@hyperparams(**_MUON_RANGES)
def scale_by_muon(
    ns_coeffs: Any = DEFAULT_COEFFICIENTS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    weight_dimension_numbers: Any = None,
) -> GradstepTransformation:
    """optax.contrib's ``scale_by_muon``: bias-corrected (Nesterov) momentum, then
    the Newton-Schulz polar factor (:func:`gradstep.muon`'s stages with
    ``epsilon_placement="add"``, no shape scale), state ``MuonState``. Every leaf
    must be a matrix."""
    _muon_options("scale_by_muon", adaptive, preconditioning, weight_dimension_numbers)
    coefficients = _coefficients("scale_by_muon", ns_coeffs)
    momentum, _ = _muon_stages(coefficients, ns_steps, beta, eps, mu_dtype, nesterov, None)
    orth = Orthogonalise(coefficients, ns_steps, eps, "add", "none", 0.2)
    chain = _rule("scale_by_muon", momentum, orth)
    return wrap(chain, Only(momentum, _muon_state(coefficients)))


def _is_matrix_label(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: "muon" if jnp.ndim(x) == 2 else "adam", params)


@hyperparams(learning_rate=LR, weight_decay=WD, **_MUON_RANGES)
def muon(
    learning_rate: Any,
    ns_coeffs: Any = DEFAULT_COEFFICIENTS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: Any = 0.0,
    adam_learning_rate: Any = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: float | None = None,
) -> GradstepTransformation:
    """optax.contrib's ``muon``: matrices (2-D leaves) get :func:`scale_by_muon`,
    the shape scale :math:`\\sqrt{\\max(1, \\text{cols}/\\text{rows})}` (or
    ``consistent_rms`` :math:`\\sqrt{\\max(\\text{rows}, \\text{cols})}`), decoupled
    decay and the learning rate (:func:`gradstep.muon`'s stages); the other leaves
    :func:`adamw` with Nesterov momentum as optax's, under optax's labels
    ``"muon"``/``"adam"``. State: optax's ``PartitionState``."""
    _muon_options("muon", adaptive, preconditioning, muon_weight_dimension_numbers)
    if weight_decay_mask is not None and weight_decay_mask is not True:
        raise ValueError(
            f"muon: invalid weight_decay_mask={weight_decay_mask!r}; valid values: None, True "
            "(a mask inside Muon's partition of the parameters is not offered: the decay "
            "acts on every matrix)"
        )
    if consistent_rms is not None:
        check("muon", "consistent_rms", consistent_rms, Interval(0.0, lo_open=True))
    coefficients = _coefficients("muon", ns_coeffs)
    momentum, orth = _muon_stages(
        coefficients, ns_steps, beta, eps, mu_dtype, nesterov, consistent_rms
    )
    matrices = optimizer(
        "muon",
        (momentum, _muon_state(coefficients)),
        (orth, EMPTY),  # optax's scale_by_shape
        decay_stage(weight_decay, None),
        lr_stage(learning_rate),
    )
    other = adamw(
        learning_rate if adam_learning_rate is None else adam_learning_rate,
        b1=adam_b1,
        b2=adam_b2,
        eps=eps,
        eps_root=adam_eps_root,
        weight_decay=adam_weight_decay,
        mu_dtype=mu_dtype,
        nesterov=nesterov,
    )
    return multi_transform({"muon": matrices, "adam": other}, _is_matrix_label)


__all__ = [
    "MadgradState",
    "MuonDimensionNumbers",
    "MuonState",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "ademamix",
    "adopt",
    "madgrad",
    "muon",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_simplified_ademamix",
    "simplified_ademamix",
]
