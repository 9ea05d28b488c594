"""optax 0.2.8's optimizer aliases (``adam``, ``adamw``, ``sgd``, ...) mapped onto
gradstep rules; variants that differ from another alias only by defaults are
derived from it (:func:`_variant`)."""

from __future__ import annotations

from typing import Any

from .._core.stages import add_decayed_weights as _add_decayed_weights
from .._core.transform import Transform
from .._core.validate import BOOL, Interval, check, hyperparams, nonnegative
from ..jax import GradstepTransformation
from ..rules.adadelta import scale_by_adadelta as _scale_by_adadelta
from ..rules.adagrad import scale_by_adagrad as _scale_by_adagrad
from ..rules.adam import scale_by_adam as _scale_by_adam
from ..rules.adamax import scale_by_adamax as _scale_by_adamax
from ..rules.radam import THRESHOLD as RADAM_THRESHOLD
from ..rules.rmsprop import scale_by_rms as _scale_by_rms
from ..rules.sgd import apply_momentum, apply_nesterov_momentum
from ._optax_base import (
    ADAM_EPS,
    ADAM_NAMES,
    DECAY,
    EPS,
    LR,
    MOMENTUM,
    WD,
    injectable,
    one_rule_for_both,
    stored_in,
)
from ._optax_layouts import (
    ADAM_STATE,
    ADAMAX_STATE,
    LION_STATE,
    TRACE_STATE,
    all_or,
    decay_stage,
    decay_state,
    direction_state,
    lr_stage,
    optimizer,
    rms_state,
)
from ._optax_state import EMPTY, Masked, ScaleByAdaDeltaState, ScaleByRssState, Slots, Tree

# -- optimizers ---------------------------------------------------------------------


def adam_direction(b1, b2, eps, eps_root, nesterov: bool, owner: str, amsgrad=False):
    if nesterov:
        betas = {"beta1": ("beta1", DECAY), "beta2": ("beta2", DECAY)}
        stage = _nesterov_adam(b1, b2, eps, eps_root, owner)
        return injectable(stage, _constant_beta_products, **betas, **ADAM_EPS)
    return injectable(_scale_by_adam(b1, b2, eps, eps_root=eps_root, amsgrad=amsgrad), **ADAM_EPS)


def _constant_beta_products(values: dict) -> dict:
    """Nadam's :math:`M_t = \\prod_{i \\le t} \\beta_1 = \\beta_1^t` for the step's
    :math:`\\beta_1` (optax's bias correction with the current value)."""
    beta1 = values["beta1"]
    return {"products": lambda t: beta1**t}


def _nesterov_adam(b1, b2, eps, eps_root, owner: str) -> Transform:
    r"""optax's Nesterov form of Adam (``nadam``): gradstep's ``scale_by_nadam`` with
    a constant :math:`\beta_1` (``schedule_decay=None``)."""
    from ..rules.nadam import scale_by_nadam

    return scale_by_nadam(b1, b2, eps, eps_root=eps_root, schedule_decay=None)


@hyperparams(learning_rate=LR, b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS, nesterov=BOOL)
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
    direction = adam_direction(b1, b2, eps, eps_root, nesterov, "adam")
    return optimizer(
        "adam",
        direction_state(stored_in("adam", "mu_dtype", mu_dtype, direction, "mu")),
        lr_stage(learning_rate),
        **ADAM_NAMES,
    )


