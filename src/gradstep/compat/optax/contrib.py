r"""optax.contrib's API on gradstep's rules: ``import gradstep.compat.optax as optax``,
then ``optax.contrib.prodigy(...)`` (or ``from gradstep.compat.optax import contrib``).

The names, argument names and defaults of ``optax.contrib`` 0.2.8, each mapped onto a
gradstep rule with the options that give optax's numbers, and optax's state
NamedTuples (``ProdigyState``, ``MuonState``, ``ScheduleFreeState``, ...; optax's own
classes when optax is installed). The conformance fixtures
``tests/conformance/fixtures/optax_compat/optax_compat_contrib.json`` were recorded
from optax 0.2.8 and are replayed through this module under ``jax.jit``.

Example:
  >>> import jax.numpy as jnp
  >>> import gradstep.compat.optax as optax
  >>> opt = optax.contrib.prodigy(1.0)
  >>> params = {"w": jnp.array([1.0, -2.0])}
  >>> state = opt.init(params)
  >>> updates, state = opt.update({"w": jnp.array([0.5, -0.5])}, state, params)
  >>> type(state).__name__, int(state.count)
  ('ProdigyState', 1)
  >>> optax.contrib.galore  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  ...
  AttributeError: gradstep.compat.optax.contrib.galore: gradstep does not provide ...

Mapping (optax.contrib name -> gradstep):

- ``ademamix``, ``scale_by_ademamix`` -> :func:`gradstep.ademamix` (decoupled decay,
  ``eps_root``; ``b3`` and ``alpha`` may be schedules); ``simplified_ademamix``,
  ``scale_by_simplified_ademamix`` -> :func:`gradstep.simplified_ademamix`.
- ``adopt``, ``scale_by_adopt`` -> :func:`gradstep.adopt` with ``clip_step="update"``
  (``use_clipping=False``: ``clip_exponent=None``).
- ``madgrad``, ``scale_by_madgrad`` -> :func:`gradstep.madgrad` (coupled decay).
- ``muon``, ``scale_by_muon`` -> :func:`gradstep.muon`'s stages with optax's options
  (bias correction, ``epsilon_placement="add"``, ``update_scale="width_in_out"`` or
  ``"rms"`` for ``consistent_rms``), the other leaves optax's NAdamW, optax's labels.
- ``cocob``, ``scale_by_cocob`` -> :func:`gradstep.cocob`.
- ``dadapt_adamw`` -> :func:`gradstep.dadapt_adam` (bias correction, decoupled
  decay, ``d0=estim_lr0``).
- ``dog``, ``dowg`` -> :func:`gradstep.dog`, :func:`gradstep.dowg`.
- ``prodigy`` -> :func:`gradstep.prodigy` (bias correction, decoupled decay,
  ``d0=estim_lr0``, ``d_coef=estim_lr_coef``).
- ``schedule_free``, ``schedule_free_sgd``, ``schedule_free_adamw`` -> gradstep's
  schedule-free stage (:func:`gradstep.schedule_free_sgd`) fed the base optimizer's
  update; ``schedule_free_eval_params`` -> its ``to_evaluation``.
- ``sophia`` -> :func:`gradstep.sophia` (``bias_correction=True``,
  ``refresh="after"``), the estimate from ``hessian_diagonal_fn``;
  ``hutchinson_estimator_diag_hessian`` -> gradstep's Hutchinson estimate.
- ``sam`` -> :func:`gradstep.sam` (``sync_period=2``, the ascent
  ``chain(normalize(), sgd(rho))``; transparent mode, or opaque mode with gradstep's
  ascent and ``grad_fn``); ``normalize`` -> a global-norm scaling stage.
- ``mechanize``, ``reduce_on_plateau``, ``differentially_private_aggregate`` (also in
  the main namespace) and ``dpsgd`` -> :func:`gradstep.rules.mechanize`,
  :func:`gradstep.transforms.reduce_on_plateau`,
  :func:`gradstep.transforms.differentially_private_aggregate` (+ momentum, learning
  rate).
- ``split_real_and_imaginary`` -> the inner transformation on real/imaginary pairs.

What differs from optax, on purpose (each raises ``ValueError`` where an argument
would otherwise be ignored): random draws (Hutchinson probes, DP noise) are
gradstep's, from integer seeds; ``sam`` takes one normalized-SGD ascent per
descent; Muon takes one Newton-Schulz triple (no ``"dion"`` table, no
``adaptive``, Frobenius preconditioning, matrices as they are); ADOPT's
``clip_value_fn`` is the default :math:`x^{1/4}`; AdEMAMix's ``mu_dtype`` is refused
(optax casts only at init); Prodigy needs ``betas[0] > 0``; MADGRAD a learning rate
> 0; ``sophia`` does not print win rates.

Not provided yet (accessing them raises ``AttributeError``): ``acprop``,
``scale_by_acprop`` (AdaBelief with a centred second moment: no gradstep rule),
``momo``, ``momo_adam`` (model-based momentum with a loss value: no gradstep rule),
``galore``, ``scale_by_galore``, ``GaLoreDimensionNumbers``, ``GaLoreState``
(low-rank projected Adam: no gradstep rule), ``MomoState``, ``MomoAdamState``.
"""

