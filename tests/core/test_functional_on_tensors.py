"""The functional API's helpers on torch tensors: ``gradstep.apply_updates`` and
``gradstep.modes.evaluation_params`` (averaged weights, schedule-free's evaluation
point) run torch's own operations, with no NumPy conversion of a tensor (which would
copy a CUDA tensor to the host, or fail), and give NumPy's results bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import gradstep
from gradstep import transforms as T

torch = pytest.importorskip("torch", reason="torch is a test dependency")
import gradstep.torch  # noqa: E402,F401  (registers the torch array namespace)


class NoNumpy(torch.Tensor):
    """A tensor that refuses to become a NumPy array."""

    def __array__(self, *args, **kwargs):
        raise AssertionError("a NumPy function was applied to a torch tensor")


def no_numpy(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.copy()).as_subclass(NoNumpy)


def plain(t) -> np.ndarray:
    assert isinstance(t, torch.Tensor), type(t)
    return torch.Tensor(t).detach().numpy()


def _params(dtype) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [np.asarray(rng.standard_normal(s), dtype) for s in ((5, 4), (7,), ())]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_updates_on_tensors_is_numpys(dtype):
    params = _params(dtype)
    updates = [
        np.asarray(np.float32(0.1) * p.astype(np.float32) + np.float32(1e-3)) for p in params
    ]
    want = gradstep.apply_updates(params, updates)
    got = gradstep.apply_updates([no_numpy(p) for p in params], [no_numpy(u) for u in updates])
    for g, w in zip(got, want):
        assert g.dtype == torch.from_numpy(np.asarray(w)).dtype
        np.testing.assert_array_equal(plain(g), w)


def _trained(make, params, to_array):
    """Three functional steps of ``make()`` on ``params`` (arrays made by
    ``to_array``); returns the transform, its state and the parameters."""
    transform = make()
    p = [to_array(a) for a in params]
    state = transform.init(p)
    for k in range(3):
        grads = [to_array(np.float32(0.5 * (k + 1)) * a - np.float32(0.25)) for a in params]
        updates, state = transform.update(grads, state, p)
        p = gradstep.apply_updates(p, updates)
    return transform, state, p


MAKERS = {
    "ema-debiased": lambda: T.parameter_ema(gradstep.sgd(0.1), momentum=0.9, debias=True),
    "ema": lambda: T.parameter_ema(gradstep.momentum(0.1, 0.5), momentum=0.8),
    "schedule-free": lambda: gradstep.schedule_free_sgd(0.5, momentum=0.9),
    "schedule-free-near-end": lambda: gradstep.schedule_free_sgd(0.5, momentum=0.2),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_evaluation_params_on_tensors_is_numpys(name):
    params = _params(np.float32)[:2]
    want = _trained(MAKERS[name], params, np.asarray)
    got = _trained(MAKERS[name], params, no_numpy)
    for g, w in zip(got[2], want[2]):
        np.testing.assert_array_equal(plain(g), w)
    want_eval = gradstep.modes.evaluation_params(*want)
    got_eval = gradstep.modes.evaluation_params(*got)
    for g, w in zip(got_eval, want_eval):
        assert g.dtype == torch.float32 and tuple(g.shape) == np.shape(w)
        np.testing.assert_array_equal(plain(g), w)
