"""Atomic file writes: text, JSON, bytes and matplotlib figures.

Each writer puts the content in a temporary file in the destination's folder
(``.<name>.<random>.tmp<suffix>``), flushes it to the disk (``fsync``), renames it over the
destination (``os.replace``, atomic on POSIX file systems) and syncs the folder. A reader
therefore sees the old file or the new one, never a part; on any failure (no space left,
an interrupt, an object that is not JSON) the temporary file is removed and an existing
destination is left as it was.

An ``OSError`` (no space left, no permission, a read-only file system) is raised as
:class:`mp_jax.runtime.errors.StorageError`, an ``OSError`` whose message names the destination,
its folder and what to do::

    from mp_jax.runtime import atomic
    atomic.write_json(out / "summary.json", summary)
    atomic.write_text(out / "table.md", table)
    atomic.save_figure(fig, out / "loss.png", dpi=120)   # also closes the figure
    with atomic.replacing(out / "run.h5") as tmp:        # any writer that takes a path
        write_h5(tmp)
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from mp_jax.runtime.errors import StorageError, storage_error

__all__ = ["replacing", "write_bytes", "write_text", "write_json", "save_figure", "StorageError"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary(path: Path) -> tuple[int, Path]:
    """A new temporary file next to ``path``, with the permissions a plain ``open`` would give."""
    # the destination's suffix last, for writers that pick the format by it (or append one)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600
    except OSError:
        pass
    return fd, Path(tmp)


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def replacing(path: os.PathLike, *, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without an exception,
    the file written there is synced and renamed to ``path``.

    For writers that want a path (h5py, ``numpy.save``, ``savefig``). On an exception the
    temporary file is removed and ``path`` is left as it was; an ``OSError`` is raised as
    :class:`~mp_jax.runtime.errors.StorageError` naming ``path``.
    """
    path = Path(path)
    try:
        if mkdir:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temporary(path)
        os.close(fd)
    except OSError as e:
        raise storage_error(e, path, doing="writing", intact=True) from e
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise storage_error(e, path, doing="writing", intact=True) from e
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: os.PathLike, data: bytes, *, mkdir: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring). Returns ``path``."""
    path = Path(path)
    view = memoryview(data).cast("B")
    tmp: Optional[Path] = None
    try:
        if mkdir:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temporary(path)
        try:
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            _remove(tmp)
        raise storage_error(e, path, doing="writing", intact=True) from e
    except BaseException:
        if tmp is not None:
            _remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: os.PathLike, text: str, *, encoding: str = "utf-8", mkdir: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically. Returns ``path``."""
    return write_bytes(path, text.encode(encoding), mkdir=mkdir)


def write_json(path: os.PathLike, obj: Any, *, indent: Optional[int] = 2, sort_keys: bool = False,
               default: Optional[Callable[[Any], Any]] = None, allow_nan: bool = True,
               mkdir: bool = True) -> Path:
    """Write ``obj`` as JSON (and a final newline) to ``path`` atomically. Returns ``path``.

    The object is serialised before anything is written: one that is not JSON raises
    ``TypeError`` and leaves no file behind. ``allow_nan`` as in :func:`json.dumps`:
    NaN and infinities are written as ``NaN``/``Infinity``, which strict JSON readers
    refuse; pass False to raise ``ValueError`` instead, or convert them (e.g. to None) first.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default, allow_nan=allow_nan) + "\n"
    return write_text(path, text, mkdir=mkdir)


def save_figure(fig, path: os.PathLike, *, close: bool = True, mkdir: bool = True, **savefig_kwargs) -> Path:
    """Save a matplotlib figure to ``path`` atomically (the format from the suffix unless
    ``format=`` is given) and close it (``close=False`` keeps it open). Returns ``path``.

    The image is rendered in memory first, so a rendering error leaves no file behind.
    """
    path = Path(path)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    buf = io.BytesIO()
    try:
        fig.savefig(buf, **savefig_kwargs)
    finally:
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return write_bytes(path, buf.getbuffer(), mkdir=mkdir)
