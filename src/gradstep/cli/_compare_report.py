"""What ``gradstep compare`` writes: the terminal leaderboard, ``results.json``,
``results.csv`` and a single-file ``report.html`` with the figures embedded."""

from __future__ import annotations

import base64
import csv
import datetime
import html
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

import gradstep

CURVE_POINTS = 400  # curves and paths in results.json are thinned to about this many points

# -- ranking and formatting -------------------------------------------------------------


def rank(problem, runs: list) -> list:
    """Runs best first: data problems by test accuracy, then training loss; functions by
    final value. Diverged, failed and skipped runs come last, in race order."""

    def key(run):
        if run.status != "ok":
            return (1, 0.0, 0.0)
        loss = run.final.get("loss", math.inf)
        if problem.kind == "data":
            return (0, -run.final.get("test_accuracy", 0.0), loss)
        return (0, loss, 0.0)

    return sorted(runs, key=key)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits + 1}g}"
    return f"{value:.{digits - 1}e}"


def _lr(run) -> str:
    return "-" if run.learning_rate is None else f"{run.learning_rate:.3g}"


def _status(run) -> str:
    if run.status == "ok":
        return "ok" + ("" if not run.notes else " *")
    if run.status == "diverged":
        return f"DIVERGED@{run.diverged_at}"
    reason = run.reason.splitlines()[0] if run.reason else ""
    reason = reason if len(reason) <= 70 else reason[:67] + "..."
    return f"{run.status}: {reason}"


def leaderboard_rows(problem, runs: list) -> tuple[list[str], list[list[str]]]:
    head = ["#", "optimizer", "final loss"]
    if problem.kind == "data":
        head += ["test acc", "test loss"]
    head += [f"steps to {problem.target:g}", "lr", "wall s", "status"]
    rows = []
    for i, run in enumerate(rank(problem, runs), start=1):
        row = [str(i) if run.status == "ok" else "-", run.optimizer, _num(run.final_loss)]
        if problem.kind == "data":
            acc = run.final.get("test_accuracy") if run.status == "ok" else None
            row += [
                "-" if acc is None else f"{100 * acc:.1f}%",
                _num(run.final.get("test_loss") if run.status == "ok" else None),
            ]
        row += [
            "-" if run.steps_to_target is None else str(run.steps_to_target),
            _lr(run),
            "-" if run.status in ("skipped", "error") else f"{run.wall_s:.2f}",
            _status(run),
        ]
        rows.append(row)
    return head, rows


def format_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    right = {0, 2, 3, 4, 5, 6, 7} - {len(head) - 1, 1}

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def mean_ranks(problems, runs_by_problem) -> list[tuple[str, float, int]]:
    """``(optimizer, mean rank, problems finished)`` over the problems; a run that did not
    finish counts as last place."""
    places: dict[str, list[int]] = {}
    finished: dict[str, int] = {}
    for p in problems:
        runs = runs_by_problem[p.name]
        for i, run in enumerate(rank(p, runs), start=1):
            ok = run.status == "ok"
            places.setdefault(run.optimizer, []).append(i if ok else len(runs))
            finished[run.optimizer] = finished.get(run.optimizer, 0) + ok
    out = [(n, sum(v) / len(v), finished[n]) for n, v in places.items()]
    return sorted(out, key=lambda t: (t[1], -t[2]))


def terminal_report(problems, runs_by_problem) -> str:
    parts = []
    for p in problems:
        steps = max((r.steps for r in runs_by_problem[p.name]), default=0)
        parts.append(f"\n{p.title} [{p.name}]: {steps} steps, target loss {p.target:g}")
        parts.append(format_table(*leaderboard_rows(p, runs_by_problem[p.name])))
    if len(problems) > 1:
        parts.append(f"\nOverall: mean rank over {len(problems)} problems")
        rows = [
            [str(i), n, f"{m:.2f}", f"{f}/{len(problems)}"]
            for i, (n, m, f) in enumerate(mean_ranks(problems, runs_by_problem), start=1)
        ]
        parts.append(format_table(["#", "optimizer", "mean rank", "finished"], rows))
    notes = _notes(problems, runs_by_problem)
    if notes:
        parts.append("\nNotes (marked * in the tables):")
        parts.append("\n".join(f"* {n}" for n in notes))
    return "\n".join(parts)


