"""heavyball's classes that compute a registry rule's update, for `gradstep bench --references`.

heavyball differs from the other references in ways the comparison settles once here:

- it divides by :math:`\\max(\\sqrt{\\hat v}, \\epsilon)` where gradstep's rules add
  :math:`\\epsilon`: both sides run with :math:`\\epsilon = 10^{-30}`, far below every
  :math:`\\sqrt{\\hat v}`, so the two placements give the same update to rounding;
- it keeps the learning rate in a float32 tensor: the comparison's rate, :math:`2^{-7}`,
  is exact in float32;
- its state is float32 whatever the parameters' dtype unless ``storage_dtype`` says
  otherwise (:attr:`~gradstep.cli._reference.Reference.storage_arg`), and ``step()``
  drops the gradients (``clears_grads``);
- it compiles its steps with ``torch.compile`` unless ``heavyball.utils.compile_mode``
  is None: timed both ways (``compile_switch``), checked uncompiled;
- its decay is decoupled (:math:`w (1 - \\eta\\lambda)`): the rules whose gradstep decay
  is coupled are compared without one.

The classes keep their bias-corrected moments in the state (a debiased EMA,
:math:`1 - (1-\\beta)/(1-\\beta^t)`), which is the same update as correcting at the end.
Each mapping is checked by ``tests/cli/test_bench_references.py`` like every other.
"""

from __future__ import annotations

from ._reference import Reference, adam_args, betas

HB = "heavyball"

#: a learning rate float32 holds exactly (heavyball keeps the rate in a float32 tensor)
EXACT_RATE = 2.0**-7

#: an epsilon below every root of the second moment: max(root, eps) = root + eps
TINY_EPSILON = 1e-30


def _no_decay(hp: dict) -> float:
    """0: heavyball's decay is decoupled, the rule's coupled one is not compared."""
    if hp["weight_decay"]:
        raise ValueError("heavyball decouples the decay: compare without a coupled one")
    return 0.0


def _hb(rule: str, cls: str, kwargs, **hyperparams) -> Reference:
    return Reference(
        rule,
        HB,
        HB,
        cls,
        kwargs,
        {"learning_rate": EXACT_RATE, **hyperparams},
        train=cls == "SFAdamW",
        foreach_arg="multi_tensor",
        storage_arg="storage_dtype",
        clears_grads=True,
        compile_switch="heavyball.utils.compile_mode",
    )


HEAVYBALL: tuple[Reference, ...] = (
    _hb(
        "adam",
        "AdamW",
        lambda hp: adam_args(hp, weight_decay=_no_decay(hp)),
        epsilon=TINY_EPSILON,
    ),
    _hb("adamw", "AdamW", adam_args, epsilon=TINY_EPSILON),
    _hb("laprop", "LaProp", adam_args, epsilon=TINY_EPSILON),
    _hb(
        "nadam",
        "NAdam",
        lambda hp: adam_args(
            hp,
            momentum_decay=hp["schedule_decay"],
            decoupled_weight_decay=hp["decoupled_weight_decay"],
        ),
        epsilon=TINY_EPSILON,
    ),
    _hb(
        "ademamix",
        "AdEMAMix",
        lambda hp: {
            **adam_args(
                hp,
                weight_decay=hp["weight_decay"] if hp["decoupled_weight_decay"] else _no_decay(hp),
            ),
            "betas": betas(hp, 3),
            "alpha": hp["alpha"],
        },
        epsilon=TINY_EPSILON,
        alpha=2.0,
        beta3=0.99,
    ),
    _hb(
        "momentum",
        "SGD",
        lambda hp: {
            "lr": hp["learning_rate"],
            "beta": hp["momentum"],
            "weight_decay": _no_decay(hp),
        },
    ),
    _hb(
        "schedule_free_adamw",
        "SFAdamW",
        lambda hp: {
            **adam_args(hp),
            **{k: hp[k] for k in ("warmup_steps", "r", "weight_lr_power")},
        },
        epsilon=TINY_EPSILON,
        beta2=0.99,
    ),
)

#: heavyball classes named like a registry rule that compute another update, and why
HEAVYBALL_EXCLUDED: dict[str, str] = {
    "heavyball.ADOPT (adopt)": "bias-corrects both moments (its debiased EMAs) where "
    "ADOPT, the paper's and gradstep's, corrects neither: another update from the "
    "second step on",
    "heavyball.RMSprop (rmsprop)": "bias-corrects its second moment and divides by "
    "max(sqrt(v), eps): RMSprop with Adam's correction, which no rmsprop option gives",
    "heavyball.SGD (momentum, with weight decay)": "its decay is decoupled "
    "(w (1 - lr wd)); gradstep's momentum adds wd w to the gradient: compared without one",
    "heavyball.SOAP, heavyball.Muon, heavyball.PSGDKron (soap, muon, psgd_kron)": "matrix "
    "preconditioners: the bench's one-dimensional layouts have no matrices",
}
