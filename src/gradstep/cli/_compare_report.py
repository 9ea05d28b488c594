"""What ``gradstep compare`` records and prints: ``results.json`` (and back, for
``--from``), ``results.csv``, the per-problem tables, the overall leaderboard and a
summary in words. The HTML page is :mod:`._compare_html`."""

from __future__ import annotations

import csv
import datetime
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

import gradstep

from . import _compare_race as race
from . import _compare_score as score

CURVE_POINTS = 1000  # paths longer than this are thinned in results.json

# -- one optimizer on one problem, over its seeds ----------------------------------------


def _median(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def aggregate(run) -> dict[str, Any]:
    """The numbers the tables show for one optimizer on one problem: ``ok`` when every
    seed finished, the median steps to target over the seeds, medians and spread."""
    seeds = run.seeds
    ok = all(r.status == "ok" for r in seeds)
    monitored = [r.monitored for r in seeds]
    out = {
        "optimizer": run.optimizer,
        "ok": ok,
        "time": score.median_steps([r.steps_to_target for r in seeds]),
        "loss": _median(monitored) if ok else None,
        "spread": (min(monitored), max(monitored)) if ok and len(seeds) > 1 else None,
        "seeds": len(seeds),
        "reached": sum(r.steps_to_target is not None for r in seeds),
    }
    for key in ("test_loss", "test_accuracy", "loss"):
        out["final_" + key] = _median([r.final.get(key) for r in seeds]) if ok else None
    return out


def problem_table(problem, runs) -> list[tuple[Any, dict]]:
    """``(run, aggregate)`` pairs of one problem, best first."""
    by_name = {r.optimizer: r for r in runs}
    order = score.problem_order([aggregate(r) for r in runs])
    return [(by_name[a["optimizer"]], a) for a in order]


def overall(problems, runs_by_problem) -> list[dict]:
    """The leaderboard over the scored problems (the race, not the 2-D gallery)."""
    scored = [p for p in problems if p.scored] or list(problems)
    return score.leaderboard(
        {p.name: [aggregate(r) for r in runs_by_problem[p.name]] for p in scored}
    )


# -- formatting -------------------------------------------------------------------------


def num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits + 1}g}"
    return f"{value:.{digits - 1}e}"


def status(run) -> str:
    bad = [r for r in run.seeds if r.status != "ok"]
    if not bad:
        flagged = run.tuning and run.tuning.get("edge")
        return "ok" + (" (lr at grid edge)" if flagged else "") + (" *" if run.notes else "")
    first = bad[0]
    of = f" ({len(bad)}/{len(run.seeds)} seeds)" if len(run.seeds) > 1 else ""
    if first.status == "diverged":
        return f"DIVERGED@{first.diverged_at}{of}"
    reason = first.reason.splitlines()[0] if first.reason else ""
    reason = reason if len(reason) <= 70 else reason[:67] + "..."
    return f"{first.status}{of}: {reason}"


def lr_text(run) -> str:
    if run.learning_rate is not None:
        return f"{run.learning_rate:.3g}"
    return run.schedule or "-"


def table_rows(problem, runs) -> tuple[list[str], list[list[str]], list[bool]]:
    data = problem.kind == "data"
    head = ["#", "optimizer", f"steps to {problem.target:g}", "val loss" if data else "final"]
    if data:
        head += ["spread", "test loss"]
        if any(r.final.get("test_accuracy") is not None for r in runs):
            head.append("test acc")
    head += ["lr", "status"]
    rows, bad = [], []
    for place, (run, a) in enumerate(problem_table(problem, runs), start=1):
        time = a["time"]
        reached = "-" if not math.isfinite(time) else f"{time:g}"
        if a["seeds"] > 1:
            reached += f" ({a['reached']}/{a['seeds']})"
        row = [str(place) if a["ok"] else "-", run.optimizer, reached, num(a["loss"])]
        if data:
            spread = a["spread"]
            row += ["-" if spread is None else f"{num(spread[0])}..{num(spread[1])}"]
            row += [num(a["final_test_loss"])]
            if "test acc" in head:
                acc = a["final_test_accuracy"]
                row.append("-" if acc is None else f"{100 * acc:.1f}%")
        row += [lr_text(run), status(run)]
        rows.append(row)
        bad.append(not a["ok"])
    return head, rows, bad