def _notes(problems, runs_by_problem) -> list[str]:
    out = []
    for p in problems:
        for run in runs_by_problem[p.name]:
            for note in run.notes:
                text = f"{run.optimizer}: {note}"
                if text not in out:
                    out.append(text)
    return out


# -- results.json / results.csv -----------------------------------------------------------


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
    return (
        np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int))
        if n
        else np.array([], int)
    )


def run_record(problem, run, hyperparams: dict) -> dict:
    keep = _thin(len(run.curve_steps))
    used = dict(hyperparams)
    if run.learning_rate is not None and "learning_rate" in used:  # tuned
        used["learning_rate"] = run.learning_rate
    record = {
        "optimizer": run.optimizer,
        "problem": run.problem,
        "status": run.status,
        "diverged": run.status == "diverged",
        "reason": run.reason or None,
        "final_loss": run.final_loss,
        "test_accuracy": run.final.get("test_accuracy") if run.status == "ok" else None,
        "test_loss": run.final.get("test_loss") if run.status == "ok" else None,
        "train_accuracy": run.final.get("train_accuracy") if run.status == "ok" else None,
        "best_loss": min(run.curve_loss) if run.curve_loss else None,
        "target_loss": problem.target,
        "steps_to_target": run.steps_to_target,
        "steps": run.steps,
        "diverged_at": run.diverged_at,
        "wall_s": run.wall_s if run.status in ("ok", "diverged") else None,
        "optimizer_step_s": run.step_s if run.status in ("ok", "diverged") else None,
        "engine": run.engine or None,
        "learning_rate": run.learning_rate,
        "hyperparams": used,
        "gradient_evaluations": run.evaluations,
        "tuning": run.tuning,
        "notes": run.notes,
        "curve": {
            "step": [run.curve_steps[i] for i in keep],
            "loss": [run.curve_loss[i] for i in keep],
        },
    }
    if run.path is not None:
        record["path"] = run.path[_thin(len(run.path))]
    return _clean(record)


def build_results(config, problems, runs_by_problem, hyperparams_by_name) -> dict:
    return _clean(
        {
            "gradstep": gradstep.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "config": config,
            "problems": {p.name: p.info() for p in problems},
            "optimizers": {
                n: {
                    "hyperparams": h,
                    "family": gradstep.REGISTRY[n].family,
                    "summary": gradstep.REGISTRY[n].summary,
                }
                for n, h in hyperparams_by_name.items()
            },
            "results": [
                run_record(p, run, hyperparams_by_name[run.optimizer])
                for p in problems
                for run in runs_by_problem[p.name]
            ],
            "mean_ranks": [
                {"optimizer": n, "mean_rank": m, "finished": f}
                for n, m, f in mean_ranks(problems, runs_by_problem)
            ],
        }
    )


CSV_COLUMNS = (
    "problem",
    "optimizer",
    "status",
    "final_loss",
    "test_accuracy",
    "test_loss",
    "best_loss",
    "target_loss",
    "steps_to_target",
    "steps",
    "diverged_at",
    "learning_rate",
    "wall_s",
    "optimizer_step_s",
    "engine",
    "reason",
)


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


