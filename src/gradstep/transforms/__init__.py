"""Transforms to compose with rules: clipping, norm constraints, weight decay,
scaling, gradient centralisation, non-finite policies, masking and partitioning,
freezing, averaging, reduce-on-plateau, differential privacy and monitoring."""

from .._core.combine import masked, partition
from .._core.stages import clear_nan_params, with_clear_nan
from .._core.transform import chain, identity
from . import mxnet  # noqa: F401  (gradstep.transforms.mxnet: MXNet gradient handling)
from .accumulation import accumulate
from .averaging import parameter_ema
from .block_clipping import adaptive_clip, clip_by_block_rms
from .block_scaling import (
    normalize_by_update_norm,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
)
from .centralization import centralize
from .clipping import clip, clip_by_global_norm, clip_by_norm
from .constraints import (
    constrain_norm,
    constrain_total_norm,
    norm_constraint,
    total_norm_constraint,
)
from .ema import scale_by_ema
from .freezing import freeze, selective_transform, set_to_zero
from .lookahead import lookahead
from .monitoring import measure_with_ema, monitor
from .nonfinite import nonfinite_policy, skip_large_updates, skip_nonfinite, zero_nonfinite
from .nonnegative import keep_params_nonnegative
from .plateau import reduce_on_plateau
from .privacy import (
    differentially_private_aggregate,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from .scaling import add_decayed_weights, scale, scale_by_learning_rate
from .swa import parameter_swa

__all__ = [
    "accumulate",
    "adaptive_clip",
    "add_decayed_weights",
    "centralize",
    "chain",
    "clear_nan_params",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "clip_by_norm",
    "constrain_norm",
    "constrain_total_norm",
    "differentially_private_aggregate",
    "freeze",
    "identity",
    "keep_params_nonnegative",
    "lookahead",
    "masked",
    "measure_with_ema",
    "monitor",
    "nonfinite_policy",
    "norm_constraint",
    "normalize_by_update_norm",
    "parameter_ema",
    "parameter_swa",
    "partition",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "reduce_on_plateau",
    "scale",
    "scale_by_ema",
    "scale_by_learning_rate",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "selective_transform",
    "set_to_zero",
    "skip_large_updates",
    "skip_nonfinite",
    "total_norm_constraint",
    "with_clear_nan",
    "zero_nonfinite",
]
