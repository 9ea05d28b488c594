"""``gradstep compare`` refuses a bad seed, an empty name list and an empty path with exit
status 2 and a message naming the option, before any race starts."""

import pytest

from gradstep.cli import main

# a race small enough that accepting the input below (wrongly) ends in seconds
TINY = ["--quick", "--steps", "3", "--no-progress", "--no-figures"]


def exit_status(argv: list[str]) -> int:
    """The status ``gradstep`` exits with: argparse's errors exit, the runs return."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize("problem", ["lstsq", "rosenbrock"])
@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_a_seed_out_of_range_is_refused_for_every_problem(tmp_path, capsys, problem, seed):
    out = tmp_path / "never"
    argv = ["compare", *TINY, "--problems", problem, "--optimizers", "sgd", "--out", str(out)]
    assert exit_status(argv + ["--seed", seed]) == 2
    err = capsys.readouterr().err
    assert f"argument --seed: invalid value '{seed}'" in err, err
    assert "valid values: an integer in [0, " in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "option", "valid"),
    [
        (["--optimizers", "", "--problems", "rosenbrock"], "--optimizers", "valid optimizers"),
        (["--optimizers", " , ", "--problems", "rosenbrock"], "--optimizers", "valid optimizers"),
        (["--optimizers", "sgd", "--problems", ""], "--problems", "valid problems"),
        (["--optimizers", "sgd", "--problems", ","], "--problems", "valid problems"),
    ],
)
def test_an_empty_name_list_is_refused(tmp_path, capsys, args, option, valid):
    out = tmp_path / "never"
    assert exit_status(["compare", *TINY, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    value = args[args.index(option) + 1]
    assert f"{option} {value!r} names no " in err and valid in err, err
    assert "'all'" in err  # and how to name every one
    assert not out.exists()


@pytest.mark.parametrize("option", ["--out", "--from"])
def test_an_empty_path_is_refused(tmp_path, monkeypatch, capsys, option):
    monkeypatch.chdir(tmp_path)  # where an empty --out would write the report
    argv = ["compare", *TINY, "--problems", "rosenbrock", "--optimizers", "sgd", option, ""]
    assert exit_status(argv) == 2
    assert f"argument {option}: invalid value ''" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
