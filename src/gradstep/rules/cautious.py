r"""Cautious optimizers: a rule's direction kept only where it agrees with the gradient.

Symbols: :math:`g` the gradient the wrapped direction receives, :math:`u` the
direction it returns (before the learning rate), :math:`\phi` the mask, :math:`n`
the number of elements of the tensor, :math:`f` ``min_fraction``.

.. math::

    \phi = [\,u \odot g > 0\,],\quad
    u \leftarrow \frac{u \odot \phi}{\max(\bar\phi, f)}
    \quad(\texttt{normalization="mean"}),\qquad
    u \leftarrow u \odot \phi\,\frac{n}{\sum\phi + 1}
    \quad(\texttt{"count\_plus\_one"})

per tensor, with :math:`\bar\phi = \sum\phi / n` the fraction kept. The rescaling
keeps the average step size about what it was. An element whose direction opposes
the current gradient (a stale momentum) does not move on this step; the state of
the wrapped rule is updated as without the wrapper.

:func:`cautious` wraps any direction: a stage (or chain of stages) whose output
points along the gradient, before the learning rate and any decoupled decay, which
stay outside the mask. :func:`cautious_adamw` and :func:`cautious_lion` are the
paper's C-AdamW and C-Lion built that way.

References:
  Liang, Chen, Liu & Liu (2024): Cautious Optimizers: Improving Training with One
  Line of Code. arXiv:2411.16085.
"""

from __future__ import annotations

from typing import Any

from .._core.cautious import NORMALIZATIONS, Cautious
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain, Transform, walk
from .._core.validate import Interval, OneOf, hyperparams, nonnegative
from .adam import AMSGRAD, PLACEMENTS, scale_by_adam
from .lion import MODES, scale_by_lion

_FRACTION = Interval(0.0, 1.0, lo_open=True)
_BETA = Interval(0.0, 1.0, schedulable=True)


@hyperparams(normalization=OneOf(NORMALIZATIONS), min_fraction=_FRACTION)
def cautious(
    direction: Transform, *, normalization: str = "mean", min_fraction: float = 1e-3
) -> Cautious:
    r"""``direction`` masked where it disagrees in sign with the gradient it receives.

    Args:
      direction: a transform whose output points along the gradient (a
        ``scale_by_*`` stage, or a chain of stages without a learning rate). A whole
        rule (one with a learning-rate stage) is refused: its step points against
        the gradient and may include a decay that the mask must not see; wrap its
        direction and chain the decay and the learning rate after it.
      normalization: ``"mean"`` (default: the paper's code, timm) or
        ``"count_plus_one"`` (pytorch-optimizer).
      min_fraction: :math:`f` in (0, 1], the floor on the fraction kept under
        ``"mean"``. Default 1e-3.

    Example:
      >>> import numpy as np, gradstep
      >>> from gradstep.rules.cautious import cautious
      >>> t = cautious(gradstep.rules.scale_by_lion(beta1=0.0))
      >>> state = t.init([np.zeros(4)])
      >>> state = {"inner": {"mu": [np.array([1.0, 1.0, -1.0, -1.0])]}}
      >>> u, _ = t.update([np.array([1.0, -1.0, 1.0, -1.0])], state)
      >>> u[0]  # Lion with beta1 = 0 steps along sign(g): every element agrees
      array([ 1., -1.,  1., -1.])

    Differences: the references apply the mask inside each optimizer's step (timm's
    ``caution=True``, pytorch-optimizer's ``cautious=True``); here it wraps any
    direction. pytorch-optimizer rescales by ``"count_plus_one"``; timm and the
    paper's code by ``"mean"`` with :math:`f = 10^{-3}`.
    """
    for visit in walk(direction):
        if visit.transform.name == "learning_rate":
            raise ValueError(
                f"cautious: invalid direction={direction.name!r}: it has a learning-rate "
                "stage; valid values: a direction before the learning rate, e.g. "
                "chain(cautious(scale_by_adam()), add_decayed_weights(wd), "
                "scale_by_learning_rate(lr)) or cautious_adamw"
            )
    return Cautious(direction, normalization, min_fraction)


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=Interval(0.0, 1.0, hi_open=True, schedulable=True),
    beta2=Interval(0.0, 1.0, hi_open=True),
    epsilon=nonnegative(),
    weight_decay=nonnegative(schedulable=True),
    amsgrad=OneOf(AMSGRAD),
    epsilon_placement=OneOf(PLACEMENTS),
    normalization=OneOf(NORMALIZATIONS),
    min_fraction=_FRACTION,
)
def cautious_adamw(
    learning_rate: Any = 0.001,
    beta1: Any = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    *,
    weight_decay: Any = 0.01,
    amsgrad: bool | str = False,
    epsilon_placement: str = "outside",
    mask: Any = None,
    normalization: str = "mean",
    min_fraction: float = 1e-3,
) -> Chain:
    r"""C-AdamW: AdamW whose direction :math:`\hat m/(\sqrt{\hat v}+\epsilon)` is
    masked by :func:`cautious`; the decoupled decay is not masked.

    Args: as :func:`gradstep.adamw` (``weight_decay`` default 0.01, ``mask`` selects
    the leaves to decay), and ``normalization``, ``min_fraction`` as :func:`cautious`.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.cautious_adamw(0.1, weight_decay=0.0)).step(
      ...     np.array([0.5, -2.0]))
      >>> w
      array([0.9, 1.1])

    Differences: timm's ``AdamW(caution=True)`` (``cadamw``) is this rule; it masks
    the first moment, whose sign is the direction's. Its ``corrected_weight_decay``
    is not offered.
    """
    direction = scale_by_adam(
        beta1, beta2, epsilon, amsgrad=amsgrad, epsilon_placement=epsilon_placement
    )
    return rule(
        "cautious_adamw",
        cautious(direction, normalization=normalization, min_fraction=min_fraction),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    beta1=_BETA,
    beta2=_BETA,
    weight_decay=nonnegative(schedulable=True),
    mode=OneOf(MODES),
    normalization=OneOf(NORMALIZATIONS),
    min_fraction=_FRACTION,
)
def cautious_lion(
    learning_rate: Any = 1e-4,
    beta1: Any = 0.9,
    beta2: Any = 0.99,
    weight_decay: Any = 0.0,
    *,
    mask: Any = None,
    mode: str = "hard",
    normalization: str = "mean",
    min_fraction: float = 1e-3,
) -> Chain:
    r"""C-Lion: Lion whose sign direction is masked by :func:`cautious`; the decoupled
    decay is not masked.

    Args: as :func:`gradstep.lion`, and ``normalization``, ``min_fraction`` as
    :func:`cautious`.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.array([1.0, 1.0, 1.0])
      >>> gradstep.Optimizer(w, gradstep.cautious_lion(0.1)).step(np.array([0.5, -2.0, 0.0]))
      >>> w.round(6)  # two of three elements move; the step is rescaled by 3/2
      array([0.85, 1.15, 1.  ])

    Differences: timm's ``Lion(caution=True)`` is ``normalization="mean"``;
    pytorch-optimizer's ``Lion(cautious=True)`` is ``"count_plus_one"``.
    """
    if mask is not None and not weight_decay:
        raise ValueError(
            "cautious_lion: invalid mask with weight_decay=0; valid values: a mask only "
            "selects the leaves to decay, so give a weight_decay > 0 or no mask"
        )
    return rule(
        "cautious_lion",
        cautious(
            scale_by_lion(beta1, beta2, mode=mode),
            normalization=normalization,
            min_fraction=min_fraction,
        ),
        add_decayed_weights(weight_decay, mask) if weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
