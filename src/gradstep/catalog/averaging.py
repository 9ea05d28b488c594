"""Registry entries of the averaging rules: schedule-free SGD and AdamW."""

from .._core.registry import OptimizerSpec
from ..rules.schedule_free import schedule_free_adamw, schedule_free_sgd

_SCHEDULE_FREE = (
    "Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky (2024): The Road Less "
    "Scheduled. NeurIPS, arXiv:2405.15682",
)

#: this area's entries, in the registry's order
SPECS = (
    OptimizerSpec(
        "schedule_free_sgd",
        schedule_free_sgd,
        "schedule_free",
        "Schedule-free SGD: interpolated gradient point, averaged iterate, no schedule.",
        frozenset({"elementwise"}),
        _SCHEDULE_FREE,
        fixtures=("schedulefree.SGDScheduleFree",),
        test_hyperparams={"learning_rate": 0.5},
        rosenbrock_hyperparams={"learning_rate": 1e-3},
    ),
    OptimizerSpec(
        "schedule_free_adamw",
        schedule_free_adamw,
        "schedule_free",
        "Schedule-free AdamW: Adam-normalised steps on z, y and x without a schedule.",
        frozenset({"elementwise"}),
        _SCHEDULE_FREE,
        fixtures=("schedulefree.AdamWScheduleFree",),
        test_hyperparams={"learning_rate": 0.1},
        rosenbrock_hyperparams={"learning_rate": 0.02},
    ),
)
