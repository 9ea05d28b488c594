"""torch.optim's ASGD, Rprop and SparseAdam in gradstep.torch, complex parameters,
and what torch takes that gradstep once refused."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest
import torch

import gradstep.torch as gt

FIXTURES = Path(__file__).parents[1] / "conformance" / "fixtures" / "torch_front"
COMPLEX_RUNS = json.loads((FIXTURES / "complex.json").read_text())


def _tensor(values: list, dtype: str) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float64)
    return torch.view_as_complex(t) if dtype == "complex128" else t


@pytest.mark.parametrize("run", COMPLEX_RUNS, ids=lambda r: r["id"])
@pytest.mark.parametrize("fused", [None, False], ids=["auto", "eager"])
def test_complex_parameters_follow_torch(run, fused):
    """Recorded torch.optim runs over a complex128 matrix and a float64 vector: the
    same iterates (every complex element stepped as its real and imaginary parts)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # as recorded (NAdam's, ASGD's scalars)
    try:
        params = [_tensor(v, d).requires_grad_() for v, d in zip(run["params0"], run["dtypes"])]
        cls = getattr(gt, run["class"])
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in run["kwargs"].items()}
        if fused is False:
            kwargs["foreach" if "fused" not in inspect.signature(cls).parameters else "fused"] = (
                False
            )
        if run["class"] == "LBFGS":
            kwargs.pop("foreach", None)
        opt = cls(params, **kwargs)
        for k, (grads, expected) in enumerate(zip(run["grads"], run["trajectory"])):
            for p, g, d in zip(params, grads, run["dtypes"]):
                p.grad = _tensor(g, d)
            if run["class"] == "LBFGS":
                opt.step(lambda: torch.tensor(0.0))
            else:
                opt.step()
            for i, (p, want, d) in enumerate(zip(params, expected, run["dtypes"])):
                torch.testing.assert_close(
                    p.detach(),
                    _tensor(want, d),
                    rtol=1e-10,
                    atol=1e-12,
                    msg=lambda m, k=k, i=i: f"step {k + 1}, tensor {i}: {m}",
                )
        state = opt.state[params[0]]
        if run["class"] != "LBFGS":
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == params[0].shape:
                    assert value.is_complex(), key  # kept complex, as torch keeps it
    finally:
        torch.set_default_dtype(old)


def test_complex_runs_cover_every_class_torch_supports_complex_in():
    covered = {r["class"] for r in COMPLEX_RUNS}
    assert covered == set(gt.__all__) & {
        "SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam",
        "RMSprop", "ASGD", "Rprop", "LBFGS",
    }  # fmt: skip


@pytest.mark.parametrize("name", ["Adafactor", "Muon"])
def test_complex_parameters_refused_at_the_step_as_torch(name):
    p = torch.nn.Parameter(torch.randn(2, 3, dtype=torch.complex64))
    opt = getattr(gt, name)([p])
    p.grad = torch.randn_like(p)
    with pytest.raises(RuntimeError, match=f"{name} does not support complex parameters"):
        opt.step()


@pytest.mark.parametrize(
    "name, kwargs, scheduler",
    [
        ("ASGD", {"lr": 0.05, "lambd": 1e-2, "alpha": 0.6, "t0": 5, "weight_decay": 1e-3}, False),
        ("ASGD", {"lr": 0.02, "maximize": True}, False),
        ("Rprop", {"lr": 0.01, "etas": (0.4, 1.3), "step_sizes": (1e-4, 0.5)}, True),
        ("Rprop", {"maximize": True}, True),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_new_classes_follow_torch_on_a_model(torch_models, name, kwargs, scheduler, dtype):
    """Two param groups, parameters without gradients on some steps and one frozen
    halfway; torch's state under torch's keys. (ASGD without a scheduler: after a
    learning-rate change torch takes one step with the old rate, see its docstring.)"""
    results = []
    for lib in (torch.optim, gt):
        with torch_models.default_dtype(dtype):
            model = torch_models.make_model("mlp", dtype)

            def make(model, lib=lib):
                groups = torch_models.two_groups(model, {})
                return getattr(lib, name)(groups, **kwargs)

            opt = torch_models.train(model, "mlp", make, scheduler=scheduler)
        results.append((model, opt.state_dict()))
    (ref_model, ref_state), (model, state) = results
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}
    for p, q in zip(ref_model.parameters(), model.parameters()):
        torch.testing.assert_close(q, p, **tol)
    assert sorted(state["state"]) == sorted(ref_state["state"])
    for index, entries in ref_state["state"].items():
        assert sorted(state["state"][index]) == sorted(entries)
        for key, value in entries.items():
            torch.testing.assert_close(state["state"][index][key].to(value.dtype), value, **tol)


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("ASGD", torch.float64),
        ("Rprop", torch.float64),
        ("ASGD", torch.complex128),
        ("Rprop", torch.complex128),
        ("Adam", torch.complex128),
    ],
)
def test_torch_checkpoints_load_and_continue(name, dtype):
    """A checkpoint of torch.optim's class continues identically in gradstep's, and
    the other way round (complex state included)."""
    torch.manual_seed(0)
    w0 = torch.randn(4, 3, dtype=dtype)
    grads = [torch.randn(4, 3, dtype=dtype) for _ in range(6)]

    def run(first, second):
        w = torch.nn.Parameter(w0.clone())
        opt = first([w], lr=0.05)
        for g in grads[:3]:
            w.grad = g.clone()
            opt.step()
        resumed = second([w], lr=0.05)
        resumed.load_state_dict(opt.state_dict())
        for g in grads[3:]:
            w.grad = g.clone()
            resumed.step()
        return w.detach()

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch keeps ASGD's eta in the default dtype
    try:
        ref = run(getattr(torch.optim, name), getattr(torch.optim, name))
        for first, second in ((torch.optim, gt), (gt, torch.optim)):
            got = run(getattr(first, name), getattr(second, name))
            torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    finally:
        torch.set_default_dtype(old)