def write_csv(results: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results["results"]:
            writer.writerow(["" if r.get(c) is None else r.get(c) for c in CSV_COLUMNS])


# -- report.html --------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{padding:.25em .7em;border-bottom:1px solid #e5e5e5;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
tr.bad td{color:#a33}img{max-width:100%;height:auto;margin:.5em 0}
code{background:#f4f4f4;padding:0 .25em;border-radius:3px}
.muted{color:#666;font-size:.9em}
"""


def _img(path: Path, alt: str) -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _html_table(head: list[str], rows: list[list[str]], bad: list[bool] | None = None) -> str:
    left = {1, len(head) - 1}
    out = ["<table><thead><tr>"]
    out += [
        f'<th class="{"l" if i in left else ""}">{html.escape(h)}</th>' for i, h in enumerate(head)
    ]
    out.append("</tr></thead><tbody>")
    for k, row in enumerate(rows):
        cls = ' class="bad"' if bad and bad[k] else ""
        out.append(f"<tr{cls}>")
        out += [
            f'<td class="{"l" if i in left else ""}">{html.escape(c)}</td>'
            for i, c in enumerate(row)
        ]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def write_html(results, problems, runs_by_problem, figures: list[Path], path: Path) -> None:
    by_name = {f.name: f for f in figures}
    cfg = results["config"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        "<title>gradstep compare</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>gradstep compare</h1>",
        f"<p class='muted'>gradstep {html.escape(results['gradstep'])}, "
        f"{html.escape(results['date'])}, backend {html.escape(cfg['backend'])}, "
        f"seed {cfg['seed']}"
        f"{', learning rates tuned' if cfg['tune'] else ', default hyperparameters'}. "
        f"Command: <code>{html.escape(cfg['command'])}</code></p>",
    ]
    if len(problems) > 1:
        ranks = results["mean_ranks"]
        parts.append(
            "<h2>Overall</h2><p>Mean rank over the problems (a run that did not finish "
            "counts as last).</p>"
        )
        parts.append(
            _html_table(
                ["#", "optimizer", "mean rank", "finished"],
                [
                    [
                        str(i),
                        r["optimizer"],
                        f"{r['mean_rank']:.2f}",
                        f"{r['finished']}/{len(problems)}",
                    ]
                    for i, r in enumerate(ranks, 1)
                ],
            )
        )
    for name, alt in (
        ("trajectories.png", "paths on the 2-D functions"),
        ("losses.png", "loss curves"),
    ):
        if name in by_name:
            parts.append(_img(by_name[name], alt))
    if "trajectories.gif" in by_name:
        parts.append("<h2>Animation</h2>" + _img(by_name["trajectories.gif"], "animated paths"))
    for p in problems:
        runs = runs_by_problem[p.name]
        head, rows = leaderboard_rows(p, runs)
        ranked = rank(p, runs)
        parts.append(f"<h2 id='{html.escape(p.name)}'>{html.escape(p.title)}</h2>")
        parts.append(
            f"<p>{html.escape(p.description)} Target loss {p.target:g}. "
            + ("Ranked by test accuracy." if p.kind == "data" else "Ranked by final value.")
            + "</p>"
        )
        parts.append(_html_table(head, rows, [r.status != "ok" for r in ranked]))
        for fig in (f"trajectories-{p.name}.png", f"loss-{p.name}.png"):
            if fig in by_name:
                parts.append(_img(by_name[fig], fig))
    parts.append(
        "<h2>Hyperparameters</h2><p>Factory defaults, the registry's value for a required "
        "argument, and <code>--set</code> overrides; with <code>--tune</code> the learning "
        "rate chosen per problem is in the tables above.</p>"
    )
    parts.append(
        _html_table(
            ["optimizer", "arguments"],
            [
                [n, ", ".join(f"{k}={v}" for k, v in o["hyperparams"].items())]
                for n, o in results["optimizers"].items()
            ],
        ).replace('<td class="">', '<td class="l">')
    )
    notes = _notes(problems, runs_by_problem)
    if notes:
        parts.append(
            "<h2>Notes</h2><p>(marked * in the tables)</p><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            + "</ul>"
        )
    also = "results.json, results.csv" + (" and the figures" if figures else "")
    parts.append(f"<p class='muted'>Also written, in this folder: {also}.</p></body></html>")
    path.write_text("\n".join(parts))
