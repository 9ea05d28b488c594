"""The torch.optim classes and settings the Triton engine is compared on (not a test module).

Shared by tests/gpu_engine (Triton's interpreter on CPU tensors) and tests/cuda (a GPU).
"""

from __future__ import annotations

#: case name (the class, then an optional "-variant") -> constructor arguments
TORCH_CASES = {
    "Adam": {"lr": 1e-2},
    "Adam-amsgrad": {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1},
    "AdamW": {"lr": 1e-2, "weight_decay": 0.1},
    "SGD": {"lr": 1e-2, "momentum": 0.9, "nesterov": True},
    "SGD-dampening": {"lr": 1e-2, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3},
    "RMSprop": {"lr": 1e-3, "centered": True, "momentum": 0.5},
    "Adagrad": {"lr": 1e-2, "lr_decay": 1e-3},
    "Adadelta": {"lr": 1.0},
    "Adamax": {"lr": 1e-2},
    "NAdam": {"lr": 1e-2},
    "RAdam": {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1},
}