def test_sparse_adam_follows_torch_on_an_embedding():
    """Only the looked-up rows move (a row looked up twice in one batch is one entry,
    its gradients summed); the state is torch's (``step`` an int)."""
    results = []
    for lib in (torch.optim, gt):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(10, 3, sparse=True).double()
        head = torch.randn(3, dtype=torch.float64)
        opt = lib.SparseAdam(emb.parameters(), lr=0.05, betas=(0.8, 0.95), maximize=False)
        for k in range(8):
            rows = torch.tensor([k % 10, (3 * k) % 10, k % 10, 7])
            opt.zero_grad()
            (emb(rows) @ head).pow(2).sum().backward()
            opt.step()
        results.append((emb.weight.detach().clone(), opt.state_dict()["state"][0]))
    (ref, ref_state), (got, state) = results
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    assert state["step"] == ref_state["step"] == 8 and isinstance(state["step"], int)
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(state[key], ref_state[key], rtol=1e-12, atol=1e-14)
    untouched = [r for r in range(10) if r not in {k % 10 for k in range(8)} | {7}]
    untouched = [r for r in untouched if r not in {(3 * k) % 10 for k in range(8)}]
    assert all(float(state["exp_avg"][r].abs().sum()) == 0 for r in untouched)


def test_sparse_adam_signature_and_dense_gradients():
    ours = inspect.signature(gt.SparseAdam.__init__).parameters
    theirs = inspect.signature(torch.optim.SparseAdam.__init__).parameters
    assert list(ours) == list(theirs)
    assert all(ours[k].default == p.default for k, p in theirs.items())
    w = torch.nn.Parameter(torch.zeros(3))
    opt = gt.SparseAdam([w])
    w.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients"):
        opt.step()


