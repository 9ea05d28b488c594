r"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for matrices; the
other parameters follow a fallback rule.

Symbols: :math:`G` gradient of a matrix parameter :math:`W` (shape rows x cols),
:math:`B` slot ``mu`` (momentum buffer), :math:`t` the 1-based step, :math:`\mu`
``momentum``, :math:`(a, b, c)` ``ns_coefficients``, :math:`k` ``ns_steps``,
:math:`\epsilon` ``epsilon``, :math:`s` the shape scale (``update_scale``),
:math:`\eta` ``learning_rate``, :math:`\lambda` ``weight_decay``.

.. math::

    B \leftarrow \mu B + (1-\mu) G,\quad
    M = \begin{cases} \mu B + (1-\mu) G & \text{nesterov} \\ B & \text{otherwise}
    \end{cases}

(with ``bias_correction``, :math:`B` is divided by :math:`1-\mu^{t+1}` and :math:`G`
by :math:`1-\mu^t` in the Nesterov form, :math:`M = B/(1-\mu^t)` otherwise). Then
:math:`X_0 = M / \max(\lVert M\rVert_F, \epsilon)` (``epsilon_placement="clamp"``) or
:math:`M / (\lVert M\rVert_F + \epsilon)` (``"add"``), transposed when it has more
rows than columns, and :math:`k` Newton-Schulz steps

.. math::

    A = X X^\top,\quad X \leftarrow a X + (b A + c A^2) X

drive its singular values towards 1: :math:`O = X_k` (transposed back) is close to
the orthogonal polar factor of :math:`M`. The step:

.. math::

    W \leftarrow W - \eta\,(s\, O + \lambda W)

with :math:`s = \sqrt{\max(1, \text{rows}/\text{cols})}` (``"width_out_in"``: torch,
weights stored output x input), :math:`\sqrt{\max(1, \text{cols}/\text{rows})}`
(``"width_in_out"``: optax, input x output), :math:`\text{rms\_scale}
\sqrt{\max(\text{rows}, \text{cols})}` (``"rms"``: an AdamW-like update RMS) or 1
(``"none"``).

The matrices' chain is :func:`muon_momentum` (an elementwise stage: it fuses and
traces like any other), :class:`Orthogonalise` (the Newton-Schulz iteration, written
against the array namespace, so it runs on torch tensors on their device and under
``jax.jit``), the decay and the learning rate.

Parameters that are not matrices (biases, norms, scalars, convolution kernels)
follow ``fallback``: AdamW with the same learning rate and no decay by default.

References:
  Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein (2024): Muon: An optimizer
  for hidden layers in neural networks. https://kellerjordan.github.io/posts/muon/
  Liu, Su, Yao et al. (2025): Muon is Scalable for LLM Training. arXiv:2502.16982.
  Bernstein & Newhouse (2024): Old Optimizer, New Norm: An Anthology.
  arXiv:2409.20325.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .._core import tree as _tree
from .._core.combine import partition
from .._core.elementwise import Elementwise, Slot
from .._core.namespaces import namespace_of
from .._core.stages import add_decayed_weights, rule, scale_by_learning_rate
from .._core.transform import Chain, Transform
from .._core.validate import BOOL, Constraint, Interval, OneOf, hyperparams, nonnegative
from .._core.xmath import debias, ema
from .adam import adamw

UPDATE_SCALES = ("width_out_in", "width_in_out", "rms", "none")
EPSILON_PLACEMENTS = ("clamp", "add")
FALLBACKS = ("adamw", "none")
DEFAULT_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


class _Coefficients(Constraint):
    """Three real numbers ``(a, b, c)``."""

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, (tuple, list))
            and len(value) == 3
            and all(isinstance(v, numbers.Real) and math.isfinite(v) for v in value)
        )

    def describe(self) -> str:
        return "a tuple of three finite numbers (a, b, c)"

    def invalid_example(self) -> Any:
        return (1.0, 2.0)


class _TransformOr(OneOf):
    """A transform, or one of the named choices."""

    def contains(self, value: Any) -> bool:
        return isinstance(value, Transform) or super().contains(value)

    def describe(self) -> str:
        return "a transform or " + super().describe()


