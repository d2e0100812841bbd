"""Atomic writes: whole or nothing, no temporary files left, and a new file's usual permissions; freed memory handed back."""
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from utils import io
from utils.io import atomic_dir, atomic_path, is_fresh


@pytest.fixture
def umask():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path, umask):
    target = tmp_path / "sub" / "results.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json" and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # 0o640, not mkstemp's 0o600
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_atomic_dir_replaces_a_whole_directory(tmp_path, umask):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("writer failed")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("a")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_is_fresh_needs_the_output_and_no_newer_input(tmp_path):
    source, output = tmp_path / "weights.pth", tmp_path / "results.json"
    source.write_text("w")
    assert not is_fresh(output, source)
    output.write_text("r")
    os.utime(source, (100, 100))
    os.utime(output, (200, 200))
    assert is_fresh(output, source) and is_fresh(output)
    os.utime(source, (300, 300))
    assert not is_fresh(output, source)


def _resident_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file() or io._libc_malloc_trim() is None,
                    reason="glibc on Linux: malloc_trim and /proc")
def test_release_free_memory_hands_freed_heap_pages_back():
    # Arrays below glibc's mmap threshold live on the heap; freeing every other one leaves holes that the heap's
    # top cannot give back, so they stay resident until malloc_trim returns their pages.
    arrays = [np.ones(16 * 1024, np.float32) for _ in range(1600)]  # 64 KiB each, 100 MiB in all, pages touched
    del arrays[::2]
    before = _resident_mib()
    io.release_free_memory()
    assert before - _resident_mib() > 20, (before, _resident_mib())


def test_release_free_memory_every_nth_call(monkeypatch):
    trims = []
    monkeypatch.setattr(io, "_libc_malloc_trim", lambda: trims.append)
    monkeypatch.setattr(io, "_RELEASE_CALLS", [0])
    for _ in range(7):
        io.release_free_memory(every=3)
    assert trims == [0, 0]  # calls 3 and 6, each malloc_trim(0)
    io.release_free_memory()
    assert trims == [0, 0, 0]
