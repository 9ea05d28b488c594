"""Every registered torch class steps an empty parameter (0 elements) next to an
ordinary one, as torch.optim does, whatever state its rule keeps."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402

SPECS = [
    s
    for s in gradstep.REGISTRY
    if not {"needs_closure", "needs_value"} & set(s.capabilities)
    # L-BFGS takes a closure; Muon refuses parameters that are not matrices (as torch's)
    and s.name not in {"lbfgs", "muon"}
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_an_empty_parameter_is_stepped(spec, dtype):
    # Mechanic's shared scalars came back as 0-d tensors for an empty float16
    # parameter, and np.size of a tensor (its bound ``size`` method) is never 1: the
    # step was refused as "state shared by all parameters"
    empty = torch.nn.Parameter(torch.zeros(0, dtype=dtype))
    full = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6, dtype=dtype))
    kwargs = {} if spec.name in gt.TORCH_CLASSES else dict(spec.test_hyperparams)
    opt = gt.optimizer_class(spec.name)([empty, full], **kwargs)
    if hasattr(opt, "train"):  # schedule-free: training mode first
        opt.train()
    for _ in range(2):
        empty.grad = torch.zeros_like(empty)
        full.grad = full.detach() * 0.5
        opt.step()
    assert empty.shape == (0,)
    if dtype == torch.float32:  # (D-Adapt Adam's float16 state is not finite today)
        assert torch.isfinite(full.detach()).all()


def test_mechanic_alone_with_an_empty_half_parameter():
    empty = torch.nn.Parameter(torch.zeros(0, dtype=torch.float16))
    opt = gt.TransformOptimizer([empty], gradstep.mechanic())
    empty.grad = torch.zeros_like(empty)
    opt.step()
    assert isinstance(opt.state[empty]["r1"], float)