@hyperparams(
    learning_rate=LR,
    b1=DECAY,
    b2=DECAY,
    eps=EPS,
    eps_root=EPS,
    weight_decay=WD,
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
    direction = adam_direction(b1, b2, eps, eps_root, nesterov, "adamw")
    return optimizer(
        "adamw",
        direction_state(stored_in("adamw", "mu_dtype", mu_dtype, direction, "mu")),
        decay_stage(weight_decay, mask),
        lr_stage(learning_rate),
        **ADAM_NAMES,
    )


@hyperparams(
    learning_rate=LR,
    b1=DECAY,
    b2=DECAY,
    eps=EPS,
    eps_root=EPS,
    bias_correction_mu=BOOL,
    bias_correction_nu=BOOL,
)
def amsgrad(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradstepTransformation:
    """optax's ``amsgrad``: the maximum is kept of the bias-corrected :math:`\\hat v`
    (``amsgrad="corrected"``); the bias corrections as in :func:`scale_by_amsgrad`
    (both or neither)."""
    one_rule_for_both("amsgrad", bias_correction_mu, bias_correction_nu)
    direction = _scale_by_adam(
        b1, b2, eps, eps_root=eps_root, amsgrad="corrected", bias_correction=bias_correction_mu
    )
    direction = injectable(direction, **ADAM_EPS)
    return optimizer(
        "amsgrad",
        direction_state(stored_in("amsgrad", "mu_dtype", mu_dtype, direction, "mu"), True),
        lr_stage(learning_rate),
        **ADAM_NAMES,
    )


@hyperparams(learning_rate=LR, nesterov=BOOL)
def sgd(
    learning_rate: Any,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradstepTransformation:
    """optax's ``sgd``: :math:`b \\leftarrow g + \\mu b`, :math:`u = -\\eta b` (or
    :math:`-\\eta(g + \\mu b)` with ``nesterov``), the learning rate outside the buffer."""
    if momentum is not None:
        check("sgd", "momentum", momentum, MOMENTUM)
    if momentum is None:
        if nesterov:
            raise ValueError(
                "sgd: invalid nesterov=True with momentum=None; valid values: nesterov "
                "only together with a momentum"
            )
        if accumulator_dtype is not None:
            raise ValueError(
                f"sgd: invalid accumulator_dtype={accumulator_dtype!r} with momentum=None "
                "(there is no accumulator); valid values: None"
            )
        return optimizer("sgd", (None, EMPTY), lr_stage(learning_rate))
    trace_ = (apply_nesterov_momentum if nesterov else apply_momentum)(momentum)
    trace_ = stored_in("sgd", "accumulator_dtype", accumulator_dtype, trace_, "velocity")
    return optimizer("sgd", (trace_, TRACE_STATE), lr_stage(learning_rate))


@hyperparams(
    learning_rate=LR,
    decay=Interval(0.0, 1.0),
    eps=EPS,
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
        check("rmsprop", "momentum", momentum, MOMENTUM)
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
        bias_correction=bias_correction,
    )
    direction = injectable(direction, epsilon=("eps_in" if eps_in_sqrt else "eps_out", EPS))
    trace_ = None
    if momentum is not None:
        trace_ = (apply_nesterov_momentum if nesterov else apply_momentum)(momentum)
    return optimizer(
        "rmsprop",
        (direction, rms_state(centered, bias_correction)),
        lr_stage(learning_rate),
        (trace_, EMPTY if trace_ is None else TRACE_STATE),
        decay="rho",
        eps="epsilon",
    )


@hyperparams(learning_rate=LR, initial_accumulator_value=nonnegative(), eps=EPS)
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
    return optimizer(
        "adagrad",
        (
            injectable(direction, epsilon=("eps_in", EPS)),
            Slots(ScaleByRssState, sum_of_squares=Tree("sum_sq")),
        ),
        lr_stage(learning_rate),
        eps="epsilon",
    )


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
        check("adadelta", "learning_rate", learning_rate, LR)
    check("adadelta", "rho", rho, Interval(0.0, 1.0))
    check("adadelta", "eps", eps, EPS)
    check("adadelta", "weight_decay", weight_decay, nonnegative())
    if weight_decay_mask is not None and weight_decay == 0:
        raise ValueError(
            "adadelta: invalid weight_decay_mask with weight_decay=0; valid values: a "
            "mask only together with a weight_decay > 0"
        )
    # the decay stage is built even for weight_decay=0 (u + 0 w = u), as optax's: it
    # is then a per-step hyperparameter that inject_hyperparams can change
    decay = decay_stage(weight_decay, weight_decay_mask)
    return optimizer(
        "adadelta",
        decay,
        (
            injectable(_scale_by_adadelta(rho, eps), epsilon=("epsilon", EPS)),
            Slots(ScaleByAdaDeltaState, e_g=Tree("nu"), e_x=Tree("nu_delta")),
        ),
        (None, EMPTY) if learning_rate is None else lr_stage(learning_rate),
        eps="epsilon",
    )


@hyperparams(learning_rate=LR, b1=DECAY, b2=DECAY, eps=EPS)
def adamax(
    learning_rate: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradstepTransformation:
    """optax's ``adamax``: :math:`u \\leftarrow \\max(\\beta_2 u, |g| + \\epsilon)`
    (``epsilon_placement="in_max"``), :math:`-\\eta \\hat m / u`."""
    return optimizer(
        "adamax",
        (
            injectable(
                _scale_by_adamax(b1, b2, eps, epsilon_placement="in_max"), epsilon=("epsilon", EPS)
            ),
            ADAMAX_STATE,
        ),
        lr_stage(learning_rate),
        **ADAM_NAMES,
    )


@hyperparams(
    learning_rate=LR,
    b1=DECAY,
    b2=DECAY,
    eps=EPS,
    eps_root=EPS,
    threshold=RADAM_THRESHOLD,
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
    (``epsilon_placement="outside"``). ``threshold`` must be at least 4 (at
    :math:`\rho_t = 4` exactly the rectification factor is 0, as optax's): below 4
    optax rectifies the steps with :math:`2 < \rho_t < 4` by the root of a negative
    number and returns NaN updates, so lower values are refused."""
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
    direction = injectable(direction, **ADAM_EPS, threshold=("threshold", RADAM_THRESHOLD))
    return optimizer("radam", (direction, ADAM_STATE), lr_stage(learning_rate), **ADAM_NAMES)


@hyperparams(learning_rate=LR, b1=Interval(0.0, 1.0), b2=Interval(0.0, 1.0), weight_decay=WD)
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

    return optimizer(
        "lion",
        (stored_in("lion", "mu_dtype", mu_dtype, scale_by_lion(b1, b2), "mu"), LION_STATE),
        decay_stage(weight_decay, mask),
        lr_stage(learning_rate),
        **ADAM_NAMES,
    )


@hyperparams(learning_rate=LR, b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS, weight_decay=WD)
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

    return optimizer(
        "lamb",
        (injectable(_scale_by_adam(b1, b2, eps, eps_root=eps_root), **ADAM_EPS), ADAM_STATE),
        decay_stage(weight_decay, mask),
        (scale_by_trust_ratio(), EMPTY),
        lr_stage(learning_rate),
        **ADAM_NAMES,
    )


@hyperparams(
    learning_rate=LR,
    weight_decay=WD,
    trust_coefficient=Interval(0.0, lo_open=True),
    eps=EPS,
    momentum=MOMENTUM,
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
    decay = _add_decayed_weights(weight_decay, all_or(weight_decay_mask))
    return optimizer(
        "lars",
        (
            decay,
            Masked(decay_state(weight_decay, None), all_or(weight_decay_mask)),
        ),
        (
            scale_by_trust_ratio(trust_coefficient, eps, mask=all_or(trust_ratio_mask)),
            Masked(EMPTY),  # the rule applies the mask itself: no mask wrapper
        ),
        lr_stage(learning_rate),
        (trace_, TRACE_STATE),
    )


@hyperparams(learning_rate=LR, b1=DECAY, b2=DECAY, eps=EPS, weight_decay=WD)
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
    return optimizer(
        "adamaxw",
        (
            injectable(
                _scale_by_adamax(b1, b2, eps, epsilon_placement="in_max"), epsilon=("epsilon", EPS)
            ),
            ADAMAX_STATE,
        ),
        decay_stage(weight_decay, mask),
        lr_stage(learning_rate),
        **ADAM_NAMES,
    )