from __future__ import annotations

from .._optax_base import taking_what_optax_takes
from .._optax_contrib import (
    MadgradState,
    MuonDimensionNumbers,
    MuonState,
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    adopt,
    madgrad,
    muon,
    scale_by_ademamix,
    scale_by_adopt,
    scale_by_madgrad,
    scale_by_muon,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from .._optax_contrib_free import (
    COCOBState,
    DAdaptAdamWState,
    DoGState,
    DoWGState,
    ProdigyState,
    cocob,
    dadapt_adamw,
    dog,
    dowg,
    prodigy,
    scale_by_cocob,
)
from .._optax_contrib_schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from .._optax_contrib_wrappers import (
    HutchinsonState,
    NormalizeState,
    SAMState,
    SophiaState,
    SplitRealAndImaginaryState,
    dpsgd,
    hutchinson_estimator_diag_hessian,
    normalize,
    sam,
    sophia,
    split_real_and_imaginary,
)
from .._optax_extra import (
    DifferentiallyPrivateAggregateState,
    MechanicState,
    ReduceLROnPlateauState,
    differentially_private_aggregate,
    mechanize,
    reduce_on_plateau,
)

__all__ = [
    "COCOBState",
    "DAdaptAdamWState",
    "DifferentiallyPrivateAggregateState",
    "DoGState",
    "DoWGState",
    "HutchinsonState",
    "MadgradState",
    "MechanicState",
    "MuonDimensionNumbers",
    "MuonState",
    "NormalizeState",
    "ProdigyState",
    "ReduceLROnPlateauState",
    "SAMState",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "ScheduleFreeState",
    "SophiaState",
    "SplitRealAndImaginaryState",
    "ademamix",
    "adopt",
    "cocob",
    "dadapt_adamw",
    "differentially_private_aggregate",
    "dog",
    "dowg",
    "dpsgd",
    "hutchinson_estimator_diag_hessian",
    "madgrad",
    "mechanize",
    "muon",
    "normalize",
    "prodigy",
    "reduce_on_plateau",
    "sam",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_cocob",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_simplified_ademamix",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "simplified_ademamix",
    "sophia",
    "split_real_and_imaginary",
]

#: optax.contrib's names that gradstep has no rule for (yet), and why
NOT_PROVIDED = {
    "acprop": "AdaBelief with a centred second moment (ACProp)",
    "scale_by_acprop": "AdaBelief with a centred second moment (ACProp)",
    "momo": "model-based momentum with the loss value (MoMo)",
    "momo_adam": "model-based momentum with the loss value (MoMo-Adam)",
    "MomoState": "MoMo",
    "MomoAdamState": "MoMo-Adam",
    "galore": "low-rank gradient projection (GaLore)",
    "scale_by_galore": "low-rank gradient projection (GaLore)",
    "GaLoreState": "GaLore",
    "GaLoreDimensionNumbers": "GaLore",
}


def __getattr__(name: str):
    if name in NOT_PROVIDED:
        raise AttributeError(
            f"gradstep.compat.optax.contrib.{name}: gradstep does not provide optax.contrib's "
            f"{name} yet (no gradstep rule for {NOT_PROVIDED[name]}); use optax.contrib.{name} "
            "itself, which runs beside gradstep's transformations in optax.chain"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# every factory takes the values optax takes (no range optax does not check itself)
taking_what_optax_takes(globals(), __name__)
