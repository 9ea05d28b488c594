"""The engine tests hold at the compiler optimisation levels users get.

The test session compiles numba kernels without LLVM optimisation and JAX functions
with most XLA optimisations off (tests/conftest.py), because compiling dominates the
suite's time. This test reruns a selection of the engine equivalence tests in a fresh
process at the levels a user's process has: numba's default ``NUMBA_OPT`` and XLA's
default optimisations, with an empty kernel cache of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: (test file, -k expression): kernels of each stage kind, fused and under jax.jit
SELECTION = [
    (
        "tests/equivalence/test_fused_vs_eager.py",
        "(composed_chains and clip) or (prodigy and f32)",
    ),
    (
        "tests/jax_front/test_cross_backend.py",
        "same_trajectory and (adam-float32 or prodigy-float64)",
    ),
]


def test_engine_tests_pass_at_the_default_optimisation_levels(tmp_path):
    env = dict(os.environ)
    env["NUMBA_OPT"] = "3"  # numba's default
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "0"
    env["GRADSTEP_CACHE_DIR"] = str(tmp_path / "kernels")
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    for path, pattern in SELECTION:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                path,
                "-k",
                pattern,
                "-p",
                "no:randomly",
            ],  # fmt: skip
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        tail = result.stdout[-2000:] + result.stderr[-2000:]
        assert result.returncode == 0, tail
        assert " passed" in result.stdout and " failed" not in result.stdout, tail
