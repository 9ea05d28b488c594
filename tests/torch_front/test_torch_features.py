"""What a torch user relies on besides the trajectories: signatures, every registry
entry as a class, schedulers writing group values, closures, GradScaler, sparse
gradients, bfloat16 with master weights, hooks, param groups, errors."""

from __future__ import annotations

import copy
import inspect
import math

import numpy as np
import pytest
import torch

import gradstep
import gradstep.torch as gt
from gradstep import transforms as T


def mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(
        dtype
    )


def batches(n=12, dtype=torch.float32):
    g = torch.Generator().manual_seed(3)
    return [
        (torch.randn(16, 4, generator=g, dtype=dtype), torch.randn(16, 2, generator=g, dtype=dtype))
        for _ in range(n)
    ]


def fit(model, opt, data, scheduler=None):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach().clone() for p in model.parameters()]


def close(a, b, **tol):
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, **tol)


# -- classes -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted({c.__name__ for c in gt.TORCH_CLASSES.values()}))
def test_signatures_are_torchs(name):
    """The same arguments, order, kinds and defaults as torch.optim (or the
    ``schedulefree`` package for the schedule-free classes)."""
    if hasattr(torch.optim, name):
        reference = getattr(torch.optim, name)
    else:
        reference = getattr(
            pytest.importorskip("schedulefree", reason="needs the schedulefree reference package"),
            name,
        )
    ours = inspect.signature(getattr(gt, name).__init__).parameters
    theirs = inspect.signature(reference.__init__).parameters
    extensions = ("master_weights", "state_dtype", "min_8bit_size")
    assert [p for p in ours if p not in extensions] == list(theirs)
    for key, p in theirs.items():
        assert ours[key].kind == p.kind, key
        assert ours[key].default == p.default, key
    for key in extensions:
        if key in ours:
            assert ours[key].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("spec", list(gradstep.REGISTRY), ids=lambda s: s.name)
def test_every_registered_optimizer_is_a_torch_optimizer(spec):
    cls = gt.optimizer_class(spec.name)
    assert issubclass(cls, torch.optim.Optimizer)
    assert getattr(gt, gt.class_name(spec.name)) is cls
    model = mlp(torch.float64)
    params = list(model.parameters())
    if spec.name in gt.TORCH_CLASSES:
        kwargs = {}
        if cls is gt.Muon:  # torch's Muon takes matrices only
            params = [p for p in params if p.ndim == 2]
    else:
        kwargs = dict(spec.test_hyperparams)
    opt = cls(params, **kwargs)
    if hasattr(opt, "train"):  # schedule-free: training mode first, as the package
        opt.train()
    x, y = batches(1, torch.float64)[0]
    start = [p.detach().clone() for p in params]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(3):
        loss = opt.step(closure)
    assert loss is not None and math.isfinite(float(loss.detach()))
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(p, q) for p, q in zip(params, start))
    # the state round-trips through the torch format
    opt2 = cls(params, **kwargs)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert sorted(opt2.state_dict()["state"]) == sorted(opt.state_dict()["state"])


def test_generated_classes_take_gradstep_names():
    sig = inspect.signature(gt.NesterovMomentum.__init__)
    assert sig.parameters["learning_rate"].default is inspect.Parameter.empty
    assert sig.parameters["lr_in_buffer"].default is True
    opt = gt.NesterovMomentum(mlp().parameters(), 0.1, momentum=0.8, lr_in_buffer=False)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.8
    with pytest.raises(TypeError, match="learning_rate"):
        gt.NesterovMomentum(mlp().parameters())
    with pytest.raises(ValueError, match="momentum"):
        gt.NesterovMomentum(mlp().parameters(), 0.1, momentum=1.5)
    with pytest.raises(AttributeError):
        gt.NoSuchOptimizer  # noqa: B018