def format_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    left = {1, len(head) - 1}

    def line(cells):
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def leaderboard_rows(results, problems) -> tuple[list[str], list[list[str]]]:
    scored = [p.name for p in problems if p.scored] or [p.name for p in problems]
    n = len(scored)
    head = ["#", "optimizer", "score", "solved", "finished", *scored]
    rows = [
        [
            str(i),
            r["optimizer"],
            f"{r['score']:.3f}",
            f"{r['solved']}/{n}",
            f"{r['finished']}/{n}",
            *[str(r["ranks"].get(p, "-")) for p in scored],
        ]
        for i, r in enumerate(results["leaderboard"], start=1)
    ]
    return head, rows


def mode_line(cfg: dict) -> str:
    if cfg["tune"]:
        b = cfg["tuning_budget"]
        how = (
            f"learning rates TUNED per problem ({b['grid_points']} grid points + "
            f"{b['extra_trials']} widening/refining trials each, selected on validation)"
        )
    else:
        how = "DEFAULT hyperparameters, not tuned (--no-tune)"
    seeds = max(len(s) for s in cfg["seeds"].values())
    return f"{how}; {seeds} seed(s) per stochastic problem; backend {cfg['backend']}"


def terminal_report(results, problems, runs_by_problem) -> str:
    cfg = results["config"]
    parts = [f"\n{mode_line(cfg)}"]
    for p in problems:
        role = "" if p.scored else " (gallery: not scored)"
        parts.append(
            f"\n{p.title} [{p.name}]{role}: {cfg['steps'][p.name]} steps, target {p.target:g}"
        )
        head, rows, _ = table_rows(p, runs_by_problem[p.name])
        parts.append(format_table(head, rows))
    parts.append(
        f"\nOverall: performance-profile score (area under rho(tau), tau 1..{score.TAU_MAX:g}, "
        "normalised) over the scored problems; columns: rank per problem"
    )
    parts.append(format_table(*leaderboard_rows(results, problems)))
    parts.append("\n" + results["summary"])
    notes = notes_of(problems, runs_by_problem)
    if notes:
        parts.append("\nNotes (marked * in the tables):")
        parts.append("\n".join(f"* {n}" for n in notes))
    return "\n".join(parts)


def notes_of(problems, runs_by_problem) -> list[str]:
    out = []
    for p in problems:
        for run in runs_by_problem[p.name]:
            for note in run.notes:
                text = f"{run.optimizer}: {note}"
                if text not in out:
                    out.append(text)
    return out


def summary(config, problems, runs_by_problem, board) -> str:
    """A few generated sentences: who leads, who solved what, rates, flags, failures."""
    scored = [p for p in problems if p.scored] or list(problems)
    mode = "tuned learning rates" if config["tune"] else "default hyperparameters (not tuned)"
    out = [f"With {mode}, over {len(scored)} scored problem(s):"]
    if board:
        top = board[0]
        out.append(
            f"{top['optimizer']} leads with a profile score of {top['score']:.2f}, solving "
            f"{top['solved']} of {len(scored)}."
        )
    for p in scored:
        table = problem_table(p, runs_by_problem[p.name])
        solved = [r.optimizer for r, a in table if math.isfinite(a["time"])]
        if solved:
            best, a = table[0]
            out.append(
                f"On {p.name}, {len(solved)} reached the target; fastest {best.optimizer} "
                f"({a['time']:g} steps, lr {num(best.learning_rate)})."
            )
        else:
            out.append(f"On {p.name}, no optimizer reached the target {p.target:g}.")
    failed = sorted(
        {
            f"{r.optimizer} on {r.problem}"
            for p in problems
            for r in runs_by_problem[p.name]
            if any(s.status != "ok" for s in r.seeds)
        }
    )
    if failed:
        out.append("Did not finish: " + ", ".join(failed) + ".")
    edges = sorted(
        {
            f"{r.optimizer} on {r.problem}"
            for p in problems
            for r in runs_by_problem[p.name]
            if r.tuning and r.tuning.get("edge")
        }
    )
    if edges:
        out.append("Learning rate at the edge of its sweep: " + ", ".join(edges) + ".")
    return " ".join(out)


# -- results.json / results.csv ----------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite numbers become null, arrays lists."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _thin(n: int) -> np.ndarray:
    if not n:
        return np.array([], int)
    return np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int))


RUN_FIELDS = (
    "status",
    "reason",
    "learning_rate",
    "steps",
    "steps_to_target",
    "diverged_at",
    "wall_s",
    "step_s",
    "engine",
    "evaluations",
    "notes",
    "tuning",
    "seed",
    "schedule",
)


