"""The JAX tests hold at the compiler optimisation level users get.

The test session compiles JAX functions with most XLA optimisations and the CPU
fusion emitters off (tests/conftest.py), because compiling dominates those tests'
time. This test reruns a selection of the cross-backend tests in a fresh process
with XLA's default settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: (test file, -k expression): elementwise and global-reduction stages under jax.jit,
#: and the one element operation whose XLA implementation the test settings change
SELECTION = [
    (
        "tests/jax_front/test_cross_backend.py",
        "same_trajectory and (adam-float32 or prodigy-float64 or madgrad-float32)",
    ),
    ("tests/gpu_engine/test_cbrt_operation.py", "jax_namespace"),
]


def test_jax_tests_pass_at_the_default_optimisation_level():
    env = dict(os.environ)
    env["GRADSTEP_TEST_XLA_DEFAULTS"] = "1"
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "0"
    flags = env.get("XLA_FLAGS", "").replace("--xla_cpu_use_fusion_emitters=false", "")
    env["XLA_FLAGS"] = flags.strip()
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
