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

# XLA's optimisation level for the test session (read when JAX is first imported).
# Much of the JAX tests' time is compiling small functions that then run a few steps
# on tiny arrays: XLA's optimisation passes cost more there than they save, and they
# do not change results (no fast-math). tests/equivalence/test_production_compilers.py
# reruns a selection of the JAX tests at the level users get. Set the variable to
# override. (numba keeps its default level: below it, numba cannot cache the kernels
# on disk, and the test workers would each compile every kernel.)
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
    if cache is not None:
        return Path(cache.mkdir("gradstep-kernels"))
    key = hashlib.sha256(str(config.rootpath.resolve()).encode()).hexdigest()[:16]
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
