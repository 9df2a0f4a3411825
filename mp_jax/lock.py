"""One run at a time per results folder: a lock file ``<folder>/.lock``.

The lock file is created atomically (``O_CREAT | O_EXCL``: of two runs starting at once,
exactly one creates it) and holds, as JSON, the holder's process id, host name, start
time and command line. It is removed when the ``with`` block ends, normally or through an
exception (an interrupt included)::

    from mp_jax.lock import FolderLock
    with FolderLock(results_dir):
        ...  # train, write results

A second run on the same folder stops at once with :class:`LockHeld` (a
:class:`~mp_jax.errors.UserError`), whose message names the holder (pid, host, since
when) and what to do. A lock left behind by a process that no longer exists on this host
(killed with SIGKILL, a crash of the machine) is taken over with a warning on the
``mp_jax.lock`` logger. A lock written on another host cannot be checked and is never taken
over: the message says to delete it when no run is active there.

Process ids are reused: a lock whose pid now belongs to another process is recognised
by the process start time it records (Linux ``/proc``), so it too counts as stale.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import NamedTuple, Optional

from mp_jax.errors import UserError, storage_error

log = logging.getLogger("mp_jax.lock")

LOCK_NAME = ".lock"
#: how long a lock file that is still empty (its creator between ``open`` and ``write``)
#: is waited for before it counts as unreadable
_EMPTY_WAIT_S = 2.0
#: a takeover marker older than this is a leftover of a process that died mid-takeover
_TAKEOVER_STALE_S = 30.0


class LockHeld(UserError):
    """Another run holds the folder's lock. ``holder``: its :class:`Holder` (None when the
    lock file cannot be read)."""

    def __init__(self, message: str, path: Path, holder: Optional["Holder"]):
        super().__init__(message)
        self.path, self.holder = path, holder


class Holder(NamedTuple):
    """What a lock file records about the run that holds it."""

    pid: int
    host: str
    since: float  # time.time() when the lock was taken
    command: str = ""
    start_ticks: Optional[int] = None  # the process's start time (Linux clock ticks since boot)
    token: str = ""  # unique per lock taken: a release removes only its own lock

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        text = f"pid {self.pid} on host {self.host}, since {when}"
        return text + (f", command: {self.command}" if self.command else "")


def _process_start_ticks(pid: int) -> Optional[int]:
    """Field 22 of ``/proc/<pid>/stat`` (the start time), or None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    try:  # the command name (field 2) is in parentheses and may hold spaces
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    return True


def _hostname() -> str:
    return socket.gethostname()


def _command_line() -> str:
    """The command as typed, e.g. ``python -m experiments --quick`` (the interpreter by name)."""
    argv = list(getattr(sys, "orig_argv", None) or sys.argv or [])
    if not argv:
        return ""
    return " ".join([Path(argv[0]).name] + argv[1:])


