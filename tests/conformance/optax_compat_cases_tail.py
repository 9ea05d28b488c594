"""Cases of optax's further optimizers and transforms for
``record_optax_compat_fixtures.py --group tail`` (``optax_compat_tail.json``)."""

from __future__ import annotations

# optax computes RAdam's rho_t in float32 (see RADAM_F32 in the recorder)
RADAM_F32 = {
    "float32_tolerance": {"rtol": 1e-3, "atol": 1e-4},
    "reason": "optax computes RAdam's rho_t in float32 (cancellation: rho_6 = 6.0005 "
    "instead of 5.9942, the rectification 0.3% off); gradstep's prepare uses float64",
}
F32_SCHEDULE = {
    "float64_tolerance": {"rtol": 1e-5, "atol": 1e-7},
    "reason": "optax evaluates this schedule in float32 even with jax_enable_x64 "
    "(arithmetic on the int32 count); gradstep's schedules give Python floats",
}
WB = {"w": True, "b": False}


def cases(S):  # noqa: N803 - the recorder's spec builder
    return [
        # optimizers, two settings each
        ("adabelief", S("adabelief", 0.05), {}),
        (
            "adabelief_b_eps_nesterov",
            S("adabelief", 0.1, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10, nesterov=True),
            {},
        ),
        ("yogi", S("yogi", 0.05), {}),
        ("yogi_b_eps", S("yogi", 0.1, b1=0.8, b2=0.99, eps=1e-4), {}),
        ("novograd", S("novograd", 0.05), {}),
        (
            "novograd_b_eps_wd",
            S("novograd", 0.05, b1=0.8, b2=0.5, eps=1e-5, eps_root=1e-8, weight_decay=0.01),
            {},
        ),
        ("adan", S("adan", 0.05), {}),
        (
            "adan_b_masked_wd",
            S("adan", 0.05, b1=0.9, b2=0.8, b3=0.95, eps=1e-6, weight_decay=0.1, mask=WB),
            {},
        ),
        ("fromage", S("fromage", 0.05), {}),
        ("fromage_min_norm", S("fromage", 0.2, min_norm=1e-3), {}),
        (
            "fromage_schedule",
            S("fromage", S("linear_schedule", 0.1, 0.01, 20)),
            F32_SCHEDULE,
        ),
        ("sm3", S("sm3", 0.1), {}),
        ("sm3_momentum", S("sm3", 0.5, momentum=0.5), {}),
        ("rprop", S("rprop", 0.01), {}),
        (
            "rprop_bounds",
            S(
                "rprop",
                0.05,
                eta_minus=0.3,
                eta_plus=1.5,
                min_step_size=1e-3,
                max_step_size=0.1,
            ),
            {},
        ),
        ("optimistic_gradient_descent", S("optimistic_gradient_descent", 0.05), {}),
        (
            "optimistic_gradient_descent_alpha_beta",
            S("optimistic_gradient_descent", 0.05, alpha=0.5, beta=2.0),
            {},
        ),
        ("optimistic_adam", S("optimistic_adam", 0.05), {}),
        (
            "optimistic_adam_optimism_plain",
            S("optimistic_adam", 0.05, optimism=0.02, b1=0.8, nesterov=False),
            {},
        ),
        ("optimistic_adam_v2", S("optimistic_adam_v2", 0.05), {}),
        (
            "optimistic_adam_v2_alpha_beta_plain",
            S(
                "optimistic_adam_v2",
                0.05,
                alpha=0.5,
                beta=0.5,
                b1=0.8,
                eps_root=1e-8,
                nesterov=False,
            ),
            {},
        ),
        ("radam_threshold_4", S("radam", 0.05, threshold=4.0), RADAM_F32),
        # transforms
        ("scale_by_belief", S("chain", S("scale_by_belief", b1=0.8), S("scale", -0.05)), {}),
        (
            "scale_by_yogi",
            S(
                "chain",
                S("scale_by_yogi", eps_root=1e-8, initial_accumulator_value=0.01),
                S("scale", -0.05),
            ),
            {},
        ),
        (
            "scale_by_novograd",
            S("chain", S("scale_by_novograd", weight_decay=0.01), S("scale", -0.05)),
            {},
        ),
        ("scale_by_adan", S("chain", S("scale_by_adan", eps_root=1e-8), S("scale", -0.05)), {}),
        ("scale_by_sm3", S("chain", S("scale_by_sm3", b1=0.5, b2=0.9), S("scale", -0.1)), {}),
        ("scale_by_rprop", S("chain", S("scale_by_rprop", 0.02), S("scale", -1.0)), {}),
        (
            "scale_by_optimistic_gradient",
            S("chain", S("scale_by_optimistic_gradient", 0.5, 1.5), S("scale", -0.05)),
            {},
        ),
        (
            "scale_by_distance_over_gradients",
            S("scale_by_distance_over_gradients", reps_rel=1e-4, global_scale=-1.0),
            {},
        ),
        (
            "scale_by_param_block_norm",
            S("chain", S("scale_by_adam"), S("scale_by_param_block_norm"), S("scale", -0.01)),
            {},
        ),
        (
            "scale_by_param_block_rms",
            S("chain", S("scale_by_param_block_rms", 0.01), S("scale", -0.05)),
            {},
        ),
        (
            "scale_by_trust_ratio_min_norm",
            S(
                "chain",
                S("scale_by_adam"),
                S("scale_by_trust_ratio", 4.0, trust_coefficient=0.5, eps=1e-3),
                S("scale", -0.05),
            ),
            {},
        ),
        ("centralize", S("chain", S("centralize"), S("sgd", 0.1, momentum=0.5)), {}),
        (
            "normalize_by_update_norm",
            S("normalize_by_update_norm", scale_factor=-0.1, eps=1e-4),
            {},
        ),
        # optax's state under masks (MaskedNode() in the trees of the inner state)
        (
            "masked_sm3_novograd",
            S(
                "chain",
                S("masked", S("scale_by_sm3"), WB),
                S("masked", S("scale_by_novograd"), {"w": False, "b": True}),
                S("scale", -0.05),
            ),
            {},
        ),
        (
            "masked_rprop_optimistic",
            S(
                "multi_transform",
                {"r": S("rprop", 0.01), "o": S("optimistic_gradient_descent", 0.05)},
                {"w": "r", "b": "o"},
            ),
            {},
        ),
    ]
