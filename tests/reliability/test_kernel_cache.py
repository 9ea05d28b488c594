"""Fault injection for the kernel cache: whatever state the cache folder is in, the
optimizer keeps working with the right numbers, leaves no temporary files behind, and
says once (naming the folder) when it has to run eagerly."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import tempfile
import warnings

import numpy as np
import pytest

import gradstep
from gradstep.engines import fused, kernel_cache

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _rule():
    return gradstep.chain(gradstep.transforms.clip(0.7), gradstep.momentum(0.05, momentum=0.8))


def _source() -> str:
    """The kernel module's source for the float64 arrays these tests step (one module
    per combination of storage dtypes)."""
    engine = fused.FusedEngine(_rule())
    return engine.source_for(("float64",) * engine.n_rows)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, a fresh private folder, and the kernel module unloaded
    (so this test builds it)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GRADSTEP_CACHE_DIR", str(folder))
    monkeypatch.setattr(kernel_cache, "_PRIVATE_DIR", [], raising=False)
    name = _module_name(_source())
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield folder
    sys.modules.pop(name, None)  # never leave a module of a deleted folder loaded
    for private in kernel_cache._PRIVATE_DIR:
        import shutil

        shutil.rmtree(private, ignore_errors=True)


def _module_path(folder):
    return folder / f"{_module_name(_source())}.py"


def _module_name(source):
    return "gradstep_kernel_" + hashlib.sha256(source.encode()).hexdigest()[:20]


def _run(engine="auto", steps=3):
    params = [np.linspace(-2, 2, 9), np.linspace(0, 1, 70000)]
    opt = gradstep.Optimizer(params, _rule(), engine=engine)
    for k in range(steps):
        opt.step([np.cos(3 * p + k) for p in params])
    return params, opt


def _assert_right_numbers(params):
    reference, _ = _run("eager")
    for a, b in zip(params, reference):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def _temporary_files(*folders):
    found = []
    for folder in folders:
        for root, _, files in os.walk(folder):
            found += [os.path.join(root, f) for f in files if "tmp" in f]
    return found


def test_a_working_cache_is_used(cache):
    params, opt = _run()
    assert opt.engine == "fused" and _module_path(cache).exists()
    assert not kernel_cache._PRIVATE_DIR
    _assert_right_numbers(params)


def test_a_cache_folder_that_cannot_be_created_falls_back_to_a_private_folder(cache):
    blocker = cache.parent / "blocker"
    blocker.write_text("a file where the cache folder should be")
    os.environ["GRADSTEP_CACHE_DIR"] = str(blocker / "kernels")
    params, opt = _run()
    assert opt.engine == "fused"
    assert kernel_cache._PRIVATE_DIR and _module_path(kernel_cache._PRIVATE_DIR[0]).exists()
    _assert_right_numbers(params)


def test_a_read_only_cache_folder_falls_back_to_a_private_folder(cache, monkeypatch):
    cache.mkdir()
    real_mkstemp = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # noqa: A002 - mkstemp's own name
        if dir is not None and str(dir).startswith(str(cache)):
            raise PermissionError(errno.EACCES, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    params, opt = _run()
    assert opt.engine == "fused"
    assert not _module_path(cache).exists()
    assert not _temporary_files(cache)
    _assert_right_numbers(params)


def test_a_full_disk_runs_eagerly_with_one_warning_naming_the_cache(cache, monkeypatch):
    def disk_full(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.warns(RuntimeWarning, match=f"eager engine.*{cache}") as caught:
        params, opt = _run()
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert opt.engine == "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step([np.ones(9), np.ones(70000)])  # no second warning
    assert not _temporary_files(cache, *kernel_cache._PRIVATE_DIR)


def test_a_full_disk_gives_the_eager_numbers(cache, monkeypatch):
    monkeypatch.setattr(
        os, "replace", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
    )
    with pytest.warns(RuntimeWarning, match="kernel cache"):
        params, _ = _run()
    monkeypatch.undo()
    _assert_right_numbers(params)


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe\x00 not python \x80\x81", b"truncated", "half"],
    ids=["non-utf8", "foreign", "truncated"],
)
def test_a_corrupt_kernel_source_is_replaced(cache, garbage):
    path = _module_path(cache)
    cache.mkdir()
    source = _source().encode()
    path.write_bytes(source[: len(source) // 2] if garbage == "half" else garbage)
    params, opt = _run()
    assert opt.engine == "fused"
    assert path.read_bytes() == source
    assert not _temporary_files(cache)
    _assert_right_numbers(params)


@pytest.mark.parametrize("which", ["nbi", "nbc", "both"])
def test_garbage_compiler_cache_files_are_rebuilt(cache, which):
    _run()  # compiles and fills the numba cache next to the module
    name = _module_path(cache).stem
    sys.modules.pop(name)
    files = [
        f for f in (cache / "__pycache__").iterdir() if which == "both" or f.suffix == f".{which}"
    ]
    assert files
    for f in files:
        f.write_bytes(b"\x80\x05garbage\xff" * 7)
    params, opt = _run()
    assert opt.engine == "fused"
    assert not _temporary_files(cache, *kernel_cache._PRIVATE_DIR)
    _assert_right_numbers(params)
    # the garbage is gone: the next process compiles afresh instead of failing
    assert all(not f.exists() or b"garbage" not in f.read_bytes() for f in files)


def test_load_kernels_keeps_its_contract(cache):
    module = kernel_cache.load_kernels("VALUE = 41 + 1\n")
    assert module.VALUE == 42
    assert kernel_cache.load_kernels("VALUE = 41 + 1\n") is module
    assert kernel_cache.cache_dir() == cache
    assert os.path.isfile(module.__file__)  # compilers read the real file
    del sys.modules[module.__name__]
