"""With the default engine, a group the fused engine refuses at the step (its
``Unsupported``: CAME's fused form, which rounds a 16-bit gradient's update in its own
update, over 16-bit parameters) runs eagerly instead of
failing; ``engine="fused"`` still raises. Per-tensor reductions (trust ratios) are
not refused: they run fused."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")

import gradstep  # noqa: E402
from gradstep.torch import TransformOptimizer  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_refused_fused_step_runs_eagerly(dtype):
    results = {}
    for engine in ("auto", "eager"):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 7, dtype=dtype))
        opt = TransformOptimizer([p], gradstep.came(1e-2), engine=engine)
        for k in range(3):
            p.grad = (p.detach().float() * (k + 1)).to(dtype)
            opt.step()
        results[engine] = p.detach().clone()
    assert torch.equal(results["auto"], results["eager"])


def test_a_required_fused_engine_still_refuses():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    opt = TransformOptimizer([p], gradstep.came(1e-2), engine="fused")
    p.grad = torch.ones_like(p)
    with pytest.raises(Exception, match="32- and 64-bit parameters only"):
        opt.step()


@pytest.mark.parametrize("name", ["Lamb", "Lars", "Novograd", "Mars", "StableAdamw"])
def test_per_tensor_reductions_run_on_the_cpu_fused_engine(name, watch):
    """LAMB's and LARS's trust ratios, NovoGrad's, MARS's and StableAdamW's norms: the
    CPU front steps them on the fused engine (required, so no silent eager run), as
    the eager engine does."""
    import gradstep.torch as gt
    from gradstep.engines import fused

    cls = getattr(gt, name)
    results, calls = {}, watch(fused.FusedEngine, "step_leaves", completed=False)
    for engine in ("eager", "fused"):
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(300, 250)), torch.nn.Parameter(torch.randn(33))]
        opt = cls(ps, learning_rate=1e-2, engine=engine)
        for k in range(3):
            for p in ps:
                p.grad = torch.sin(3 * p.detach() + k)
            opt.step()
        results[engine] = [p.detach().clone() for p in ps]
        assert len(calls) == (3 if engine == "fused" else 0)
    for a, b in zip(results["eager"], results["fused"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["Adamp", "Sgdp", "Ranger"])
def test_fused_forms_run_vectors_on_the_cpu_fused_engine(name, watch):
    """AdamP's projection, SGDP's and Ranger's centralisation are elementwise on
    vectors: the CPU front steps those on the fused engine (their fused forms), equal
    to the eager engine (to an ulp: torch's float32 sqrt is not correctly rounded on
    every CPU, AVX-512 ones among them, where NumPy's and the kernels' are); a matrix
    is refused when the fused engine is required and runs eagerly by default."""
    import gradstep.torch as gt
    from gradstep.engines import fused

    cls = getattr(gt, name)
    calls = watch(fused.FusedEngine, "step_leaves")  # the steps the engine completed

    def run(shape, engine):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(shape))
        opt = cls([p], engine=engine)
        for k in range(4):
            p.grad = torch.sin(3 * p.detach() + k)
            opt.step()
        return p.detach().clone()

    eager = run((1001,), "eager")
    assert not calls
    torch.testing.assert_close(run((1001,), "fused"), eager, rtol=1e-6, atol=1e-8)
    assert len(calls) == 4
    with pytest.raises(Exception, match="rank < 2"):
        run((30, 20), "fused")
    calls.clear()
    run((30, 20), "auto")  # refused before anything is written, then stepped eagerly
    assert not calls


@pytest.mark.parametrize("name", ["came", "adamp", "sgdp", "ranger"])
def test_a_tensorwise_rule_steps_vectors_fused_beside_eager_matrices(name, watch):
    """CAME's factored moments, AdamP's and SGDP's projections and Ranger's
    centralisation compute each tensor from itself (``tensorwise``): in a group of
    vectors of several lengths and a matrix, the vectors share one fused bucket (the
    shapes their fused forms cover) and the matrix runs on the transform's own update;
    the steps are the eager engine's (which runs on the tensors, not on NumPy views:
    within float32 rounding)."""
    import gradstep.torch as gt
    from gradstep.engines import fused

    calls = watch(fused.FusedEngine, "step_leaves")
    results = {}
    for engine in ("eager", "auto"):
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(s)) for s in [(7,), (30, 20), (5,), (1,)]]
        opt = gt.TransformOptimizer(ps, gradstep.REGISTRY[name].factory(), engine=engine)
        for k in range(3):
            for p in ps:
                p.grad = torch.sin(3 * p.detach() + k)
            opt.step()
        results[engine] = [p.detach().clone() for p in ps]
    # the three vectors in one launch per step
    assert [len(w_leaves) for _, w_leaves, *_ in calls] == [3, 3, 3]
    for a, b in zip(results["eager"], results["auto"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
