"""The kernel cache: generated kernel modules, written to files and imported.

Files are named by the hash of their source (numba and Triton compile only code that
lives in a file); an unusable cache folder falls back to a private one.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import types
from pathlib import Path


def cache_dir() -> Path:
    """Where generated kernels live: ``$GRADSTEP_CACHE_DIR`` or the user cache."""
    root = os.environ.get("GRADSTEP_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradstep" / "kernels"


def load_kernels(source: str):
    """Import the kernel module for ``source`` (writing its file first if needed).

    The module's file lives in :func:`cache_dir`, named by the hash of its source, so
    compilers that cache next to the source (numba) find their work again in the next
    process. The file is written atomically and compared byte for byte with
    ``source``; an unreadable, truncated or foreign file is replaced. When the cache
    folder cannot be used (read-only, full disk, unusable compiler caches) the module
    is built in a folder private to this process instead (removed at exit); if that
    fails too, :class:`KernelCacheError` names the cache folder.
    """
    name = _module_name(source)
    module = sys.modules.get(name)
    if module is not None and getattr(module, _LOADED, False):
        return module
    with _LOAD_LOCK:  # one thread builds it; the others wait for the whole module
        module = sys.modules.get(name)
        if module is not None and getattr(module, _LOADED, False):
            return module
        try:
            return _import_from(cache_dir(), name, source)
        except Exception as error:  # the shared cache is unusable: build privately
            return _load_privately(name, source, error)


def reload_kernels(source: str, error: BaseException):
    """The kernel module for ``source`` rebuilt in this process's private folder,
    after using the shared copy failed with ``error`` (for example on unreadable
    compiler cache files, which are removed so the next process rebuilds them)."""
    name = _module_name(source)
    with _LOAD_LOCK:
        module = sys.modules.get(name)
        if module is not None and _is_private(module) and getattr(module, _LOADED, False):
            return module
        _remove_compiled(cache_dir(), name)
        return _load_privately(name, source, error)


_LOAD_LOCK = threading.RLock()
_LOADED = "__gradstep_loaded__"  # set once a kernel module has run to its end


class KernelCacheError(Exception):
    """Neither the kernel cache nor a private folder could build a kernel module."""


def _module_name(source: str) -> str:
    return f"gradstep_kernel_{hashlib.sha256(source.encode()).hexdigest()[:20]}"


def _load_privately(name: str, source: str, first: BaseException):
    try:
        return _import_from(_private_dir(), name, source)
    except Exception as error:
        if isinstance(error, OSError) or isinstance(first, OSError):
            raise KernelCacheError(
                f"the kernel cache {cache_dir()} cannot be used ({first}) and no private "
                f"folder could replace it ({error})"
            ) from error
        raise  # the same failure outside the cache: a real error, not the cache's


def _import_from(folder: Path, name: str, source: str):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    data = source.encode()
    try:
        current = path.read_bytes()
    except OSError:
        current = None
    if current != data:
        _write_atomically(path, data)
    # the module runs the source we hold (a file changed under us cannot inject
    # code); its functions name the real file, which compilers read and key on
    code = compile(source, str(path), "exec")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        if sys.modules.get(name) is module:
            del sys.modules[name]
        raise
    setattr(module, _LOADED, True)
    return module


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so
    readers see the old file or the new one, never a part; nothing is left behind
    on failure."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_compiled(folder: Path, name: str) -> None:
    """Remove compiler cache files of module ``name`` (best effort)."""
    with contextlib.suppress(OSError):
        for f in (folder / "__pycache__").glob(f"{name}.*"):
            with contextlib.suppress(OSError):
                f.unlink()


_PRIVATE_DIR: list[Path] = []


def _private_dir() -> Path:
    if not _PRIVATE_DIR:
        path = Path(tempfile.mkdtemp(prefix="gradstep-kernels-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _PRIVATE_DIR.append(path)
    return _PRIVATE_DIR[0]


def _is_private(module) -> bool:
    return bool(_PRIVATE_DIR) and Path(module.__file__).parent == _PRIVATE_DIR[0]