def test_what_torch_takes_is_taken():
    """torch accepts these; gradstep.torch once refused them."""
    model = torch.nn.Linear(3, 2).double()
    weight, bias = model.weight, model.bias
    x = torch.randn(4, 3, dtype=torch.float64)
    results = []
    for lib in (torch.optim, gt):
        torch.manual_seed(0)
        w0, b0 = torch.randn_like(weight), torch.randn_like(bias)
        with torch.no_grad():
            weight.copy_(w0), bias.copy_(b0)
        # the usual bias group without decay, with decoupled decay switched on
        opt = lib.NAdam(
            [{"params": [weight]}, {"params": [bias], "weight_decay": 0.0}],
            lr=0.05,
            weight_decay=0.1,
            decoupled_weight_decay=True,
        )
        for _ in range(4):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
        results.append((weight.detach().clone(), bias.detach().clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8)  # mu_product float32
    # tolerance_grad=-inf: never stop on a small gradient
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = gt.LBFGS([p], tolerance_grad=-math.inf, max_iter=3)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert float(p.detach().abs().max()) < 1e-6


DIFFERENTIABLE_RUNS = json.loads((FIXTURES / "differentiable.json").read_text())


@pytest.mark.parametrize("run", DIFFERENTIABLE_RUNS, ids=lambda r: r["id"])
def test_differentiable_steps_give_torchs_hypergradients(run):
    """differentiable=True with a tensor learning rate: the loss after k steps and its
    gradient with respect to the learning rate (and to the initial weights) are
    torch.optim's (recorded)."""
    rate = torch.tensor(run["lr"], dtype=torch.float64, requires_grad=True)
    start = torch.tensor(run["w0"], dtype=torch.float64, requires_grad=True)
    x = torch.tensor(run["x"], dtype=torch.float64)
    y = torch.tensor(run["y"], dtype=torch.float64)
    w = start.clone()  # a non-leaf parameter, as in meta-learning
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # as recorded (torch's step tensors)
    try:
        opt = getattr(gt, run["class"])([w], lr=rate, differentiable=True, **run["kwargs"])
        for _ in range(run["steps"]):
            loss = ((x @ w.T - y) ** 2).mean()
            (w.grad,) = torch.autograd.grad(loss, w, create_graph=run["create_graph"])
            opt.step()
    finally:
        torch.set_default_dtype(old)
    final = ((x @ w.T - y) ** 2).mean()
    d_rate, d_start = torch.autograd.grad(final, (rate, start))
    assert float(final.detach()) == pytest.approx(run["loss"], rel=1e-12)
    assert float(d_rate) == pytest.approx(run["d_lr"], rel=1e-10)
    if run["d_w0_differs"] is None:
        torch.testing.assert_close(
            d_start, torch.tensor(run["d_w0"], dtype=torch.float64), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("name", ["Adagrad", "RMSprop", "Rprop", "ASGD", "NAdam"])
def test_differentiable_steps_where_torchs_own_fail(name):
    """torch 2.13 cannot take a tensor learning rate in these classes' differentiable
    paths; gradstep's gradient with respect to it matches a finite difference."""

    def final_loss(rate):
        torch.manual_seed(0)
        w = torch.randn(3, 4, dtype=torch.float64).requires_grad_().clone()
        x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
        opt = getattr(gt, name)([w], lr=rate, differentiable=True)
        for _ in range(3):
            loss = ((x @ w.T - y) ** 2).mean()
            (w.grad,) = torch.autograd.grad(loss, w, create_graph=True)
            opt.step()
        return ((x @ w.T - y) ** 2).mean()

    rate = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    (d_rate,) = torch.autograd.grad(final_loss(rate), rate)
    h = 1e-6
    up, down = (
        float(final_loss(torch.tensor(0.05 + s * h, dtype=torch.float64)).detach()) for s in (1, -1)
    )
    assert float(d_rate) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("Adam", {"lr": 1e-2, "weight_decay": 0.01}),
        ("Adam", {"lr": 1e-2, "amsgrad": True}),
        ("AdamW", {"lr": 1e-2}),
        ("Adagrad", {"lr": 0.05, "lr_decay": 0.01}),
    ],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_fused_half_precision_on_cpu_gives_torchs_numbers(name, kwargs, dtype):
    """fused=True with float16/bfloat16 CPU parameters: float32 math on the loaded
    values, each result rounded once into its tensor, as torch's CPU fused kernels;
    results agree to the last bit but where the float32 operation order rounds the
    other way (one unit in the last place, carried to the end). SGD is left out:
    torch 2.13's fused CPU SGD moves bfloat16/float16 parameters by other amounts than
    its own for-loop and than float32 arithmetic rounded once (0.17 off after one
    plain step with weight decay); gradstep gives the latter."""
    torch.manual_seed(0)
    w0 = torch.randn(16, 33).to(dtype)
    grads = [torch.randn(16, 33).to(dtype) for _ in range(12)]
    results = []
    for lib in (torch.optim, gt):
        w = torch.nn.Parameter(w0.clone())
        opt = getattr(lib, name)([w], fused=True, **kwargs)
        for g in grads:
            w.grad = g.clone()
            opt.step()
        results.append((w.detach(), opt.state_dict()["state"].get(0, {})))
    (ref, ref_state), (got, state) = results
    assert got.dtype == dtype and all(
        v.dtype == dtype for k, v in state.items() if k != "step" and isinstance(v, torch.Tensor)
    )
    ulp = torch.finfo(dtype).eps
    # a one-ulp difference at some step is carried along: at most an ulp of 1
    torch.testing.assert_close(got, ref, rtol=ulp, atol=ulp)
    assert float((got == ref).float().mean()) > 0.8


def test_fused_half_precision_sgd_rounds_float32_math_once():
    torch.manual_seed(0)
    w0, g = torch.randn(16, 33).to(torch.bfloat16), torch.randn(16, 33).to(torch.bfloat16)
    w = torch.nn.Parameter(w0.clone())
    opt = gt.SGD([w], lr=0.05, weight_decay=0.01, fused=True)
    w.grad = g.clone()
    opt.step()
    expected = (w0.float() - 0.05 * (g.float() + 0.01 * w0.float())).to(torch.bfloat16)
    assert torch.equal(w.detach(), expected)


def test_fused_on_the_meta_device_raises_torchs_error():
    p = torch.nn.Parameter(torch.zeros(3, device="meta"))
    opt = gt.Adam([p], fused=True)
    p.grad = torch.zeros(3, device="meta")
    with pytest.raises(RuntimeError, match="`fused=True` requires all the params to be floating"):
        opt.step()
