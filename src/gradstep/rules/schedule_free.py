r"""Schedule-free SGD and AdamW, as the ``schedulefree`` package (1.4.1) computes them.

Symbols: :math:`y` the parameter during training (where gradients are taken),
:math:`z` slot ``z`` (the base iterate), :math:`x` the averaged iterate (where to
evaluate; never stored), :math:`v` slot ``nu``, :math:`g` gradient, :math:`k` the
0-based step, :math:`\eta` ``learning_rate``, :math:`\beta` ``momentum`` (SGD) or
``beta1`` (AdamW), :math:`\beta_2` ``beta2``, :math:`\epsilon` ``epsilon``,
:math:`\lambda` ``weight_decay``, :math:`W` ``warmup_steps``, :math:`r` ``r``,
:math:`p` ``weight_lr_power``.

Three sequences: :math:`y_k = (1-\beta) z_k + \beta x_k`,
:math:`z_{k+1} = z_k - \gamma_k d_k`, :math:`x_{k+1} = (1-c_{k+1}) x_k + c_{k+1}
z_{k+1}`, where :math:`d_k` is the (normalised, decayed) gradient taken at
:math:`y_k`. The learning rate with the built-in warm-up and the averaging weight are

.. math::

    \gamma_k = \eta \min(1, (k+1)/W),\quad
    \gamma^{max}_k = \max_{j \le k} \gamma_j,\quad
    \omega_k = (k+1)^r (\gamma^{max}_k)^p,\quad
    c_k = \omega_k / \textstyle\sum_{j \le k} \omega_j

(:math:`c_k = 0` while the sum is 0). The parameter holds :math:`y`; :math:`x` is not
stored: each step updates :math:`y` directly,

.. math::

    y \leftarrow (1-c) y + c z + \gamma (\beta (1-c) - 1)\, d,\qquad
    z \leftarrow z - \gamma d

with :math:`d = g + \lambda y` for SGD and :math:`d = g / (\sqrt{v / (1-\beta_2^{k+1})}
+ \epsilon) + \lambda y`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`, for AdamW
(no first moment: :math:`\beta` is the interpolation). The first step has
:math:`c = 1` and takes :math:`z` from the parameter, so :math:`y_1 = z_1 = x_1`.

Evaluation and training modes map the parameter between the two points without any
other state: :math:`x = y + (1 - 1/\beta)(z - y)` and :math:`y = x + (1-\beta)(z - x)`
(:func:`gradstep.modes.set_mode`, :func:`gradstep.modes.evaluating`).

References:
  Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky (2024): The Road Less
  Scheduled. NeurIPS, arXiv:2405.15682.
  facebookresearch/schedule_free, package ``schedulefree`` 1.4.1
  (``SGDScheduleFree``, ``AdamWScheduleFree``).
"""

from __future__ import annotations

import functools
from typing import Any

from .._core.carried import Carried
from .._core.elementwise import Elementwise, Slot
from .._core.namespaces import as_array
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import BOOL, Interval, decay_rate, hyperparams, nonnegative
from .._core.xmath import ema_square, sqrt

_INTERPOLATION = Interval(0.0, 1.0, lo_open=True, hi_open=True)
_MARK_EVERY = 1024  # the averaging-weight history keeps a restart point this often


def _sf_sgd(g, w, z, first, wd, c, alpha, lr):
    z = z + first * w  # z is taken from the parameter on the first step
    d = g + wd * w
    return c * (z - w) + alpha * d, z - lr * d


def _sf_adamw(g, w, z, nu, first, b2, c2, bc2, eps, wd, c, alpha, lr):
    z = z + first * w
    nu = ema_square(nu, g, b2, c2)
    d = g / (sqrt(nu / bc2) + eps) + wd * w
    return c * (z - w) + alpha * d, z - lr * d, nu


#: element function -> the name of its interpolation hyperparameter (beta)
INTERPOLATION_NAME = {_sf_sgd: "momentum", _sf_adamw: "beta1"}


