"""Transforms with eager array code (norm constraints, skips, per-parameter wrappers)
run torch's own operations on torch tensors: no NumPy conversion of a tensor (which
would copy a CUDA tensor to the host, or fail); the results are tensors and equal
NumPy's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T
from gradstep.transforms import mxnet

torch = pytest.importorskip("torch", reason="torch is a test dependency")
gt = pytest.importorskip("gradstep.torch", reason="the torch front needs torch")


class NoNumpy(torch.Tensor):
    """A tensor that refuses to become a NumPy array: a NumPy function applied to it
    fails loudly instead of running on a host copy."""

    def __array__(self, *args, **kwargs):
        raise AssertionError("a NumPy function was applied to a torch tensor")


def no_numpy(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.copy()).as_subclass(NoNumpy)


def plain(t: torch.Tensor) -> np.ndarray:
    assert isinstance(t, torch.Tensor), type(t)
    return torch.Tensor(t).detach().numpy()


SHAPES = ((33, 5), (4, 3, 5), (2, 3, 2, 2), (7,), (0, 4))
AXES = {(33, 5): None, (4, 3, 5): None, (2, 3, 2, 2): (1, 3), (7,): (0,), (0, 4): None}


def _arrays(seed: int, dtype=np.float32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["outside", "inside"])
def test_norm_constraint_on_tensors_is_numpys(dtype, max_norm):
    for a in _arrays(1, dtype):
        axes = AXES[a.shape]
        got = gradstep.norm_constraint(no_numpy(a), max_norm, axes, 1e-3)
        want = gradstep.norm_constraint(a, max_norm, axes, 1e-3)
        assert got.dtype == torch.from_numpy(a).dtype and got.shape == a.shape
        np.testing.assert_allclose(plain(got), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["outside", "inside"])
def test_total_norm_constraint_on_tensors_is_numpys(max_norm):
    arrays = _arrays(2) + [np.linspace(-1, 1, 6)]  # float32 and float64 together
    got, got_norm = gradstep.total_norm_constraint(
        [no_numpy(a) for a in arrays], max_norm, 1e-3, return_norm=True
    )
    want, want_norm = gradstep.total_norm_constraint(arrays, max_norm, 1e-3, return_norm=True)
    assert isinstance(got_norm, torch.Tensor) and got_norm.dtype == torch.float64
    assert float(got_norm) == pytest.approx(float(want_norm), rel=1e-12)
    for g, w, a in zip(got, want, arrays):
        assert g.dtype == torch.from_numpy(a).dtype
        np.testing.assert_allclose(plain(g), w, rtol=1e-6, atol=1e-7)


STAGES = {
    "constrain_norm": lambda: T.constrain_norm(0.5, epsilon=1e-3),
    "constrain_norm_axes": lambda: T.constrain_norm(0.5, norm_axes=(0,)),
    "constrain_norm_params": lambda: T.constrain_norm(0.5, target="params"),
    "constrain_total_norm_params": lambda: T.constrain_total_norm(0.5, target="params"),
}


@pytest.mark.parametrize("name", list(STAGES))
def test_constraint_stages_update_tensors_with_torch(name):
    grads = [a for a in _arrays(3) if a.ndim == 2]
    params = [a for a in _arrays(4) if a.ndim == 2]
    stage = STAGES[name]()
    want, _ = stage.update(grads, stage.init(params), params)
    got, _ = stage.update(
        [no_numpy(g) for g in grads], stage.init(params), [no_numpy(w) for w in params]
    )
    for g, w in zip(got, want):
        np.testing.assert_allclose(plain(g), w, rtol=1e-6, atol=1e-7)


def test_per_parameter_gives_a_skipped_tensor_a_zero_tensor():
    stage = mxnet.per_parameter(gradstep.sgd(0.1))
    grads = [no_numpy(np.ones(3, np.float32)), no_numpy(np.ones(2, np.float32))]
    state = stage.init(grads)
    (u0, u1), _ = stage.update(grads, state, present=[True, False])
    np.testing.assert_allclose(plain(u0), -0.1, rtol=1e-6)
    assert isinstance(u1, torch.Tensor) and u1.dtype == torch.float32
    np.testing.assert_array_equal(plain(u1), [0.0, 0.0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradstep.chain(T.constrain_norm(0.3, epsilon=1e-3), gradstep.adam(1e-2)),
        lambda: gradstep.chain(gradstep.sgd(0.5), T.constrain_norm(0.3, target="params")),
        lambda: gradstep.chain(gradstep.sgd(0.5), T.constrain_total_norm(0.3, target="params")),
    ],
    ids=["constrain_norm", "constrain_norm_params", "constrain_total_norm_params"],
)
def test_eager_torch_steps_warn_nothing_and_match_numpy(make):
    """The torch front's eager engine runs the constraint on the tensors themselves
    (NumPy on tensors warns of ``__array_wrap__`` in NumPy 2)."""
    starts = [a for a in _arrays(5) if a.ndim in (2, 3)]
    ws = [s.copy() for s in starts]
    ref = gradstep.Optimizer(ws, make())
    params = [torch.nn.Parameter(torch.from_numpy(s.copy())) for s in starts]
    opt = gt.TransformOptimizer(params, make(), engine="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for k in range(3):
            grads = [np.sin(3 * w + k).astype(w.dtype) for w in ws]
            ref.step(grads)
            for p, g in zip(params, grads):
                p.grad = torch.from_numpy(g)
            opt.step()
    for p, w in zip(params, ws):
        np.testing.assert_allclose(p.detach().numpy(), w, rtol=2e-6, atol=2e-6)


def test_total_norm_constraint_refuses_tensors_of_two_libraries():
    with pytest.raises(TypeError, match="one library"):
        gradstep.total_norm_constraint([torch.ones(2), np.ones(2)], 1.0)


def test_lasagne_constraints_keep_torch_tensors_on_their_device():
    """The Lasagne front hands torch tensors to the constraints as they are (no host
    copy); a list mixing them with shared variables still works (test_lasagne.py)."""
    from gradstep.compat import lasagne as L

    a, b = np.array([[3.0], [4.0]], np.float32), np.array([12.0], np.float32)
    out = L.norm_constraint(no_numpy(a), 1.0)
    np.testing.assert_allclose(plain(out).ravel(), [0.6, 0.8], rtol=1e-6)
    scaled, norm = L.total_norm_constraint([no_numpy(a), no_numpy(b)], 1.0, return_norm=True)
    assert float(norm) == pytest.approx(13.0)
    np.testing.assert_allclose(plain(scaled[1]), [12.0 / 13.0], rtol=1e-6)


@pytest.mark.parametrize("bad", [None, np.nan, np.inf])
def test_skip_nonfinite_judges_tensors_with_torch(bad):
    stage = T.skip_nonfinite(gradstep.sgd(0.1))
    g = np.ones((2, 3), np.float32)
    if bad is not None:
        g[1, 2] = bad
    grads = [no_numpy(g), no_numpy(np.ones(0, np.float32))]
    updates, state = stage.update(grads, stage.init(grads))
    assert all(isinstance(u, torch.Tensor) for u in updates)
    want = np.full((2, 3), -0.1 if bad is None else 0.0, np.float32)
    np.testing.assert_allclose(plain(updates[0]), want, rtol=1e-6)
    assert int(state["total_notfinite"]) == (bad is not None)


def test_skip_large_updates_on_eager_torch_steps_warns_nothing():
    params = [torch.nn.Parameter(torch.ones(4))]
    opt = gt.TransformOptimizer(
        params, T.skip_large_updates(gradstep.sgd(0.1), 2.0), engine="eager"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for scale in (0.5, 1.0):  # squared norms 1 (taken) and 4 (skipped)
            params[0].grad = torch.full((4,), scale)
            opt.step()
    np.testing.assert_allclose(params[0].detach().numpy(), 0.95, rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["dadapt_sgd", "dadapt_adam", "dadapt_adagrad", "prodigy", "dog", "dowg"]
)
def test_global_reductions_carry_tensor_state_without_numpy(name):
    """Rules with carried scalar state (distance estimates) keep it as 0-d tensors
    between steps of the functional API; the step's scalars are made from them with
    torch's operations, and the trajectory is NumPy's."""
    from gradstep.registry import REGISTRY

    spec = REGISTRY[name]
    starts = [a for a in _arrays(6, np.float64) if a.ndim == 2]
    runs = {}
    for lib, wrap in (("numpy", np.copy), ("torch", no_numpy)):
        t = spec.factory(**spec.test_hyperparams)
        params = [wrap(a) for a in starts]
        state = t.init(params)
        for k in range(3):
            grads = [np.sin(3 * a + k) for a in (_plain_any(p) for p in params)]
            updates, state = t.update([wrap(g) for g in grads], state, params)
            params = [p + u for p, u in zip(params, updates)]
        runs[lib] = [_plain_any(p) for p in params]
    for a, b in zip(runs["torch"], runs["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def _plain_any(x):
    return plain(x) if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_accumulate_keeps_tensors_as_tensors(reduce):
    """Gradient accumulation's window (its sums, its zero updates, its finiteness
    test) runs with torch on tensors, as with NumPy on arrays."""
    starts = [a for a in _arrays(7) if a.ndim == 2]
    runs = {}
    for lib, wrap in (("numpy", np.copy), ("torch", no_numpy)):
        t = T.accumulate(gradstep.adam(0.1), 2, reduce)
        params = [wrap(a) for a in starts]
        state = t.init(params)
        for k in range(5):
            grads = [np.cos(a + k).astype(np.float32) for a in starts]
            if k == 2:
                grads[0][0, 0] = np.nan  # a skipped mini-step
            updates, state = t.update([wrap(g) for g in grads], state, params)
            params = [p + u for p, u in zip(params, updates)]
        runs[lib] = [_plain_any(p) for p in params]
        assert all(isinstance(p, torch.Tensor) for p in params) == (lib == "torch")
        assert int(state["total_notfinite"]) == 1
    for a, b in zip(runs["torch"], runs["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
