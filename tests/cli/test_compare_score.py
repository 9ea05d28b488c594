"""The scoring of ``gradstep compare``: a target counts only when the loss stays below
it, failed runs never rank above working ones, the profile's area, the tuning's
edge flag (no race needed: constructed curves and runs)."""

import math

import numpy as np
import pytest

from gradstep.cli import _compare_problems as problems
from gradstep.cli import _compare_race as race
from gradstep.cli import _compare_score as score
from gradstep.cli import _compare_tune as tuning


def test_touching_the_target_once_and_climbing_back_does_not_count():
    steps = [0, 10, 20, 30, 40, 50]
    touch = [5.0, 0.5, 3.0, 4.0, 3.0, 2.0]  # below 1 at step 10, then back up
    assert score.steps_to_target(steps, touch, 1.0, ok=True) is None
    settles = [5.0, 0.5, 3.0, 0.9, 0.8, 0.7]  # below from step 30 on
    assert score.steps_to_target(steps, settles, 1.0, ok=True) == 30
    assert score.steps_to_target(steps, [0.1] * 6, 1.0, ok=True) == 0
    # the last point above: never settled
    assert score.steps_to_target(steps, [5, 0.1, 0.1, 0.1, 0.1, 2.0], 1.0, ok=True) is None
    # NaN counts as above, and a run that did not finish never reaches the target
    assert score.steps_to_target(steps, [5, 0.1, math.nan, 0.1, 0.1, 0.1], 1.0, ok=True) == 30
    assert score.steps_to_target(steps, settles, 1.0, ok=False) is None


def test_smoothing_ignores_a_single_spike_but_not_a_climb():
    steps = list(range(0, 100, 10))
    spiky = [5, 0.4, 0.4, 0.4, 0.4, 1.6, 0.4, 0.4, 0.4, 0.4]
    assert score.steps_to_target(steps, spiky, 1.0, ok=True, width=1) == 60
    # the start (5) weighs on the first two averages: settled from step 30
    assert score.steps_to_target(steps, spiky, 1.0, ok=True, width=3) == 30
    climbing = [5, 0.4, 0.4, 0.4, 0.4, 2, 2, 2, 2, 2]
    assert score.steps_to_target(steps, climbing, 1.0, ok=True, width=3) is None
    np.testing.assert_allclose(score.smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])


def test_median_over_seeds_needs_most_seeds_to_reach_the_target():
    assert score.median_steps([10, 20, 30]) == 20
    assert score.median_steps([10, None, 30]) == 30
    assert score.median_steps([10, None, None]) == math.inf


def test_the_profile_and_its_area():
    times = {"fast": {"a": 10, "b": 10}, "half": {"a": 20, "b": math.inf}}
    grid = score.taus(points=301)
    rho = score.profile(times, grid)
    assert rho["fast"].tolist() == [1.0] * 301
    assert rho["half"][0] == 0.0 and rho["half"][-1] == 0.5
    assert score.area(rho["fast"], grid) == pytest.approx(1.0)
    # solved both at tau = 2: area of 0.5 from tau = 2 to 4 over a width of 3
    assert score.area(rho["half"], grid) == pytest.approx(0.5 * 2 / 3, abs=0.01)


def entry(name, ok, time, loss=0.1):
    return {"optimizer": name, "ok": ok, "time": time, "loss": loss}


def test_a_failed_run_never_ranks_above_a_working_one():
    # "broken" diverged everywhere; "slow" never reached a target but finished
    per_problem = {
        "a": [entry("broken", False, math.inf, None), entry("slow", True, math.inf, 0.5)],
        "b": [entry("broken", False, math.inf, None), entry("slow", True, math.inf, 0.9)],
    }
    board = score.leaderboard(per_problem)
    assert [r["optimizer"] for r in board] == ["slow", "broken"]
    assert board[1]["finished"] == 0 and board[0]["finished"] == 2
    order = score.problem_order(
        [entry("broken", False, math.inf, 1e-9), entry("slow", True, math.inf, 3.0)]
    )
    assert [e["optimizer"] for e in order] == ["slow", "broken"]


def test_a_diverging_optimizer_ranks_below_every_working_one_in_a_race():
    lstsq = problems.make_problems()["lstsq"]
    entries = race.make_entries(
        ["sgd", "adam", "momentum"], {"sgd": {"learning_rate": 1e3}}, "numpy"
    )
    per_problem = {"lstsq": []}
    from gradstep.cli import _compare_report as report

    for e in entries:
        run = race.run_one(lstsq, e, steps=30, seed=0, backend="numpy", engine="eager")
        per_problem["lstsq"].append(report.aggregate(run))
    board = score.leaderboard(per_problem)
    assert next(r for r in board if r["optimizer"] == "sgd")["finished"] == 0
    assert board[-1]["optimizer"] == "sgd"
    assert board[0]["ranks"]["lstsq"] == 1 and board[-1]["ranks"]["lstsq"] == 3