def test_generated_class_follows_the_numpy_front():
    """gradstep.torch.Lion and gradstep.Optimizer(gradstep.lion) take the same steps."""
    spec = gradstep.REGISTRY["lion"]
    model = mlp(torch.float64)
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    ref = gradstep.Optimizer(arrays, spec.factory(**spec.test_hyperparams))
    opt = gt.optimizer_class("lion")(model.parameters(), **spec.test_hyperparams)
    for x, y in batches(5, torch.float64):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        ref.step([p.grad.numpy().copy() for p in model.parameters()])
        opt.step()
    for p, a in zip(model.parameters(), arrays):
        np.testing.assert_allclose(p.detach().numpy(), a, rtol=1e-12, atol=1e-14)


# -- TransformOptimizer ----------------------------------------------------------------


def test_transform_optimizer_runs_a_chain_like_the_numpy_front():
    chain = gradstep.chain(T.clip_by_global_norm(0.1), gradstep.adam(0.05), T.clip(0.02))
    model = mlp(torch.float64)
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    ref = gradstep.Optimizer(arrays, chain)
    opt = gt.TransformOptimizer(model.parameters(), chain)
    assert opt.param_groups[0]["lr"] == 0.05 and opt.param_groups[0]["beta1"] == 0.9
    for k, (x, y) in enumerate(batches(6, torch.float64)):
        lr = 0.05 if k < 3 else 0.01
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        ref.step([p.grad.numpy().copy() for p in model.parameters()], learning_rate=lr)
        opt.step()
    for p, a in zip(model.parameters(), arrays):
        np.testing.assert_allclose(p.detach().numpy(), a, rtol=1e-12, atol=1e-14)
    assert opt.state_dict()["state"][0]["step"] == 6


def test_transform_optimizer_options():
    params = list(mlp().parameters())
    with pytest.raises(ValueError, match="unknown option 'betas'"):
        gt.TransformOptimizer(params, gradstep.adam(), betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="lr=..."):
        gt.TransformOptimizer(params, gradstep.adam(), learning_rate=0.1)
    with pytest.raises(ValueError, match="invalid lr=-1"):
        gt.TransformOptimizer(params, gradstep.adam(), lr=-1)
    with pytest.raises(ValueError, match="engine"):
        gt.TransformOptimizer(params, gradstep.adam(), engine="gpu")
    with pytest.raises(TypeError, match="gradstep transform"):
        gt.TransformOptimizer(params, torch.optim.Adam)
    # a group given with gradstep's name for the learning rate
    opt = gt.TransformOptimizer([{"params": params[:2], "learning_rate": 0.5}], gradstep.sgd(0.1))
    assert opt.param_groups[0]["lr"] == 0.5


def test_fused_and_eager_engines_agree():
    results = []
    for engine in ("fused", "eager", "auto"):
        model = mlp(torch.float64)
        opt = gt.TransformOptimizer(model.parameters(), gradstep.adamw(0.02), engine=engine)
        results.append(fit(model, opt, batches(6, torch.float64)))
    close(results[0], results[1], rtol=1e-12, atol=1e-14)
    close(results[0], results[2], rtol=0, atol=0)


def test_foreach_false_steps_each_tensor_alone_with_the_same_result():
    a, b = mlp(), mlp()
    ra = fit(a, gt.Adam(a.parameters(), lr=0.01), batches())
    rb = fit(b, gt.Adam(b.parameters(), lr=0.01, foreach=False), batches())
    close(ra, rb, rtol=0, atol=0)


# -- torch machinery -------------------------------------------------------------------


def test_one_cycle_scheduler_drives_lr_and_betas():
    results = []
    for lib in (torch.optim, gt):
        model = mlp(torch.float64)
        opt = lib.Adam(model.parameters(), lr=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=12)
        results.append(fit(model, opt, batches(12, torch.float64), sched))
    close(results[0], results[1], rtol=1e-10, atol=1e-12)


