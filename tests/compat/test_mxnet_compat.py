"""gradstep.compat.mxnet against MXNet 1.9.1 itself: every MXNet trajectory of the
conformance fixtures (recorded from ``mx.optimizer.create(name, **reference_kwargs)``
and ``opt.update(index, weight, grad, state)``) replayed through
``gradstep.compat.mxnet.create(name, **reference_kwargs)`` in the same calling
sequence, plus the fixtures of ``fixtures/mxnet_compat.json`` (multipliers, names,
schedulers, ``begin_num_update``, the updater) and MXNet's bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradstep.rules.langevin as langevin
from gradstep.compat import _mxnet_base, mxnet

HERE = Path(__file__).parent
CONFORMANCE = HERE.parent / "conformance" / "fixtures"
DEFAULT_TOL = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}


def _cases() -> list[dict]:
    cases = []
    for name in ("mxnet.json", "layerwise.json"):
        for case in json.loads((CONFORMANCE / name).read_text()):
            if case["reference"].startswith("mxnet.optimizer."):
                cases.append(case)
    return cases


CASES = _cases()
COMPAT_FILE = HERE / "fixtures" / "mxnet_compat.json"
COMPAT_CASES = json.loads(COMPAT_FILE.read_text()) if COMPAT_FILE.exists() else []


def _kwargs(case: dict) -> dict:
    kwargs = dict(case["reference_kwargs"])
    if "param_idx2name" in kwargs:  # JSON keys are strings; MXNet's are indices
        kwargs["param_idx2name"] = {int(k): v for k, v in kwargs["param_idx2name"].items()}
    return kwargs


class _FixtureNoise:
    """The noise the SGLD fixtures injected into MXNet: on step ``k`` one generator
    ``default_rng([noise_seed, k])`` drawn index after index."""

    def __init__(self, noise_seed: int):
        self.noise_seed, self.rngs = noise_seed, {}

    def __call__(self, likes, seed, count, std):
        rng = self.rngs.setdefault(count, np.random.default_rng([self.noise_seed, count]))
        return [(std * rng.standard_normal(np.shape(x))).astype(x.dtype) for x in likes]


def replay(case: dict, use_updater: bool = False) -> list[list[np.ndarray]]:
    """Run the case through the compat API exactly as the recorder ran MXNet."""
    dtype = np.dtype(case["dtype"])
    name = case["reference"].rsplit(".", 1)[1]
    kwargs = _kwargs(case)
    if "scheduler_lrs" in case:  # the recorded values of MXNet's scheduler, by num_update
        kwargs["lr_scheduler"] = case["scheduler_lrs"].__getitem__
    opt = mxnet.create(name, **kwargs)
    for setter, table in (("set_lr_mult", "lr_mult"), ("set_wd_mult", "wd_mult")):
        if table in case:
            getattr(opt, setter)(dict(tuple(pair) for pair in case[table]))
    weights = [np.array(w, dtype=dtype) for w in case["params0"]]
    updater = mxnet.get_updater(opt) if use_updater else None
    states = None if use_updater else [opt.create_state(i, w) for i, w in enumerate(weights)]
    lrs = case.get("mxnet_lrs") or case.get("lrs")
    present = case.get("present")
    out = []
    for k, grads in enumerate(case["grads"]):
        if lrs is not None:
            opt.set_learning_rate(lrs[k])
        if "rescale_grads" in case:
            opt.rescale_grad = case["rescale_grads"][k]
        for i, (w, g) in enumerate(zip(weights, grads)):
            if present is not None and not present[k][i]:
                continue
            g = np.array(g, dtype=dtype)
            if use_updater:
                updater(i, g, w)
            else:
                opt.update(i, w, g, states[i])
        out.append([w.copy() for w in weights])
    return out


def check(case: dict, trajectory) -> None:
    tol = case.get("tolerance") or DEFAULT_TOL[case["dtype"]]
    for k, (got, want) in enumerate(zip(trajectory, case["trajectory"])):
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_allclose(
                g, np.array(w, dtype=g.dtype), **tol, err_msg=f"{case['id']} step {k} tensor {i}"
            )


@pytest.mark.parametrize("case", CASES + COMPAT_CASES, ids=lambda c: c["id"])
def test_replays_mxnet_trajectory(case, monkeypatch):
    if case["reference"] == "mxnet.optimizer.SGLD":
        seed = case.get("noise_seed", case["rule_kwargs"].get("seed"))
        monkeypatch.setattr(langevin, "langevin_noise", _FixtureNoise(seed))
    check(case, replay(case))


def test_every_registry_name_is_replayed():
    names = {c["reference"].rsplit(".", 1)[1].lower() for c in CASES + COMPAT_CASES}
    registry = {
        "sgd", "nag", "signum", "ftml", "lars", "lbsgd", "lamb", "dcasgd", "sgld", "adam",
        "adagrad", "rmsprop", "adadelta", "ftrl", "adamax", "nadam",
    }  # fmt: skip
    assert registry <= names
    assert registry == set(_mxnet_base._REGISTRY)
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    "case_id",
    ["mxnet-nadam_three_tensors-float32", "mxnet-adam_wd_clip_inside-float32"],
)
def test_updater_keeps_states_like_update(case_id):
    (case,) = [c for c in CASES if c["id"] == case_id]
    check(case, replay(case, use_updater=True))


def test_nadam_schedule_is_shared_by_all_indices():
    opt = mxnet.create("nadam")
    w = [np.ones(2), np.ones(3)]
    states = [opt.create_state(i, x) for i, x in enumerate(w)]
    for i, x in enumerate(w):
        opt.update(i, x, np.ones_like(x), states[i])
    mu1 = 0.9 * (1 - 0.5 * 0.96**0.004)
    assert opt.m_schedule == pytest.approx(mu1**2, rel=1e-14)  # once per parameter


def test_scheduler_counts_and_learning_rate_setter():
    seen = []
    opt = mxnet.create("sgd", lr_scheduler=lambda n: seen.append(n) or 0.1, begin_num_update=4)
    w = [np.ones(2), np.ones(2)]
    for _ in range(2):
        for i, x in enumerate(w):
            opt.update(i, x, np.ones(2), opt.create_state(i, x))
    assert seen == [5, 5, 6, 6] and opt.num_update == 6
    with pytest.raises(UserWarning):
        opt.set_learning_rate(0.5)
    assert mxnet.create("sgd").learning_rate == 0.01


def test_multi_precision_keeps_a_float32_master_copy():
    opt = mxnet.create("sgd", learning_rate=1e-4, multi_precision=True)
    w = np.ones(3, np.float16)
    updater = mxnet.get_updater(opt)
    for _ in range(10):
        updater(0, np.ones(3, np.float16), w)
    master = updater.states[0][0]
    assert master.dtype == np.float32
    np.testing.assert_allclose(master, 1 - 10e-4, rtol=1e-6)
    np.testing.assert_array_equal(w, master.astype(np.float16))


def test_updater_states_round_trip():
    opt = mxnet.create("adam", learning_rate=0.1)
    w = np.ones(2)
    updater = mxnet.get_updater(opt)
    updater(0, np.ones(2), w)
    other = mxnet.get_updater(opt)
    other.set_states(updater.get_states())
    w2 = w.copy()
    updater(0, np.ones(2), w)
    other(0, np.ones(2), w2)
    np.testing.assert_array_equal(w, w2)


def test_dcasgd_momentum_follows_the_intended_math():
    # MXNet 1.9.1 raises here; Delta = -lr (g + kappa g^2 (w - w_prev)); m <- mu m + Delta
    opt = mxnet.create("dcasgd", learning_rate=0.1, momentum=0.5, lamda=0.0)
    w = np.array([1.0])
    s = opt.create_state(0, w)
    opt.update(0, w, np.array([1.0]), s)
    opt.update(0, w, np.array([1.0]), s)
    assert w[0] == pytest.approx(1.0 - 0.1 - (0.5 * 0.1 + 0.1))


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match="unknown optimizer"):
        mxnet.create("adamw")
    with pytest.raises(ValueError, match="wd_lh"):
        mxnet.create("signum", momentum=0.0, wd_lh=0.1)
    with pytest.raises(ValueError, match="sym and param_dict"):
        mxnet.create("sgd", param_dict={})
    with pytest.raises(ValueError, match="NumPy array"):
        opt = mxnet.create("sgd")
        opt.update(0, [1.0], np.ones(1), opt.create_state(0, np.ones(1)))
