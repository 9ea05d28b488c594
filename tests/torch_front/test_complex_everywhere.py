"""Complex parameters in every gradstep.torch class: stepped as their real views, as
torch.optim does, bit for bit, or refused with torch's RuntimeError where the rule
reads tensor shapes."""

from __future__ import annotations

import copy
import os

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep  # noqa: E402
import gradstep.torch as gt  # noqa: E402

SPECS = list(gradstep.REGISTRY)
#: what torch.optim itself refuses complex parameters in
TORCH_REFUSES = {"adafactor", "muon"}
#: the rules whose math reads each tensor's shape (factored moments, matrix
#: preconditioners, per-axis blocks): the real view's trailing axis would change them
READS_SHAPE = {"came", "adamp", "sgdp", "ranger", "ranger21", "shampoo", "sm3", "soap", "psgd_kron"}


def _make(spec, params, engine):
    cls = gt.optimizer_class(spec.name)
    kwargs = {} if spec.name in gt.TORCH_CLASSES else dict(spec.test_hyperparams)
    opt = cls(params, **kwargs)
    if engine is not None and spec.name != "lbfgs":
        for group in opt.param_groups:
            group["engine"] = engine
    if hasattr(opt, "train"):  # schedule-free: training mode first
        opt.train()
    return opt


def _real(p):
    return torch.view_as_real(p) if p.is_complex() else p


def _target(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32)


def _run(opt, params, steps):
    """``steps`` steps on ``sum((real_view(p) - t)^2) / 2`` (the complex parameter's loss
    read through its real view, so that both runs get the same gradients bit for bit)."""
    targets = [_target(_real(p).shape, i) for i, p in enumerate(params)]

    def closure():
        opt.zero_grad()
        loss = sum(0.5 * (_real(p) - t).pow(2).sum() for p, t in zip(params, targets))
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)


def _start():
    z = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.complex64, generator=_gen(1)))
    r = torch.nn.Parameter(torch.randn(5, dtype=torch.float32, generator=_gen(2)))
    return z, r


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _assert_same(value, want, key):
    """``value`` (a complex parameter's state) is ``want`` (its real view's), bit for bit."""
    if isinstance(value, (list, tuple)):
        assert len(value) == len(want), key
        for a, b in zip(value, want):
            _assert_same(a, b, key)
    elif isinstance(value, torch.Tensor):
        value = torch.view_as_real(value) if value.is_complex() else value
        assert value.dtype == want.dtype and torch.equal(value, want), key
    else:
        assert value == want, key


def _refused(name):
    return name in TORCH_REFUSES or name in READS_SHAPE


def _fusable(spec):
    """The class's rule runs on the fused (numba) engine."""
    if spec.name == "lbfgs":
        return False
    opt = _make(spec, [torch.nn.Parameter(torch.zeros(3))], None)
    return opt._rule(opt.param_groups[0]).fusable


STEPPED = [s for s in SPECS if not _refused(s.name)]
CASES = [(s, "fused" if _fusable(s) else None) for s in STEPPED] + [(s, "eager") for s in STEPPED]


@pytest.mark.parametrize("spec, engine", CASES, ids=lambda x: getattr(x, "name", x or "auto"))
def test_complex_steps_as_its_real_view(spec, engine):
    """A complex parameter steps as ``torch.view_as_real`` of it, stepped as a real
    parameter by the same class: the same iterates and state bit for bit, the state of
    the parameter's shape kept complex (as torch.optim keeps it), and a checkpoint
    resumes exactly."""
    z, r = _start()
    real = [torch.nn.Parameter(_real(z.detach()).clone()), torch.nn.Parameter(r.detach().clone())]
    params = [z, r]
    opt = _make(spec, params, engine)
    ref = _make(spec, real, engine)
    _run(opt, params, 2)
    _run(ref, real, 2)
    assert z.dtype == torch.complex64
    assert torch.equal(torch.view_as_real(z.detach()), real[0].detach())
    assert torch.equal(r.detach(), real[1].detach())
    for key, value in opt.state[z].items():
        want = ref.state[real[0]][key]
        if isinstance(want, torch.Tensor) and want.shape == real[0].shape:
            # state of the parameter's shape: complex, as torch.optim keeps it
            assert value.is_complex() and value.shape == z.shape, key
        _assert_same(value, want, key)
    # a checkpoint resumes bit for bit
    saved = copy.deepcopy(opt.state_dict())
    z2 = torch.nn.Parameter(z.detach().clone())
    r2 = torch.nn.Parameter(r.detach().clone())
    again = _make(spec, [z2, r2], engine)
    again.load_state_dict(saved)
    _run(opt, params, 1)
    _run(again, [z2, r2], 1)
    assert torch.equal(z.detach(), z2.detach()) and torch.equal(r.detach(), r2.detach())


