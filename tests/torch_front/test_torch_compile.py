"""``torch.compile`` around a training step that calls ``optimizer.step()``: the step
runs as it is (not traced: ``gradstep.torch._compile``), with the numbers of an
eager step, for every kind of class of the torch front."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402
from gradstep.transforms import clip_by_global_norm  # noqa: E402

MAKERS = {
    "Adam": lambda ps: gt.Adam(ps, lr=0.01),
    "AdamW-fused": lambda ps: gt.AdamW(ps, lr=0.01, weight_decay=0.1, fused=True),
    "SGD-momentum": lambda ps: gt.SGD(ps, lr=0.05, momentum=0.9),
    "Lion": lambda ps: gt.Lion(ps, learning_rate=1e-3),
    "AdamWScheduleFree": lambda ps: gt.AdamWScheduleFree(ps, lr=0.01),
    "clip+adamw": lambda ps: gt.TransformOptimizer(
        ps, gradstep.chain(clip_by_global_norm(0.5), gradstep.adamw(0.01))
    ),
    "adamw-int8": lambda ps: gt.AdamW(ps, lr=0.01, state_dtype="int8", min_8bit_size=0),
}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))


def _train(make, compiled: bool, steps: int = 4):
    torch._dynamo.reset()
    model = _model()
    opt = make(list(model.parameters()))
    if hasattr(opt, "train"):  # schedule-free: training mode first
        opt.train()
    posted = []
    opt.register_step_post_hook(lambda o, args, kwargs: posted.append(1))

    def train_step(x):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        return loss

    # the "eager" backend traces with Dynamo (where the step failed) and needs no
    # C++ compiler for the model's graph
    run = torch.compile(train_step, backend="eager") if compiled else train_step
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        run(torch.randn(5, 8, generator=gen))
    assert len(posted) == steps  # the step hooks still run
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_a_compiled_training_step_steps_as_an_eager_one(name):
    want, _ = _train(MAKERS[name], compiled=False)
    got, opt = _train(MAKERS[name], compiled=True)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_compiling_the_step_itself():
    model = _model()
    opt = gt.Adam(model.parameters(), lr=0.01)
    reference = gt.Adam(_model().parameters(), lr=0.01)
    step = torch.compile(opt.step)
    for o, run in ((opt, step), (reference, reference.step)):
        params = [p for g in o.param_groups for p in g["params"]]
        for p in params:
            p.grad = torch.ones_like(p)
        run()
    for a, b in zip(model.parameters(), reference.param_groups[0]["params"]):
        assert torch.equal(a, b)


def test_lbfgs_closure_step_under_compile():
    def fit(compiled):
        torch._dynamo.reset()
        x = torch.nn.Parameter(torch.tensor([1.5, -0.5]))
        opt = gt.LBFGS([x], lr=1, max_iter=5)

        def closure():
            opt.zero_grad()
            loss = (x - 3).pow(2).sum() + x.prod()
            loss.backward()
            return loss

        step = torch.compile(lambda: opt.step(closure), backend="eager") if compiled else None
        for _ in range(3):
            step() if compiled else opt.step(closure)
        return x.detach().clone()

    assert torch.equal(fit(True), fit(False))


def test_the_step_keeps_its_name_and_documentation():
    assert gt.Adam.step.__doc__ and "closure" in gt.Adam.step.__doc__
    assert gt.Adam.step.__name__ == "step"


def test_every_class_of_the_front_leaves_its_step_untraced():
    classes = {gt.optimizer_class(spec.name) for spec in gradstep.REGISTRY}
    classes |= {gt.TransformOptimizer, gt.LBFGS, gt.AdamWScheduleFree, gt.SGDScheduleFree}
    for cls in classes:
        assert getattr(cls.step, "_gradstep_not_traced", False), cls.__name__


def test_importing_the_front_imports_neither_dynamo_nor_triton():
    # torch.compiler.disable imports Dynamo, and Dynamo Triton: made at class
    # creation, it imported Triton before the tests of its interpreter could ask for it
    code = (
        "import sys, gradstep.torch; print(sorted({'torch._dynamo', 'triton'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
