"""Adam-mini's blocks and Sophia's Hessian hook, beyond what the registry-driven tests
cover (those run Sophia's gradient-only form and replay the recorded estimates as
``hessian=``).

- Sophia's own Hutchinson estimate (``hvp=``) reproduces pytorch-optimizer's
  ``SophiaH`` given the same Rademacher probes (the recorded case keeps its
  curvature matrices);
- the estimate is taken on refresh steps only, a refresh step without one keeps the
  average, and the hook works on torch tensors and under ``jax.jit``;
- ``gradstep.torch.Sophia`` takes ``step(hessian=...)`` and Hutchinson's estimate of
  gradients taken with ``create_graph=True`` (the same recorded cases);
- the element math is one elementwise stage, which the fused engine compiles;
- Adam-mini's row blocks and their validation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep
from gradstep.engines.plan import flatten_stages
from gradstep.rules.sophia import scale_by_sophia_step

FIXTURES = Path(__file__).parents[1] / "conformance" / "fixtures" / "adammini_sophia.json"
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}
HUTCHINSON = [c for c in json.loads(FIXTURES.read_text()) if "hessian_matrices" in c]


@pytest.mark.parametrize("case", HUTCHINSON, ids=[c["id"] for c in HUTCHINSON])
def test_hvp_hook_reproduces_sophiah_hutchinson(case):
    dtype = np.dtype(case["dtype"])
    params = [np.array(w, dtype=dtype) for w in case["params0"]]
    matrices = [np.array(a, dtype=dtype) for a in case["hessian_matrices"]]

    def hvp(vectors):
        return [(a @ z.ravel()).reshape(z.shape) for a, z in zip(matrices, vectors)]

    opt = gradstep.Optimizer(params, gradstep.sophia(**case["rule_kwargs"]))
    for k, grads in enumerate(case["grads"]):
        lr = {} if case["lrs"] is None else {"learning_rate": case["lrs"][k]}
        opt.step([np.array(g, dtype=dtype) for g in grads], hvp=hvp, **lr)
        for got, want in zip(params, case["trajectory"][k]):
            np.testing.assert_allclose(got, np.array(want), **TOLERANCE[case["dtype"]])


def _nu(opt):
    return [np.array(x) for x in opt.state["sophia"]["inner"]["nu"]]


def test_estimate_is_taken_on_refresh_steps_only():
    params = [np.ones(3), np.ones((2, 2))]
    grads = [np.full(3, 0.5), np.full((2, 2), -0.5)]
    estimate = [np.full(3, 2.0), np.full((2, 2), 4.0)]
    opt = gradstep.Optimizer(params, gradstep.sophia(0.1, beta2=0.5, update_interval=2))
    opt.step(grads)  # step 1 refreshes, but nothing is given: the average stays 0
    assert all(np.all(v == 0.0) for v in _nu(opt))
    opt.step(grads, hessian=estimate)  # step 2 is no refresh step
    assert all(np.all(v == 0.0) for v in _nu(opt))
    opt.step(grads, hessian=estimate)  # step 3 is
    np.testing.assert_array_equal(_nu(opt)[1], np.full((2, 2), 2.0))
    with pytest.raises(ValueError, match="shape"):
        opt.step(grads, hessian=[np.ones(4), np.ones((2, 2))])


@pytest.mark.parametrize("refresh", ["before", "after"])
def test_hessian_hook_on_torch_tensors_and_under_jit(refresh):
    torch = pytest.importorskip("torch", reason="the torch backend of the hook")
    jax = pytest.importorskip("jax", reason="the JAX backend of the hook")
    import gradstep.jax  # noqa: F401  (registers JAX arrays)
    import gradstep.torch  # noqa: F401  (registers torch tensors)

    rng = np.random.default_rng(3)
    params = [rng.normal(size=(3, 2)), rng.normal(size=4)]
    grads = [[rng.normal(size=p.shape) for p in params] for _ in range(3)]
    estimates = [[rng.normal(size=p.shape) for p in params] for _ in range(3)]
    make = lambda: gradstep.sophia(0.1, gamma=0.5, update_interval=2, refresh=refresh)  # noqa: E731

    def run(to, back, update):
        w = [to(p) for p in params]
        state = make().init(w)
        for g, h in zip(grads, estimates):
            u, state = update([to(x) for x in g], state, w, [to(x) for x in h])
            w = [a + b for a, b in zip(w, u)]
        return [back(a) for a in w]

    def plain(g, state, w, h):
        return make().update(g, state, w, hessian=h)

    want = run(np.asarray, np.asarray, plain)
    got_torch = run(torch.tensor, lambda t: t.numpy(), plain)
    with jax.enable_x64(True):
        got_jax = run(jax.numpy.asarray, np.asarray, jax.jit(plain))
    for a, b, c in zip(want, got_torch, got_jax):
        np.testing.assert_allclose(b, a, rtol=1e-12)
        np.testing.assert_allclose(c, a, rtol=1e-12)


def test_sophia_element_math_is_one_fusable_stage():
    stage = scale_by_sophia_step(0.9, 0.01, 1e-12, 1.0, False)
    chain = gradstep.chain(stage, gradstep.transforms.scale_by_learning_rate(0.1))
    assert [s.stage for s in flatten_stages(chain)] == [stage, chain.stages[1]]


def test_adam_mini_row_blocks_share_one_second_moment():
    w = np.zeros((4, 2))
    opt = gradstep.Optimizer(
        w, gradstep.adam_mini(0.1, weight_decay=0.0, partition="rows", rows_per_block=2)
    )
    g = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    opt.step(g)
    nu = opt.state["scale_by_adam_mini"]["nu"]
    np.testing.assert_allclose(nu, [0.001, 0.002])
    # first step: u = g / sqrt(mean g^2 of the block) (epsilon aside)
    np.testing.assert_allclose(w, -0.1 * g / np.sqrt([[1.0], [1.0], [2.0], [2.0]]), rtol=1e-7)


def test_adam_mini_validates_its_blocks():
    with pytest.raises(ValueError, match="rows_per_block"):
        gradstep.adam_mini(partition="tensor", rows_per_block=2)
    with pytest.raises(ValueError, match="rows_per_block"):
        gradstep.adam_mini(partition="rows", rows_per_block=0)
    with pytest.raises(ValueError, match="partition"):
        gradstep.adam_mini(partition="heads")
    with pytest.raises(ValueError, match="rows_per_block=2"):
        gradstep.adam_mini(partition="rows", rows_per_block=2).init([np.zeros((3, 2))])


def _torch_replay(case, estimates, tensors):
    """Replay the ``tensors`` (indices) of ``case`` through ``gradstep.torch.Sophia``:
    the loss of step k is a quadratic with the case's curvature whose gradient at the
    step's point is the recorded one (the tensors do not interact, so any of them
    replays alone); ``estimates(k)`` gives the step's keyword arguments."""
    torch = pytest.importorskip("torch", reason="the torch class of Sophia")
    import gradstep.torch as gt

    dtype = getattr(torch, case["dtype"])
    params = [torch.nn.Parameter(torch.tensor(case["params0"][i], dtype=dtype)) for i in tensors]
    matrices = [torch.tensor(case["hessian_matrices"][i], dtype=dtype) for i in tensors]
    opt = gt.Sophia(params, **case["rule_kwargs"])
    for k, grads in enumerate(case["grads"]):
        for group in opt.param_groups:
            group["lr"] = case["lrs"][k] if case["lrs"] else group["lr"]
        loss = 0.0
        for p, a, i in zip(params, matrices, tensors):
            d = (p - p.detach()).reshape(-1)
            slope = torch.tensor(grads[i], dtype=dtype).reshape(-1)
            loss = loss + 0.5 * d @ (a @ d) + slope @ p.reshape(-1)
        loss.backward(create_graph=True)
        opt.step(**estimates(k))
        for p in params:
            p.grad = None
        for p, i in zip(params, tensors):
            want = np.array(case["trajectory"][k][i])
            np.testing.assert_allclose(p.detach().numpy(), want, **TOLERANCE[case["dtype"]])


