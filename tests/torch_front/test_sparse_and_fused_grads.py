"""Sparse gradients and gradients in another layout, as torch.optim takes them.

torch's SGD with momentum keeps a sparse ``momentum_buffer`` after sparse gradients
(``nn.Embedding(sparse=True)``): loading such a checkpoint failed making it
contiguous. torch refuses sparse gradients with weight decay (``add(sparse, dense)``)
and in its fused kernels, before anything changes; gradstep stepped them. A
gradient assigned by hand in another layout than its contiguous parameter was
refused by ``fused=True`` with a message calling the parameter the problem.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep.torch as gt  # noqa: E402


def _train(opt, emb, start, stop):
    for s in range(start, stop):
        opt.zero_grad()
        emb(torch.tensor([s % 4, 1, 1])).pow(2).sum().backward()
        opt.step()


def test_torch_sgd_checkpoint_with_a_sparse_momentum_buffer_loads_and_continues():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(4, 2, sparse=True)
    ref = torch.optim.SGD(emb.parameters(), lr=0.1, momentum=0.9)
    _train(ref, emb, 0, 3)
    saved = copy.deepcopy(ref.state_dict())
    assert saved["state"][0]["momentum_buffer"].layout == torch.sparse_coo
    ours_emb = copy.deepcopy(emb)
    ours = gt.SGD(ours_emb.parameters(), lr=0.1, momentum=0.9)
    ours.load_state_dict(copy.deepcopy(saved))
    buffer = saved["state"][0]["momentum_buffer"].to_dense()
    torch.testing.assert_close(ours.state[ours_emb.weight]["momentum_buffer"], buffer)
    _train(ref, emb, 3, 8)
    _train(ours, ours_emb, 3, 8)
    torch.testing.assert_close(ours_emb.weight, emb.weight, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("SGD", dict(weight_decay=0.1)),
        ("SGD", dict(weight_decay=0.1, momentum=0.9)),
        ("SGD", dict(fused=True)),
        ("SGD", dict(fused=True, momentum=0.9)),
        ("Adagrad", dict(fused=True)),
        ("Adagrad", dict(weight_decay=0.1)),
    ],
)
def test_sparse_gradients_refused_where_torch_refuses_them(name, kwargs):
    errors = {}
    for lib, mod in (("torch", torch.optim), ("gradstep", gt)):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(4, 2, sparse=True)
        before = emb.weight.detach().clone()
        opt = getattr(mod, name)(emb.parameters(), lr=0.1, **kwargs)
        emb(torch.tensor([1])).sum().backward()
        with pytest.raises(RuntimeError) as caught:
            opt.step()
        errors[lib] = str(caught.value)
        assert torch.equal(emb.weight.detach(), before)  # a refused step changes nothing
        assert not opt.state.get(emb.weight) or name == "Adagrad"  # (Adagrad's is eager)
    assert errors["gradstep"] == errors["torch"]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("Adam", dict(lr=0.01)),
        ("AdamW", dict(lr=0.01)),
        ("SGD", dict(lr=0.1, momentum=0.9)),
        ("Adagrad", dict(lr=0.1)),
    ],
)
def test_fused_step_takes_a_gradient_in_another_layout(name, kwargs):
    # the gradient is the transpose of a (3, 4) tensor: shape (4, 3), strides (1, 4).
    # torch's fused kernels read its memory as if it were C-ordered (another
    # gradient); its other implementations, and gradstep, read its values
    results = []
    for mod, flags in ((torch.optim, dict(foreach=False)), (gt, dict(fused=True))):
        p = torch.nn.Parameter(torch.arange(12.0).reshape(4, 3))
        opt = getattr(mod, name)([p], **kwargs, **flags)
        for s in range(3):
            p.grad = torch.linspace(-1, 1 + s, 12).reshape(3, 4).t()
            opt.step()
        results.append(p.detach())
    torch.testing.assert_close(results[1], results[0])


def test_fused_refusal_names_the_gradient_that_cannot_run():
    # (torch's fused Adam raises too: "expected scalar type Float but found Double")
    p = torch.nn.Parameter(torch.ones(3))
    p.grad_dtype = None  # torch refuses a gradient of another dtype otherwise
    opt = gt.Adam([p], fused=True)
    p.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"gradient is torch\.float64 on cpu .* parameter of"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3))
