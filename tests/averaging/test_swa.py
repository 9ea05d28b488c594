"""parameter_swa against torch.optim.swa_utils.AveragedModel (equal-weight average),
on the eager and fused engines and the JAX front, and with the SWALR schedule."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import modes, schedules, transforms

torch = pytest.importorskip("torch", reason="torch's AveragedModel is the reference")

W0 = np.array([[0.5, -1.0, 2.0], [0.25, 0.0, -0.75]])
STEPS = 12


def grads_of(w: np.ndarray) -> np.ndarray:
    return 2.0 * w - 0.3 * np.sin(3 * w)


def torch_swa(start: int, every: int, dtype):
    w = torch.nn.Parameter(torch.tensor(W0, dtype=dtype))
    model = torch.nn.ParameterList([w])
    swa = torch.optim.swa_utils.AveragedModel(model)
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    sched = torch.optim.swa_utils.SWALR(opt, swa_lr=0.02, anneal_epochs=3)
    out = []
    for t in range(1, STEPS + 1):
        w.grad = torch.as_tensor(grads_of(w.detach().double().numpy())).to(dtype)
        opt.step()
        if t >= start and (t - start) % every == 0:
            swa.update_parameters(model)
            sched.step()
        out.append((w.detach().numpy().copy(), swa.module[0].detach().numpy().copy()))
    return out


@pytest.mark.parametrize(
    "start, every, dtype, engine", [(1, 1, "float64", "eager"), (4, 3, "float32", "fused")]
)
def test_matches_torch_averaged_model_and_swalr(start, every, dtype, engine):
    want = torch_swa(start, every, getattr(torch, dtype))
    # SWALR steps once per averaged iterate: the learning rate of update t is the
    # schedule at the number of iterates averaged before it
    swalr = schedules.swa_learning_rate(0.1, 0.02, 3)
    lr = lambda k: swalr(max(0, (k - start) // every + 1)) if k >= start else 0.1  # noqa: E731
    w = W0.astype(dtype)
    t = transforms.parameter_swa(gradstep.momentum(lr, 0.9, lr_in_buffer=False), start, every)
    opt = gradstep.Optimizer(w, t, engine=engine)
    tol = dict(rtol=1e-12) if dtype == "float64" else dict(rtol=2e-6, atol=1e-7)
    for step, (w_want, avg_want) in enumerate(want, 1):
        opt.step(grads_of(w.astype(np.float64)).astype(dtype))
        assert opt.engine == engine
        np.testing.assert_allclose(w, w_want, **tol, err_msg=f"params, step {step}")
        avg = modes.evaluation_params(opt.transform, opt.state, w)
        assert avg.dtype == np.dtype(dtype)
        np.testing.assert_allclose(avg, avg_want, **tol, err_msg=f"average, step {step}")
    assert opt.transform.averaged(opt.state) == (STEPS - start) // every + 1


def test_evaluating_swaps_in_the_average_and_refuses_steps():
    w = np.zeros(2)
    opt = gradstep.Optimizer(w, transforms.parameter_swa(gradstep.sgd(1.0), start=2))
    for _ in range(3):
        opt.step(np.array([-1.0, 1.0]))
    with modes.evaluating(opt):
        np.testing.assert_array_equal(w, [2.5, -2.5])
        with pytest.raises(ValueError, match="evaluating"):
            opt.step(np.ones(2))
    np.testing.assert_array_equal(w, [3.0, -3.0])


def test_jax_front_runs_the_same_average():
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    import jax.numpy as jnp

    from gradstep.jax import to_optax

    t = transforms.parameter_swa(gradstep.sgd(0.1), start=3, every=2)
    opt = to_optax(t)
    with jax.enable_x64(True):
        w = jnp.asarray(W0)
        state = opt.init(w)
        step = jax.jit(lambda g, s, p: opt.update(g, s, p))
        w_np = W0.copy()
        ref = gradstep.Optimizer(w_np, t, engine="eager")
        for _ in range(8):
            u, state = step(jnp.asarray(grads_of(np.asarray(w))), state, w)
            w = w + u
            ref.step(grads_of(w_np))
        got = modes.evaluation_params(t, jax.tree_util.tree_map(np.asarray, state), np.asarray(w))
    np.testing.assert_allclose(got, modes.evaluation_params(t, ref.state, w_np), rtol=1e-13)


@pytest.mark.parametrize("kwargs, name", [(dict(start=0), "start"), (dict(every=0), "every")])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        transforms.parameter_swa(gradstep.sgd(0.1), **kwargs)
    with pytest.raises(TypeError, match="transform"):
        transforms.parameter_swa(0.1)