@pytest.mark.parametrize("name", sorted(TORCH_REFUSES | READS_SHAPE))
def test_complex_refused(name):
    """Rules whose math reads each tensor's shape refuse complex parameters at the
    step, with torch's exception type and a message naming the class (and the stage)."""
    spec = gradstep.REGISTRY[name]
    z, _ = _start()
    opt = _make(spec, [z], None)
    before = z.detach().clone()
    cls = type(opt).__name__
    with pytest.raises(RuntimeError, match=f"^{cls} does not support complex parameters"):
        _run(opt, [z], 1)
    assert torch.equal(z.detach(), before)


def test_adam_mini_blocks_of_rows_refuse_complex_one_block_per_tensor_does_not():
    """Adam-mini's default block (the whole tensor: its real view's mean square is
    the complex tensor's) steps complex parameters; blocks of rows read the shape."""
    z, _ = _start()
    opt = gt.AdamMini([z], 0.1, partition="rows", rows_per_block=1)
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match="'scale_by_adam_mini' reads each tensor's shape"):
        opt.step()


def test_refusal_names_the_stage():
    z, _ = _start()
    opt = gt.TransformOptimizer([z], gradstep.sm3(0.1))
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match="'scale_by_sm3' reads each tensor's shape"):
        opt.step()


def test_every_registered_rule_is_stepped_or_refused():
    """The refused set is exactly the rules with a shape-reading stage (the generic
    flag :attr:`gradstep._core.transform.Transform.reads_shape`), plus torch's own."""
    from gradstep._core.transform import walk

    reading = {
        s.name
        for s in SPECS
        if any(v.transform.reads_shape for v in walk(s.factory(**s.test_hyperparams)))
    }
    assert reading == READS_SHAPE | TORCH_REFUSES


def test_transform_optimizer_takes_complex():
    """The issue: TransformOptimizer used to refuse complex parameters with TypeError."""
    z = torch.nn.Parameter(torch.tensor([1 + 2j, -0.5j], dtype=torch.complex64))
    w = torch.nn.Parameter(torch.view_as_real(z.detach()).clone())
    opt = gt.TransformOptimizer([z], gradstep.adam(0.1))
    ref = gt.TransformOptimizer([w], gradstep.adam(0.1))
    z.grad = torch.tensor([0.5 - 1j, 2 + 0j], dtype=torch.complex64)
    w.grad = torch.view_as_real(z.grad).clone()
    opt.step()
    ref.step()
    assert torch.equal(torch.view_as_real(z.detach()), w.detach())
    assert opt.state[z]["mu"].dtype == torch.complex64


def test_transform_optimizer_takes_complex_as_torch_adam():
    """gradstep.adam through TransformOptimizer steps a complex parameter as
    torch.optim.Adam does (the real-view meaning is torch's)."""
    z0 = torch.tensor([1 + 2j, -0.5j, 3 - 1j], dtype=torch.complex128)
    a = torch.nn.Parameter(z0.clone())
    b = torch.nn.Parameter(z0.clone())
    opt = gt.TransformOptimizer([a], gradstep.adam(0.1))
    ref = torch.optim.Adam([b], lr=0.1, foreach=False)
    for k in range(3):
        g = torch.tensor([0.5 - 1j, 2 + 0j, -1 + 0.25j], dtype=torch.complex128) * (k + 1)
        a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


def test_an_integer_parameter_with_a_gradient_is_refused_at_the_step():
    p = torch.zeros(2, dtype=torch.int64)
    opt = gt.TransformOptimizer([p], gradstep.adam())  # taken, as torch takes it
    p.grad = torch.ones(2, dtype=torch.int64)
    with pytest.raises(TypeError, match="torch.int64 has a gradient; only floating-point"):
        opt.step()
    assert p.tolist() == [0, 0]


@pytest.mark.parametrize("source", ["hessian", "hvp"])
def test_sophia_step_inputs_of_a_complex_parameter_are_real_views(source):
    """Sophia's ``hessian=`` estimate of a complex parameter is complex, and its
    Hessian-vector products (gradients taken with ``create_graph``) are taken on the
    complex parameter: both enter the step as their real views."""
    z, _ = _start()
    w = torch.nn.Parameter(torch.view_as_real(z.detach()).clone())
    runs = []
    for p in (z, w):
        opt = gt.Sophia([p], 0.05, update_interval=1)
        for k in range(3):
            x = torch.view_as_real(p) if p.is_complex() else p
            loss = (x.pow(4) / 4 + x).sum()
            (p.grad,) = torch.autograd.grad(loss, p, create_graph=source == "hvp")
            if source == "hessian":
                h = 3 * x.detach().pow(2) + k
                opt.step(hessian=[torch.view_as_complex(h) if p.is_complex() else h])
            else:
                opt.step()
        runs.append(opt)
    assert torch.equal(torch.view_as_real(z.detach()), w.detach())
    _assert_same(runs[0].state[z]["nu"], runs[1].state[w]["nu"], "nu")