class AveragingWeights:
    """The learning rate and averaging weight of each step, as ``schedulefree``
    accumulates them (``lr_max``, ``weight_sum`` in the package's param groups).

    Both depend on every earlier step's learning rate, so they are rebuilt from
    the configured ``learning_rate`` (a number or a schedule of the step) by the
    same sequence of float64 operations as the package; restart points every
    1024 steps keep a resumed run cheap, and the result depends on ``k`` only.
    """

    def __init__(self, learning_rate: Any, warmup_steps: int, r: float, power: float):
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.r = r
        self.power = power
        # before step j: (lr_max, weight_sum); j = 0 is the package's initial state
        self._before: dict[int, tuple[float, float]] = {0: (-1.0, 0.0)}
        self._recent: list[int] = []

    def lr(self, k: int) -> float:
        """:math:`\\gamma_k`, the warmed-up learning rate of step ``k`` (0-based)."""
        base = self.learning_rate(k) if callable(self.learning_rate) else self.learning_rate
        return self.warmed(base, k)

    def warmed(self, base: float, k: int) -> float:
        """The learning rate ``base`` of step ``k`` after the warm-up."""
        sched = (k + 1) / self.warmup_steps if k < self.warmup_steps else 1.0
        return base * sched

    def _advance(self, j: int, lr: float, lr_max: float, weight_sum: float) -> tuple:
        """``(lr_max, weight, weight_sum)`` after step ``j`` at rate ``lr``."""
        lr_max = max(lr, lr_max)
        weight = ((j + 1) ** self.r) * (lr_max**self.power)
        return lr_max, weight, weight_sum + weight

    def at(self, k: int) -> tuple[float, float]:
        """``(gamma_k, c_k)`` of step ``k``."""
        j = k if k in self._before else max(i for i in self._before if i <= k)
        lr_max, weight_sum = self._before[j]
        while True:
            lr = self.lr(j)
            lr_max, weight, weight_sum = self._advance(j, lr, lr_max, weight_sum)
            j += 1
            if j % _MARK_EVERY == 0:
                self._before[j] = (lr_max, weight_sum)
            if j > k:
                break
        self._remember(j, (lr_max, weight_sum))
        c = weight / weight_sum if weight_sum != 0 else 0.0
        return lr, c

    def from_totals(self, k: int, base: float, lr_max: float, weight_sum: float) -> tuple:
        """``(gamma_k, c_k, lr_max, weight_sum)`` of step ``k`` at the learning rate
        ``base``, from the totals before it as a front keeps them (the package's
        group entries, which follow learning rates changed during training)."""
        lr = self.warmed(base, k)
        lr_max, weight, weight_sum = self._advance(k, lr, lr_max, weight_sum)
        return lr, (weight / weight_sum if weight_sum != 0 else 0.0), lr_max, weight_sum

    def totals(self, steps: int) -> tuple[float, float]:
        """``(lr_max, weight_sum)`` after ``steps`` steps (``(-1, 0)`` before any)."""
        if steps > 0:
            self.at(steps - 1)
        return self._before[steps]

    def _remember(self, j: int, value: tuple[float, float]) -> None:
        if j in self._before:
            return
        self._before[j] = value
        self._recent.append(j)
        if len(self._recent) > 4:
            old = self._recent.pop(0)
            if old % _MARK_EVERY:
                self._before.pop(old, None)


def _fixed(owner: str, name: str, given: Any, configured: Any, why: str) -> None:
    if given != configured:
        raise ValueError(
            f"{owner}: invalid {name}={given!r} for this step; valid values: the "
            f"configured {configured!r} ({why})"
        )


def _no_extra_scalars(h: dict, count: int) -> dict:
    return {}


def _schedule_free_prepare(
    h: dict, count: int, *, beta, beta_name, carried, extra_scalars, learning_rate, owner, weights
) -> dict:
    if h["train_mode"] is not True:
        raise ValueError(
            f"{owner}: step taken in evaluation mode (train_mode={h['train_mode']!r}); "
            "the parameters hold x, not y: switch back with "
            "gradstep.modes.set_mode(optimizer, 'train') first"
        )
    weight_sum = carried.get("weight_sum")
    if weight_sum is not None:
        # a front keeps the totals, as the package its param groups: any learning rate
        # goes, and the interpolation is the group's of this step (the package reads
        # it each step and when switching between y and x)
        beta = h[beta_name]
        lr, c, lr_max, weight_sum = weights.from_totals(
            count, h["learning_rate"], carried.get("lr_max"), weight_sum
        )
        carried.reported = {"lr_max": lr_max, "weight_sum": weight_sum, "scheduled_lr": lr}
    else:
        _fixed(owner, beta_name, h[beta_name], beta, "it relates y, x and z")
        configured = learning_rate(count) if callable(learning_rate) else learning_rate
        _fixed(
            owner,
            "learning_rate",
            h["learning_rate"],
            configured,
            "the averaging weights depend on every earlier step's learning rate; "
            "give learning_rate a schedule instead of changing it per step",
        )
        lr, c = weights.at(count)
    scalars = {"first": 1.0 if count == 0 else 0.0}
    scalars.update(extra_scalars(h, count))
    scalars.update(wd=h["weight_decay"], c=c, alpha=lr * (beta * (1 - c) - 1), lr=lr)
    return scalars


