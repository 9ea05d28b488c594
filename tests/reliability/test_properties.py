"""Property-based reliability over the NumPy and torch fronts (hypothesis).

Random trees of parameters (sizes 0, 1, 7, 100003; float16/32/64, bfloat16 on torch;
contiguous and strided), random registered rules, random NaN/inf in the gradients,
random save/load points and random refused inputs. Properties: nothing crashes, the
fused engine equals the eager one, a resumed run is bit-exact, a refused input
changes nothing. Example counts are small to bound the time in CI.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradstep

# rules stepped by a closure or given the loss every step (needs_value) need more than
# the plain step(grads) these properties take
SPECS = [s for s in gradstep.REGISTRY if not {"needs_closure", "needs_value"} & set(s.capabilities)]
SIZES = [(0,), (1,), (7,), (100003,), (3, 5)]
STEPS = 3
SETTINGS = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same examples on every run: a bounded, reproducible CI cost
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _make(spec):
    return spec.factory(**spec.test_hyperparams)


def _array(rng, shape, dtype, strided, xp=np):
    values = rng.normal(size=shape).astype(np.float64)
    if not strided or not values.size:
        return values.astype(dtype)
    base = np.zeros(shape[:-1] + (2 * shape[-1],), np.float64)
    base[..., ::2] = values
    return base.astype(dtype)[..., ::2]


def _poisoned(rng, shape, dtype, hits):
    g = np.sin(rng.normal(size=shape)).astype(dtype)
    for kind, where in hits:
        if g.size:
            g.reshape(-1)[where % g.size] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[kind]
    return g


def _close_half(a, b, eps):
    """Within a few units of a 16-bit dtype with machine epsilon ``eps``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    finite = np.isfinite(a)
    np.testing.assert_array_equal(np.isfinite(b), finite)
    np.testing.assert_array_equal(a[~finite], b[~finite])
    a, b = a[finite], b[finite]
    scale = float(np.max(np.abs(a), initial=0.0))
    assert np.all(np.abs(a - b) <= 4 * eps * (np.abs(a) + scale))


def _close(a, b, dtype):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    finite = np.isfinite(a)
    np.testing.assert_array_equal(np.isfinite(b), finite)
    np.testing.assert_array_equal(a[~finite], b[~finite])
    a, b = a[finite], b[finite]
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(
            b, a, rtol=1e-11, atol=1e-11 * float(np.max(np.abs(a), initial=0))
        )
    else:
        eps = float(np.finfo(np.float32).eps)
        scale = float(np.max(np.abs(a), initial=0.0))
        assert np.all(np.abs(a - b) <= 8 * eps * (np.abs(a) + scale))