def test_closure_returns_the_loss():
    results = []
    for lib in (torch.optim, gt):
        model = mlp(torch.float64)
        opt = lib.RMSprop(model.parameters(), lr=0.01)
        losses = []
        for x, y in batches(4, torch.float64):

            def closure(x=x, y=y, opt=opt, model=model):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                return loss

            losses.append(float(opt.step(closure).detach()))
        results.append((losses, [p.detach() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    close(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)


def test_grad_scaler_skips_steps_with_inf_gradients():
    results = []
    for lib in (torch.optim, gt):
        model = mlp()
        opt = lib.Adam(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        for k, (x, y) in enumerate(batches(6)):
            opt.zero_grad()
            scaler.scale(torch.nn.functional.mse_loss(model(x), y)).backward()
            if k == 2:
                model[0].weight.grad[0, 0] = float("inf")
            before = [p.detach().clone() for p in model.parameters()]
            scaler.step(opt)
            scaler.update()
            if k == 2:  # skipped: nothing moved, no step counted
                close(before, [p.detach() for p in model.parameters()], rtol=0, atol=0)
        steps = [float(opt.state[p]["step"]) for p in model.parameters()]
        results.append(([p.detach() for p in model.parameters()], steps))
    assert results[1][1] == results[0][1] == [5.0] * 4
    close(results[0][0], results[1][0], rtol=2e-5, atol=2e-6)


def test_hooks_groups_and_zero_grad():
    model = mlp()
    params = list(model.parameters())
    opt = gt.Adam(params[:2], lr=0.01)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.add_param_group({"params": params[2:], "lr": 0.1, "betas": (0.5, 0.9)})
    x, y = batches(1)[0]
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    assert calls == ["pre", "post"]
    assert all(float(opt.state[p]["step"]) == 1 for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    with pytest.raises(ValueError, match=r"Invalid beta parameter at index 1: 1.0"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "betas": (0.9, 1.0)})


def test_changing_group_values_mid_run_follows_torch():
    """Values a step hands over (lr, betas, weight decay) and values the rule is built
    with (eps, a decay switched on later) both take effect on the next step."""
    results = []
    for lib in (torch.optim, gt):
        model = mlp(torch.float64)
        opt = lib.Adam(model.parameters(), lr=0.01)
        for k, (x, y) in enumerate(batches(8, torch.float64)):
            group = opt.param_groups[0]
            if k == 2:
                group["weight_decay"] = 0.1
            if k == 4:
                group["eps"] = 1e-3
                group["betas"] = (0.5, 0.9)
            if k == 6:
                group["amsgrad"] = False
                group["weight_decay"] = 0.0
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        results.append([p.detach() for p in model.parameters()])
    close(results[0], results[1], rtol=1e-10, atol=1e-12)


def test_sparse_gradients():
    def run(lib, cls, **kwargs):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(10, 3, sparse=True).double()
        opt = getattr(lib, cls)(emb.parameters(), **kwargs)
        for ids in ([1, 2, 2], [2, 5], [7, 1, 1]):
            opt.zero_grad()
            emb(torch.tensor(ids)).pow(2).sum().backward()
            opt.step()
        return [emb.weight.detach()]

    for cls, kwargs in (("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adagrad", {"lr": 0.1})):
        close(run(torch.optim, cls, **kwargs), run(gt, cls, **kwargs), rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
        run(gt, "Adam")
    with pytest.raises(RuntimeError, match="weight_decay option is not compatible"):
        run(gt, "Adagrad", weight_decay=0.1)
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        run(gt, "TransformOptimizer", transform=gradstep.sgd(0.1))


def test_bfloat16_parameters_and_master_weights():
    data = batches(6)
    reference = mlp()
    ref = fit(reference, gt.Adam(reference.parameters(), lr=0.01), data)

    low = mlp().to(torch.bfloat16)
    opt = gt.Adam(low.parameters(), lr=0.01)
    bf16 = fit(low, opt, [(x.bfloat16(), y.bfloat16()) for x, y in data])
    assert opt.state[low[0].weight]["exp_avg"].dtype == torch.bfloat16

    master_model = mlp().to(torch.bfloat16)
    opt = gt.Adam(master_model.parameters(), lr=0.01, master_weights=True)
    master = fit(master_model, opt, [(x.bfloat16(), y.bfloat16()) for x, y in data])
    state = opt.state[master_model[0].weight]
    assert state["master_param"].dtype == state["exp_avg"].dtype == torch.float32
    # the master copy is the float32 parameter, rounded into the bfloat16 one
    assert torch.equal(state["master_param"].bfloat16(), master_model[0].weight.detach())
    for r, b, m in zip(ref, bf16, master):
        assert float((b.float() - r).abs().max()) < 0.02
        assert float((m.float() - r).abs().max()) < 0.02
    # fused=True runs bfloat16 CPU parameters on the numba engine, as torch's fused
    # CPU kernel does (float32 math rounded once, bfloat16 storage:
    # tests/torch_front/test_torch_extra.py compares with torch)
    fused_model = mlp().to(torch.bfloat16)
    fused_opt = gt.Adam(fused_model.parameters(), lr=0.01, fused=True)
    fused = fit(fused_model, fused_opt, [(x.bfloat16(), y.bfloat16()) for x, y in data])
    for r, f in zip(ref, fused):
        assert f.dtype == torch.bfloat16 and float((f.float() - r).abs().max()) < 0.02
    assert fused_opt.state[fused_model[0].weight]["exp_avg"].dtype == torch.bfloat16


def test_parameter_versions_advance():
    """In-place updates through NumPy views are visible to autograd's checks."""
    model = mlp()
    opt = gt.Adam(model.parameters(), lr=0.01)
    x, y = batches(1)[0]
    out = model(x)
    loss = torch.nn.functional.mse_loss(out, y)
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_deepcopy_continues_the_same_run():
    model = mlp(torch.float64)
    opt = gt.TransformOptimizer(model.parameters(), gradstep.adam(0.01))
    fit(model, opt, batches(2, torch.float64))
    twin = copy.deepcopy((model, opt))
    a = fit(model, opt, batches(3, torch.float64))
    b = fit(twin[0], twin[1], batches(3, torch.float64))
    close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda ps: gt.Adam(ps, lr=-1.0), ValueError, "Invalid learning rate: -1.0"),
        (lambda ps: gt.Adam(None, lr=-1), ValueError, "Invalid learning rate: -1"),
        (lambda ps: gt.Adam(ps, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (
            lambda ps: gt.SGD(ps, differentiable=True, fused=True),
            RuntimeError,
            "`fused` does not support `differentiable`",
        ),
        (lambda ps: gt.AdamW(ps, fused=True, foreach=True), RuntimeError, "cannot be `True`"),
        (lambda ps: gt.SGD(ps, lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires"),
        (lambda ps: gt.RMSprop(ps, alpha=-0.1), ValueError, "alpha"),  # torch takes 1.5
        (lambda ps: gt.Adagrad(ps, eps=-1.0), ValueError, "eps"),
        (lambda ps: gt.Adam(ps, fused=True, engine="eager"), TypeError, "engine"),
        (lambda ps: gt.Muon(ps), ValueError, "Muon only supports 2D parameters"),
        (
            lambda ps: gt.LBFGS([{"params": ps[:1]}, {"params": ps[1:]}]),
            ValueError,
            "parameter groups",
        ),
    ],
)
def test_invalid_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make(list(mlp().parameters()))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("SGDScheduleFree", {"lr": 0.5, "momentum": 0.8, "weight_decay": 0.01, "warmup_steps": 3}),
        ("AdamWScheduleFree", {"lr": 0.01, "warmup_steps": 3, "weight_decay": 0.1, "r": 1.0}),
    ],
)
def test_schedule_free_classes_follow_the_package(name, kwargs):
    schedulefree = pytest.importorskip(
        "schedulefree", reason="needs the schedulefree reference package"
    )
    results = []
    for lib in (schedulefree, gt):
        model = mlp(torch.float64)
        opt = getattr(lib, name)(model.parameters(), **kwargs)
        with pytest.raises(Exception, match="train mode"):
            opt.step()
        opt.train()
        for k, (x, y) in enumerate(batches(8, torch.float64)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            if k == 3:
                opt.eval()
                opt.eval()  # idempotent
                opt.train()
        opt.eval()
        results.append(([p.detach().clone() for p in model.parameters()], opt))
    close(results[0][0], results[1][0], rtol=1e-10, atol=1e-12)
    assert results[1][1].param_groups[0]["k"] == 8
    # a checkpoint of the package continues in gradstep
    theirs = results[0][1].state_dict()
    model = mlp(torch.float64)
    opt = getattr(gt, name)(model.parameters(), **kwargs)
    opt.load_state_dict(theirs)
    assert float(opt.state[next(model.parameters())]["step"]) == 8