def _read(path: Path) -> Optional[Holder]:
    """The holder recorded in ``path``; None when the file is missing. Raises ValueError
    when it exists but is not a lock file of this module (empty, or other content)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if not text.strip():
        raise ValueError("empty")
    try:
        d = json.loads(text)
        return Holder(int(d["pid"]), str(d["host"]), float(d["since"]), str(d.get("command", "")),
                      None if d.get("start_ticks") is None else int(d["start_ticks"]), str(d.get("token", "")))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a lock file ({type(e).__name__})") from None


class FolderLock:
    """The lock of one results folder (a context manager; also :meth:`acquire` /
    :meth:`release`).

    Args:
      folder: the folder to lock (created if missing).
      name: the lock file's name inside it (default ``.lock``).
      what: how messages call the folder, e.g. "results folder".
      guards: the path the messages name, when it is not ``folder``: a lock kept beside
        the folder it guards (``FolderLock("results", name=".q1.lock", guards="results/q1")``)
        stays in place while that folder is renamed (moved aside, say).
    """

    def __init__(self, folder: os.PathLike, name: str = LOCK_NAME, what: str = "results folder",
                 guards: Optional[os.PathLike] = None):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.what = what
        self.guarded = Path(guards) if guards is not None else self.folder
        self.holder: Optional[Holder] = None  # this object's, while it holds the lock

    # ------------------------------------------------------------------ public
    @property
    def held(self) -> bool:
        return self.holder is not None

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise :class:`LockHeld` at once (no waiting)."""
        if self.held:
            raise RuntimeError(f"{self.path}: this lock is already held by this object")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(e, self.folder, doing="creating") from e
        me = Holder(os.getpid(), _hostname(), time.time(), _command_line(), _process_start_ticks(os.getpid()),
                    uuid.uuid4().hex)
        deadline = time.monotonic() + _EMPTY_WAIT_S
        while True:  # a lock released or taken over meanwhile, by a run that was quicker: look again
            if self._create(me):
                self.holder = me
                return self
            holder = self._current_holder()
            if holder is None:  # released meanwhile
                continue
            if not self._is_stale(holder):
                raise self._held_error(holder)
            if self._take_over(holder, me):
                self.holder = me
                return self
            if time.monotonic() > deadline:
                raise self._held_error(self._current_holder())
            time.sleep(0.05)

    def release(self) -> None:
        """Remove the lock file if it is still this object's (idempotent)."""
        if self.holder is None:
            return
        mine, self.holder = self.holder, None
        try:
            current = _read(self.path)
        except ValueError:
            current = None
        if current is not None and current.token == mine.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        else:
            log.warning("%s: the lock was no longer this run's (%s); left it in place", self.path,
                        "gone" if current is None else current.describe())

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # ------------------------------------------------------------------ internals
    def _create(self, me: Holder, path: Optional[Path] = None) -> bool:
        """Create the lock file with ``me`` in it; False when it already exists."""
        path = path or self.path
        data = json.dumps(me._asdict()).encode("utf-8")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise storage_error(e, path, doing="creating") from e
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise storage_error(e, path, doing="writing") from e
        os.close(fd)
        return True

    def _current_holder(self) -> Optional[Holder]:
        """The holder in the lock file; waits a little for one being written. An unreadable
        lock file raises :class:`LockHeld` saying what to do."""
        deadline = time.monotonic() + _EMPTY_WAIT_S
        while True:
            try:
                return _read(self.path)
            except ValueError as e:
                if str(e) != "empty" or time.monotonic() > deadline:
                    raise LockHeld(
                        f"{self.path}: the {self.what} {self.guarded} is locked, but the lock file cannot be read "
                        f"({e}). If no run is using {self.guarded}, delete {self.path} and run again.",
                        self.path, None) from None
                time.sleep(0.05)
            except OSError as e:
                raise storage_error(e, self.path, doing="reading") from e

    def _is_stale(self, holder: Holder) -> bool:
        if holder.host != _hostname():
            return False  # cannot be checked from here
        if not pid_alive(holder.pid):
            return True
        if holder.start_ticks is not None:
            now = _process_start_ticks(holder.pid)
            if now is not None and now != holder.start_ticks:
                return True  # the pid was reused by a process started later
        return False

    def _take_over(self, stale: Holder, me: Holder) -> bool:
        """Replace the stale lock by ``me``; False when another run changed it first.

        The check-and-replace runs under a second lock file (``<lock>.takeover``), so two
        runs that both found the same stale lock do not both take it.
        """
        marker = self.path.with_name(self.path.name + ".takeover")
        if not self._create(me, marker):
            with contextlib.suppress(OSError):
                if time.time() - marker.stat().st_mtime > _TAKEOVER_STALE_S:
                    os.unlink(marker)  # left by a run that died mid-takeover
            return False
        try:
            try:
                current = _read(self.path)
            except ValueError:
                return False
            if current is None:
                return self._create(me)
            if current.token != stale.token:
                return False
            os.unlink(self.path)
            taken = self._create(me)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(marker)
        if taken:
            log.warning("%s: took over the lock of a run that no longer exists (%s)", self.path, stale.describe())
        return taken

    def _held_error(self, holder: Optional[Holder]) -> LockHeld:
        if holder is None:
            return LockHeld(f"{self.path}: could not take the lock of the {self.what} {self.guarded}: other runs kept "
                            f"taking it. Run again when they have finished.", self.path, None)
        here = holder.host == _hostname()
        fix = (f"wait for it to finish, or stop it (kill {holder.pid}); if no such run is active, delete {self.path}"
               if here else
               f"wait for it to finish on {holder.host}, or use another folder; if no run is active there, "
               f"delete {self.path}")
        return LockHeld(f"the {self.what} {self.guarded} is in use by another run ({holder.describe()}): {fix}, "
                        f"then run again.", self.path, holder)


@contextlib.contextmanager
def locked(folder: os.PathLike, **kwargs):
    """``with locked(folder): ...``: the same as ``with FolderLock(folder, **kwargs)``."""
    with FolderLock(folder, **kwargs) as lk:
        yield lk


def is_locked(folder: os.PathLike, name: str = LOCK_NAME) -> bool:
    """Whether ``folder`` has a lock file (of a live run or not)."""
    return (Path(folder) / name).exists()


__all__ = ["FolderLock", "Holder", "LockHeld", "LOCK_NAME", "locked", "is_locked", "pid_alive"]
