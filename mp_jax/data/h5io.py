"""Safe writing of HDF5 files: never overwrite without ``force``, always atomically."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


class RefuseOverwrite(FileExistsError):
    pass


@contextlib.contextmanager
def atomic_h5(path: os.PathLike, *, force: bool = False):
    """Yield an open ``h5py.File`` on a temporary file that becomes ``path`` on success.

    Refuses to replace an existing ``path`` unless ``force``. On an exception (or an
    interrupt) the temporary file is removed and ``path`` is left as it was.
    """
    import h5py

    path = Path(path)
    if path.exists() and not force:
        raise RefuseOverwrite(f"{path} already exists; not overwriting it (pass --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)  # mkstemp makes the file 0600; give it the usual permissions
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
