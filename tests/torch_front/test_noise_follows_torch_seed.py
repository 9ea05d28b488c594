"""Noise stages made with ``seed=None`` on the torch front draw their seed from
torch's default generator, so ``torch.manual_seed(k)`` makes a run repeat, as it
does for torch's own randomness (before, the seed came from fresh entropy and two
runs under the same ``torch.manual_seed`` differed)."""

import pytest
import torch

import gradstep.torch as gt

CLASSES = ["Sgld", "PsgdKron", "NoisySgd"]


def _run(name: str, torch_seed: int) -> list[torch.Tensor]:
    torch.manual_seed(torch_seed)
    params = [
        torch.nn.Parameter(torch.linspace(-1, 1, 12).reshape(3, 4)),
        torch.nn.Parameter(torch.ones(4)),
    ]
    opt = getattr(gt, name)(params, learning_rate=0.01)
    for k in range(4):
        for p in params:
            p.grad = torch.sin(p.detach() * (k + 1))
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("name", [n for n in CLASSES if hasattr(gt, n)])
def test_a_run_repeats_under_the_same_torch_seed(name):
    first, again, other = _run(name, 0), _run(name, 0), _run(name, 1)
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(first, other))