def test_the_edge_of_grid_flag_fires_when_the_best_rate_is_the_largest(monkeypatch):
    # a constructed problem where larger rates are always better: the sweep widens
    # upwards, the best stays at the top edge, and the result is flagged
    def fake_run(problem, entry, *, steps, seed, backend, engine, learning_rate=None):
        run = race.Run(entry.name, problem.name, learning_rate=learning_rate, seed=seed)
        run.final = {"loss": 1.0 / learning_rate}
        return run

    monkeypatch.setattr(race, "run_one", fake_run)
    (adam,) = race.make_entries(["adam"], {}, "numpy")
    beale = problems.make_problems()["beale"]
    ticks = []
    run = tuning.tune(
        beale,
        adam,
        steps=5,
        seed=0,
        backend="numpy",
        engine="eager",
        points=5,
        extra=2,
        tick=ticks.append,
    )
    rates = [t["learning_rate"] for t in run.tuning["trials"]]
    assert len(rates) == 7 and sum(ticks) == 7  # the same budget as everyone
    assert rates == sorted(rates) and rates[-1] == pytest.approx(1e-3 * 10**4)  # widened twice
    assert run.learning_rate == rates[-1]
    assert "largest tried" in run.tuning["edge"]
    assert any("optimum may lie beyond" in n for n in run.notes)

    # best in the middle: the extra trials refine, and nothing is flagged
    def middle(problem, entry, *, steps, seed, backend, engine, learning_rate=None):
        run = race.Run(entry.name, problem.name, learning_rate=learning_rate, seed=seed)
        run.final = {"loss": abs(math.log10(learning_rate) + 3) + 1}
        return run

    monkeypatch.setattr(race, "run_one", middle)
    run = tuning.tune(
        beale,
        adam,
        steps=5,
        seed=0,
        backend="numpy",
        engine="eager",
        points=5,
        extra=2,
        tick=ticks.append,
    )
    assert run.learning_rate == pytest.approx(1e-3) and run.tuning["edge"] is None
    assert len(run.tuning["trials"]) == 7


def _diverging_above(threshold):
    """A constructed run: rates at or above ``threshold`` diverge, smaller ones finish
    with a loss that is lowest just below it."""

    def fake_run(problem, entry, *, steps, seed, backend, engine, learning_rate=None):
        run = race.Run(entry.name, problem.name, learning_rate=learning_rate, seed=seed)
        if learning_rate >= threshold:
            run.status, run.diverged_at = "diverged", 1
        else:
            run.final = {"loss": 1.0 + abs(math.log10(learning_rate / threshold))}
        return run

    return fake_run


def _tune(entry, problem, ticks, points=3, extra=2):
    return tuning.tune(
        problem,
        entry,
        steps=5,
        seed=0,
        backend="numpy",
        engine="eager",
        points=points,
        extra=extra,
        tick=ticks.append,
    )


def test_when_every_grid_rate_diverges_smaller_rates_are_tried(monkeypatch):
    # adam's grid at --quick: 1e-4, 1e-3, 1e-2, all diverging; the rescue divides by
    # the grid's factor until a rate finishes (1e-7), then the extra trials go on
    monkeypatch.setattr(race, "run_one", _diverging_above(3e-7))
    (adam,) = race.make_entries(["adam"], {}, "numpy")
    ticks = []
    run = _tune(adam, problems.make_problems()["beale"], ticks)
    rates = [t["learning_rate"] for t in run.tuning["trials"]]
    assert run.status == "ok" and run.learning_rate in rates
    assert {1e-5, 1e-6, 1e-7} <= set(rates)  # a decade at a time below the grid
    assert run.learning_rate < 3e-7
    assert run.tuning["rescue"]["first_finished"] == pytest.approx(1e-7)
    assert len(rates) == 3 + 3 + 2  # the rescue comes on top of the budget
    assert sum(ticks) == 5  # progress counts the budget only
    assert any("every rate of the grid diverged" in n for n in run.notes)


def test_the_rescue_stops_at_its_floor_and_says_nothing_finished(monkeypatch):
    monkeypatch.setattr(race, "run_one", _diverging_above(0.0))  # everything diverges
    (adam,) = race.make_entries(["adam"], {}, "numpy")
    ticks = []
    run = _tune(adam, problems.make_problems()["beale"], ticks)
    rates = sorted(t["learning_rate"] for t in run.tuning["trials"])
    floor = 1e-4 * tuning.DECADE**-tuning.RESCUE_DECADES
    assert rates[0] == pytest.approx(floor)  # bounded: no rate below the floor
    assert len(rates) == 3 + tuning.RESCUE_DECADES and sum(ticks) == 5
    assert run.status == "diverged"
    assert "no learning rate tried finished" in run.tuning["edge"]
    assert f"down to {floor:g}" in run.tuning["edge"]


def test_no_rescue_when_some_grid_rate_finishes(monkeypatch):
    # the largest grid rate diverges, the others finish: the sweep is the usual one
    monkeypatch.setattr(race, "run_one", _diverging_above(5e-3))
    (adam,) = race.make_entries(["adam"], {}, "numpy")
    run = _tune(adam, problems.make_problems()["beale"], [])
    assert len(run.tuning["trials"]) == 5 and run.tuning.get("rescue") is None


def test_sam_on_rosenbrock_finds_a_rate_that_does_not_diverge():
    """The reported case: at --quick, SAM's grid (0.01, 0.1, 1) all diverge on
    Rosenbrock; the tuner goes on to smaller rates."""
    (sam,) = race.make_entries(["sam"], {}, "numpy")
    rosenbrock = problems.make_problems()["rosenbrock"]
    ticks = []
    run = tuning.tune(
        rosenbrock,
        sam,
        steps=75,
        seed=0,
        backend="numpy",
        engine="eager",
        points=3,
        extra=2,
        tick=ticks.append,
    )
    grid = {
        t["learning_rate"]: t["status"] for t in run.tuning["trials"] if t["learning_rate"] >= 0.01
    }
    assert set(grid.values()) == {"diverged"}  # the premise: the whole grid diverges
    assert run.status == "ok" and run.learning_rate < 0.01
    assert sum(ticks) == 5
