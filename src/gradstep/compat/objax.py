r"""objax's ``objax.optimizer`` API on gradstep's rules.

Change ``objax.optimizer.Adam(model.vars())`` to ``gradstep.compat.objax.Adam(params)``
where ``params`` is the list of NumPy arrays to train; the loop ``opt(lr, grads)``
keeps working and updates the arrays in place:

    >>> import numpy as np
    >>> from gradstep.compat import objax
    >>> params = [np.array([1.0, -2.0]), np.array([0.5])]
    >>> opt = objax.Adam(params)
    >>> for _ in range(2):
    ...     opt(0.1, [2 * p for p in params])
    >>> params[0].round(4)
    array([ 0.8004, -1.8002])

Classes, with objax's arguments and defaults (``vc``: a list of NumPy arrays, or a dict
of them, taken in its order):

- :class:`SGD` ``(vc)``: :math:`w \leftarrow w - \eta g`.
- :class:`Momentum` ``(vc, momentum=0.9, nesterov=False)``: :math:`m \leftarrow g + \mu
  m`, :math:`w \leftarrow w - \eta m` (Nesterov: :math:`w \leftarrow w - \eta(g + \mu
  m)`); the learning rate is outside the buffer (gradstep ``momentum`` /
  ``nesterov_momentum`` with ``lr_in_buffer=False``).
- :class:`Adam` ``(vc, beta1=0.9, beta2=0.999, eps=1e-8)``: as objax's code,
  :math:`w \leftarrow w - \eta \sqrt{1-\beta_2^t}/(1-\beta_1^t)\, m / \sqrt{v + \epsilon}`
  (epsilon inside the root, on the uncorrected :math:`v`: gradstep ``adam`` with
  ``epsilon_placement="inside_uncorrected"``). The formula objax's documentation prints
  (:math:`\hat m / (\sqrt{\hat v} + \epsilon)`) is ``epsilon_placement="outside"``.
- :class:`LARS` ``(vc, momentum=0.9, weight_decay=1e-4, tc=1e-3, eps=1e-5)``: gradstep
  ``lars(form="objax")``; objax's buffer holds :math:`-v` of gradstep's.
- :class:`ExponentialMovingAverage` ``(vc, momentum=0.999, debias=False, eps=1e-6)``:
  ``ema()`` takes in the current values, :math:`m \leftarrow m + (1-\mu)(w - m)`
  from :math:`m = 0`; ``refs_and_values()`` and ``replace_vars(f)`` as objax's
  (gradstep ``transforms.parameter_ema``).

Calling convention: ``opt(lr, grads)``; ``Momentum`` takes ``momentum=`` and ``Adam``
takes ``beta1=`` / ``beta2=`` per call (None: the constructor's value; Adam's
override changes the moment decays and the bias correction, as objax's). Adam counts
one step for the whole optimizer, as objax.

Differences: objax's variables are JAX arrays in a ``VarCollection``, rebound on
every step; here they are NumPy arrays changed in place (JAX arrays are immutable and
are refused). Only the arrays given are averaged by the EMA (objax also averages the
non-trainable variables of the collection, e.g. batch-norm statistics: pass them in
``vc``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import gradstep
from gradstep._core.transform import identity as _identity
from gradstep._core.validate import check
from gradstep.transforms import averaging as _averaging

__all__ = ["SGD", "Adam", "ExponentialMovingAverage", "LARS", "Momentum"]


def _arrays(vc: Any) -> list[np.ndarray]:
    values = list(vc.values()) if isinstance(vc, dict) else list(vc)
    for v in values:
        if not isinstance(v, np.ndarray):
            raise ValueError(
                "gradstep.compat.objax updates NumPy arrays in place; got "
                f"{type(v).__name__} (JAX arrays are immutable: use gradstep's functional API)"
            )
    return values


class _Optimizer:
    """One gradstep transform over all the arrays of ``vc``."""

    def __init__(self, vc: Any, transform: gradstep.Transform):
        self.train_vars = _arrays(vc)
        self._transform = transform
        self._ranges = transform.hyperparameters()
        self.state = transform.init(self.train_vars)

    def _step(self, lr: float, grads: list, **overrides: Any) -> None:
        if len(grads) != len(self.train_vars):
            raise ValueError(
                f"Expecting as many gradients as trainable variables: got {len(grads)} for "
                f"{len(self.train_vars)}"
            )
        ctx = {k: v for k, v in overrides.items() if v is not None}
        # values given at the call are checked there, against the rule's declared
        # ranges (the same check and message as its constructor's)
        ranges = self._ranges
        owner = type(self).__name__
        check(owner, "lr", lr, ranges["learning_rate"])
        for name, value in ctx.items():
            if name in ranges:
                check(owner, name, value, ranges[name])
        grads = [np.asarray(g, dtype=p.dtype) for g, p in zip(grads, self.train_vars)]
        updates, self.state = self._transform.update(
            grads, self.state, self.train_vars, learning_rate=lr, **ctx
        )
        for p, u in zip(self.train_vars, updates):
            p += np.asarray(u, dtype=p.dtype)


class SGD(_Optimizer):
    """Stochastic gradient descent: ``w <- w - lr g``."""

    def __init__(self, vc: Any):
        super().__init__(vc, gradstep.sgd(1.0))

    def __call__(self, lr: float, grads: list) -> None:
        self._step(lr, grads)


class Momentum(_Optimizer):
    """Momentum SGD, lr outside the buffer: ``m <- g + mu m``, ``w <- w - lr m``
    (Nesterov: ``w <- w - lr (g + mu m)``)."""

    def __init__(self, vc: Any, momentum: float = 0.9, nesterov: bool = False):
        self.momentum, self.nesterov = momentum, nesterov
        factory = gradstep.nesterov_momentum if nesterov else gradstep.momentum
        super().__init__(vc, factory(1.0, momentum, lr_in_buffer=False))

    def __call__(self, lr: float, grads: list, momentum: float | None = None) -> None:
        self._step(lr, grads, momentum=momentum)


class Adam(_Optimizer):
    """Adam as objax's code: epsilon inside the root on the uncorrected second moment
    (``epsilon_placement="outside"`` gives the formula of objax's documentation)."""

    def __init__(
        self,
        vc: Any,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        *,
        epsilon_placement: str = "inside_uncorrected",
    ):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        rule = gradstep.adam(1.0, beta1, beta2, eps, epsilon_placement=epsilon_placement)
        super().__init__(vc, rule)

    def __call__(
        self, lr: float, grads: list, beta1: float | None = None, beta2: float | None = None
    ) -> None:
        self._step(lr, grads, beta1=beta1, beta2=beta2)


class LARS(_Optimizer):
    """LARS as objax's code (gradstep ``lars(form="objax")``)."""

    def __init__(
        self,
        vc: Any,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        tc: float = 1e-3,
        eps: float = 1e-5,
    ):
        self.momentum, self.weight_decay, self.tc, self.eps = momentum, weight_decay, tc, eps
        rule = gradstep.lars(
            1.0, momentum, weight_decay, trust_coefficient=tc, epsilon=eps, form="objax"
        )
        super().__init__(vc, rule)

    def __call__(self, lr: float, grads: list) -> None:
        self._step(lr, grads)


class ExponentialMovingAverage:
    """objax's EMA of the arrays of ``vc``: ``ema()`` takes in their current values."""

    def __init__(self, vc: Any, momentum: float = 0.999, debias: bool = False, eps: float = 1e-6):
        self.refs = _arrays(vc)
        self.momentum, self.debias, self.eps = momentum, debias, eps
        self._transform = _averaging.parameter_ema(_identity(), momentum, debias, eps)
        self.state = self._transform.init(self.refs)

    def __call__(self) -> None:
        zeros = [np.zeros_like(r) for r in self.refs]
        _, self.state = self._transform.update(zeros, self.state, self.refs)

    def refs_and_values(self) -> tuple[list, list]:
        """The averaged arrays and their averages (debiased when ``debias``)."""
        return self.refs, list(self._transform.averages(self.state))

    def replace_vars(self, f: Callable) -> Callable:
        """``f`` wrapped to run with the arrays holding their averages."""

        def wrap(*args: Any, **kwargs: Any) -> Any:
            refs, values = self.refs_and_values()
            originals = [r.copy() for r in refs]
            for r, v in zip(refs, values):
                r[...] = v
            try:
                return f(*args, **kwargs)
            finally:
                for r, v in zip(refs, originals):
                    r[...] = v

        return wrap
