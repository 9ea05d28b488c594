"""The rules written against the array namespace run on torch tensors without a host
copy: on bfloat16 tensors (which NumPy cannot hold, so any ``.numpy()`` or
``np.asarray`` of a tensor would fail) and, where a GPU is present, on CUDA tensors,
with the state kept in the parameters' dtype and device."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
import gradstep.torch  # noqa: E402, F401  (registers torch's array namespace)

RULES = {
    "adafactor": lambda: gradstep.adafactor(0.05, relative_step=False),
    "adafactor optax": lambda: gradstep.adafactor(
        0.05, relative_step=False, epsilon1=1e-30, epsilon1_placement="add", momentum=0.9
    ),
    "muon": lambda: gradstep.muon(0.02, weight_decay=0.01),
    "muon bias-corrected": lambda: gradstep.muon(0.02, bias_correction=True, nesterov=False),
    "sgld": lambda: gradstep.sgld(0.01, seed=3),
    "lars momentum_correction": lambda: gradstep.lars(0.5, momentum_correction=True),
    "lamb": lambda: gradstep.lamb(0.05),
    "nadam shared": lambda: gradstep.nadam(0.05, schedule_scope="shared"),
    "lbfgs": lambda: gradstep.lbfgs(0.5, max_iter=1, history_size=3),
}

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _steps(make, convert, n=4):
    t = make()
    params = [convert(np.linspace(-1.0, 1.0, 12).reshape(3, 4)), convert(np.full(5, 0.5))]
    state = t.init(params)
    for k in range(n):
        grads = [
            convert(np.cos(np.arange(12.0) + k).reshape(3, 4)),
            convert(np.sin(np.arange(5.0) - k)),
        ]
        updates, state = t.update(grads, state, params)
        params = [p + u for p, u in zip(params, updates)]
    return params, state


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(RULES))
def test_runs_on_tensors_numpy_cannot_hold(name, device):
    def bf16(a):
        return torch.tensor(a, dtype=torch.bfloat16, device=device)

    params, state = _steps(RULES[name], bf16)
    want, _ = _steps(RULES[name], lambda a: np.asarray(a, np.float32))
    for p, w in zip(params, want):
        assert p.dtype == torch.bfloat16 and p.device.type == device
        got = p.float().cpu().numpy()
        if name != "sgld":  # the noise differs by library; its size does not
            np.testing.assert_allclose(got, w, rtol=0.05, atol=0.05)
        assert np.all(np.isfinite(got))
    for leaf in gradstep.tree.leaves(state):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            assert leaf.device.type == device and leaf.dtype == torch.bfloat16, name