@pytest.mark.parametrize("state_dtype", [torch.bfloat16, torch.float16, "blockwise8"])
def test_complex_parameter_with_a_state_dtype(state_dtype):
    """State stored in a dtype of its own (``state_dtype``) is the real view's, as the
    rule writes it (torch keeps complex state only in the parameter's precision); it
    steps as the real view's state does, and a checkpoint resumes bit for bit."""
    z = torch.nn.Parameter(torch.randn(8, 80, dtype=torch.complex64, generator=_gen(3)))
    w = torch.nn.Parameter(_real(z.detach()).clone())

    def make(p):
        eight_bit = {"min_8bit_size": 16} if state_dtype == "blockwise8" else {}
        return gt.Adam([p], lr=0.1, state_dtype=state_dtype, **eight_bit)

    opt, ref = make(z), make(w)
    _run(opt, [z], 2)
    _run(ref, [w], 2)
    assert torch.equal(_real(z.detach()), w.detach())
    for key, value in opt.state[z].items():
        assert not value.is_complex(), key
        _assert_same(value, ref.state[w][key], key)
    again_z = torch.nn.Parameter(z.detach().clone())
    again = make(again_z)
    again.load_state_dict(copy.deepcopy(opt.state_dict()))
    for key, value in opt.state[z].items():
        assert again.state[again_z][key].dtype == value.dtype, key
    _run(opt, [z], 1)
    _run(again, [again_z], 1)
    assert torch.equal(z.detach(), again_z.detach())


def test_complex_state_of_a_wrong_shape_is_refused_on_loading():
    z = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.complex64))
    opt = gt.Adam([z], lr=0.1)
    _run(opt, [z], 1)
    state = copy.deepcopy(opt.state_dict())
    state["state"][0]["exp_avg"] = torch.zeros(4, 3, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"state\['exp_avg'\] of parameter 0 .* shape \(4, 3\)"):
        gt.Adam([torch.nn.Parameter(z.detach().clone())], lr=0.1).load_state_dict(state)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_complex32_parameter_with_master_weights():
    """``master_weights=True`` keeps a complex64 copy of a complex32 parameter (its
    real view: the float32 master of the float16 real view), not ignored."""
    z = torch.nn.Parameter(
        torch.randn(6, dtype=torch.complex64, generator=_gen(4)).to(torch.complex32)
    )
    w = torch.nn.Parameter(_real(z.detach()).clone())
    opt = gt.Adam([z], lr=0.01, master_weights=True)
    ref = gt.Adam([w], lr=0.01, master_weights=True)
    _run(opt, [z], 3)
    _run(ref, [w], 3)
    assert opt.state[z]["master_param"].dtype == torch.complex64
    assert torch.equal(_real(z.detach()), w.detach())
    for key, value in opt.state[z].items():
        _assert_same(value, ref.state[w][key], key)


@pytest.mark.parametrize(
    "stage, refused",
    [
        (lambda: gradstep.transforms.centralize(), True),
        (lambda: gradstep.transforms.adaptive_clip(0.1), True),
        (lambda: gradstep.transforms.constrain_norm(1.0), True),
        (lambda: gradstep.transforms.clip_by_block_rms(1.0), False),  # the whole tensor's
        (lambda: gradstep.transforms.clip_by_global_norm(1.0), False),
    ],
)
def test_transforms_in_a_chain(stage, refused):
    """A chain steps complex parameters unless one of its stages reads shapes."""
    z = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.complex64, generator=_gen(5)))
    w = torch.nn.Parameter(_real(z.detach()).clone())
    opt = gt.TransformOptimizer([z], gradstep.chain(stage(), gradstep.adam(0.1)))
    ref = gt.TransformOptimizer([w], gradstep.chain(stage(), gradstep.adam(0.1)))
    if refused:
        with pytest.raises(RuntimeError, match="TransformOptimizer does not support complex"):
            _run(opt, [z], 1)
        return
    _run(opt, [z], 2)
    _run(ref, [w], 2)
    assert torch.equal(_real(z.detach()), w.detach())


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs Triton's interpreter on CPU tensors"
)
@pytest.mark.parametrize("name", ["adam", "lamb", "lion", "adabelief"])
def test_complex_on_the_triton_engine(name):
    pytest.importorskip("triton", reason="needs Triton")
    spec = gradstep.REGISTRY[name]
    z, r = _start()
    real = [torch.nn.Parameter(_real(z.detach()).clone()), torch.nn.Parameter(r.detach().clone())]
    opt, ref = _make(spec, [z, r], "triton"), _make(spec, real, "triton")
    _run(opt, [z, r], 2)
    _run(ref, real, 2)
    assert torch.equal(_real(z.detach()), real[0].detach())
    for key, value in opt.state[z].items():
        _assert_same(value, ref.state[real[0]][key], key)
