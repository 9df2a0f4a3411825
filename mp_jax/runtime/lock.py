"""One run at a time per results folder: ``with FolderLock(folder):`` holds ``fcntl.flock`` on ``<folder>/.lock``
and records there the holder (pid, host, start time, command) that a second run's :class:`LockHeld` names; the file
goes when the block ends. The kernel drops a dead process's flock, so a lock file left behind is taken over with a
warning naming its holder; not one from another host (network file systems may keep flocks per host)."""
import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import NamedTuple, Optional

from mp_jax.runtime.errors import UserError

log = logging.getLogger("mp_jax.runtime.lock")
LOCK_NAME = ".lock"


class Holder(NamedTuple):
    """What a lock file records about the run that holds it (``since``: its ``time.time()``)."""
    pid: int
    host: str
    since: float
    command: str = ""

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on host {self.host}, since {when}" + (f", command: {self.command}" * bool(self.command))


def _holder(read) -> Optional[Holder]:  # None for no file, an empty one (being written) or another text
    with contextlib.suppress(FileNotFoundError, ValueError, TypeError, AttributeError):
        return Holder(**{k: v for k, v in json.loads(read()).items() if k in Holder._fields})


class LockHeld(UserError):
    """Another run holds the lock file ``path``; ``holder``: its :class:`Holder` (None: not written yet)."""


class FolderLock:
    """The lock of ``folder`` (made if missing) in its file ``name``, a context manager; messages call it ``what``
    and name ``guards`` if given (a lock beside a folder that may be renamed, e.g. ``results/q1``)."""

    def __init__(self, folder: os.PathLike, name: str = LOCK_NAME, what: str = "results folder",
                 guards: Optional[os.PathLike] = None):
        self.folder, self.path, self.what = Path(folder), Path(folder) / name, what
        self.guarded, self.holder = Path(guards if guards is not None else folder), None

    held = property(lambda self: self.holder is not None)

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise :class:`LockHeld` at once."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._held(_holder(self.path.read_text)) from None
            if os.fstat(fd).st_nlink:
                break
            os.close(fd)  # unlinked by the release of the run that held it meanwhile: lock the new file
        try:
            text = os.read(fd, 1 << 16).decode("utf-8", "replace")
            if (old := _holder(lambda: text)) and old.host != socket.gethostname():
                raise self._held(old)
            argv = getattr(sys, "orig_argv", None) or sys.argv or [""]
            command = " ".join([Path(argv[0]).name, *argv[1:]]).split()  # as typed, on one line
            me = Holder(os.getpid(), socket.gethostname(), time.time(), " ".join(command))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me._asdict()).encode("utf-8"), 0)
        except BaseException:
            os.close(fd)
            raise
        if text.strip():  # left by a run that died holding it
            log.warning("%s: took over the lock of a run that no longer exists (%s)", self.path,
                        old.describe() if old else f"unreadable: {text[:80]!r}")
        self.holder, self._fd = me, fd
        return self

    def release(self) -> None:
        """Unlock, and remove the lock file if it still holds this run's record (idempotent)."""
        if self.holder is not None:
            mine, self.holder = self.holder, None
            try:
                if (current := _holder(self.path.read_text)) == mine:
                    self.path.unlink()
                else:  # deleted by hand, say, and taken by another run
                    log.warning("%s: the lock was no longer this run's (%s); left it in place", self.path,
                                current.describe() if current else "gone")
            finally:
                os.close(self._fd)

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()

    def _held(self, h: Optional[Holder]) -> LockHeld:
        fix = "wait for it to finish"
        if h and h.host == socket.gethostname():
            fix += f", or stop it (kill {h.pid}); if no such run is active, delete {self.path}"
        elif h:
            fix += f" on {h.host}, or use another folder; if no run is active there, delete {self.path}"
        e = LockHeld(f"the {self.what} {self.guarded} is in use by another run "
                     f"({h.describe() if h else 'its record is being written'}): {fix}, then run again.")
        e.path, e.holder = self.path, h
        return e
