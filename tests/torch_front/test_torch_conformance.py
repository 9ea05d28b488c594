"""gradstep.torch's classes with torch's names follow torch.optim's trajectories on
real small models: an MLP and a convolutional net, float32 and float64, two param
groups with different hyperparameters, a learning-rate scheduler, parameters without
gradients on some steps and a parameter frozen halfway; on both engines."""

from __future__ import annotations

import pytest
import torch

import gradstep.torch as gt

# (class, constructor arguments, the first group's own values)
CASES = [
    ("SGD", {"lr": 0.05}, {"lr": 0.02}),
    (
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 1e-3},
        {"momentum": 0.5},
    ),
    (
        "SGD",
        {"lr": 0.02, "momentum": 0.9, "nesterov": True, "maximize": True},
        {"weight_decay": 1e-2},
    ),
    ("Adam", {"lr": 1e-2}, {"betas": (0.8, 0.99), "eps": 1e-6}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-2}, {"lr": 3e-3}),
    (
        "Adam",
        {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True},
        {"weight_decay": 0.0},
    ),
    ("AdamW", {"lr": 1e-2, "amsgrad": True}, {"weight_decay": 0.0, "betas": (0.85, 0.995)}),
    (
        "Adagrad",
        {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 1e-3},
        {"eps": 1e-6},
    ),
    ("RMSprop", {"lr": 1e-3}, {"alpha": 0.9}),
    (
        "RMSprop",
        {"lr": 1e-3, "centered": True, "momentum": 0.5, "weight_decay": 1e-3},
        {"lr": 5e-4},
    ),
    ("Adadelta", {"lr": 1.0, "weight_decay": 1e-3}, {"rho": 0.95}),
    ("Adamax", {"lr": 1e-2, "weight_decay": 1e-3, "maximize": True}, {"betas": (0.8, 0.99)}),
    ("NAdam", {"lr": 1e-2, "weight_decay": 1e-3}, {"momentum_decay": 0.01}),
    (
        "NAdam",
        {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1},
        {"betas": (0.8, 0.99)},
    ),
    ("RAdam", {"lr": 1e-2}, {"weight_decay": 0.01}),
    (
        "RAdam",
        {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True},
        {"eps": 1e-6},
    ),
    ("Adafactor", {"lr": 1e-2}, {"weight_decay": 0.01, "d": 1.5}),
]

TOLERANCE = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-12},
    torch.float32: {"rtol": 2e-5, "atol": 2e-6},
}


def case_id(case):
    name, kwargs, group = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in {**kwargs, **group}.items())


def run(torch_models, lib, case, kind, dtype, engine=None):
    name, kwargs, group = case

    def make(model):
        groups = torch_models.two_groups(model, dict(group))
        if engine is not None:
            for g in groups:
                g["engine"] = engine
        return getattr(lib, name)(groups, **kwargs)

    with torch_models.default_dtype(dtype):
        model = torch_models.make_model(kind, dtype)
        opt = torch_models.train(model, kind, make)
    return model, opt


SETTINGS = [
    ("mlp", torch.float64, None),
    ("mlp", torch.float32, None),
    ("convnet", torch.float64, None),
    ("convnet", torch.float32, None),
    ("mlp", torch.float64, "eager"),  # the same rules on torch operations
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize(
    "kind, dtype, engine",
    SETTINGS,
    ids=[f"{k}-{str(d)[6:]}-{e or 'auto'}" for k, d, e in SETTINGS],
)
def test_follows_torch(torch_models, case, kind, dtype, engine):
    ref_model, ref_opt = run(torch_models, torch.optim, case, kind, dtype)
    model, opt = run(torch_models, gt, case, kind, dtype, engine)
    for (n, p), q in zip(ref_model.named_parameters(), model.parameters()):
        torch.testing.assert_close(q, p, **TOLERANCE[dtype], msg=lambda m, n=n: f"{n}: {m}")
    # the same state, under torch's keys, for the same parameters
    ref_state, state = ref_opt.state_dict()["state"], opt.state_dict()["state"]
    assert sorted(state) == sorted(ref_state)
    for index, entries in ref_state.items():
        assert sorted(state[index]) == sorted(entries)
        for key, value in entries.items():
            torch.testing.assert_close(state[index][key].to(value.dtype), value, **TOLERANCE[dtype])


def test_lbfgs_follows_torch(torch_models):
    """LBFGS (closure, one group) with and without the strong-Wolfe line search."""
    for kwargs in (
        {"lr": 0.5, "max_iter": 5, "history_size": 3},
        {"line_search_fn": "strong_wolfe"},
    ):
        results = []
        for lib in (torch.optim, gt):
            model = torch_models.make_model("mlp", torch.float64)
            xs, ys = torch_models.data("mlp", torch.float64, 4)
            opt = lib.LBFGS(model.parameters(), **kwargs)
            losses = []
            for k in range(4):

                def closure(k=k, opt=opt, model=model, xs=xs, ys=ys):
                    opt.zero_grad()
                    loss = torch.nn.functional.mse_loss(model(xs[k], 0), ys[k])
                    loss.backward()
                    return loss

                losses.append(float(opt.step(closure)))
            results.append((model, losses))
        (ref, ref_losses), (model, losses) = results
        assert losses == pytest.approx(ref_losses, rel=1e-9)
        for p, q in zip(ref.parameters(), model.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-8, atol=1e-10)


def test_muon_follows_torch_to_bfloat16_precision(torch_models):
    """torch.optim.Muon orthogonalises in bfloat16, gradstep in the parameter's dtype."""
    results = []
    for lib in (torch.optim, gt):
        model = torch_models.make_model("mlp", torch.float64)
        matrices = [p for p in model.parameters() if p.ndim == 2]
        start = [p.detach().clone() for p in matrices]
        for p in model.parameters():
            p.requires_grad_(p.ndim == 2)
        make = lambda m, ps=matrices, lib=lib: lib.Muon(ps, lr=0.02)  # noqa: E731
        torch_models.train(model, "mlp", make, steps=8, freeze_at=99, scheduler=False)
        results.append(matrices)
    for p, q, p0 in zip(*results, start):
        # the two differ by a few percent of the distance travelled
        assert float((q - p).norm()) <= 0.1 * float((p - p0).norm())


def test_side_branch_and_frozen_parameter_step_counts(torch_models):
    """Parameters without a gradient take no step: their own counts stay behind."""
    model, opt = run(torch_models, gt, CASES[3], "mlp", torch.float64)
    steps = {n: float(opt.state[p]["step"]) for n, p in model.named_parameters()}
    assert steps["body.0.weight"] == 16
    assert steps["side.weight"] == 8  # even steps only
    assert steps["head.bias"] == 8  # frozen from step 8
