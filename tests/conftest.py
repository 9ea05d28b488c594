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
import sys
import tempfile
from pathlib import Path

import pytest

_SAVED = "_gradstep_saved_cache_dir"

# XLA's compile settings for the test session (read when JAX is first imported).
# Much of the JAX tests' time is compiling small functions that then run a few steps
# on tiny arrays: XLA's optimisation passes and its CPU fusion emitters (three times
# the compile time of the older element emitters) cost more there than they save.
# Neither enables fast-math; the element emitters' cbrt is a few ulp less accurate
# for tiny values, which tests/gpu_engine/test_cbrt_operation.py allows for.
# tests/jax_front/test_default_xla_optimisations.py reruns a selection of the JAX
# tests with the settings users get (GRADSTEP_TEST_XLA_DEFAULTS=1 keeps them here
# too). (numba keeps its default level: below it, numba cannot cache kernels on disk.)
TEST_XLA_FLAG = "--xla_cpu_use_fusion_emitters=false"
if os.environ.get("GRADSTEP_TEST_XLA_DEFAULTS") != "1":
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" not in _flags:
        os.environ["XLA_FLAGS"] = f"{_flags} {TEST_XLA_FLAG}".strip()

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


def _global_settings() -> dict:
    """Process-wide settings a test may switch and must restore, as far as loaded."""
    settings = {}
    if (jax := sys.modules.get("jax")) is not None:
        settings["jax_enable_x64"] = bool(jax.config.jax_enable_x64)
    if (torch := sys.modules.get("torch")) is not None:
        settings["torch default dtype"] = torch.get_default_dtype()
    return settings


def _restore(name: str, value) -> None:
    if name == "jax_enable_x64":
        sys.modules["jax"].config.update("jax_enable_x64", value)
    else:
        sys.modules["torch"].set_default_dtype(value)


_DEFAULTS = {"jax_enable_x64": False}


@pytest.fixture(autouse=True)
def _no_leaked_global_settings():
    """Fail a test that leaves a process-wide setting switched: later tests and the
    doctests run in the same worker, and would see float64 where users see float32.
    (Switch ``jax_enable_x64`` with ``with jax.enable_x64(...)``, which restores it.)"""
    before = _global_settings()
    yield
    after = _global_settings()
    leaked = {}
    for name, value in after.items():
        was = before.get(name, _DEFAULTS.get(name, value))
        if value != was:
            _restore(name, was)
            leaked[name] = (value, was)
    if leaked:
        pytest.fail(
            "the test left " + ", ".join(f"{n}={v} (was {w})" for n, (v, w) in leaked.items())
        )


@pytest.fixture
def watch(monkeypatch):
    """``watch(owner, name, completed=True)``: a list that, for the rest of the test,
    gets the arguments (``self`` first) of each call of the method ``owner.name``: of
    the calls that returned (a step the engine completed), or with
    ``completed=False`` of every call (refused ones too)."""

    def watched(owner: type, name: str, completed: bool = True) -> list:
        calls: list = []
        original = getattr(owner, name)

        def method(*args, **kwargs):
            if not completed:
                calls.append(args)
            out = original(*args, **kwargs)
            if completed:
                calls.append(args)
            return out

        monkeypatch.setattr(owner, name, method)
        return calls

    return watched


@pytest.fixture
def kernel_assembly(tmp_path, monkeypatch):
    """``kernel_assembly(module)``: the machine code of the ``step`` kernel of a fused
    kernel module the test has run, compiled afresh for its signatures. (numba lists
    no machine code for a kernel it loaded from its on-disk cache, as the tests' kernel
    folder keeps them between runs: the copy, one comment longer, is another module,
    built in a folder of the test's own.)"""
    from gradstep.engines.kernel_cache import load_kernels

    monkeypatch.setenv("GRADSTEP_CACHE_DIR", str(tmp_path))

    def assembly(module) -> str:
        source = Path(module.__file__).read_text() + "# compiled afresh to be inspected\n"
        fresh = load_kernels(source)
        signatures = module.step.signatures
        assert signatures, "the kernel has not run"
        for signature in signatures:
            fresh.step.compile(signature)
        listing = "".join(fresh.step.inspect_asm(signature) for signature in signatures)
        assert f"{fresh.__name__}4step" in listing, "no machine code listed for the kernel"
        return listing

    return assembly
