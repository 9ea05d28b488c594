"""``report.html`` of ``gradstep compare``: one offline file, figures embedded once each,
opening with a generated summary and the command that reproduces it."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from . import _compare_report as report
from . import _compare_score as score

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{padding:.25em .7em;border-bottom:1px solid #e5e5e5;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
tr.bad td{color:#a33}img{max-width:100%;height:auto;margin:.5em 0}
code{background:#f4f4f4;padding:0 .25em;border-radius:3px}
.muted{color:#666;font-size:.9em}.summary{font-size:1.05em;background:#f7f7f2;padding:.7em 1em}
.mode{font-weight:bold}
"""


def _img(path: Path, alt: str) -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _table(head: list[str], rows: list[list[str]], bad: list[bool] | None = None) -> str:
    left = {1, len(head) - 1}
    out = ["<table><thead><tr>"]
    out += [
        f'<th class="{"l" if i in left else ""}">{html.escape(h)}</th>' for i, h in enumerate(head)
    ]
    out.append("</tr></thead><tbody>")
    for k, row in enumerate(rows):
        out.append('<tr class="bad">' if bad and bad[k] else "<tr>")
        out += [
            f'<td class="{"l" if i in left else ""}">{html.escape(c)}</td>'
            for i, c in enumerate(row)
        ]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _tuning_rows(problems, runs_by_problem) -> list[list[str]]:
    rows = []
    for p in problems:
        for run in runs_by_problem[p.name]:
            t = run.tuning
            if not t or not t.get("trials"):
                continue
            tried = ", ".join(
                f"{x['learning_rate']:g}"
                + ("" if x["status"] == "ok" else " (" + x["status"] + ")")
                for x in t["trials"]
            )
            rows.append([p.name, run.optimizer, tried, f"{t['chosen']:g}", t.get("edge") or ""])
    return rows


def write_html(results, problems, runs_by_problem, figures: list[Path], path: Path) -> None:
    by_name = {f.name: f for f in figures}
    cfg = results["config"]
    v = results["versions"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        "<title>gradstep compare</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>gradstep compare</h1>",
        f"<p class='summary'>{html.escape(results['summary'])}</p>",
        f"<p class='mode'>{html.escape(report.mode_line(cfg))}</p>",
        f"<p>Reproduce: <code>{html.escape(cfg['command'])}</code> "
        f"(or re-draw this page: <code>gradstep compare --from results.json</code>)</p>",
        f"<p class='muted'>gradstep {html.escape(v['gradstep'])}, "
        f"Python {html.escape(v['python'])}, NumPy {html.escape(v['numpy'])}; "
        f"{html.escape(results['date'])}; first seed "
        f"{cfg['seed']}; race {cfg['race_s']:.1f} s.</p>",
        "<h2>Overall</h2>",
        "<p>Each optimizer's time on a problem is the median over seeds of the steps until "
        "its monitored loss (validation loss on data, smoothed on stochastic problems) "
        "<em>stays</em> below the target; a diverged or unfinished run never gets there. "
        "The performance profile rho(tau) is the fraction of the scored problems an "
        f"optimizer solved within tau times the fastest one's steps (tau 1 to "
        f"{score.TAU_MAX:g}); the score is its area, normalised to [0, 1]. Ties go to "
        "the optimizer that finished more problems, then to the better mean rank.</p>",
    ]
    if "profile.png" in by_name:
        parts.append(_img(by_name["profile.png"], "performance profile"))
    parts.append(_table(*report.leaderboard_rows(results, problems)))
    gallery = [p for p in problems if not p.scored]
    for p in problems:
        if not p.scored:
            continue
        parts += _problem_section(p, runs_by_problem[p.name], cfg, by_name)
    if gallery:
        parts.append(
            "<h2>Gallery: 2-D test functions</h2><p>Pictures of how each optimizer moves, "
            "not part of the score. Paths are clipped to each panel's window.</p>"
        )
        if "trajectories.png" in by_name:
            parts.append(_img(by_name["trajectories.png"], "paths on the 2-D functions"))
        if "trajectories.gif" in by_name:
            parts.append(_img(by_name["trajectories.gif"], "animated paths"))
        for p in gallery:
            parts += _problem_section(p, runs_by_problem[p.name], cfg, by_name)
    rows = _tuning_rows(problems, runs_by_problem)
    if rows:
        b = cfg["tuning_budget"]
        parts.append(
            f"<h2>Learning-rate sweeps</h2><p>Every optimizer gets {b['grid_points']} grid "
            f"points a decade apart around its default, then {b['extra_trials']} more "
            "(widening while the best is at an edge, else refining), scored on the first "
            "seed by steps to target, then validation loss. When every grid point "
            "diverges, smaller rates are tried first, a decade at a time, down to six "
            "decades below the grid.</p>"
        )
        parts.append(_table(["problem", "optimizer", "tried", "chosen", "flag"], rows))
    parts.append(
        "<h2>Hyperparameters</h2><p>Other than the learning rate: factory defaults, "
        "the registry's value for a required argument, and <code>--set</code>.</p>"
    )
    parts.append(
        _table(
            ["optimizer", "arguments"],
            [
                [n, ", ".join(f"{k}={val}" for k, val in o["hyperparams"].items())]
                for n, o in results["optimizers"].items()
            ],
        )
    )
    notes = report.notes_of(problems, runs_by_problem)
    if notes:
        parts.append(
            "<h2>Notes</h2><p>(marked * in the tables)</p><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            + "</ul>"
        )
    also = "results.json, results.csv" + (" and the figures" if figures else "")
    parts.append(f"<p class='muted'>Also written, in this folder: {also}.</p></body></html>")
    path.write_text("\n".join(parts))


def _problem_section(p, runs, cfg, by_name) -> list[str]:
    head, rows, bad = report.table_rows(p, runs)
    seeds = len(cfg["seeds"][p.name])
    out = [
        f"<h2 id='{html.escape(p.name)}'>{html.escape(p.title)}</h2>",
        f"<p>{html.escape(p.description)} {cfg['steps'][p.name]} steps, target "
        f"{p.target:g}, {seeds} seed{'s' if seeds > 1 else ''}.</p>",
        _table(head, rows, bad),
    ]
    if f"loss-{p.name}.png" in by_name:
        out.append(_img(by_name[f"loss-{p.name}.png"], f"loss-{p.name}.png"))
    return out
