"""Figures of ``gradstep compare`` (matplotlib, no display needed).

- ``profile.png``: the performance profile, rho(tau) per optimizer (the score);
- ``loss-<problem>.png``: the monitored loss per problem, the median over seeds with
  a band from the lowest to the highest seed; ``losses.png``: all of them;
- ``trajectories.png``: every optimizer's path over the contour plot of each 2-D
  function, clipped to its window;
- ``trajectories.gif`` (``--animate``): the paths drawn step by step.

Each optimizer keeps one colour, marker and line style in every figure; up to 40 of
them stay distinct (20 colours, 7 markers, 2 line styles, cycled independently).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

_STYLES = ("-", "--")
_MARKERS = ("o", "s", "^", "D", "v", "P", "*")


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as missing:
        raise RuntimeError(
            "gradstep compare draws its figures with matplotlib: pip install 'gradstep[cli]'"
        ) from missing
    return Figure, FigureCanvasAgg


def styles(names: list[str]) -> dict[str, dict]:
    """A fixed colour, marker and line style per optimizer, in race order: the first
    ten get the strong half of tab20, the next ten its light half (dashed); markers
    cycle with a period prime to the colours', so 40 series never share all three."""
    import matplotlib

    tab20 = list(matplotlib.colormaps["tab20"].colors)
    palette = tab20[0::2] + tab20[1::2]
    return {
        n: {
            "color": palette[i % len(palette)],
            "linestyle": _STYLES[(i // 10) % 2],
            "marker": _MARKERS[i % len(_MARKERS)],
        }
        for i, n in enumerate(names)
    }


def _new_figure(width: float, height: float):
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(width, height), layout="constrained")
    Canvas(fig)
    return fig


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, 2 if count <= 4 else 3)
    return math.ceil(count / cols), cols


def _label(run) -> str:
    lr = "" if run.learning_rate is None else f" (lr {run.learning_rate:.3g})"
    return f"{run.optimizer}{lr}" + (" diverged" if run.status == "diverged" else "")


def _contour(ax, problem, levels: int = 24) -> None:
    """The function as a grey image on a log scale (darker is lower), with contour lines."""
    from matplotlib.colors import LogNorm

    x0, x1, y0, y1 = problem.window
    xs, ys = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    with np.errstate(all="ignore"):
        zs = problem.value(xs, ys)
    floor = max(float(np.nanmin(zs)), 1e-3)
    top = float(np.nanmax(zs))
    zs = np.maximum(zs, floor)
    norm = LogNorm(vmin=floor, vmax=top)
    ax.imshow(
        zs,
        extent=(x0, x1, y0, y1),
        origin="lower",
        aspect="auto",
        norm=norm,
        cmap="Greys_r",
        alpha=0.45,
        interpolation="bilinear",
    )
    ax.contour(
        xs, ys, zs, levels=np.geomspace(floor, top, levels), norm=norm, colors="0.5", linewidths=0.4
    )
    for mx, my in problem.minima:
        ax.plot(mx, my, marker="*", color="gold", markersize=14, markeredgecolor="black", zorder=9)
    sx, sy = problem.start
    ax.plot(sx, sy, marker="o", color="black", markersize=7, markeredgecolor="white", zorder=9)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(problem.title)


