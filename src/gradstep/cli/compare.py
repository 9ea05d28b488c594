"""``gradstep compare``: race optimizers on test functions and real data, show the result.

Every optimizer (a representative dozen from the registry by default) runs on every
problem (2-D test functions and classifiers on scikit-learn's bundled digits) from
the same start, with the same mini-batches; then a leaderboard is printed and a
report written: PNG figures (paths over contour plots, loss curves), ``results.json``,
``results.csv`` and a single-file ``report.html``. ``--animate`` adds a GIF.

Runs use each optimizer's factory defaults (a required argument takes the registry's
test value), ``--set NAME.ARG=VALUE`` overrides, or ``--tune``: a learning-rate sweep
per optimizer and problem that keeps the rate with the lowest final training loss.
A run whose loss or parameters stop being finite, or whose loss grows a million-fold,
is marked diverged and the race goes on.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from . import _compare_race as race

DESCRIPTION = (
    "Race optimizers on 2-D test functions and on real data (scikit-learn's digits), print "
    "a leaderboard and write a report: figures, results.json, results.csv and a "
    "single-file report.html."
)
PROBLEM_NAMES = ("rosenbrock", "beale", "saddle", "rastrigin", "logistic", "mlp")
BACKENDS = ("numpy", "torch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--optimizers",
        default="",
        metavar="NAMES",
        help="comma-separated registry names, or 'all' (default: a representative dozen)",
    )
    parser.add_argument(
        "--problems",
        default="all",
        metavar="NAMES",
        help=f"comma-separated, from {', '.join(PROBLEM_NAMES)}; default all",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.ARG=VALUE",
        help="override a hyperparameter, e.g. adam.learning_rate=0.01 (repeatable)",
    )
    parser.add_argument(
        "--tune", action="store_true", help="sweep the learning rate per optimizer and problem"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per run for every problem (default: 1000 on the 2-D functions, "
        "300 logistic, 500 mlp)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch size (data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of splits, batches and inits")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="numpy",
        help="numpy: gradstep.Optimizer, NumPy gradients (default); "
        "torch: gradstep.torch, autograd gradients",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "fused", "eager"),
        default="auto",
        help="engine of the NumPy front (default auto: fused where it can)",
    )
    parser.add_argument("--out", default="gradstep-report", help="report folder")
    parser.add_argument("--animate", action="store_true", help="also write trajectories.gif")
    parser.add_argument(
        "--no-figures", action="store_true", help="numbers only: no PNG/GIF (report.html without)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True, width: int = 28):
        self.total, self.done, self.width = max(total, 1), 0, width
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.start = time.perf_counter()
        self.label = ""
        self._last_percent = -1

    def set(self, label: str) -> None:
        self.label = label
        self._draw()

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        frac = self.done / self.total
        elapsed = time.perf_counter() - self.start
        if self.tty:
            bar = "#" * int(frac * self.width)
            text = f"\r[{bar:<{self.width}}] {100 * frac:3.0f}% {elapsed:5.1f}s {self.label}"
            sys.stderr.write(text[:110].ljust(110))
            sys.stderr.flush()
        elif int(10 * frac) != self._last_percent:  # every 10% in logs
            self._last_percent = int(10 * frac)
            sys.stderr.write(f"[{100 * frac:3.0f}%] {elapsed:5.1f}s {self.label}\n")

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 110 + "\r")
            sys.stderr.flush()


def check_backend(backend: str) -> None:
    if backend != "torch":
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        raise race.BackendUnavailable(
            "--backend torch needs PyTorch: pip install 'gradstep[torch]'"
        ) from None
    try:
        from gradstep.torch import TransformOptimizer  # noqa: F401
    except ImportError as error:
        raise race.BackendUnavailable(
            f"--backend torch needs gradstep.torch.TransformOptimizer, which this "
            f"gradstep does not provide ({error}); use --backend numpy"
        ) from None


def _check_numbers(args) -> None:
    if args.steps is not None and args.steps < 1:
        raise race.InputError(f"invalid --steps {args.steps}; valid values: an integer >= 1")
    if args.batch_size < 1:
        raise race.InputError(
            f"invalid --batch-size {args.batch_size}; valid values: an integer >= 1"
        )


def command_line(args: argparse.Namespace, names: list[str], problems: list[str]) -> str:
    """The command that repeats this run."""
    words = ["gradstep", "compare", "--optimizers", ",".join(names)]
    words += ["--problems", ",".join(problems), "--seed", str(args.seed)]
    if args.steps is not None:
        words += ["--steps", str(args.steps)]
    if args.batch_size != 128:
        words += ["--batch-size", str(args.batch_size)]
    for item in args.set:
        words += ["--set", item]
    if args.tune:
        words.append("--tune")
    if args.backend != "numpy":
        words += ["--backend", args.backend]
    if args.engine != "auto":
        words += ["--engine", args.engine]
    return " ".join(shlex.quote(w) for w in words)


def race_problem(problem, entries, args, progress) -> list:
    """Every optimizer on one problem, in order."""
    steps = args.steps or problem.steps
    common = dict(steps=steps, seed=args.seed, backend=args.backend, engine=args.engine)
    runs = []
    for entry in entries:
        progress.set(f"{entry.name} on {problem.name}")
        if args.tune:
            runs.append(race.tune(problem, entry, tick=progress.advance, **common))
        else:
            runs.append(race.run_one(problem, entry, **common))
            progress.advance()
    return runs


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except race.InputError as error:
        print(f"gradstep compare: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import gradstep

    from . import _compare_problems as problems_module

    _check_numbers(args)
    check_backend(args.backend)
    all_problems = problems_module.make_problems()
    problem_names = race.parse_names(args.problems, list(all_problems), "problem", PROBLEM_NAMES)
    names = race.parse_names(
        args.optimizers,
        gradstep.REGISTRY.names(),
        "optimizer",
        race.default_selection(backend=args.backend),
    )
    if not names:
        raise race.InputError("no optimizer to race")
    sets = race.parse_sets(args.set, names)
    entries = race.make_entries(names, sets, args.backend)
    problems = [all_problems[n] for n in problem_names]
    for p in problems:
        if p.kind == "data":
            p.batch_size = args.batch_size
    try:
        for p in problems:  # load the data before the race starts
            p.init(args.seed)
    except RuntimeError as error:
        raise race.InputError(str(error)) from None
    if not args.no_figures:
        try:
            import matplotlib  # noqa: F401
            import PIL  # noqa: F401
        except ImportError:
            raise race.InputError(
                "gradstep compare draws figures with matplotlib: pip install 'gradstep[cli]' "
                "(or pass --no-figures)"
            ) from None

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise race.InputError(f"cannot write the report to --out {args.out}: {error}") from None
    per_run = len(race.TUNE_FACTORS) if args.tune else 1
    progress = Progress(len(problems) * len(entries) * per_run, enabled=not args.no_progress)
    print(
        f"gradstep compare: {len(entries)} optimizers x {len(problems)} problems, "
        f"backend {args.backend}, seed {args.seed}"
        + (", tuning the learning rate" if args.tune else "")
    )
    started = time.perf_counter()
    runs_by_problem = {}
    try:
        with race.single_threaded():
            for p in problems:
                runs_by_problem[p.name] = race_problem(p, entries, args, progress)
    finally:
        progress.close()
    race_s = time.perf_counter() - started

    from . import _compare_plots as plots
    from . import _compare_report as report

    print(report.terminal_report(problems, runs_by_problem))
    config = {
        "command": command_line(args, names, problem_names),
        "optimizers": names,
        "problems": problem_names,
        "backend": args.backend,
        "engine": args.engine if args.backend == "numpy" else None,
        "seed": args.seed,
        "tune": args.tune,
        "tune_factors": list(race.TUNE_FACTORS) if args.tune else None,
        "steps": {p.name: args.steps or p.steps for p in problems},
        "batch_size": args.batch_size,
        "sets": sets,
        "divergence": f"loss or a parameter not finite, or loss > {race.DIVERGENCE_FACTOR:g} "
        "x max(1, starting loss)",
        "race_s": race_s,
    }
    hyper = {e.name: race.public_hyperparams(e) for e in entries}
    results = report.build_results(config, problems, runs_by_problem, hyper)
    report.write_json(results, out / "results.json")
    report.write_csv(results, out / "results.csv")
    figures = []
    if not args.no_figures:
        figures = plots.draw_all(problems, runs_by_problem, names, out, animate=args.animate)
    report.write_html(results, problems, runs_by_problem, figures, out / "report.html")
    total = time.perf_counter() - started
    also = "results.json, results.csv" + (", figures" if figures else "")
    print(f"\nwrote {out / 'report.html'} ({also} in {out}) in {total:.1f} s")
    return 0
