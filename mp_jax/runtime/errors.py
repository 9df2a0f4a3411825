"""Errors a user can act on: a message that names the file or flag, what went wrong and
what to do, shown by :func:`mp_jax.runtime.cli.run_main` as one line ``error: ...``.

* :class:`UserError`: the base class. ``str(e)`` is the message; an optional ``hint``
  (a class attribute or a constructor argument) is a further sentence saying what to do,
  which :func:`mp_jax.runtime.cli.run_main` appends.
* :class:`StorageError`: an :class:`OSError` (no space left, no permission, a read-only
  file system, ...) turned into such a message by :func:`storage_error`. It is still an
  ``OSError`` with the original ``errno``, so ``except OSError`` keeps catching it.

Nothing here imports JAX: every entry point and library module can use it.
"""
from __future__ import annotations

import errno as _errno
import os
import re
from pathlib import Path
from typing import Optional

#: errno values that mean "the disk (or the user's quota) is full".
NO_SPACE = frozenset({_errno.ENOSPC, getattr(_errno, "EDQUOT", _errno.ENOSPC)})
#: errno values that mean "this user may not do that here".
NO_PERMISSION = frozenset({_errno.EACCES, _errno.EPERM})


class UserError(Exception):
    """An error whose message already says what went wrong and what to do.

    Args:
      message: one sentence or two, naming the file / key / flag, what was expected, what
        was found.
      hint: what to do, when the message does not say it (overrides the class's ``hint``).
    """

    hint: Optional[str] = None

    def __init__(self, message: str, *args, hint: Optional[str] = None):
        super().__init__(message, *args)
        if hint is not None:
            self.hint = hint

    def user_message(self) -> str:
        """The message and the hint, as one line."""
        text = " ".join(str(self.args[0]).split()) if self.args else type(self).__name__
        return f"{text} {self.hint}" if self.hint else text


class StorageError(UserError, OSError):
    """An ``OSError`` met while reading or writing ``path``, with a message saying what to do.

    Attributes: ``errno`` (the original error number), ``filename`` (the path concerned).
    """

    def __init__(self, message: str, err: Optional[int] = None, path: Optional[os.PathLike] = None):
        UserError.__init__(self, message)
        self.errno = err
        self.filename = None if path is None else str(path)

    def __str__(self) -> str:  # OSError's own __str__ would print "[Errno ...]" forms
        return str(self.args[0])


def _errno_of(e: OSError) -> Optional[int]:
    """The error number of ``e``; h5py and some libraries only write it in the message
    (``... errno = 28, error message = 'No space left on device' ...``)."""
    if e.errno is not None:
        return e.errno
    m = re.search(r"errno\s*=\s*(\d+)", str(e))
    return int(m.group(1)) if m else None


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def storage_error(e: OSError, path: Optional[os.PathLike] = None, *, doing: Optional[str] = None,
                  intact: bool = False) -> StorageError:
    """``e`` as a :class:`StorageError` whose message names ``path`` (default: the path
    the error names) and what to do.

    ``doing``: what was being done to ``path`` ("writing", "reading", "creating"), when
    the caller knows. ``intact``: the caller guarantees an existing ``path`` was not
    touched (an atomic write); the message then says so.

    No space left (ENOSPC, EDQUOT) names the folder to free space in; no permission
    (EACCES, EPERM) and a read-only file system (EROFS) say to choose another folder.
    Other errors keep the system's wording, with the path.
    """
    if isinstance(e, StorageError):
        return e
    err = _errno_of(e)
    target = Path(path) if path is not None else (Path(e.filename) if e.filename else None)
    where = f"{target}" if target is not None else "a file"
    folder = None if target is None else target if _is_dir(target) else target.parent
    in_folder = f"{folder}/" if folder is not None else "its folder"
    while_ = f" while {doing} {where}" if doing else f" ({where})"
    reason = e.strerror or str(e)
    if err in NO_SPACE:
        what = "no space left on the device" if err == _errno.ENOSPC else "disk quota exceeded"
        msg = (f"{what}{while_}: free some space in {in_folder} (or write to another folder), "
               f"then run the same command again")
        if intact and target is not None:
            msg += f" ({target} was left as it was)"
    elif err in NO_PERMISSION:
        if doing == "reading":
            fix = f"make {where} readable for this user"
        elif doing:
            fix = f"make {in_folder} writable for this user, or choose another folder"
        else:
            fix = f"check the permissions of {where} and of {in_folder} for this user, or choose another folder"
        msg = f"permission denied{while_}: {fix}"
    elif err == _errno.EROFS:
        msg = f"{where} is on a read-only file system: choose a folder on a writable disk"
    elif err == _errno.ENOENT:
        msg = f"{where}: no such file or directory"
    else:
        msg = f"{where}: {reason}" if target is not None else reason
    return StorageError(" ".join(msg.split()), err, target)