@pytest.mark.parametrize("case", HUTCHINSON, ids=[c["id"] for c in HUTCHINSON])
def test_torch_class_takes_the_hutchinson_estimate_of_create_graph_gradients(case):
    # one parameter: the probes of the torch class are drawn per bucket of parameters
    # it steps together, those of the recorded case over both tensors, the first first
    _torch_replay(case, lambda k: {}, [0])


def test_torch_class_takes_given_estimates():
    (case,) = [
        c
        for c in json.loads(FIXTURES.read_text())
        if c["id"] == "pytorch_optimizer-sophiah_given_decay_floor-float64"
    ]
    case = dict(case, hessian_matrices=[np.zeros((n, n)) for n in (12, 5)])
    _torch_replay(case, lambda k: case["ctx"][k], [0, 1])


def test_torch_step_inputs_are_checked():
    torch = pytest.importorskip("torch", reason="the torch class of Sophia")
    import gradstep.torch as gt

    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="hessian has 1 tensors for 2 parameters"):
        gt.Sophia(params, 0.1).step(hessian=[torch.ones(2)])
    with pytest.raises(TypeError, match="unexpected keyword argument 'curvature'"):
        gt.Sophia(params, 0.1).step(curvature=[torch.ones(2), torch.ones(3)])
    with pytest.raises(TypeError, match="unexpected keyword argument 'hessian'"):
        gt.Lion(params, 0.1).step(hessian=[torch.ones(2), torch.ones(3)])
