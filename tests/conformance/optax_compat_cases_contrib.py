"""The optax.contrib cases of the optax-compat recorder (``--group contrib``)."""

from __future__ import annotations

# optax computes MADGRAD's weight sqrt(count + 1) on its int32 count, in float32 even
# with jax_enable_x64: each weight ~3e-8 off float64, ~3e-6 on small coordinates after
# the dual average's division by the cube root of the weighted sums
MADGRAD_F64 = {
    "float64_tolerance": {"rtol": 1e-5, "atol": 1e-7},
    "reason": "optax computes MADGRAD's lambda_k = (lr + eps) sqrt(k + 1) with sqrt of its "
    "int32 count, in float32 even with jax_enable_x64; gradstep in float64",
}
DECAY_ONLY_W = {"w": True, "b": False}
# schedules whose values are exact in float32 (dyadic values at every count), so that
# optax's float32 evaluation under jax_enable_x64 gives gradstep's float64 values
ALPHA_RAMP = {"fn": "linear_schedule", "args": [0.0, 4.0, 8]}
RATE_RAMP = {"fn": "linear_schedule", "args": [1.0, 0.5, 8]}


def cases(S):  # noqa: N803 - the recorder's spec maker, read like a call
    normalized_sgd = lambda rho: S("chain", S("contrib.normalize"), S("sgd", rho))  # noqa: E731
    return [
        ("contrib_ademamix", S("contrib.ademamix", 0.05), {}),
        (
            "contrib_ademamix_schedules_masked_wd",
            S(
                "contrib.ademamix",
                0.05,
                b1=0.8,
                b2=0.99,
                b3=S("constant_schedule", 0.99),
                alpha=ALPHA_RAMP,
                eps_root=1e-8,
                weight_decay=0.1,
                mask=DECAY_ONLY_W,
            ),
            {},
        ),
        (
            "contrib_scale_by_ademamix",
            S("chain", S("contrib.scale_by_ademamix", b3=0.99), S("scale", -0.02)),
            {},
        ),
        ("contrib_simplified_ademamix", S("contrib.simplified_ademamix", 0.01), {}),
        (
            "contrib_simplified_ademamix_alpha_ramp_wd",
            S(
                "contrib.simplified_ademamix",
                0.005,
                b1=0.9,
                b2=0.99,
                alpha=ALPHA_RAMP,
                eps=1e-6,
                eps_root=1e-8,
                weight_decay=0.1,
                mask=DECAY_ONLY_W,
            ),
            {},
        ),
        (
            "contrib_scale_by_simplified_ademamix",
            S(
                "chain",
                S("contrib.scale_by_simplified_ademamix", b1=0.9, alpha=1.0),
                S("scale", -0.005),
            ),
            {},
        ),
        ("contrib_adopt", S("contrib.adopt", 0.05), {}),
        (
            "contrib_adopt_nesterov_b_eps",
            S("contrib.adopt", 0.02, b1=0.8, b2=0.99, eps=1e-4, nesterov=True),
            {},
        ),
        ("contrib_adopt_no_clipping", S("contrib.adopt", 0.02, use_clipping=False), {}),
        (
            "contrib_scale_by_adopt",
            S("chain", S("contrib.scale_by_adopt", b1=0.8, nesterov=True), S("scale", -0.02)),
            {},
        ),
        ("contrib_madgrad", S("contrib.madgrad", 0.05), MADGRAD_F64),
        (
            "contrib_madgrad_schedule_wd",
            S(
                "contrib.madgrad",
                S("linear_schedule", 0.1, 0.02, 10),
                momentum=0.5,
                weight_decay=0.01,
                eps=1e-5,
            ),
            MADGRAD_F64,
        ),
        (
            "contrib_scale_by_madgrad",
            S("chain", S("contrib.scale_by_madgrad", 0.05, momentum=0.5)),
            MADGRAD_F64,
        ),
        ("contrib_muon", S("contrib.muon", 0.02), {}),
        (
            "contrib_muon_options",
            S(
                "contrib.muon",
                0.02,
                ns_steps=3,
                beta=0.9,
                weight_decay=0.1,
                nesterov=False,
                adam_b1=0.8,
                adam_learning_rate=0.05,
                consistent_rms=0.2,
            ),
            {},
        ),
        ("contrib_cocob", S("contrib.cocob"), {}),
        (
            "contrib_cocob_schedule_masked_wd",
            S(
                "contrib.cocob",
                RATE_RAMP,
                alpha=20.0,
                eps=1e-4,
                weight_decay=0.01,
                mask=DECAY_ONLY_W,
            ),
            {},
        ),
        (
            "contrib_scale_by_cocob",
            S("chain", S("scale", 0.5), S("contrib.scale_by_cocob", alpha=50.0)),
            {},
        ),
        ("contrib_dadapt_adamw", S("contrib.dadapt_adamw"), {}),
        (
            "contrib_dadapt_adamw_options",
            S(
                "contrib.dadapt_adamw",
                0.5,
                betas=(0.8, 0.99),
                eps=1e-6,
                estim_lr0=1e-3,
                weight_decay=0.01,
            ),
            {},
        ),
        ("contrib_dog", S("contrib.dog", init_step=("heuristic", 0.01)), {}),
        (
            "contrib_dog_lr_init_masked_wd",
            S(
                "contrib.dog",
                0.5,
                init_step=("learning_rate", 0.01),
                eps=1e-6,
                weight_decay=0.01,
                mask=DECAY_ONLY_W,
            ),
            {},
        ),
        ("contrib_dog_distance", S("contrib.dog", init_step=("distance", 0.1)), {}),
        ("contrib_dowg", S("contrib.dowg"), {}),
        (
            "contrib_dowg_schedule_wd",
            S("contrib.dowg", RATE_RAMP, init_estim_sq_dist=0.01, eps=1e-3, weight_decay=0.01),
            {},
        ),
        ("contrib_prodigy", S("contrib.prodigy"), {}),
        (
            "contrib_prodigy_options",
            S(
                "contrib.prodigy",
                RATE_RAMP,
                betas=(0.8, 0.99),
                beta3=0.95,
                eps=1e-6,
                estim_lr0=1e-3,
                estim_lr_coef=0.5,
                weight_decay=0.01,
                safeguard_warmup=True,
            ),
            {},
        ),
        ("contrib_schedule_free_sgd", S("contrib.schedule_free_sgd", 0.1), {}),
        (
            "contrib_schedule_free_sgd_warmup_wd",
            S(
                "contrib.schedule_free_sgd",
                0.25,
                warmup_steps=4,
                b1=0.8,
                weight_decay=0.01,
                weight_lr_power=1.0,
            ),
            {},
        ),
        ("contrib_schedule_free_adamw", S("contrib.schedule_free_adamw", 0.02), {}),
        (
            "contrib_schedule_free_adamw_warmup",
            S(
                "contrib.schedule_free_adamw",
                0.0625,
                warmup_steps=4,
                b1=0.8,
                b2=0.99,
                eps=1e-6,
                weight_decay=0.01,
            ),
            {},
        ),
        (
            "contrib_schedule_free_adam",
            S("contrib.schedule_free", S("adam", 0.05), 0.05, b1=0.7),
            {},
        ),
        (
            "contrib_schedule_free_scheduled",
            S(
                "contrib.schedule_free",
                S(
                    "chain",
                    S("scale_by_adam"),
                    S("scale_by_learning_rate", S("linear_schedule", 0.0, 0.125, 8)),
                ),
                S("linear_schedule", 0.0, 0.125, 8),
                b1=0.75,
                weight_lr_power=1.0,
            ),
            {},
        ),
        ("contrib_sam_sgd", S("contrib.sam", S("sgd", 0.1), normalized_sgd(0.05)), {}),
        (
            "contrib_sam_adam_keep_state",
            S("contrib.sam", S("adam", 0.05), normalized_sgd(0.2), reset_state=False),
            {},
        ),
        ("contrib_normalize", normalized_sgd(0.05), {}),
        # deterministic estimators (gradstep's Hutchinson probes are its own draws)
        (
            "contrib_sophia",
            S("contrib.sophia", 0.05, hessian_diagonal_fn=S("scale", 2.0)),
            {},
        ),
        (
            "contrib_sophia_options",
            S(
                "contrib.sophia",
                0.05,
                b1=0.9,
                b2=0.9,
                eps=1e-6,
                weight_decay=0.01,
                weight_decay_mask=DECAY_ONLY_W,
                gamma=0.5,
                clip_threshold=2.0,
                update_interval=3,
                hessian_diagonal_fn=S("chain", S("scale_by_sign"), S("scale", 3.0)),
            ),
            {},
        ),
        (
            "contrib_split_real_and_imaginary_real_params",
            S("contrib.split_real_and_imaginary", S("adam", 0.05)),
            {},
        ),
        (
            "contrib_mechanize",
            S("contrib.mechanize", S("adam", 0.1), weight_decay=0.05, num_betas=4),
            {},
        ),
    ]
