"""The optax names ``gradstep.compat.optax`` hands through to optax itself: those that
hold no optimizer (losses, numerics, type aliases, optax's other modules)."""

from __future__ import annotations

from typing import Any

#: optax's pytree utilities, which read the state of this module's transformations
#: as they read optax's own (the same NamedTuples): ``tree.get``/``tree.set``,
#: ``tree_utils.tree_get``/``tree_set``, ``tree_map_params``. They are optax's,
#: reached here when optax is installed. ``microbatching`` (splitting a batch's
#: gradient computation) is optax's module too: it holds no optimizer state.
_FROM_OPTAX = ("tree", "tree_utils", "tree_map_params", "microbatching")

#: optax names that hold no optimizer: the losses (training code written against
#: optax calls ``optax.softmax_cross_entropy_with_integer_labels`` next to its
#: optimizer), the numerics and moment helpers custom transformations are written
#: with, the type aliases of annotations, the state classes of stateless or
#: elsewhere-mapped transformations, and optax's other modules. They are optax's own,
#: reached here when optax is installed, so code that switches its ``import`` keeps
#: working.
_PASSED_THROUGH = (
    # losses
    "losses",
    "convex_kl_divergence",
    "cosine_distance",
    "cosine_similarity",
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "generalized_kl_divergence",
    "hinge_loss",
    "huber_loss",
    "kl_divergence",
    "l2_loss",
    "log_cosh",
    "ntxent",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "squared_error",
    # numerics and moment helpers
    "bias_correction",
    "safe_increment",
    "safe_int32_increment",
    "safe_root_mean_squares",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
    "init_empty_state",
    "matrix_inverse_pth_root",
    "power_iteration",
    "multi_normal",
    "nnls",
    # type aliases and protocols
    "MaskOrFn",
    "OptState",
    "Params",
    "ScalarOrSchedule",
    "Schedule",
    "ShouldSkipUpdateFunction",
    "TransformInitFn",
    "TransformUpdateExtraArgsFn",
    "TransformUpdateFn",
    "Updates",
    "WrappedSchedule",
    # state classes of transformations whose compat state is EmptyState or mapped
    "AdaptiveGradClipState",
    "AddDecayedWeightsState",
    "AddNoiseState",
    "ClipByGlobalNormState",
    "ClipState",
    "MonitorState",
    "MultiTransformState",
    "NonNegativeParamsState",
    "ScaleState",
    "SnapshotState",
    # optax's other modules
    "assignment",
    "experimental",
    "microbatch",
    "perturbations",
    "projections",
    "schedules",
    "second_order",
    "transforms",
)


def passed_through(module: str, name: str) -> Any:
    """optax's ``name`` if it is one of these, else ``AttributeError`` for ``module``."""
    if name in _FROM_OPTAX or name in _PASSED_THROUGH:
        try:
            import optax
        except ImportError:
            raise AttributeError(
                f"module {module!r}: {name!r} is optax's own (it holds no optimizer); "
                "install optax to reach it here"
            ) from None
        return getattr(optax, name)
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
