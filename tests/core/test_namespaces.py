"""The eager engine runs the same element functions on torch tensors, keeping their
dtype and type, with results equal to NumPy's."""

import numpy as np
import pytest
import torch

import gradstep
import gradstep.torch  # noqa: F401  (registers torch's array namespace)
from gradstep import transforms as T

CHAINS = {
    "adam amsgrad clear_nan": lambda: gradstep.adam(0.1, amsgrad=True, clear_nan=True),
    "clip, global norm, centered rmsprop with momentum": lambda: gradstep.chain(
        T.clip(0.5), T.clip_by_global_norm(1.0), gradstep.rmsprop(0.01, centered=True, momentum=0.9)
    ),
    "adamax, masked decay": lambda: gradstep.chain(
        gradstep.adamax(0.1), T.add_decayed_weights(0.1, mask=[True, False])
    ),
}


def run(make, convert, dtype):
    t = make()
    params = [convert(np.linspace(-1, 1, 5).astype(dtype)), convert(np.ones((2, 2), dtype))]
    state = t.init(params)
    for k in range(4):
        grads = [
            convert(np.cos(np.linspace(0, 1, 5) + k).astype(dtype)),
            convert(np.full((2, 2), 0.3 * k, dtype)),
        ]
        updates, state = t.update(grads, state, params)
        params = [p + u for p, u in zip(params, updates)]
    return params, state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CHAINS))
def test_torch_tensors_match_numpy(name, dtype):
    ref, _ = run(CHAINS[name], np.asarray, dtype)
    got, state = run(CHAINS[name], torch.from_numpy, dtype)
    for r, g in zip(ref, got):
        assert isinstance(g, torch.Tensor) and g.dtype == torch.from_numpy(r).dtype
        np.testing.assert_allclose(g.numpy(), r, rtol=4 * np.finfo(dtype).eps, atol=0)
    slots = [x for x in gradstep.tree.leaves(state) if isinstance(x, torch.Tensor)]
    assert slots and all(s.dtype == torch.from_numpy(ref[0]).dtype for s in slots)
