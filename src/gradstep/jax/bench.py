"""Step time of gradstep's jitted optimizers against optax's, on the same arrays.

``python -m gradstep.jax.bench`` (or, once wired, ``gradstep bench --backend jax``)
times one jitted training-step update -- ``update`` then ``apply_updates``, with the
parameters and the state donated -- for gradstep's Adam (per-step scalars ``"auto"``:
traced; and ``"host"``: one host callback per step) and optax's Adam, on the layouts
of ``gradstep bench`` (one 20M tensor, 200 x 100k, 5000 x 1k; float32), on JAX's
default device. Times are medians of ``repeats`` timed runs of ``steps`` steps each;
the ratio is gradstep / optax (below 1: gradstep is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

import gradstep

from . import apply_updates, to_optax

DEFAULT_LAYOUTS = "1x20000000,200x100000,5000x1000"


def _layouts(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        count, _, size = item.strip().partition("x")
        out.append((int(count), int(size)))
    return out


def _optimizers(learning_rate: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gradstep auto": to_optax(gradstep.adam(learning_rate), scalars="auto"),
        "gradstep host": to_optax(gradstep.adam(learning_rate), scalars="host"),
    }
    try:
        import optax

        out["optax"] = optax.adam(learning_rate)
    except ImportError:  # pragma: no cover - optax is optional
        pass
    return out


def time_step(opt: Any, count: int, size: int, steps: int, repeats: int, dtype: str) -> float:
    """Median seconds per jitted step of ``opt`` on ``count`` tensors of ``size``."""
    key = jax.random.PRNGKey(0)
    params = [jax.random.normal(jax.random.fold_in(key, i), (size,), dtype) for i in range(count)]
    grads = [0.01 * p + 0.1 for p in params]

    def step(p, s, g):
        updates, s = opt.update(g, s, p)
        return apply_updates(p, updates), s

    jitted = jax.jit(step, donate_argnums=(0, 1))
    state = opt.init(params)
    params, state = jitted(params, state, grads)  # compile
    jax.block_until_ready(params)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            params, state = jitted(params, state, grads)
        jax.block_until_ready(params)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def run(
    layouts: list[tuple[int, int]],
    steps: int = 20,
    repeats: int = 5,
    dtype: str = "float32",
    report: Callable[[str], None] = print,
) -> list[dict]:
    """One row per layout: the median step time of each optimizer and the ratios."""
    rows = []
    for count, size in layouts:
        row: dict[str, Any] = {"layout": f"{count}x{size}", "dtype": dtype}
        for name, opt in _optimizers(1e-3).items():
            row[name] = time_step(opt, count, size, steps, repeats, dtype)
        if "optax" in row:
            for name in ("gradstep auto", "gradstep host"):
                row[f"{name} / optax"] = row[name] / row["optax"]
        report(format_row(row))
        rows.append(row)
    return rows


def format_row(row: dict) -> str:
    parts = [f"{row['layout']:>16}"]
    for name in ("gradstep auto", "gradstep host", "optax"):
        if name in row:
            parts.append(f"{name} {row[name] * 1e3:8.3f} ms")
    for name in ("gradstep auto / optax", "gradstep host / optax"):
        if name in row:
            parts.append(f"{name} {row[name]:.2f}")
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradstep.jax.bench", description=__doc__)
    parser.add_argument("--layouts", default=DEFAULT_LAYOUTS, help="COUNTxSIZE,...")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    rows = run(_layouts(args.layouts), args.steps, args.repeats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": jax.devices()[0].device_kind, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
