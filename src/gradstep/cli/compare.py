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
from ._arg_values import integer_in, non_empty
from ._compare_options import (
    check_animate,
    check_backend_options,
    check_problem_options,
    fill_race_defaults,
    refuse_race_options,
)

DESCRIPTION = (
    "Race optimizers, each with its learning rate tuned per problem, on small "
    "workloads (digits, ill-conditioned least squares; --full adds a conv net and a "
    "synthetic language model) and 2-D test functions; score "
    "them by an AlgoPerf-style performance profile; write a report: figures, "
    "results.json, results.csv and a single-file report.html."
)
PROBLEM_NAMES = (
    "logistic",
    "mlp",
    "lstsq",
    "conv",
    "text",
    "rosenbrock",
    "beale",
    "saddle",
    "rastrigin",
)
#: the problems of a run without --problems; --full adds the rest (the conv net and the
#: language model would double the default run's time)
DEFAULT_PROBLEMS = ("logistic", "mlp", "lstsq", "rosenbrock", "beale", "saddle", "rastrigin")
BACKENDS = ("numpy", "torch", "jax")
#: at most this many seeds per stochastic problem (--seeds)
MAX_SEEDS = 20
#: the largest --seed: a run's seeds (--seed up to --seed + 19) stay within the 63-bit
#: seeds that the library's stochastic rules take
MAX_SEED = 2**63 - MAX_SEEDS
#: what --quick, the default and --full set (each can be overridden by its own option)
PRESETS = {
    "quick": {"count": 6, "seeds": 1, "steps_scale": 0.5},
    "default": {"count": 8, "seeds": 3, "steps_scale": 1.0},
    "full": {"count": None, "seeds": 5, "steps_scale": 2.0},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--optimizers",
        default=None,
        metavar="NAMES",
        help="comma-separated registry names (any case), or 'all' "
        "(default: a representative eight; six with --quick, all with --full)",
    )
    parser.add_argument(
        "--problems",
        default=None,
        metavar="NAMES",
        help=f"comma-separated, from {', '.join(PROBLEM_NAMES)}, or 'all'; default all "
        "but conv and text (--full: all)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.ARG=VALUE",
        help="override a hyperparameter, e.g. adam.learning_rate=0.01 (repeatable); a set "
        "learning rate is the centre of the sweep",
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick",
        action="store_true",
        help="six optimizers, one seed, half the steps, 3+2 learning-rate trials",
    )
    preset.add_argument(
        "--full",
        action="store_true",
        help="every registered optimizer, five seeds, twice the steps, 7+3 trials",
    )
    parser.add_argument(
        "--no-tune",
        action="store_true",
        help="race every optimizer at its default learning rate (labelled as such)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per stochastic problem (default 3; 1 with --quick, 5 with --full)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per run for every problem (default per problem: 150, but 100 "
        "for logistic; halved by --quick, doubled by --full)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch size (data)")
    parser.add_argument(
        "--seed",
        type=integer_in(0, MAX_SEED),
        default=None,
        help="first seed of splits, batches, inits (default 0)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="numpy: gradstep.Optimizer (default); torch: gradstep.torch with autograd "
        "gradients; jax: gradstep.jax.to_optax under jax.jit (NumPy gradients)",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "fused", "eager"),
        default=None,
        help="engine of the NumPy and torch fronts (default eager: on these small "
        "problems its per-step cost is lower than the fused kernels' and nothing is "
        "compiled; both run the same rules)",
    )
    parser.add_argument(
        "--out", type=non_empty("a folder path"), default="gradstep-report", help="report folder"
    )
    parser.add_argument(
        "--from",
        dest="from_json",
        type=non_empty("the path of a results.json"),
        default=None,
        metavar="RESULTS_JSON",
        help="re-render the report of an earlier run from its results.json, without racing "
        "(only --out, --animate, --no-figures and --no-progress apply)",
    )
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
    if backend == "jax":
        from ._compare_jax import available

        reason = available()
        if reason:
            raise race.BackendUnavailable(reason)
        return
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


def preset_name(args) -> str:
    return "quick" if args.quick else "full" if args.full else "default"