def _schedule_free_stage(
    owner: str,
    element,
    slots: tuple[Slot, ...],
    learning_rate: Any,
    beta_name: str,
    beta: float,
    weight_decay: Any,
    warmup_steps: int,
    r: float,
    weight_lr_power: float,
    extra: dict[str, Any],
    extra_scalars,
) -> Elementwise:
    weights = AveragingWeights(learning_rate, warmup_steps, r, weight_lr_power)
    carried = Carried()  # lr_max, weight_sum: from a front that keeps them

    prepare = functools.partial(
        _schedule_free_prepare,
        beta=beta,
        beta_name=beta_name,
        carried=carried,
        extra_scalars=extra_scalars,
        learning_rate=learning_rate,
        owner=owner,
        weights=weights,
    )

    # the averaging weights are a dict keyed by Python step counts: no tracing
    prepare.evaluate_on_host = True
    stage = Elementwise(
        owner,
        element,
        slots=slots,
        hyperparams={
            "learning_rate": learning_rate,
            beta_name: beta,
            **extra,
            "weight_decay": weight_decay,
            "train_mode": True,
        },
        prepare=prepare,
        uses_params=True,
        uses_count=True,
    )
    stage.declared_ranges = {"train_mode": BOOL}
    stage.carried = carried
    return stage


