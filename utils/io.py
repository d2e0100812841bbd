"""Atomic file and directory writes: outputs appear whole or not at all; freed memory handed back to the system."""
import ctypes
import ctypes.util
import contextlib
import functools
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix so writers that look at it (numpy, torch,
    OpenCV) pick the right format. On an exception the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; give it a new file's permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; rename it to ``path`` on success.

    An existing ``path`` is replaced only once the new directory is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(path: str | Path) -> None:
    """Remove the temporary folders that an interrupted ``atomic_dir(path)`` left beside ``path``."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp") if path.parent.is_dir() else ():
        shutil.rmtree(stale, ignore_errors=True)


def remove_stale_temporary_files(path: str | Path) -> None:
    """Remove the temporary files that an interrupted ``atomic_path(path)`` left beside ``path`` (its
    ``mkstemp`` names: the stem, eight random characters and ``.tmp`` with the suffix)."""
    path = Path(path)
    pattern = f".{glob.escape(path.stem)}.{'?' * 8}.tmp{glob.escape(path.suffix)}"
    for stale in path.parent.glob(pattern) if path.parent.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def is_fresh(output: str | Path, *inputs: str | Path) -> bool:
    """``output`` exists and was modified no earlier than every one of ``inputs``."""
    output = Path(output)
    return output.exists() and all(output.stat().st_mtime >= Path(i).stat().st_mtime for i in inputs)


@functools.cache
def _libc_malloc_trim():
    """glibc's ``malloc_trim``, or None on another C library (macOS, musl) or where it cannot be loaded."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_RELEASE_CALLS = [0]  # this process's calls of release_free_memory


def release_free_memory(every: int = 1) -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim(0)``; nothing elsewhere).

    A long run that allocates and frees large arrays of varying sizes (one video's detections after another)
    otherwise keeps the freed pages resident: its memory would grow with the number of videos it has seen.
    ``every``: only every n-th call in this process trims (a trim walks the heap, about a millisecond: short
    videos need not pay it each)."""
    _RELEASE_CALLS[0] += 1
    trim = _libc_malloc_trim() if _RELEASE_CALLS[0] % every == 0 else None
    if trim is not None:
        trim(0)
