"""Atomic writes: all or nothing, a full disk as one clear error, nothing partial left."""
from __future__ import annotations

import errno
import json
import os
import stat

import numpy as np
import pytest

from mp_jax.runtime import atomic
from mp_jax.runtime.errors import StorageError, UserError

OLD = "the older file\n"


def names(folder) -> list:
    return sorted(p.name for p in folder.iterdir())


def test_writers_round_trip_with_plain_file_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "héllo\n")
        atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
        atomic.write_json(tmp_path / "sub" / "c.json", {"x": [1, 2.5], "nan": float("nan")})
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    text = (tmp_path / "sub" / "c.json").read_text()
    assert text.endswith("\n") and json.loads(text)["x"] == [1, 2.5]
    assert names(tmp_path) == ["a.txt", "b.bin", "sub"] and names(tmp_path / "sub") == ["c.json"]
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_write_json_refuses_nan_when_asked_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        atomic.write_json(tmp_path / "c.json", {"x": float("inf")}, allow_nan=False)
    with pytest.raises(TypeError):
        atomic.write_json(tmp_path / "c.json", {"x": object()})
    assert names(tmp_path) == []


def enospc_after_some_bytes(monkeypatch):
    """``os.write`` that writes a few bytes, then fails as a full disk does."""
    real = os.write
    calls = []

    def write(fd, data):
        if calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        calls.append(fd)
        return real(fd, bytes(data[:5]))

    monkeypatch.setattr(os, "write", write)


def failing(name, err=errno.ENOSPC):
    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))
    return name, fail


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_full_disk_is_one_clear_error_and_leaves_the_older_file(where, tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text(OLD)
    if where == "write":
        enospc_after_some_bytes(monkeypatch)
    else:
        monkeypatch.setattr(os, *failing(where))
    with pytest.raises(StorageError) as e:
        atomic.write_json(path, {"a": list(range(1000))})
    monkeypatch.undo()
    assert isinstance(e.value, OSError) and isinstance(e.value, UserError) and e.value.errno == errno.ENOSPC
    assert str(e.value) == (f"no space left on the device while writing {path}: free some space in {tmp_path}/ "
                            f"(or write to another folder), then run the same command again ({path} was left as it was)")
    assert path.read_text() == OLD
    assert names(tmp_path) == ["summary.json"]  # no temporary file left


def test_a_full_disk_with_no_older_file_leaves_nothing(tmp_path, monkeypatch):
    enospc_after_some_bytes(monkeypatch)
    with pytest.raises(StorageError, match="no space left"):
        atomic.write_text(tmp_path / "table.md", "x" * 10_000)
    monkeypatch.undo()
    assert names(tmp_path) == []


def test_no_permission_names_the_folder(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, *failing("mkstemp", errno.EACCES))
    with pytest.raises(StorageError) as e:
        atomic.write_text(tmp_path / "a.txt", "x")
    monkeypatch.undo()
    assert e.value.errno == errno.EACCES
    assert str(e.value).startswith(f"permission denied while writing {tmp_path / 'a.txt'}: make {tmp_path}/ writable")


def test_an_interrupt_mid_write_leaves_the_older_file(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text(OLD)

    def write(fd, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == OLD and names(tmp_path) == ["a.txt"]


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = atomic.save_figure(fig, tmp_path / "loss.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.number not in plt.get_fignums()

    old = path.read_bytes()
    fig, ax = plt.subplots()
    enospc_after_some_bytes(monkeypatch)
    with pytest.raises(StorageError, match=f"free some space in {tmp_path}/"):
        atomic.save_figure(fig, path)
    monkeypatch.undo()
    assert path.read_bytes() == old and names(tmp_path) == ["loss.png"]
    assert fig.number not in plt.get_fignums()


def test_replacing_serves_writers_that_want_a_path(tmp_path, monkeypatch):
    path = tmp_path / "arr.npy"
    with atomic.replacing(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        np.save(tmp, np.arange(3), allow_pickle=False)
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    with pytest.raises(RuntimeError):
        with atomic.replacing(path) as tmp:
            np.save(tmp, np.zeros(5), allow_pickle=False)
            raise RuntimeError("interrupted")
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    monkeypatch.setattr(os, *failing("replace"))
    with pytest.raises(StorageError, match="no space left"):
        with atomic.replacing(path) as tmp:
            np.save(tmp, np.zeros(5), allow_pickle=False)
    monkeypatch.undo()
    assert names(tmp_path) == ["arr.npy"]