def _exact(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def _case(specs):
    return st.fixed_dictionaries(
        {
            "spec": st.sampled_from(specs),
            "shapes": st.lists(st.sampled_from(SIZES), min_size=1, max_size=3),
            "strided": st.lists(st.booleans(), min_size=3, max_size=3),
            "seed": st.integers(0, 2**16),
            "save_at": st.integers(0, STEPS),
            "bad_at": st.none() | st.integers(0, STEPS - 1),
            "hits": st.lists(
                st.tuples(
                    st.integers(0, STEPS - 1),
                    st.integers(0, 2),
                    st.sampled_from(["nan", "inf", "-inf"]),
                    st.integers(0, 10**6),
                ),
                max_size=3,
            ),
        }
    )


case = _case(SPECS)


# -- the NumPy front ------------------------------------------------------------------


def _bad_grads(kind, grads):
    bad = dict(grads)
    first = next(iter(bad))
    if kind == "shape":
        bad[first] = np.ones(np.asarray(bad[first]).size + 1)
    elif kind == "complex":
        bad[first] = np.asarray(bad[first]) * (1 + 1j)
    elif kind == "unknown key":
        bad["not a parameter"] = bad[first]
    else:  # missing key
        del bad[first]
    return bad


@SETTINGS
@given(c=case, dtype=st.sampled_from([np.float16, np.float32, np.float64]), data=st.data())
def test_numpy_front(c, dtype, data):
    rng = np.random.default_rng(c["seed"])
    names = [f"p{i}" for i in range(len(c["shapes"]))]
    start = {
        n: _array(rng, s, dtype, c["strided"][i])
        for i, (n, s) in enumerate(zip(names, c["shapes"]))
    }
    fused_p = copy.deepcopy(start)
    eager_p = copy.deepcopy(start)
    fused = gradstep.Optimizer(fused_p, _make(c["spec"]), engine="auto")
    eager = gradstep.Optimizer(eager_p, _make(c["spec"]), engine="eager")
    resumed = None
    bad_kind = data.draw(st.sampled_from(["shape", "complex", "unknown key", "missing key"]))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for k in range(STEPS):
            if k == c["save_at"]:
                resumed_p = copy.deepcopy(fused_p)
                resumed = gradstep.Optimizer(resumed_p, _make(c["spec"]), engine="auto")
                resumed.load_state_dict(fused.state_dict())
            hits = [(leaf, kind, where) for step, leaf, kind, where in c["hits"] if step == k]
            grads = {
                n: _poisoned(rng, s, dtype, [(kind, w) for leaf, kind, w in hits if leaf == i])
                for i, (n, s) in enumerate(zip(names, c["shapes"]))
            }
            if k == c["bad_at"]:
                for opt in (fused, eager):
                    before = copy.deepcopy((opt.params, opt.state))
                    with pytest.raises(ValueError):
                        opt.step(_bad_grads(bad_kind, grads))
                    for a, b in zip(
                        gradstep.tree.leaves(before), gradstep.tree.leaves((opt.params, opt.state))
                    ):
                        _exact(a, b)
            for opt in (fused, eager) + ((resumed,) if resumed is not None else ()):
                opt.step({n: g.copy() for n, g in grads.items()})
    if resumed is None:  # saved after the last step
        resumed_p = copy.deepcopy(fused_p)
        resumed = gradstep.Optimizer(resumed_p, _make(c["spec"]), engine="auto")
        resumed.load_state_dict(fused.state_dict())
    for n in names:
        _close(eager_p[n], fused_p[n], dtype)
        _exact(fused_p[n], resumed_p[n])
    sf, se, sr = fused.state_dict(), eager.state_dict(), resumed.state_dict()
    assert sf.keys() == se.keys() == sr.keys()
    for key in sf:
        _exact(sf[key], sr[key])
        if np.issubdtype(sf[key].dtype, np.floating):
            _close(se[key], sf[key], sf[key].dtype)
        else:
            _exact(se[key], sf[key])


# -- the torch front --------------------------------------------------------------------


@SETTINGS
@given(
    c=case,
    dtype=st.sampled_from(["float16", "bfloat16", "float32", "float64"]),
)
def test_torch_front(c, dtype):
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    from gradstep.torch import TransformOptimizer

    tdtype = getattr(torch, dtype)
    rng = np.random.default_rng(c["seed"])

    def tensor(values, strided):
        t = torch.from_numpy(np.ascontiguousarray(values, np.float64)).to(tdtype)
        if strided and t.numel():
            base = torch.zeros(t.shape[:-1] + (2 * t.shape[-1],), dtype=tdtype)
            base[..., ::2] = t
            t = base[..., ::2]
        return torch.nn.Parameter(t)

    starts = [rng.normal(size=s) for s in c["shapes"]]
    strided = c["strided"][: len(starts)]
    fused_p = [tensor(v, s) for v, s in zip(starts, strided)]
    eager_p = [tensor(v, s) for v, s in zip(starts, strided)]
    fused = TransformOptimizer(fused_p, _make(c["spec"]), engine="auto")
    eager = TransformOptimizer(eager_p, _make(c["spec"]), engine="eager")
    resumed = resumed_p = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(STEPS):
            if k == c["save_at"]:
                resumed_p = [
                    tensor(p.detach().to(torch.float64).numpy(), s)
                    for p, s in zip(fused_p, strided)
                ]
                for a, b in zip(resumed_p, fused_p):
                    assert _same_tensor(a, b)
                resumed = TransformOptimizer(resumed_p, _make(c["spec"]), engine="auto")
                resumed.load_state_dict(copy.deepcopy(fused.state_dict()))
            if k == c["bad_at"]:
                # a checkpoint of another optimizer is refused and changes nothing
                before = copy.deepcopy(fused.state_dict())
                extra = [torch.nn.Parameter(torch.ones(2)) for _ in range(len(fused_p) + 1)]
                other = TransformOptimizer(extra, _make(c["spec"]))
                with pytest.raises(ValueError):
                    fused.load_state_dict(other.state_dict())
                _same_torch_state(before, fused.state_dict())
            hits = [(leaf, kind, where) for step, leaf, kind, where in c["hits"] if step == k]
            grads = [
                _poisoned(rng, s, np.float64, [(kind, w) for leaf, kind, w in hits if leaf == i])
                for i, s in enumerate(c["shapes"])
            ]
            for opt, params in ((fused, fused_p), (eager, eager_p), (resumed, resumed_p)):
                if opt is None:
                    continue
                for p, g in zip(params, grads):
                    p.grad = torch.from_numpy(g).to(tdtype)
                opt.step()
    # the noise of SGLD and noisy SGD comes from each array library's own generator:
    # on CPU float32/float64 the default engine runs the rule on NumPy views, the eager
    # one on torch tensors, so only their half-precision runs (torch on both) agree
    noise_differs = "stochastic" in c["spec"].capabilities and dtype in ("float32", "float64")
    for a, b in zip(fused_p, eager_p) if not noise_differs else ():
        a, b = a.detach().to(torch.float64).numpy(), b.detach().to(torch.float64).numpy()
        if dtype in ("float32", "float64"):
            _close(b, a, np.dtype(dtype))
        else:
            # both engines compute in float32 and round to 16 bits; their float32
            # operations may differ in the last bit, which can move a rounding
            _close_half(b, a, 2.0**-8 if dtype == "bfloat16" else 2.0**-11)
    if resumed is not None:
        for a, b in zip(fused_p, resumed_p):
            assert _same_tensor(a, b)


def _same_tensor(a, b):
    """Bit for bit, NaN where NaN."""
    import torch

    a, b = a.detach(), b.detach()
    return (
        a.dtype == b.dtype
        and torch.equal(torch.isnan(a), torch.isnan(b))
        and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
    )


def _same_torch_state(a, b):
    import torch

    assert a.keys() == b.keys() and a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for key, value in a["state"][i].items():
            other = b["state"][i][key]
            if isinstance(value, torch.Tensor):
                assert _same_tensor(value, other)
            else:
                assert value == other