def _paths(ax, runs, style, upto: int | None = None) -> list:
    """Draw each run's path; long, erratic paths go thin and under the short, smooth
    ones, which would be hidden otherwise."""
    drawn = [r for r in runs if r.path is not None and len(r.path)]
    x0, x1, y0, y1 = ax.get_xlim() + ax.get_ylim()
    erratic = 20 * math.hypot(x1 - x0, y1 - y0)  # path length that marks a bouncing run
    length = {
        r.optimizer: float(np.nansum(np.hypot(*np.diff(np.clip(r.path, -1e6, 1e6), axis=0).T)))
        for r in drawn
    }
    order = sorted(drawn, key=lambda r: -length[r.optimizer])
    lines = []
    for z, run in enumerate(order):
        path = clip(run.path if upto is None else run.path[: upto + 1], (x0, x1, y0, y1))
        colour = style[run.optimizer]["color"]
        (line,) = ax.plot(
            path[:, 0],
            path[:, 1],
            linewidth=0.7 if length[run.optimizer] > erratic else 1.6,
            label=_label(run),
            zorder=2 + z / 100,
            markevery=max(1, len(path) // 8),
            markersize=4,
            **style[run.optimizer],
        )
        (dot,) = ax.plot(
            path[-1:, 0],
            path[-1:, 1],
            marker="X" if run.status == "diverged" else style[run.optimizer]["marker"],
            markersize=6,
            markeredgecolor="white",
            markeredgewidth=0.6,
            color=colour,
            linestyle="",
            zorder=3 + z / 100,
        )
        lines.append((run, line, dot))
    # the legend follows the race order, not the drawing order
    lines.sort(key=lambda t: runs.index(t[0]))
    return lines


def clip(path: np.ndarray, window, margin: float = 0.05) -> np.ndarray:
    """The path with every point outside the window (widened by ``margin`` of its size)
    replaced by NaN: matplotlib leaves gaps there instead of lines across the panel."""
    x0, x1, y0, y1 = window
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    with np.errstate(invalid="ignore"):
        inside = (
            (path[:, 0] >= x0 - dx)
            & (path[:, 0] <= x1 + dx)
            & (path[:, 1] >= y0 - dy)
            & (path[:, 1] <= y1 + dy)
        )
    out = np.array(path, dtype=np.float64)
    out[~inside] = np.nan
    return out


def seed_band(run) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, median, low, high)`` over the seeds that recorded each step."""
    steps = np.asarray(run.curve_steps)
    curves = []
    for r in run.seeds:
        loss = np.full(len(steps), np.nan)
        n = min(len(r.curve_loss), len(steps))
        loss[:n] = r.curve_loss[:n]
        curves.append(loss)
    stack = np.vstack(curves)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return steps, np.nanmedian(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0)


def _loss_curves(ax, problem, runs, style) -> None:
    for run in runs:
        if not run.curve_steps:
            continue
        steps, mid, low, high = seed_band(run)
        s = style[run.optimizer]
        floor = 1e-12
        ax.plot(
            steps,
            np.maximum(mid, floor),
            linewidth=1.4,
            label=_label(run),
            markevery=max(1, len(steps) // 6),
            markersize=4,
            **s,
        )
        if len(run.seeds) > 1:
            ax.fill_between(
                steps, np.maximum(low, floor), np.maximum(high, floor), color=s["color"], alpha=0.15
            )
        if run.status == "diverged":
            ax.plot(steps[-1], max(mid[-1], floor), marker="X", color=s["color"])
    ax.axhline(problem.target, color="0.3", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss" if problem.kind == "data" else "f(x, y)")
    ax.set_title(problem.title)
    ax.grid(True, which="major", alpha=0.3)


def _profile(ax, results, style) -> None:
    from ._compare_score import taus

    board = results["leaderboard"]
    tau_max = results["scoring"]["tau_max"]
    grid = taus(tau_max=tau_max)
    for r in board:
        s = style[r["optimizer"]]
        ax.step(
            grid,
            r["profile"],
            where="post",
            linewidth=1.6,
            label=f"{r['optimizer']} ({r['score']:.2f})",
            markevery=max(1, len(grid) // 6),
            markersize=5,
            **s,
        )
    ax.set_xlim(1, tau_max)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("tau: within this factor of the fastest optimizer's steps")
    ax.set_ylabel("fraction of problems solved")
    ax.set_title("Performance profile (legend: normalised area)")
    ax.grid(True, alpha=0.3)


def _save(fig, path: Path, dpi: int, keep: list | None = None) -> Path:
    """Save as a 256-colour PNG, a third of the size (the report embeds them all); the
    optimizers' colours (``keep``) are kept exactly in the palette."""
    from PIL import Image

    fig.set_dpi(dpi)
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    image.quantize(palette=_palette(image, keep), dither=Image.Dither.NONE).save(path)
    return path


def _palette(image, keep):
    """A 256-colour palette for ``image`` that holds black, white, gold and ``keep``
    exactly, the rest chosen by median cut."""
    from PIL import Image

    fixed = [(0, 0, 0), (255, 255, 255), (255, 215, 0)]
    fixed += [tuple(round(255 * c) for c in colour[:3]) for colour in keep or []]
    fixed = list(dict.fromkeys(fixed))
    rest = image.quantize(colors=256 - len(fixed), method=Image.Quantize.MEDIANCUT)
    palette = Image.new("P", (1, 1))
    flat = [c for rgb in fixed for c in rgb] + rest.getpalette()[: 3 * (256 - len(fixed))]
    palette.putpalette(flat)
    return palette