def _check_numbers(args) -> None:
    for option, value in (("--steps", args.steps), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise race.InputError(f"invalid {option} {value}; valid values: an integer >= 1")
    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        raise race.InputError(
            f"invalid --seeds {args.seeds}; valid values: an integer in [1, {MAX_SEEDS}]"
        )


def command_line(args: argparse.Namespace, names: list[str], problems: list[str]) -> str:
    """The command that repeats this run."""
    words = ["gradstep", "compare", "--optimizers", ",".join(names)]
    words += ["--problems", ",".join(problems), "--seed", str(args.seed)]
    if args.quick or args.full:
        words.append("--quick" if args.quick else "--full")
    for option in ("steps", "batch_size", "seeds"):
        value = getattr(args, option)
        if value is not None:
            words += ["--" + option.replace("_", "-"), str(value)]
    for item in args.set:
        words += ["--set", item]
    if args.no_tune:
        words.append("--no-tune")
    if args.backend != "numpy":
        words += ["--backend", args.backend]
    if args.engine != "eager":
        words += ["--engine", args.engine]
    if args.animate:
        words.append("--animate")
    return " ".join(shlex.quote(w) for w in words)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except race.InputError as error:
        print(f"gradstep compare: {error}", file=sys.stderr)
        return 2


def _figures_available(args) -> None:
    if args.no_figures:
        return
    try:
        import matplotlib  # noqa: F401
        import PIL  # noqa: F401
    except ImportError:
        raise race.InputError(
            "gradstep compare draws figures with matplotlib: pip install 'gradstep[cli]' "
            "(or pass --no-figures)"
        ) from None


def _out_folder(args) -> Path:
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise race.InputError(f"cannot write the report to --out {args.out}: {error}") from None
    return out


def _run(args: argparse.Namespace) -> int:
    from . import _compare_report as report

    if args.from_json:
        refuse_race_options(args)
        try:
            results = report.read_json(Path(args.from_json))
        except (OSError, ValueError, KeyError) as error:
            raise race.InputError(f"cannot read --from {args.from_json}: {error}") from None
        check_animate(args, list(results["config"]["problems"]))
        _figures_available(args)
        return render(results, _out_folder(args), args, started=time.perf_counter())
    return _race(args)


def _race(args: argparse.Namespace) -> int:
    import gradstep

    from . import _compare_problems as problems_module
    from . import _compare_report as report
    from . import _compare_tune as tuning

    _check_numbers(args)
    check_animate(args, None)
    check_backend_options(args)
    fill_race_defaults(args)
    check_backend(args.backend)
    preset = PRESETS[preset_name(args)]
    points, extra = tuning.BUDGETS[preset_name(args)]
    tuned = not args.no_tune
    seeds_per = args.seeds or preset["seeds"]
    all_problems = problems_module.make_problems()
    default_problems = PROBLEM_NAMES if args.full else DEFAULT_PROBLEMS
    problem_names = race.parse_names(
        args.problems, list(all_problems), "problem", list(default_problems)
    )
    names = race.parse_names(
        args.optimizers,
        gradstep.REGISTRY.names(),
        "optimizer",
        race.default_selection(backend=args.backend, count=preset["count"] or 10**6),
    )
    if not names:
        raise race.InputError("no optimizer to race")
    sets = race.parse_sets(args.set, names)
    entries = race.make_entries(names, sets, args.backend)
    problems = [all_problems[n] for n in problem_names]
    check_problem_options(args, problems, all_problems)
    check_animate(args, problem_names)
    steps = {
        p.name: args.steps or max(10, round(p.steps * preset["steps_scale"])) for p in problems
    }
    seeds = {
        p.name: [args.seed + i for i in range(seeds_per if p.stochastic else 1)] for p in problems
    }
    for p in problems:
        if p.kind == "data":
            p.split_seed = args.seed
            if args.batch_size is not None:
                p.batch_size = args.batch_size
    try:
        for p in problems:  # load the data before the race starts
            p.init(args.seed)
    except RuntimeError as error:
        raise race.InputError(str(error)) from None
    _figures_available(args)
    out = _out_folder(args)
    total = sum(
        len(entries) * tuning.units(tuned, len(seeds[p.name]), points, extra) for p in problems
    )
    progress = Progress(total, enabled=not args.no_progress)
    budget = f"{points}+{extra} learning-rate trials each" if tuned else "DEFAULT hyperparameters"
    print(
        f"gradstep compare: {len(entries)} optimizers x {len(problems)} problems, "
        f"{budget}, {seeds_per} seed{'s' if seeds_per > 1 else ''} per stochastic problem, "
        f"backend {args.backend}"
    )
    started = time.perf_counter()
    runs_by_problem = {}
    try:
        with race.single_threaded():
            for p in problems:
                runs = []
                for entry in entries:
                    progress.set(f"{entry.name} on {p.name}")
                    runs.append(
                        tuning.race_pair(
                            p,
                            entry,
                            steps=steps[p.name],
                            seeds=seeds[p.name],
                            backend=args.backend,
                            engine=args.engine,
                            tuned=tuned,
                            points=points,
                            extra=extra,
                            tick=progress.advance,
                        )
                    )
                runs_by_problem[p.name] = runs
    finally:
        progress.close()
    race_s = time.perf_counter() - started
    config = {
        "command": command_line(args, names, problem_names),
        "preset": preset_name(args),
        "optimizers": names,
        "problems": problem_names,
        "backend": args.backend,
        "engine": args.engine if args.backend in ("numpy", "torch") else None,
        "seed": args.seed,
        "seeds": seeds,
        "tune": tuned,
        "tuning_budget": {"grid_points": points, "extra_trials": extra} if tuned else None,
        "steps": steps,
        "batch_size": {p.name: p.batch_size for p in problems if p.kind == "data"},
        "sets": sets,
        "divergence": f"loss or a parameter not finite, or loss > {race.DIVERGENCE_FACTOR:g} "
        "x max(1, starting loss)",
        "race_s": race_s,
    }
    hyper = {e.name: race.public_hyperparams(e) for e in entries}
    results = report.build_results(config, problems, runs_by_problem, hyper)
    report.write_json(results, out / "results.json")
    # the report is drawn from what results.json holds, as --from draws it
    return render(report.read_json(out / "results.json"), out, args, started=started)


def render(results: dict, out: Path, args, started: float) -> int:
    """Print the leaderboard and write the report from a results.json's content."""
    from . import _compare_plots as plots
    from . import _compare_problems as problems_module
    from . import _compare_report as report

    problems, runs_by_problem = report.from_results(results, problems_module.make_problems())
    print(report.terminal_report(results, problems, runs_by_problem))
    report.write_csv(results, out / "results.csv")
    if args.from_json:
        report.write_json(results, out / "results.json")
    figures = []
    if not args.no_figures:
        figures = plots.draw_all(
            results,
            problems,
            runs_by_problem,
            results["config"]["optimizers"],
            out,
            animate=args.animate,
        )
    from . import _compare_html

    _compare_html.write_html(results, problems, runs_by_problem, figures, out / "report.html")
    total = time.perf_counter() - started
    also = "results.json, results.csv" + (", figures" if figures else "")
    print(f"\nwrote {out / 'report.html'} ({also} in {out}) in {total:.1f} s")
    return 0