def run_record(run) -> dict:
    record = {"optimizer": run.optimizer, "problem": run.problem}
    record.update({k: getattr(run, k) for k in RUN_FIELDS})
    record["final"] = dict(run.final)
    record["curve"] = {"step": list(run.curve_steps), "loss": list(run.curve_loss)}
    if run.path is not None:
        record["path"] = run.path[_thin(len(run.path))]
    if run.replicas:
        record["replicas"] = [run_record(r) for r in run.replicas]
    return record


def record_run(record: dict):
    """A :class:`Run` back from its record."""
    run = race.Run(record["optimizer"], record["problem"])
    for k in RUN_FIELDS:
        if k in record and record[k] is not None:
            setattr(run, k, record[k])
    run.reason = record.get("reason") or ""
    run.final = {k: (math.nan if v is None else v) for k, v in record.get("final", {}).items()}
    run.curve_steps = list(record["curve"]["step"])
    run.curve_loss = [math.nan if v is None else v for v in record["curve"]["loss"]]
    if record.get("path") is not None:
        run.path = np.array(record["path"], dtype=np.float64)
    run.replicas = [record_run(r) for r in record.get("replicas", [])]
    return run


def _versions(backend: str) -> dict[str, str]:
    out = {"gradstep": gradstep.__version__, "python": platform.python_version()}
    out["numpy"] = np.__version__
    for name in ("torch", "jax", "matplotlib"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


def build_results(config, problems, runs_by_problem, hyperparams_by_name) -> dict:
    board = overall(problems, runs_by_problem)
    return _clean(
        {
            "format": "gradstep-compare/2",
            "versions": _versions(config["backend"]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "config": config,
            "problems": {
                p.name: {**p.info(), "scored": p.scored, "stochastic": p.stochastic}
                for p in problems
            },
            "optimizers": {
                n: {
                    "hyperparams": h,
                    "family": gradstep.REGISTRY[n].family,
                    "summary": gradstep.REGISTRY[n].summary,
                }
                for n, h in hyperparams_by_name.items()
            },
            "scoring": {
                "target": "first recorded step after which the monitored loss (validation "
                "loss on data, smoothed over "
                f"{score.SMOOTHING} points on stochastic problems) stays at or below the target",
                "time": "median over seeds of the steps to target; a seed that never "
                "reaches it counts as infinite",
                "tau_max": score.TAU_MAX,
            },
            "summary": summary(config, problems, runs_by_problem, board),
            "leaderboard": board,
            "results": [run_record(run) for p in problems for run in runs_by_problem[p.name]],
        }
    )


class ProblemView:
    """A problem as results.json describes it, its functions (for the contour plots)
    taken from the live problem of the same name."""

    def __init__(self, name: str, info: dict, live: Any):
        self.name, self._info, self._live = name, info, live
        self.title = info["title"]
        self.kind = info["kind"]
        self.description = info["description"]
        self.target = info["target_loss"]
        self.scored = info.get("scored", self.kind == "data")
        self.stochastic = info.get("stochastic", self.kind == "data")

    def info(self) -> dict:
        return dict(self._info)

    def __getattr__(self, attr: str):
        return getattr(self._live, attr)


def from_results(results: dict, live_problems: dict) -> tuple[list, dict]:
    """The problems and runs of a results.json, to draw the report from."""
    problems = [
        ProblemView(name, info, live_problems.get(name))
        for name, info in results["problems"].items()
    ]
    runs_by_problem: dict[str, list] = {p.name: [] for p in problems}
    for record in results["results"]:
        runs_by_problem[record["problem"]].append(record_run(record))
    return problems, runs_by_problem


def to_json(value: Any, indent: str = "") -> str:
    """Indented JSON with every list of numbers (curves, paths) on one line."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(
        value, allow_nan=False, separators=(",", ":") if isinstance(value, list) else None
    )


def write_json(results: dict, path: Path) -> None:
    path.write_text(to_json(results) + "\n")


def read_json(path: Path) -> dict:
    results = json.loads(path.read_text())
    if results.get("format") != "gradstep-compare/2":
        raise ValueError("not a results.json of this gradstep compare (format gradstep-compare/2)")
    return results


CSV_COLUMNS = (
    "problem",
    "optimizer",
    "seed",
    "status",
    "learning_rate",
    "steps_to_target",
    "val_loss",
    "loss",
    "test_loss",
    "test_accuracy",
    "steps",
    "diverged_at",
    "wall_s",
    "engine",
    "reason",
)


def write_csv(results: dict, path: Path) -> None:
    """One row per run and seed."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for top in results["results"]:
            for r in [top, *top.get("replicas", [])]:
                merged = {**r, **(r.get("final") or {})}
                writer.writerow(["" if merged.get(c) is None else merged[c] for c in CSV_COLUMNS])
