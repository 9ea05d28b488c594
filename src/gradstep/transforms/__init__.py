"""Transforms to compose with rules: clipping, norm constraints, weight decay,
scaling, gradient centralisation, non-finite policies, masking and partitioning."""

from .._core.combine import masked, partition
from .._core.stages import (
    add_decayed_weights,
    clear_nan_params,
    scale,
    scale_by_learning_rate,
    with_clear_nan,
)
from .._core.transform import chain, identity
from . import mxnet  # noqa: F401  (gradstep.transforms.mxnet: MXNet gradient handling)
from .accumulation import accumulate
from .averaging import parameter_ema
from .centralization import centralize
from .clipping import clip, clip_by_global_norm, clip_by_norm
from .constraints import (
    constrain_norm,
    constrain_total_norm,
    norm_constraint,
    total_norm_constraint,
)
from .lookahead import lookahead
from .nonfinite import nonfinite_policy, skip_nonfinite, zero_nonfinite

__all__ = [
    "accumulate",
    "add_decayed_weights",
    "centralize",
    "chain",
    "clear_nan_params",
    "clip",
    "clip_by_global_norm",
    "clip_by_norm",
    "constrain_norm",
    "constrain_total_norm",
    "identity",
    "lookahead",
    "masked",
    "nonfinite_policy",
    "norm_constraint",
    "parameter_ema",
    "partition",
    "scale",
    "scale_by_learning_rate",
    "skip_nonfinite",
    "total_norm_constraint",
    "with_clear_nan",
    "zero_nonfinite",
]
