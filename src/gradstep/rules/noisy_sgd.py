r"""SGD with annealed Gaussian gradient noise (noisy SGD).

Symbols: :math:`g_t` the gradient at update :math:`t = 1, 2, \ldots`, :math:`\eta`
``learning_rate``, :math:`\sigma^2_0` ``eta`` (the initial noise variance),
:math:`\gamma` ``gamma`` (its decay exponent), :math:`\xi_t` standard normal noise
drawn independently for every element.

.. math::

    \sigma_t = \sqrt{\frac{\sigma_0^2}{t^{\gamma}}},\qquad
    w \leftarrow w - \eta\,(g_t + \sigma_t\,\xi_t)

Neelakantan et al. add the noise to the gradient of very deep networks early in
training and anneal its variance as :math:`(1 + t)^{-\gamma}` (with :math:`t`
counted from 0; here the first update is :math:`t = 1`, the same schedule), with
:math:`\gamma = 0.55` and :math:`\sigma_0^2 \in \{0.01, 0.3, 1\}`. Unlike SGLD
(:func:`gradstep.sgld`) the noise is added to the gradient, so it is scaled by the
learning rate too, and it vanishes as training goes on.

**The noise** comes from an explicit key kept in the state, the integer ``seed``
and the step count, drawn by each array library's own generator, exactly as SGLD's
(see :mod:`gradstep.rules.langevin`): reproducible and resumable on each library;
NumPy, torch and JAX draw different numbers from the same key.

References:
  Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens (2015): Adding
  Gradient Noise Improves Learning for Very Deep Networks. arXiv:1511.06807.
"""

from __future__ import annotations

from typing import Any

from .._core.noise import SEED, AddNormals
from .._core.stages import rule, scale_by_learning_rate
from .._core.transform import Chain
from .._core.validate import hyperparams, nonnegative


class AddNoise(AddNormals):
    r"""Add :math:`\sigma_t \xi_t` to the incoming updates, with
    :math:`\sigma_t^2 = \sigma_0^2 / t^\gamma` (a stochastic stage)."""

    name = "add_noise"

    def __init__(self, eta: Any, gamma: Any, seed: int | None):
        self.hyperparams = {"eta": eta, "gamma": gamma}
        self.seed = seed

    def noise_std(self, h: dict[str, Any], count: Any, ns: Any) -> Any:
        return ns.sqrt(h["eta"] / (count + 1) ** h["gamma"])


@hyperparams(eta=nonnegative(schedulable=True), gamma=nonnegative(schedulable=True), seed=SEED)
def add_noise(eta: Any = 0.01, gamma: Any = 0.55, seed: int | None = None) -> AddNoise:
    r"""Add Gaussian noise of variance :math:`\sigma_0^2 / t^\gamma` to the updates
    (see the module docstring).

    Args:
      eta: :math:`\sigma_0^2` >= 0, or a schedule. Default 0.01.
      gamma: :math:`\gamma` >= 0, or a schedule. Default 0.55.
      seed: an integer in [0, 2**63 - 1] seeding the noise, or None (the default)
        for fresh entropy drawn at ``init`` and kept in the state.
    """
    return AddNoise(eta, gamma, seed)


@hyperparams(
    learning_rate=nonnegative(schedulable=True),
    eta=nonnegative(schedulable=True),
    gamma=nonnegative(schedulable=True),
    seed=SEED,
)
def noisy_sgd(
    learning_rate: Any = 0.01,
    eta: Any = 0.01,
    gamma: Any = 0.55,
    *,
    seed: int | None = None,
) -> Chain:
    r"""SGD on the gradient plus annealed Gaussian noise (see the module docstring).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule. Default 0.01.
      eta: :math:`\sigma_0^2` >= 0, the noise variance of the first update, or a
        schedule. Default 0.01 (optax; the paper tries 0.01, 0.3 and 1).
      gamma: :math:`\gamma` >= 0, how fast the variance decays, or a schedule.
        Default 0.55 (the paper, optax).
      seed: an integer in [0, 2**63 - 1] seeding the noise, or None (the default)
        for fresh entropy drawn at ``init`` and kept in the state.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(100_000)
      >>> opt = gradstep.Optimizer(w, gradstep.noisy_sgd(1.0, eta=0.04, seed=0))
      >>> opt.step(np.zeros_like(w)); round(float(w.std()), 2)  # sqrt(0.04)
      0.2

    Differences: optax's ``noisy_sgd`` computes the same, with noise drawn from a
    JAX key it splits every step (``key``); here the key is ``(seed, step)`` and each
    library draws its own numbers, so trajectories agree with optax only in
    distribution (the conformance fixtures are recorded with ``eta=0``, and a test
    checks the noise's variance per step). optax requires ``learning_rate``; here it
    defaults to 0.01.
    """
    return rule("noisy_sgd", add_noise(eta, gamma, seed), scale_by_learning_rate(learning_rate))