_COMMON = dict(
    learning_rate=nonnegative(schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    warmup_steps=Interval(0, integer=True),
    r=nonnegative(),
    weight_lr_power=nonnegative(),
)


@hyperparams(momentum=_INTERPOLATION, **_COMMON)
def schedule_free_sgd(
    learning_rate: Any = 1.0,
    momentum: float = 0.9,
    *,
    weight_decay: Any = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
) -> Chain:
    r"""Schedule-free SGD: :math:`d = g + \lambda y` in the module's update of
    :math:`y` and :math:`z` (the parameter holds :math:`y` while training).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule of the step. Default 1.0
        (``schedulefree``). It cannot be changed per step (the averaging weights
        depend on its history): a per-step value different from the configured one
        raises.
      momentum: :math:`\beta` in (0, 1), the interpolation between :math:`z` and
        :math:`x`. Default 0.9.
      weight_decay: :math:`\lambda` >= 0 or a schedule, coupled decay evaluated at
        :math:`y`. Default 0.
      warmup_steps: :math:`W`, an integer >= 0: linear warm-up
        :math:`\gamma_k = \eta (k+1)/W` for :math:`k < W`. Default 0.
      r: :math:`r` >= 0, polynomial weighting :math:`(k+1)^r` of the average.
        Default 0.
      weight_lr_power: :math:`p` >= 0: averaging weights proportional to
        :math:`(\gamma^{max})^p`. Default 2.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.schedule_free_sgd(0.1))
      >>> for g in (1.0, -0.5, 2.0, 0.3):
      ...     opt.step(np.array([g]))
      >>> w.round(6)  # y
      array([0.819])
      >>> gradstep.modes.set_mode(opt, "eval"); w.round(6)  # x
      array([0.83])

    Differences: ``schedulefree.SGDScheduleFree`` starts in evaluation mode and
    needs ``.train()`` before the first step; gradstep starts in training mode
    (``train_mode=True``). The package skips parameters whose ``grad`` is None
    (no decay for them); gradstep has no such state, a zero gradient still decays.
    ``optax.contrib.schedule_free_sgd`` has no ``r`` and its warm-up makes the
    first step's learning rate 0 (semantics reference, sec. 7.4).
    """
    return rule(
        "schedule_free_sgd",
        _schedule_free_stage(
            "schedule_free_sgd",
            _sf_sgd,
            (Slot("z"),),
            learning_rate,
            "momentum",
            momentum,
            weight_decay,
            warmup_steps,
            r,
            weight_lr_power,
            {},
            _no_extra_scalars,
        ),
    )


def _adamw_scalars(h: dict, count: int) -> dict:
    b2 = h["beta2"]
    return {"b2": b2, "c2": 1 - b2, "bc2": 1 - b2 ** (count + 1), "eps": h["epsilon"]}


@hyperparams(beta1=_INTERPOLATION, beta2=decay_rate(), epsilon=nonnegative(), **_COMMON)
def schedule_free_adamw(
    learning_rate: Any = 0.0025,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    weight_decay: Any = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
) -> Chain:
    r"""Schedule-free AdamW: :math:`d = g / (\sqrt{v/(1-\beta_2^{k+1})} + \epsilon) +
    \lambda y` in the module's update of :math:`y` and :math:`z`.

    There is no first moment: :math:`\beta_1` is the interpolation between
    :math:`z` and :math:`x`, and the averaging plays the part of momentum. The decay
    uses :math:`y`, is not divided by the denominator, and is scaled by
    :math:`\gamma`.

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule of the step. Default 0.0025
        (``schedulefree``). It cannot be changed per step (see
        :func:`schedule_free_sgd`).
      beta1: :math:`\beta` in (0, 1). Default 0.9.
      beta2: :math:`\beta_2` in [0, 1). Default 0.999.
      epsilon: :math:`\epsilon` >= 0, outside the root, on the bias-corrected scale.
        Default 1e-8.
      weight_decay: :math:`\lambda` >= 0 or a schedule. Default 0.
      warmup_steps: :math:`W`, an integer >= 0. Default 0.
      r: :math:`r` >= 0. Default 0.
      weight_lr_power: :math:`p` >= 0. Default 2.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, -1.0])
      >>> opt = gradstep.Optimizer(w, gradstep.schedule_free_adamw(0.1))
      >>> opt.step(np.array([0.5, -2.0])); w
      array([ 0.9, -0.9])
      >>> with gradstep.modes.evaluating(opt):  # w holds x here
      ...     w
      array([ 0.9, -0.9])

    Differences: ``schedulefree.AdamWScheduleFree`` starts in evaluation mode
    (gradstep in training mode) and skips parameters without a gradient.
    ``AdamWScheduleFreePaper`` (the pre-1.3 form) folds the bias correction into the
    learning rate and leaves epsilon uncorrected. ``optax.contrib.schedule_free_adamw``
    has no ``r`` and a zero first step during warm-up. The primer's (seed 4)
    AdamScheduleFree pseudo-code keeps a first moment and adds the decay with a plus
    sign; it is not the package's algorithm, which gradstep follows.
    """
    return rule(
        "schedule_free_adamw",
        _schedule_free_stage(
            "schedule_free_adamw",
            _sf_adamw,
            (Slot("z"), Slot("nu")),
            learning_rate,
            "beta1",
            beta1,
            weight_decay,
            warmup_steps,
            r,
            weight_lr_power,
            {"beta2": beta2, "epsilon": epsilon},
            _adamw_scalars,
        ),
    )


def is_schedule_free_stage(stage: Any) -> bool:
    """Whether ``stage`` is the elementwise stage of a schedule-free rule."""
    return isinstance(stage, Elementwise) and stage.element in INTERPOLATION_NAME


def interpolation(stage: Elementwise) -> float:
    """:math:`\\beta` of a schedule-free stage."""
    return stage.hyperparams[INTERPOLATION_NAME[stage.element]]


def lerp(a: Any, b: Any, weight: float) -> Any:
    """``a + weight (b - a)`` in ``a``'s dtype, rounded as ``torch.lerp`` does
    (from the nearer end)."""
    ns, a = as_array(a)
    wt = ns.astype(weight, a)
    if abs(weight) < 0.5:
        return a + wt * (b - a)
    return b - (b - a) * (ns.astype(1.0, a) - wt)


def to_evaluation(y: Any, z: Any, beta: float) -> Any:
    """:math:`x = y + (1 - 1/\\beta)(z - y)`: the point to evaluate, from the training
    point."""
    return lerp(y, z, 1 - 1 / beta)


def to_training(x: Any, z: Any, beta: float) -> Any:
    """:math:`y = x + (1-\\beta)(z - x)`: the training point, from the evaluation
    point."""
    return lerp(x, z, 1 - beta)