def draw_all(
    results, problems, runs_by_problem, names, out: Path, animate: bool = False
) -> list[Path]:
    """Write every figure into ``out``; return their paths in report order."""
    style = styles(names)
    keep = list({s["color"] for s in style.values()})
    written: list[Path] = []
    fig = _new_figure(9.0, 4.8)
    ax = fig.subplots()
    _profile(ax, results, style)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    written.append(_save(fig, out / "profile.png", 90, keep))
    rows, cols = _grid(len(problems))
    fig = _new_figure(4.6 * cols + 2.2, 3.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, p in zip(axes, problems):
        _loss_curves(ax, p, runs_by_problem[p.name], style)
    for ax in axes[len(problems) :]:
        ax.set_visible(False)
    _legend(fig, axes, names)
    written.append(_save(fig, out / "losses.png", 80, keep))
    surfaces = [p for p in problems if p.kind == "surface"]
    if surfaces:
        rows, cols = _grid(len(surfaces))
        fig = _new_figure(5.2 * cols + 2.2, 4.6 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, p in zip(axes, surfaces):
            _contour(ax, p)
            _paths(ax, runs_by_problem[p.name], style)
        for ax in axes[len(surfaces) :]:
            ax.set_visible(False)
        _legend(fig, axes, names)
        written.append(_save(fig, out / "trajectories.png", 80, keep))
    for p in problems:
        fig = _new_figure(8.4, 4.6)
        ax = fig.subplots()
        _loss_curves(ax, p, runs_by_problem[p.name], style)
        _axis_legend(ax, names)
        written.append(_save(fig, out / f"loss-{p.name}.png", 90, keep))
    if animate and surfaces:
        written.append(
            animate_paths(
                surfaces, runs_by_problem, style, names, out / "trajectories.gif", keep=keep
            )
        )
    return written


def _proxy(handle):
    """A legend line of even width in the handle's colour and style."""
    from matplotlib.lines import Line2D

    return Line2D(
        [],
        [],
        color=handle.get_color(),
        linestyle=handle.get_linestyle(),
        marker=handle.get_marker(),
        markersize=5,
        lw=2,
    )


def _axis_legend(ax, names: list[str]) -> None:
    pairs = sorted(
        zip(*ax.get_legend_handles_labels()), key=lambda hl: names.index(hl[1].split(" ")[0])
    )
    ax.legend(
        [_proxy(h) for h, _ in pairs],
        [label for _, label in pairs],
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        fontsize=8,
        frameon=False,
    )


def _legend(fig, axes, names: list[str]) -> None:
    # one entry per optimizer, in race order, without the learning rate (it may differ
    # per problem)
    seen = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label.split(" ")[0], h)
    order = [n for n in names if n in seen]
    fig.legend(
        [_proxy(seen[n]) for n in order],
        order,
        loc="outside right center",
        fontsize=9,
        frameon=False,
    )


def animate_paths(
    surfaces, runs_by_problem, style, names, path: Path, frames: int = 60, keep=None
) -> Path:
    """An animated GIF of the 2-D paths, drawn step by step (steps spaced
    geometrically: the first steps matter most)."""
    from PIL import Image

    rows, cols = _grid(len(surfaces))
    fig = _new_figure(4.8 * cols + 2.2, 4.2 * rows)
    fig.set_dpi(100)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    lines = []
    longest = 1
    for ax, p in zip(axes, surfaces):
        _contour(ax, p)
        drawn = _paths(ax, runs_by_problem[p.name], style, upto=0)
        lines += drawn
        longest = max([longest] + [len(r.path) - 1 for r, _, _ in drawn])
    for ax in axes[len(surfaces) :]:
        ax.set_visible(False)
    _legend(fig, axes, names)
    counter = fig.text(0.01, 0.01, "step 0", fontsize=11, ha="left", va="bottom")
    for _, line, dot in lines:
        line.set_visible(False)
        dot.set_visible(False)
    counter.set_visible(False)
    canvas = fig.canvas
    canvas.draw()  # lays out once; each frame then draws only the paths over a copy
    fig.set_layout_engine("none")
    background = canvas.copy_from_bbox(fig.bbox)
    for _, line, dot in lines:
        line.set_visible(True)
        dot.set_visible(True)
    counter.set_visible(True)
    ticks = np.unique(np.round(np.geomspace(1, longest, frames)).astype(int))
    palette = None
    images = []
    clipped = {
        id(line): clip(run.path, line.axes.get_xlim() + line.axes.get_ylim())
        for run, line, _ in lines
    }
    for t in ticks:
        canvas.restore_region(background)
        for run, line, dot in lines:
            upto = min(int(t), len(run.path) - 1)
            xy = clipped[id(line)]
            line.set_data(xy[: upto + 1, 0], xy[: upto + 1, 1])
            line.set_markevery(max(1, upto // 8))
            dot.set_data(xy[upto : upto + 1, 0], xy[upto : upto + 1, 1])
            line.axes.draw_artist(line)
            dot.axes.draw_artist(dot)
        counter.set_text(f"step {t}")
        fig.draw_artist(counter)
        rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
        if palette is None:
            palette = _palette(rgb, keep)
        images.append(rgb.quantize(palette=palette, dither=Image.Dither.NONE))
    hold = [1000 if i == len(images) - 1 else 100 for i in range(len(images))]
    hold[-1] = 2500
    images[0].save(path, save_all=True, append_images=images[1:], duration=hold, loop=0)
    return path
