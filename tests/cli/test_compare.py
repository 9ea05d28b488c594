"""``gradstep compare`` end to end on tiny configurations, its bad-input messages and
its reproducibility (no timing assertions)."""

import base64
import csv
import json
import math
import re

import numpy as np
import pytest

import gradstep
from gradstep.cli import _compare_problems as problems
from gradstep.cli import _compare_race as race
from gradstep.cli import main

TINY = ["--steps", "8", "--no-progress", "--quick"]


def compare(tmp_path, *args, name="report"):
    out = tmp_path / name
    code = main(["compare", "--out", str(out), *TINY, *args])
    return code, out


def load(out):
    return json.loads((out / "results.json").read_text())


def records(results):
    """Every run of a results.json, the replicas (other seeds) included."""
    for r in results["results"]:
        yield r
        yield from r.get("replicas", [])


def assert_finite_or_diverged(record):
    if record["status"] == "ok":
        assert math.isfinite(record["final"]["loss"]), record
        assert record["curve"]["loss"] and all(math.isfinite(v) for v in record["curve"]["loss"])
        assert record["wall_s"] >= 0
    else:
        assert record["status"] in ("diverged", "skipped", "error"), record
        assert record["final"] == {}
        assert record["reason"]


@pytest.fixture(scope="module")
def race_report(tmp_path_factory):
    """One small tuned race with figures and the GIF, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("race")
    out = tmp / "report"
    args = [
        "compare",
        "--out",
        str(out),
        "--no-progress",
        "--quick",
        "--steps",
        "12",
        "--seeds",
        "2",
        "--optimizers",
        "SGD,adam,momentum",
        "--problems",
        "rosenbrock,saddle,logistic,lstsq",
        "--set",
        # every trial diverges, the rescue's smaller rates too (down to 1e5, six
        # decades below the grid's 1e11): marked, the race goes on
        "sgd.learning_rate=1e12",
        "--animate",
    ]
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(args)
    return code, out, printed.getvalue()


def test_compare_writes_the_report(race_report):
    code, out, printed = race_report
    assert code == 0
    assert "Rosenbrock [rosenbrock] (gallery: not scored)" in printed and "DIVERGED@" in printed
    assert "Overall: performance-profile score" in printed
    assert "learning rates TUNED per problem" in printed

    for name in [
        "results.json",
        "results.csv",
        "report.html",
        "profile.png",
        "trajectories.png",
        "losses.png",
        "loss-logistic.png",
        "loss-lstsq.png",
        "trajectories.gif",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert (out / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "trajectories.gif").read_bytes()[:6] == b"GIF89a"
    from PIL import Image

    assert Image.open(out / "trajectories.gif").size[0] >= 800  # readable

    results = load(out)
    pairs = {(r["problem"], r["optimizer"]) for r in results["results"]}
    assert pairs == {
        (p, o)
        for p in ("rosenbrock", "saddle", "logistic", "lstsq")
        for o in ("sgd", "adam", "momentum")
    }
    assert results["config"]["optimizers"] == ["sgd", "adam", "momentum"]
    assert results["config"]["seeds"] == {
        "rosenbrock": [0],
        "saddle": [0],
        "logistic": [0, 1],
        "lstsq": [0, 1],
    }
    assert set(results["versions"]) >= {"gradstep", "python", "numpy"}
    for record in records(results):
        assert_finite_or_diverged(record)
    by = {(r["problem"], r["optimizer"]): r for r in results["results"]}
    sgd = by["rosenbrock", "sgd"]
    assert sgd["status"] == "diverged" and sgd["diverged_at"] == 1
    assert sgd["tuning"]["edge"] == (
        "no learning rate tried finished (smaller rates tried, down to 100000)"
    )
    assert sgd["tuning"]["rescue"]["first_finished"] is None
    adam = by["logistic", "adam"]
    assert adam["status"] == "ok" and 0 <= adam["final"]["test_accuracy"] <= 1
    assert len(adam["replicas"]) == 1 and adam["replicas"][0]["seed"] == 1
    assert adam["replicas"][0]["learning_rate"] == adam["learning_rate"]  # the chosen rate
    assert [t["learning_rate"] for t in adam["tuning"]["trials"]]  # every trial recorded
    assert adam["curve"]["step"][0] == 0 and adam["curve"]["step"][-1] == 12
    path = np.array(by["saddle", "adam"]["path"])
    assert path.shape == (13, 2) and path[0].tolist() == [1.5, 1e-3]
    # the leaderboard: sgd never finishes: last
    board = results["leaderboard"]
    assert board[-1]["optimizer"] == "sgd"
    assert set(board[0]["ranks"]) == {"logistic", "lstsq"}  # the gallery is not scored

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * (2 + 2 * 2) and {r["status"] for r in rows} >= {"ok", "diverged"}

    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/(png|gif);base64,([A-Za-z0-9+/=]+)"', page)
    # profile, two loss plots of the race, the gallery overview, the GIF, two gallery
    # loss plots: each figure once
    assert len(images) == len({data for _, data in images}) == 7
    assert base64.b64decode(images[0][1])[:4] == b"\x89PNG"
    assert page.index("performance profile") < page.index("loss-logistic.png")
    assert page.index("class='summary'") < page.index("<h2>Overall")
    assert "gradstep compare --optimizers sgd,adam,momentum" in page  # how to reproduce
    # one file, readable offline: nothing is loaded from elsewhere
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<script" not in page
    assert "DIVERGED@1" in page


def test_from_results_json_rerenders_the_same_report(race_report, tmp_path, capsys):
    _, out, printed = race_report
    again = tmp_path / "again"
    assert (
        main(["compare", "--from", str(out / "results.json"), "--out", str(again), "--animate"])
        == 0
    )
    assert (again / "report.html").read_text() == (out / "report.html").read_text()
    assert (again / "results.csv").read_text() == (out / "results.csv").read_text()
    # the terminal report too, up to the last line's timing
    redrawn = capsys.readouterr().out
    assert (
        redrawn.rsplit("wrote", 1)[0].strip()
        == printed.split("\n", 1)[1].rsplit("wrote", 1)[0].strip()
    )


def test_no_tune_is_labelled_as_the_defaults_race(tmp_path, capsys):
    code, out = compare(
        tmp_path, "--optimizers", "adam", "--problems", "beale", "--no-tune", "--no-figures"
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "DEFAULT hyperparameters, not tuned (--no-tune)" in printed
    results = load(out)
    assert results["config"]["tune"] is False and "--no-tune" in results["config"]["command"]
    (record,) = results["results"]
    assert record["learning_rate"] == gradstep.REGISTRY["adam"].defaults["learning_rate"]
    assert "not tuned" in (out / "report.html").read_text()


def test_every_problem_name_is_reported(tmp_path):
    code, out = compare(
        tmp_path, "--optimizers", "sgd", "--problems", "all", "--no-figures", "--no-tune"
    )
    assert code == 0
    results = load(out)
    assert {r["problem"] for r in results["results"]} == set(problems.make_problems())
    for record in records(results):
        assert_finite_or_diverged(record)
    assert not list(out.glob("*.png"))


def test_a_seed_reproduces_a_run(tmp_path):
    seeded = [  # stochastic optimizers get the seed
        s.name
        for s in gradstep.REGISTRY
        if "stochastic" in s.capabilities
        and race.make_entries([s.name], {}, "numpy")[0].seed_argument
    ]
    names = ",".join(["adam", *seeded])
    args = ("--optimizers", names, "--problems", "rastrigin,mlp", "--no-figures", "--no-tune")
    runs = [load(compare(tmp_path, *args, "--seed", "3", name=f"r{i}")[1]) for i in range(2)]
    other = load(compare(tmp_path, *args, "--seed", "4", name="other")[1])

    def numbers(results):
        return [
            (r["problem"], r["optimizer"], r["status"], r["final"].get("loss"))
            + tuple(r["curve"]["loss"])
            for r in records(results)
        ]

    assert numbers(runs[0]) == numbers(runs[1])
    mlp = [n for n in numbers(other) if n[0] == "mlp"]
    assert mlp != [n for n in numbers(runs[0]) if n[0] == "mlp"]  # another split and init


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--optimizers", "adamm"],
            r"unknown optimizer 'adamm' \(did you mean adam.*\?\); valid optimizers: .*\badam\b",
        ),
        (
            ["--problems", "rosenbrok"],
            r"unknown problem 'rosenbrok' \(did you mean rosenbrock\?\); valid problems: .*beale",
        ),
        (
            ["--optimizers", "adam", "--set", "adam.learning_rate=-1"],
            r"adam.learning_rate=-1.*invalid learning_rate=-1; valid values: a number in \[0, inf",
        ),
        (
            ["--optimizers", "adam", "--set", "adam.beta1=1.5"],
            r"invalid beta1=1.5; valid values: a number in \[0, 1\)",
        ),
        (
            ["--optimizers", "adam", "--set", "adam.learnig_rate=0.1"],
            r"adam has no argument 'learnig_rate'; its arguments: learning_rate",
        ),
        (["--optimizers", "adam", "--set", "sgd.learning_rate=0.1"], "not in this race"),
        (["--optimizers", "adam", "--set", "adamm.learning_rate=0.1"], "unknown optimizer"),
        (["--optimizers", "adam", "--set", "learning_rate=0.1"], "OPTIMIZER.ARGUMENT=VALUE"),
        (["--steps", "0"], r"invalid --steps 0; valid values: an integer >= 1"),
        (["--out", "results.json/report"], "cannot write the report to --out"),
        (["--batch-size", "0"], r"invalid --batch-size 0"),
        (["--seeds", "0"], r"invalid --seeds 0; valid values: an integer in \[1, 20\]"),
        (["--from", "missing.json"], r"cannot read --from missing.json"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(tmp_path, capsys, args, message):
    (tmp_path / "results.json").write_text("{}")  # a file where --out wants a folder
    out = tmp_path / "never"
    if "--out" in args:
        args = [str(tmp_path / a) if a.startswith("results") else a for a in args]
    assert main(["compare", "--out", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradstep compare: ")
    assert re.search(message, err), err
    assert not out.exists()  # refused before any work


def test_default_selection_takes_a_dozen_registered_names():
    names = race.default_selection()
    assert names and len(names) <= race.DEFAULT_COUNT and len(set(names)) == len(names)
    assert all(n in gradstep.REGISTRY for n in names)
    assert names == [n for n in race.PREFERRED if n in names] + [
        n for n in names if n not in race.PREFERRED
    ]


def test_default_selection_falls_back_to_the_registry_order():
    class Spec:
        def __init__(self, name, capabilities=()):
            self.name, self.capabilities = name, frozenset(capabilities)
            self.required, self.test_hyperparams = (), {}

    few = [Spec("zeta"), Spec("adam"), Spec("omega")]
    assert race.default_selection(few) == ["adam", "zeta", "omega"]
    many = [Spec(f"opt{i}") for i in range(20)]
    assert race.default_selection(many) == [f"opt{i}" for i in range(race.DEFAULT_COUNT)]


def test_the_problem_names_in_the_help_are_the_problems():
    from gradstep.cli.compare import PROBLEM_NAMES

    assert PROBLEM_NAMES == tuple(problems.make_problems())


def test_a_run_the_fused_engine_fails_on_runs_eager_with_a_note(monkeypatch):
    real = race.run_numpy

    def fused_fails(problem, entry, steps, seed, engine, **kw):
        if engine != "eager":
            raise RuntimeError("\x1b[1mkernel did not compile\x1b[0m\nmore lines")
        return real(problem, entry, steps, seed, engine, **kw)

    monkeypatch.setattr(race, "run_numpy", fused_fails)
    (entry,) = race.make_entries(["adam"], {}, "numpy")
    beale = problems.make_problems()["beale"]
    run = race.run_one(beale, entry, steps=3, seed=0, backend="numpy", engine="auto")
    assert run.status == "ok" and run.engine == "eager"
    assert run.notes == [
        "the fused engine failed (RuntimeError: kernel did not compile); ran on the eager engine"
    ]
    run = race.run_one(beale, entry, steps=3, seed=0, backend="numpy", engine="fused")
    assert run.status == "error" and run.reason.startswith("RuntimeError: kernel did not compile")


def test_a_failing_optimizer_is_reported_and_the_race_goes_on():
    class Broken:
        name, capabilities, required, test_hyperparams, defaults = "broken", (), (), {}, {}
        ranges: dict = {}

        @staticmethod
        def factory(**kwargs):
            raise RuntimeError("no such luck")

    entry = race.Entry("broken", Broken, {})
    run = race.run_one(
        problems.make_problems()["beale"],
        entry,
        steps=3,
        seed=0,
        backend="numpy",
        engine="auto",
    )
    assert run.status == "error" and "no such luck" in run.reason


def test_optimizers_that_need_a_closure_race_or_are_skipped_with_a_reason(monkeypatch):
    beale = problems.make_problems()["beale"]
    closure_specs = [s for s in gradstep.REGISTRY if "needs_closure" in s.capabilities]
    for spec in closure_specs:
        (entry,) = race.make_entries([spec.name], {}, "numpy")
        run = race.run_one(beale, entry, steps=3, seed=0, backend="numpy", engine="auto")
        assert run.status in ("ok", "diverged"), run.reason
    # without a closure step on the front, they are skipped, with the reason
    monkeypatch.setattr(race, "closure_stepper", lambda backend: None)

    class Spec:
        name, capabilities, required, test_hyperparams = "needy", {"needs_closure"}, (), {}

    assert "closure" in race.skip_reason(Spec, "numpy")
    assert "needy" not in race.default_selection([Spec])

    class Exotic:
        name, capabilities, required, test_hyperparams = "exotic", {"telepathy"}, (), {}

    assert race.skip_reason(Exotic, "numpy") == (
        "gradstep compare cannot serve its capability telepathy"
    )
    (entry,) = race.make_entries(["adam"], {}, "numpy")
    entry.skip = race.skip_reason(Exotic, "numpy")
    run = race.run_one(beale, entry, steps=3, seed=0, backend="numpy", engine="auto")
    assert run.status == "skipped" and "telepathy" in run.reason


def test_numpy_gradients_equal_autograd():
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    for problem in problems.make_problems().values():
        params = problem.init(0)
        if problem.kind == "surface":
            params["xy"] = params["xy"] + np.array([0.13, -0.27])
        batch = problem.batches(2, 0)[1]
        loss, grads = problem.loss_and_grad(params, batch)
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        auto = problem.torch_loss(tensors, batch)
        auto.backward()
        assert loss == pytest.approx(auto.item(), rel=1e-12)
        for k in grads:
            np.testing.assert_allclose(grads[k], tensors[k].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_torch_backend_runs_the_same_race(tmp_path, capsys):
    args = (
        "--optimizers",
        "sgd,adam",
        "--problems",
        "rosenbrock,logistic",
        "--no-figures",
        "--no-tune",
    )
    try:
        from gradstep.torch import TransformOptimizer  # noqa: F401

        has_front = True
    except ImportError:
        has_front = False
    code, out = compare(tmp_path, *args, "--backend", "torch", name="torch")
    if not has_front:  # without torch or without the front: a clear refusal
        assert code == 2 and "--backend torch needs" in capsys.readouterr().err
        return
    assert code == 0
    _, ref = compare(tmp_path, *args, name="numpy")
    torch_runs = {(r["problem"], r["optimizer"]): r for r in load(out)["results"]}
    for r in records(load(ref)):
        t = torch_runs[r["problem"], r["optimizer"]]
        assert t["status"] == r["status"] == "ok"
        assert t["engine"] == "torch"
        np.testing.assert_allclose(t["curve"]["loss"], r["curve"]["loss"], rtol=1e-9)
