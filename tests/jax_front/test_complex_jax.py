"""Complex parameters under ``gradstep.jax.to_optax`` are stepped as their real and
imaginary parts, as torch.optim does and gradstep's other fronts do (the imaginary
part used to be dropped silently)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import jax.numpy as jnp  # noqa: E402

import gradstep  # noqa: E402
from gradstep.jax import apply_updates, to_optax  # noqa: E402

CASES = {
    "adam": (lambda: gradstep.adam(0.1), lambda p: torch.optim.Adam(p, lr=0.1)),
    "momentum": (
        lambda: gradstep.momentum(0.1, 0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    ),
    "adamw": (
        lambda: gradstep.adamw(0.1, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_complex_parameters_step_as_torch_optim_steps_them(name):
    rule, reference = CASES[name]
    start = np.array([1 + 2j, 3 - 1j, 0.5j])
    real = np.array([0.5, -2.0])
    grads = [
        (np.array([0.5 + 0.5j, -1 + 2j, 0.1 - 0.3j]), np.array([1.0, -1.0])),
        (np.array([0.2 - 0.1j, 1 + 1j, -0.4 + 0j]), np.array([0.3, 0.2])),
        (np.array([-0.3 + 0.2j, 0.5 - 1j, 0.2 + 0.2j]), np.array([-0.1, 0.4])),
    ]
    with jax.enable_x64(True):
        tx = to_optax(rule())
        params = [jnp.asarray(start), jnp.asarray(real)]
        state = tx.init(params)
        step = jax.jit(tx.update)
        for g in grads:
            updates, state = step([jnp.asarray(x) for x in g], state, params)
            params = apply_updates(params, updates)
        got = [np.asarray(p) for p in params]
    tensors = [torch.nn.Parameter(torch.tensor(start)), torch.nn.Parameter(torch.tensor(real))]
    opt = reference(tensors)
    for g in grads:
        for t, x in zip(tensors, g):
            t.grad = torch.tensor(x)
        opt.step()
    assert got[0].dtype == np.complex128
    for a, t in zip(got, tensors):
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-12, atol=1e-14)
