r"""Stochastic gradient Langevin dynamics (SGLD): gradient steps plus Gaussian noise
whose variance is the learning rate, so the iterates sample the posterior
:math:`p(w) \propto \exp(-L(w))` instead of settling in a minimum.

Symbols: :math:`w` parameter, :math:`g` gradient (of the negative log posterior),
:math:`\eta` ``learning_rate``, :math:`\lambda` ``weight_decay`` (a Gaussian prior),
:math:`T` ``temperature``, :math:`s` ``rescale_grad``, :math:`c` ``clip_gradient``,
:math:`\xi` standard normal noise drawn independently for every element.

.. math::

    u = \mathrm{clip}(s g, -c, c) + \lambda w,\qquad
    w \leftarrow w - \frac{\eta}{2}\, u + \sqrt{\eta T}\,\xi

With :math:`T = 1` (MXNet, the paper) this is the Euler discretisation of the Langevin
diffusion :math:`dw = -\tfrac12 \nabla L\,dt + dB_t`; Welling & Teh show that with
step sizes decreasing to zero (:math:`\sum \eta_t = \infty`, :math:`\sum \eta_t^2 <
\infty`, the schedule is the caller's) the iterates sample the posterior without a
Metropolis correction. :math:`T < 1` samples the tempered posterior
:math:`\exp(-L/T)` ("cold posterior"); :math:`T = 0` is plain gradient descent with
step :math:`\eta/2`.

**The noise.** It comes from an explicit key kept in the state: the integer
``seed`` and the step count :math:`k` (0 on the first update). Each array library
draws with its own generator from that key (see
:mod:`gradstep._core.namespaces`): on NumPy :math:`\xi` for the parameters in tree
order is ``numpy.random.default_rng([seed, k]).standard_normal(shape)`` drawn leaf
after leaf, in float64, then scaled by :math:`\sqrt{\eta T}` and cast to the
parameter's dtype; torch tensors draw from a ``torch.Generator`` on their device
seeded from ``(seed, k)``; under ``jax.jit`` the key is ``jax.random.fold_in`` of
the seed and the traced count. A run is reproducible on each library, and a run
resumed from a checkpoint draws the same noise as the uninterrupted run; NumPy,
torch and JAX draw different numbers from the same key. The noise stage cannot be
compiled into a fused kernel; the NumPy front runs SGLD on the eager engine.

References:
  Welling & Teh (2011): Bayesian Learning via Stochastic Gradient Langevin Dynamics.
  ICML.
  Patterson & Teh (2013): Stochastic Gradient Riemannian Langevin Dynamics on the
  Probability Simplex. NeurIPS (cited by MXNet's SGLD).
  Wenzel et al. (2020): How Good is the Bayes Posterior in Deep Neural Networks
  Really? ICML, arXiv:2002.02405 (tempered posteriors).
"""

from __future__ import annotations

from typing import Any

from .._core.elementwise import Elementwise
from .._core.gradients import CLIP_GRADIENT, RESCALE_GRAD, gradient_stage
from .._core.noise import SEED, AddNormals, normals
from .._core.stages import rule
from .._core.transform import Chain
from .._core.validate import hyperparams, nonnegative

_LR = nonnegative(schedulable=True)


def _scaled(g, factor):
    return g * factor


def _half_descent_factor(h: dict, count: int) -> dict:
    return {"factor": -0.5 * h["learning_rate"]}


def half_step(learning_rate: Any) -> Elementwise:
    r""":math:`u \leftarrow -\tfrac{\eta}{2} u`: the drift of the Langevin step."""
    return Elementwise(
        "learning_rate",
        _scaled,
        hyperparams={"learning_rate": learning_rate},
        prepare=_half_descent_factor,
    )


def langevin_noise(likes: list, seed: Any, count: Any, std: Any) -> list:
    """The noise of the update with step count ``count`` (see the module docstring):
    ``std`` times standard normal noise shaped like each array of ``likes``, in its
    floating dtype and library."""
    return normals(likes, seed, count, std)


class AddLangevinNoise(AddNormals):
    """Add :math:`\\sqrt{\\eta T}\\,\\xi` to the incoming updates (a stochastic stage)."""

    def __init__(self, learning_rate: Any, temperature: Any, seed: int | None):
        self.name = "langevin_noise"
        self.hyperparams = {"learning_rate": learning_rate, "temperature": temperature}
        self.seed = seed

    def noise_std(self, h: dict[str, Any], count: Any, ns: Any) -> Any:
        return ns.sqrt(h["learning_rate"] * h["temperature"])

    def draw(self, likes: list, seed: Any, count: Any, std: Any) -> list:
        # looked up by name at each call: the MXNet conformance test replaces
        # ``langevin_noise`` with the draws its fixtures recorded
        return langevin_noise(likes, seed, count, std)


@hyperparams(
    learning_rate=_LR,
    temperature=nonnegative(schedulable=True),
    seed=SEED,
    weight_decay=nonnegative(schedulable=True),
    rescale_grad=RESCALE_GRAD,
    clip_gradient=CLIP_GRADIENT,
)
def sgld(
    learning_rate: Any = 0.01,
    *,
    temperature: Any = 1.0,
    seed: int | None = None,
    weight_decay: Any = 0.0,
    rescale_grad: Any = 1.0,
    clip_gradient: float | None = None,
) -> Chain:
    r"""Stochastic gradient Langevin dynamics (see the module docstring for the math).

    Args:
      learning_rate: :math:`\eta` >= 0, or a schedule (decrease it to sample; the
        noise variance follows it). Default 0.01 (MXNet 1.x).
      temperature: :math:`T` >= 0, or a schedule: the noise variance is
        :math:`\eta T`. Default 1 (MXNet, the paper).
      seed: an integer in [0, 2**63 - 1] seeding the noise, or None (the default) for
        fresh entropy drawn at ``init`` and kept in the state.
      weight_decay: :math:`\lambda` >= 0, or a schedule: a Gaussian prior's gradient
        :math:`\lambda w`, added after the clip. Default 0.
      rescale_grad: :math:`s` > 0, or a schedule. Default 1.
      clip_gradient: :math:`c` >= 0 or None (no clip, the default); 0 zeroes the
        gradient, as MXNet's SGLD does with 0.

    Example:
      >>> import numpy as np, gradstep
      >>> w = np.zeros(100_000)
      >>> opt = gradstep.Optimizer(w, gradstep.sgld(0.04, seed=0))
      >>> opt.step(np.zeros_like(w)); round(float(w.std()), 2)  # sqrt(0.04)
      0.2

    Differences: MXNet 2.x defaults to lr 0.1. MXNet draws the noise from its own
    generator (``mx.random.seed``); the trajectories agree once the same noise is
    drawn (the conformance fixtures inject gradstep's noise into MXNet's update).
    optax's ``noisy_sgd`` adds noise of variance :math:`\eta/(1+t)^\gamma` without
    the factor 1/2 on the gradient step.
    """
    return rule(
        "sgld",
        gradient_stage(
            "sgld", rescale_grad, clip_gradient, weight_decay, False, default_in_clip=False
        ),
        half_step(learning_rate),
        AddLangevinNoise(learning_rate, temperature, seed),
    )