def newton_schulz(
    m: Any,
    coefficients: tuple[float, float, float] = DEFAULT_COEFFICIENTS,
    steps: int = 5,
    epsilon: float = 1e-7,
    epsilon_placement: str = "clamp",
) -> Any:
    """The approximate orthogonal polar factor of the matrix ``m`` (same dtype and
    library: NumPy, torch on any device, JAX under jit).

    See the module docstring; the iteration runs on the wide orientation
    (rows <= columns), so its Gram matrices are the smaller ones.
    """
    ns = namespace_of(m)
    shape = tuple(np.shape(m))
    if len(shape) != 2:
        raise ValueError(f"newton_schulz: expected a matrix, got shape {shape}")
    if shape[0] * shape[1] == 0:
        return ns.astype(m, m)
    tall = shape[0] > shape[1]
    x = ns.matrix_transpose(m) if tall else m
    norm = ns.square_sum(x) ** 0.5
    scale = ns.maximum(norm, epsilon) if epsilon_placement == "clamp" else norm + epsilon
    cast = ns.scalar_caster(x)
    x = x / cast(scale)
    a, b, c = (cast(v) for v in coefficients)
    for _ in range(steps):
        gram = ns.matmul(x, ns.matrix_transpose(x))
        x = a * x + ns.matmul(b * gram + c * ns.matmul(gram, gram), x)
    return ns.wrap(ns.matrix_transpose(x) if tall else x)


def shape_scale(shape: tuple[int, int], rule_name: str, rms_scale: float) -> float:
    """The factor :math:`s` of a matrix of ``shape`` (see the module docstring)."""
    rows, cols = shape
    if rule_name == "width_out_in":
        return math.sqrt(max(1.0, rows / cols))
    if rule_name == "width_in_out":
        return math.sqrt(max(1.0, cols / rows))
    if rule_name == "rms":
        return rms_scale * math.sqrt(max(rows, cols))
    return 1.0


def _nesterov(g, mu, b, c, m_coef, g_coef):
    mu = ema(mu, g, b, c)
    return m_coef * mu + g_coef * g, mu


def _plain(g, mu, b, c, divisor):
    mu = ema(mu, g, b, c)
    return mu / divisor, mu


def muon_momentum(momentum: float, nesterov: bool, bias_correction: bool) -> Elementwise:
    """The momentum :math:`M` of the module docstring: slot ``mu`` (and ``count`` with
    ``bias_correction``); an elementwise stage, so it fuses and traces."""
    beta = momentum

    def prepare(h: dict, count: int) -> dict:
        t = count + 1
        if bias_correction:
            mu_div, g_div = debias(beta, t + 1), debias(beta, t)
        else:
            mu_div = g_div = 1.0
        scalars = {"b": beta, "c": 1.0 - beta}
        if nesterov:
            return {**scalars, "m_coef": beta / mu_div, "g_coef": (1.0 - beta) / g_div}
        return {**scalars, "divisor": g_div}

    return Elementwise(
        "momentum",
        _nesterov if nesterov else _plain,
        slots=(Slot("mu"),),
        prepare=prepare,
        uses_count=bias_correction,
    )


class Orthogonalise(Transform):
    """Each matrix's update replaced by :math:`s\\,O`, its Newton-Schulz polar factor
    times the shape scale (stateless; every leaf must be a matrix)."""

    name = "orthogonalise"
    reads_shape = True  # a real view's trailing axis would change it

    def __init__(
        self,
        coefficients: tuple[float, float, float],
        steps: int,
        epsilon: float,
        epsilon_placement: str,
        update_scale: str,
        rms_scale: float,
    ):
        self.coefficients = tuple(float(v) for v in coefficients)
        self.steps = int(steps)
        self.epsilon = epsilon
        self.epsilon_placement = epsilon_placement
        self.update_scale = update_scale
        self.rms_scale = rms_scale

    def init(self, params: Any) -> dict:
        for p in _tree.leaves(params):
            _require_matrix(np.shape(p))
        return {}

    def update(self, grads: Any, state: dict, params: Any = None, **ctx: Any):
        g_leaves, td = _tree.flatten(grads)
        out = []
        for m in g_leaves:
            shape = tuple(np.shape(m))
            _require_matrix(shape)
            o = newton_schulz(
                m, self.coefficients, self.steps, self.epsilon, self.epsilon_placement
            )
            s = shape_scale(shape, self.update_scale, self.rms_scale)
            out.append(o * namespace_of(o).scalar_caster(o)(s) if s != 1.0 else o)
        return _tree.unflatten(td, out), state


