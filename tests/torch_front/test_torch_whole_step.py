"""A param group's step is one step of its transform over every parameter of the
group: a reduction across tensors sees them all, even where the torch front keeps
their state in different layouts (dtypes, or shapes under a shape-dependent rule),
and the trajectory equals the NumPy front's."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep

torch = pytest.importorskip("torch", reason="torch is a test dependency")

# (rule, shapes, dtypes): each group holds parameters the front keeps apart
CASES = {
    # a global reduction (DoWG's distance estimate) over float32 + float64
    "dowg_two_dtypes": (
        lambda: gradstep.dowg(1.0),
        [(3, 2), (4,)],
        [np.float32, np.float64],
    ),
    # a global norm clip in front of a rule whose state depends on the shape
    "global_clip_adafactor_two_shapes": (
        lambda: gradstep.chain(
            gradstep.transforms.clip_by_global_norm(0.5), gradstep.adafactor(0.05)
        ),
        [(3, 4), (5,)],
        [np.float64, np.float64],
    ),
    # a global norm clip in front of a rule the numba engine compiles, over two dtypes
    "global_clip_adam_two_dtypes": (
        lambda: gradstep.chain(gradstep.transforms.clip_by_global_norm(0.5), gradstep.adam(0.1)),
        [(3, 2), (4,)],
        [np.float32, np.float64],
    ),
    # a global reduction inside a mask, over two shapes
    "masked_dog_two_shapes": (
        lambda: gradstep.masked(gradstep.dog(1.0), lambda ps: [True for _ in ps]),
        [(3, 2), (4,)],
        [np.float64, np.float64],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_group_step_sees_every_parameter(case):
    import gradstep.torch as gt

    make, shapes, dtypes = CASES[case]
    rng = np.random.default_rng(3)
    starts = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    steps = [[rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)] for _ in range(3)]
    ws = [s.copy() for s in starts]
    ref = gradstep.Optimizer(ws, make(), engine="eager")
    params = [torch.nn.Parameter(torch.from_numpy(s.copy())) for s in starts]
    opt = gt.TransformOptimizer(params, make())
    for k, gs in enumerate(steps):
        ref.step(gs)
        for p, g in zip(params, gs):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
        for i, (p, w) in enumerate(zip(params, ws)):
            # the same math in float64; a group with float32 parameters keeps its
            # global scalars in float32 on NumPy (init follows the first parameter)
            rtol = 1e-10 if set(dtypes) == {np.float64} else 1e-6
            np.testing.assert_allclose(
                p.detach().numpy(), w, rtol=rtol, atol=0, err_msg=f"step {k} tensor {i}"
            )


def test_a_required_fused_engine_refuses_a_coupled_step_over_two_dtypes():
    import gradstep.torch as gt

    transform = gradstep.chain(gradstep.transforms.clip_by_global_norm(0.5), gradstep.adam(0.1))
    params = [torch.nn.Parameter(torch.ones(3, dtype=d)) for d in (torch.float32, torch.float64)]
    opt = gt.TransformOptimizer(params, transform, engine="fused")
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="couples the group's parameters"):
        opt.step()
    assert all(torch.equal(p.detach(), torch.ones_like(p)) for p in params)


def test_an_engine_bucket_is_not_reused_by_a_rebuilt_rule_of_the_same_id():
    """Buckets are found by the rule's id; a rule rebuilt for a changed group value may
    get the id of a freed one (CPython reuses addresses): its step must not run the
    old rule's kernels (found flaky: a weight decay switched on mid-run was ignored)."""
    import gradstep.torch as gt

    start = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)
    runs = []
    for lib in (torch.optim, gt):
        p = torch.nn.Parameter(start.clone())
        opt = lib.Adam([p], lr=0.1)
        for k in range(3):
            if k == 1:
                opt.param_groups[0]["weight_decay"] = 0.5
                if lib is gt:  # as if the new rule took the freed rule's address
                    rt = opt._runtime()
                    ((key, bucket),) = rt.fused.items()
                    rule = opt._rule(opt.param_groups[0])
                    rt.fused = {(key[0], id(rule)) + key[2:]: bucket}
            p.grad = torch.sin(3 * p.detach()) + 0.1 * k
            opt.step()
        runs.append(p.detach().clone())
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-10, atol=1e-12)
