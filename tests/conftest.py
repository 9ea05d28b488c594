"""Test-session setup shared by every test folder: an isolated kernel cache.

The fused engine writes its generated kernels (and numba their compiled code) to
``$GRADSTEP_CACHE_DIR``. The tests point it at a folder of this checkout's own --
pytest's cache folder, or, when the cache plugin is off (``-p no:cacheprovider``),
a temporary folder named after the checkout's path -- never the user's
``~/.cache``. The folder is kept between runs: an empty numba cache makes the suite
several times slower, and kernels are named by the hash of their source, so a stale
entry is never loaded for changed code.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

_SAVED = "_gradstep_saved_cache_dir"

# Compiler optimisation levels for the test session (read when numba and JAX are first
# imported). Most of the suite's time is compiling small kernels that then run a few
# steps on tiny arrays: LLVM's and XLA's optimisation passes cost more there than they
# save. Neither changes results (no fast-math in either), and
# tests/equivalence/test_production_compilers.py reruns a selection of the engine tests
# at the levels users get. Set either variable to override.
os.environ.setdefault("NUMBA_OPT", "0")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# Under pytest-xdist every worker is a process of its own: give each an equal share of
# the cores for numba's parallel loops (read when numba is first imported), so that
# the workers' thread pools do not oversubscribe the machine.
_WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
if _WORKERS and "NUMBA_NUM_THREADS" not in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ["NUMBA_NUM_THREADS"] = str(max(1, (_cores or 1) // int(_WORKERS)))


def kernel_cache(config: pytest.Config) -> Path:
    """This checkout's kernel folder for test sessions."""
    cache = getattr(config, "cache", None)
    level = os.environ.get("NUMBA_OPT", "default")  # kernels of one level never mix
    if cache is not None:
        return Path(cache.mkdir(f"gradstep-kernels-O{level}"))
    root = f"{config.rootpath.resolve()}:O{level}"
    key = hashlib.sha256(root.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"gradstep-test-kernels-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.hookimpl(trylast=True)  # after the cache plugin has set config.cache
def pytest_configure(config: pytest.Config) -> None:
    setattr(config, _SAVED, os.environ.get("GRADSTEP_CACHE_DIR"))
    os.environ["GRADSTEP_CACHE_DIR"] = str(kernel_cache(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    saved = getattr(config, _SAVED, None)
    if saved is None:
        os.environ.pop("GRADSTEP_CACHE_DIR", None)
    else:
        os.environ["GRADSTEP_CACHE_DIR"] = saved