def _require_matrix(shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise ValueError(
            f"muon: a parameter of shape {tuple(shape)} is not a matrix; give muon a "
            "fallback rule for parameters that are not matrices"
        )


def _is_matrix(x: Any) -> bool:
    return np.ndim(x) == 2


def _muon_labels(params: Any) -> Any:
    return _tree.tree_map(lambda p: "muon" if _is_matrix(p) else "fallback", params)


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    weight_decay=nonnegative(schedulable=True),
    momentum=Interval(0.0, 1.0, hi_open=True),
    nesterov=BOOL,
    ns_coefficients=_Coefficients(),
    epsilon=nonnegative(),
    ns_steps=Interval(0, 100, hi_open=True, integer=True),
    update_scale=OneOf(UPDATE_SCALES),
    rms_scale=Interval(0.0, lo_open=True),
    bias_correction=BOOL,
    epsilon_placement=OneOf(EPSILON_PLACEMENTS),
    fallback=_TransformOr(FALLBACKS),
)
def muon(
    learning_rate: Any = 0.001,
    weight_decay: Any = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = DEFAULT_COEFFICIENTS,
    epsilon: float = 1e-7,
    ns_steps: int = 5,
    *,
    update_scale: str = "width_out_in",
    rms_scale: float = 0.2,
    bias_correction: bool = False,
    epsilon_placement: str = "clamp",
    fallback: Transform | str = "adamw",
) -> Chain:
    r"""Muon for matrices, ``fallback`` for the other parameters (see the module
    docstring for the math and the symbol map).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.001 (torch).
      weight_decay: :math:`\lambda` >= 0, or a schedule; decoupled, scaled by the
        learning rate, on the matrices only. Default 0.1 (torch).
      momentum: :math:`\mu` in [0, 1). Default 0.95.
      nesterov: use the Nesterov form of the momentum. Default True.
      ns_coefficients: :math:`(a, b, c)`. Default (3.4445, -4.7750, 2.0315).
      epsilon: :math:`\epsilon` >= 0 of the normalisation. Default 1e-7 (torch).
      ns_steps: :math:`k`, an integer in [0, 100). Default 5.
      update_scale: :math:`s`: ``"width_out_in"`` (torch's ``adjust_lr_fn=
        "original"``, default), ``"width_in_out"`` (optax's default), ``"rms"``
        (torch's ``"match_rms_adamw"``, optax's ``consistent_rms``) or ``"none"``.
      rms_scale: > 0, the factor of ``update_scale="rms"``. Default 0.2.
      bias_correction: divide the momentum by :math:`1-\mu^t` (optax). Default
        False (torch).
      epsilon_placement: ``"clamp"`` (torch, default) or ``"add"`` (optax).
      fallback: the rule for parameters that are not matrices: a transform (it gets
        those leaves only), ``"adamw"`` (default: ``gradstep.adamw(learning_rate,
        weight_decay=0)``) or ``"none"`` (every parameter must be a matrix, as in
        torch).

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros((2, 2))
      >>> opt = gradstep.Optimizer(w, gradstep.muon(1.0, weight_decay=0.0))
      >>> opt.step(np.diag([30.0, 1.0]))  # directions 30x apart in the gradient...
      >>> np.abs(np.diag(w)).round(2)  # ...get steps of similar size
      array([0.7 , 1.13])

    Differences: torch runs the Newton-Schulz iteration in bfloat16 (gradstep in the
    parameter's dtype, so matching torch is only to bfloat16 precision), requires
    every parameter to be a matrix and has no bias correction. optax
    (``optax.contrib.muon``): ``bias_correction=True``, ``epsilon_placement="add"``
    with epsilon 1e-8, ``update_scale="width_in_out"``, no decay by default, and
    Adam with Nesterov momentum (NAdamW) for the other parameters. Neither library
    orthogonalises convolution kernels by default; neither does gradstep.
    """
    if update_scale != "rms" and rms_scale != 0.2:
        raise ValueError(
            f"muon: invalid rms_scale={rms_scale!r} with update_scale={update_scale!r}; "
            "valid values: the default (rms_scale is used only by update_scale='rms')"
        )
    matrices = rule(
        "muon",
        muon_momentum(momentum, nesterov, bias_correction),
        Orthogonalise(
            tuple(ns_coefficients),
            ns_steps,
            epsilon,
            epsilon_placement,
            update_scale,
            rms_scale,
        ),
        add_decayed_weights(weight_decay) if weight_decay else None,
        scale_by_learning_rate(learning_rate),
    )
    if fallback == "none":
        return matrices
    other = adamw(learning_rate, weight_decay=0.0) if isinstance(fallback, str) else fallback

    labels = _muon_labels

    return rule("muon", partition({"muon": matrices, "fallback": other}, labels))
