"""Checkpoints move between torch.optim and gradstep.torch both ways: a run that saves
after some steps and resumes in the other library follows the uninterrupted torch run.
"""

from __future__ import annotations

import io

import pytest
import torch

import gradstep.torch as gt

CLASSES = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 1e-3}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-3}),
    ("AdamW", {"lr": 1e-2}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("RMSprop", {"lr": 1e-3, "centered": True, "momentum": 0.5}),
    ("Adadelta", {"weight_decay": 1e-3}),
    ("Adamax", {"lr": 1e-2}),
    ("NAdam", {"lr": 1e-2, "weight_decay": 1e-3}),
    ("RAdam", {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("Adafactor", {"lr": 1e-2, "weight_decay": 0.01}),
    ("LBFGS", {"lr": 0.5, "max_iter": 4, "history_size": 3}),
]
STEPS, SAVE_AT = 10, 5


def steps(model, opt, xs, ys, ks):
    for k in ks:

        def closure(k=k):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xs[k], k), ys[k])
            loss.backward()
            return loss

        opt.step(closure)


def roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name, kwargs", CLASSES, ids=[c[0] for c in CLASSES])
@pytest.mark.parametrize("first, second", [("torch", "gradstep"), ("gradstep", "torch")])
def test_resume_in_the_other_library(torch_models, name, kwargs, first, second):
    with torch_models.default_dtype(torch.float64):
        resume(torch_models, name, kwargs, first, second)


def resume(torch_models, name, kwargs, first, second):
    libs = {"torch": torch.optim, "gradstep": gt}
    dtype = torch.float64
    xs, ys = torch_models.data("mlp", dtype, STEPS)

    reference = torch_models.make_model("mlp", dtype)
    steps(
        reference,
        getattr(torch.optim, name)(reference.parameters(), **kwargs),
        xs,
        ys,
        range(STEPS),
    )

    model = torch_models.make_model("mlp", dtype)
    opt = getattr(libs[first], name)(model.parameters(), **kwargs)
    steps(model, opt, xs, ys, range(SAVE_AT))
    checkpoint = roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})

    resumed = torch_models.make_model("mlp", dtype, seed=7)
    resumed.load_state_dict(checkpoint["model"])
    opt2 = getattr(libs[second], name)(resumed.parameters(), **kwargs)
    opt2.load_state_dict(checkpoint["opt"])
    # what the first library saved is what the second one holds
    saved, loaded = checkpoint["opt"]["state"], opt2.state_dict()["state"]
    assert sorted(saved) == sorted(loaded)
    for i in saved:
        assert sorted(saved[i]) == sorted(loaded[i])
    steps(resumed, opt2, xs, ys, range(SAVE_AT, STEPS))

    for (n, p), q in zip(reference.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")


def test_state_dict_has_torch_group_keys(torch_models):
    model = torch_models.make_model("mlp", torch.float32)
    for name, kwargs in CLASSES + [("Muon", {})]:
        params = list(model.parameters()) if name != "Muon" else [model.head.weight]
        ours = getattr(gt, name)(params, **kwargs).state_dict()["param_groups"]
        theirs = getattr(torch.optim, name)(params, **kwargs).state_dict()
        assert ours == theirs["param_groups"], name


def test_master_weights_survive_a_checkpoint(torch_models):
    """float32 master weights and state of bfloat16 parameters stay float32 through
    state_dict and load_state_dict (torch casts state to the parameter's dtype)."""
    model = torch_models.make_model("mlp", torch.float32).to(torch.bfloat16)
    opt = gt.Adam(model.parameters(), lr=1e-2, master_weights=True)
    xs, ys = torch_models.data("mlp", torch.bfloat16, 3)
    steps(model, opt, xs, ys, range(3))
    checkpoint = roundtrip(opt.state_dict())
    opt2 = gt.Adam(model.parameters(), lr=1e-2, master_weights=True)
    opt2.load_state_dict(checkpoint)
    p = next(model.parameters())
    assert opt2.state[p]["master_param"].dtype == torch.float32
    assert opt2.state[p]["exp_avg"].dtype == torch.float32
    torch.testing.assert_close(opt2.state[p]["master_param"], opt.state[p]["master_param"])


@pytest.mark.parametrize("first, second", [("torch", "gradstep"), ("gradstep", "torch")])
def test_muon_checkpoint_moves_both_ways(torch_models, first, second):
    """Muon's momentum buffers move between the libraries; the runs then agree to the
    bfloat16 precision of torch's Newton-Schulz iteration."""
    libs = {"torch": torch.optim, "gradstep": gt}
    xs, ys = torch_models.data("mlp", torch.float64, STEPS)

    def matrices(model):
        for p in model.parameters():
            p.requires_grad_(p.ndim == 2)
        return [p for p in model.parameters() if p.ndim == 2]

    reference = torch_models.make_model("mlp", torch.float64)
    start = [p.detach().clone() for p in matrices(reference)]
    steps(reference, torch.optim.Muon(matrices(reference), lr=0.02), xs, ys, range(STEPS))

    model = torch_models.make_model("mlp", torch.float64)
    opt = libs[first].Muon(matrices(model), lr=0.02)
    steps(model, opt, xs, ys, range(SAVE_AT))
    checkpoint = roundtrip(opt.state_dict())
    opt2 = libs[second].Muon(matrices(model), lr=0.02)
    opt2.load_state_dict(checkpoint)
    for i, entry in checkpoint["state"].items():
        assert sorted(entry) == ["momentum_buffer"]
        torch.testing.assert_close(
            opt2.state_dict()["state"][i]["momentum_buffer"], entry["momentum_buffer"]
        )
    steps(model, opt2, xs, ys, range(SAVE_AT, STEPS))
    for p, q, p0 in zip(matrices(reference), matrices(model), start):
        assert float((q - p).norm()) <= 0.1 * float((p - p0).norm())
