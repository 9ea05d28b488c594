"""Every registered optimizer runs a few steps of the race on every backend, and the
command line's small promises: ``--version``, names in any case."""

import pytest

import gradstep
from gradstep.cli import _compare_problems as problems
from gradstep.cli import _compare_race as race
from gradstep.cli import main

BACKENDS = ["numpy", "torch", "jax"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_registered_optimizer_runs_on_every_backend(backend, request):
    if backend == "torch":
        pytest.importorskip("torch", reason="needs torch (a test dependency)")
    if backend == "jax":
        pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    beale = problems.make_problems()["beale"]
    failed = {}
    for spec in gradstep.REGISTRY:
        (entry,) = race.make_entries([spec.name], {}, backend)
        run = race.run_one(beale, entry, steps=2, seed=0, backend=backend, engine="eager")
        if run.status not in ("ok", "diverged"):
            failed[spec.name] = run.reason
        elif run.status == "ok":
            assert run.curve_steps[0] == 0 and len(run.curve_loss) >= 2, spec.name
    assert failed == {}, failed


def test_the_jax_backend_leaves_jax_precision_as_it_found_it():
    jax = pytest.importorskip("jax", reason="needs JAX (a test dependency)")
    before = bool(jax.config.jax_enable_x64)
    (adam,) = race.make_entries(["adam"], {}, "jax")
    run = race.run_one(
        problems.make_problems()["beale"], adam, steps=2, seed=0, backend="jax", engine="eager"
    )
    assert run.status == "ok" and run.engine == "jax"
    assert bool(jax.config.jax_enable_x64) == before


def test_the_version_is_printed(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"gradstep {gradstep.__version__}"


def test_names_are_case_insensitive_and_misspellings_get_a_suggestion():
    valid = gradstep.REGISTRY.names()
    assert race.parse_names(
        "Adam, SGD,l-bfgs".replace("l-bfgs", "LBFGS"), valid, "optimizer", []
    ) == [
        "adam",
        "sgd",
        "lbfgs",
    ]
    with pytest.raises(race.InputError, match=r"'Addam' \(did you mean adam"):
        race.parse_names("Addam", valid, "optimizer", [])


def test_list_keeps_its_columns_with_long_signatures():
    from gradstep.cli import listing

    column = 56
    lines = listing.plain(width=100, column=column).splitlines()
    summaries = {s.summary.split()[0] for s in gradstep.REGISTRY}
    for line in lines:
        assert len(line) <= 100 or line.rstrip().endswith(")"), line
        if len(line) > column and line[column] == " " and line[:column].strip() == "":
            continue  # a summary under a long signature, or a wrapped summary line
        if line.endswith(")") and "(" in line:
            continue  # a long signature on a line of its own
        assert line[column] == " " and line[column + 1 :].split()[0] in summaries, line


def test_a_schedule_learning_rate_is_shown_not_dashed():
    (lars,) = race.make_entries(["lars"], {}, "numpy")
    if lars.schedule is None:
        pytest.skip(reason="the registry gives lars a numeric learning rate")
    from gradstep.cli import _compare_report as report

    run = race.run_one(
        problems.make_problems()["beale"], lars, steps=2, seed=0, backend="numpy", engine="eager"
    )
    assert report.lr_text(run) == lars.schedule and "(" in lars.schedule
