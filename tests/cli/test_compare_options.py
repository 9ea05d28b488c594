"""``gradstep compare`` refuses, rather than ignores, an option that would have no effect:
a race's options with ``--from`` (which re-renders saved results), ``--engine`` with
``--backend jax``, ``--seeds`` and ``--batch-size`` with no stochastic problem, and
``--animate`` with no figures or no 2-D function. Each exits with status 2 and a message
naming the option, before anything is raced or written."""

import contextlib
import io
import json

import pytest

from gradstep.cli import main

# a race small enough that accepting the input below (wrongly) ends in seconds
TINY = ["--quick", "--steps", "3", "--no-tune", "--no-progress", "--no-figures"]
LEAVE_IT_OUT = "configures a race; --from re-renders saved results: leave it out"


def exit_status(argv: list[str]) -> int:
    """The status ``gradstep`` exits with: argparse's errors exit, the runs return."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The results.json of a tiny race (no 2-D function in it), its options' defaults
    given explicitly: given or not, a race takes them."""
    out = tmp_path_factory.mktemp("saved") / "report"
    argv = ["compare", *TINY, "--optimizers", "sgd", "--problems", "lstsq", "--out", str(out)]
    argv += ["--seed", "0", "--backend", "numpy", "--engine", "eager"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return out / "results.json"


def test_a_race_takes_the_defaults_given_explicitly(saved):
    config = json.loads(saved.read_text())["config"]
    assert (config["seed"], config["backend"], config["engine"]) == (0, "numpy", "eager")
    assert "--backend" not in config["command"] and "--engine" not in config["command"]


@pytest.mark.parametrize(
    "option",
    [
        # each with the value a race takes when it is left out, where it has one
        ["--optimizers", "sgd"],
        ["--problems", "lstsq"],
        ["--set", "sgd.learning_rate=0.1"],
        ["--quick"],
        ["--full"],
        ["--no-tune"],
        ["--seeds", "1"],
        ["--steps", "3"],
        ["--batch-size", "64"],
        ["--seed", "0"],
        ["--backend", "numpy"],
        ["--engine", "eager"],
    ],
)
def test_from_refuses_each_option_of_a_race(saved, tmp_path, capsys, option):
    out = tmp_path / "never"
    assert exit_status(["compare", "--from", str(saved), "--out", str(out), *option]) == 2
    err = capsys.readouterr().err
    assert err == f"gradstep compare: {option[0]} {LEAVE_IT_OUT}\n", err
    assert not out.exists()


def test_from_names_every_option_of_a_race_given(saved, tmp_path, capsys):
    out = tmp_path / "never"
    argv = ["compare", "--from", str(saved), "--out", str(out), "--steps", "3", "--seed", "5"]
    assert exit_status(argv + ["--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert "--steps, --seed, --backend configure a race; --from re-renders saved results: " in err
    assert "leave them out" in err
    assert not out.exists()


def test_from_keeps_the_options_of_rendering(saved, tmp_path, capsys):
    out = tmp_path / "again"
    argv = ["compare", "--from", str(saved), "--out", str(out), "--no-figures", "--no-progress"]
    assert exit_status(argv) == 0
    assert json.loads((out / "results.json").read_text()) == json.loads(saved.read_text())
    assert (out / "report.html").exists() and (out / "results.csv").exists()
    assert "--from" not in capsys.readouterr().err


def test_from_refuses_animate_without_a_2d_function(saved, tmp_path, capsys):
    out = tmp_path / "never"
    assert exit_status(["compare", "--from", str(saved), "--out", str(out), "--animate"]) == 2
    err = capsys.readouterr().err
    assert "--animate draws the paths on the 2-D functions" in err, err
    assert f"--from {saved} holds none of them (lstsq): leave --animate out" in err
    assert not out.exists()


@pytest.mark.parametrize("source", ["race", "from"])
def test_animate_without_figures_is_refused(saved, tmp_path, capsys, source):
    out = tmp_path / "never"
    if source == "race":
        argv = ["compare", *TINY, "--optimizers", "sgd", "--problems", "rosenbrock"]
    else:
        argv = ["compare", "--from", str(saved), "--no-figures"]
    assert exit_status([*argv, "--out", str(out), "--animate"]) == 2
    err = capsys.readouterr().err
    assert "--animate writes trajectories.gif and --no-figures writes no figure" in err, err
    assert not out.exists()


def test_a_race_refuses_animate_without_a_2d_function(tmp_path, capsys):
    out = tmp_path / "never"
    argv = ["compare", "--quick", "--steps", "3", "--no-tune", "--no-progress", "--animate"]
    argv += ["--optimizers", "sgd", "--problems", "lstsq", "--out", str(out)]
    assert exit_status(argv) == 2
    err = capsys.readouterr().err
    assert "--problems names none of them (lstsq): leave --animate out" in err, err
    assert not out.exists()


@pytest.mark.parametrize("engine", ["auto", "fused", "eager"])
def test_jax_refuses_engine(tmp_path, capsys, engine):
    out = tmp_path / "never"
    argv = ["compare", *TINY, "--optimizers", "sgd", "--problems", "rosenbrock"]
    assert exit_status([*argv, "--backend", "jax", "--engine", engine, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--engine is an option of --backend numpy and torch; --backend jax " in err, err
    assert "leave --engine out" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "what"), [(["--seeds", "2"], "seeds"), (["--batch-size", "8"], "mini-batches")]
)
def test_options_of_stochastic_problems_are_refused_without_one(tmp_path, capsys, option, what):
    out = tmp_path / "never"
    argv = ["compare", *TINY, "--optimizers", "sgd", "--problems", "rosenbrock,beale"]
    assert exit_status([*argv, *option, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} sets the {what} of the stochastic problems (logistic, " in err, err
    assert f"--problems rosenbrock, beale names none of them: leave {option[0]} out" in err
    assert not out.exists()
