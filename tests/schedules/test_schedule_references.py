"""The new schedules against torch.optim.lr_scheduler and optax 0.2.8, value by value
(both are test dependencies, so the references run here directly)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from gradstep import schedules as S

torch = pytest.importorskip("torch", reason="torch's lr schedulers are the reference")


def torch_lrs(make, steps: int, lr: float = 1.0) -> np.ndarray:
    """The learning rate of each of ``steps`` updates under torch's scheduler."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def values(schedule, steps: int) -> np.ndarray:
    got = schedule(np.arange(steps))
    assert got.dtype == np.float64 and got.shape == (steps,)
    assert [schedule(t) for t in (0, steps - 1)] == [got[0], got[-1]]  # scalar == vector
    return got


LR = torch.optim.lr_scheduler


@pytest.mark.parametrize("t0, mult, eta_min", [(5, 1, 0.0), (3, 2, 0.05)])
def test_cosine_warm_restarts_matches_torch(t0, mult, eta_min):
    want = torch_lrs(lambda o: LR.CosineAnnealingWarmRestarts(o, t0, mult, eta_min), 40, 0.5)
    got = values(S.cosine_warm_restarts(0.5, t0, mult, eta_min), 40)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(step_size_up=4, mode="triangular"),
        dict(step_size_up=3, step_size_down=5, mode="triangular2"),
        dict(step_size_up=4, mode="exp_range", gamma=0.97),
    ],
)
def test_cyclic_matches_torch_cyclic_lr(kwargs):
    want = torch_lrs(lambda o: LR.CyclicLR(o, 0.1, 1.0, cycle_momentum=False, **kwargs), 50, 0.1)
    got = values(S.cyclic(0.1, 1.0, **kwargs), 50)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "anneal, three_phase, total", [("cos", False, 50), ("linear", False, 37), ("cos", True, 40)]
)
def test_one_cycle_torch_convention_matches_one_cycle_lr(anneal, three_phase, total):
    want = torch_lrs(
        lambda o: LR.OneCycleLR(
            o,
            2.0,
            total_steps=total,
            pct_start=0.25,
            anneal_strategy=anneal,
            three_phase=three_phase,
            div_factor=10.0,
            final_div_factor=50.0,
            cycle_momentum=False,
        ),
        total,
    )
    s = S.one_cycle(
        total,
        2.0,
        pct_start=0.25,
        div_factor=10.0,
        final_div_factor=50.0,
        anneal=anneal,
        pct_final=0.5 if three_phase else None,
        convention="torch",
    )
    np.testing.assert_allclose(values(s, total), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("anneal, steps", [("cos", 7), ("linear", 0)])
def test_swa_learning_rate_matches_torch_swalr(anneal, steps):
    want = torch_lrs(lambda o: torch.optim.swa_utils.SWALR(o, 0.05, steps, anneal), 15, 0.8)
    got = values(S.swa_learning_rate(0.8, 0.05, steps, anneal), 15)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_inverse_time_decay_is_lambda_lr_of_its_formula():
    fn = lambda t: 1 / (1 + 0.5 * math.floor(t / 3))  # noqa: E731
    want = torch_lrs(lambda o: LR.LambdaLR(o, fn), 20, 0.3)
    got = values(S.inverse_time_decay(0.3, 3, 0.5, staircase=True), 20)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    smooth = S.inverse_time_decay(2.0, 4, 1.0)
    assert smooth(4) == 1.0 and smooth(12) == 0.5 and smooth(2) == pytest.approx(4 / 3)


@pytest.mark.parametrize("decay", ["linear", "cosine", "1-sqrt"])
def test_warmup_stable_decay_phases(decay):
    s = S.warmup_stable_decay(1.0, 4, 3, 8, init_value=0.2, end_value=0.1, decay=decay)
    got = values(s, 20)
    np.testing.assert_allclose(got[:4], [0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(got[4:8], 1.0)
    p = np.arange(8) / 8
    shape = {"linear": 1 - p, "cosine": 0.5 * (1 + np.cos(np.pi * p)), "1-sqrt": 1 - np.sqrt(p)}
    np.testing.assert_allclose(got[7:15], 0.1 + 0.9 * shape[decay], rtol=1e-12)
    np.testing.assert_allclose(got[15:], 0.1)
    no_warmup = S.warmup_stable_decay(1.0, 0, 0, 2, decay="linear")
    assert [no_warmup(t) for t in range(3)] == [1.0, 0.5, 0.0]


def test_piecewise_interpolate_and_one_cycle_defaults():
    s = S.piecewise_interpolate(1.0, [4, 8], [0.1, 0.001], "cos")
    assert s(0) == 1.0 and s(4) == pytest.approx(0.1) and s(2) == pytest.approx(0.55)
    assert s(100) == pytest.approx(0.001)
    first_empty = S.piecewise_interpolate(1.0, [0, 2], [3.0, 5.0])
    assert [first_empty(t) for t in range(4)] == [3.0, 4.0, 5.0, 5.0]


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: S.cosine_warm_restarts(1.0, 0), "first_period"),
        (lambda: S.cosine_warm_restarts(1.0, 3, period_mult=1.5), "period_mult"),
        (lambda: S.cyclic(0.1, 1.0, 4, mode="sawtooth"), "mode"),
        (lambda: S.cyclic(0.1, 1.0, 4, step_size_down=0), "step_size_down"),
        (lambda: S.one_cycle(10, 1.0, pct_final=0.2), "pct_final"),
        (lambda: S.one_cycle(10, 1.0, convention="keras"), "convention"),
        (lambda: S.warmup_stable_decay(1.0, 2, 2, 0), "decay_steps"),
        (lambda: S.warmup_stable_decay(1.0, 2, 2, 4, decay="step"), "decay"),
        (lambda: S.inverse_time_decay(1.0, 2, -1.0), "decay_rate"),
        (lambda: S.swa_learning_rate(1.0, 0.1, anneal="exp"), "anneal"),
        (lambda: S.piecewise_interpolate(1.0, [2, 1], [1.0, 2.0]), "boundaries"),
        (lambda: S.piecewise_interpolate(1.0, [1], [1.0], "cubic"), "interpolation"),
    ],
)
def test_invalid_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_new_schedules_pickle_as_their_factory_call():
    for s in (
        S.cosine_warm_restarts(1.0, 3, 2),
        S.cyclic(0.1, 1.0, 3),
        S.one_cycle(20, 1.0, anneal="linear", convention="torch"),
        S.warmup_stable_decay(1.0, 2, 3, 4),
        S.piecewise_interpolate(1.0, [2], [0.5]),
    ):
        back = pickle.loads(pickle.dumps(s))
        np.testing.assert_array_equal(back(np.arange(30)), s(np.arange(30)))
