"""What made a question's results, recorded in its ``metrics.json`` (``"provenance"``) so that
REPORT.md can say it without looking at the process that rebuilds it: the configuration (every
field, its hash, the folder it names), the data's digest, the devices, the float32 matmul
precision, the versions of every package the run imported, the git commit of the code (and
whether the tree had changes), when the run started and finished, and the digest of every file
the run wrote beside ``metrics.json`` (its figures and tables: :func:`made_files`), by which the
report refuses a file that another run left there."""
from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

from experiments.config import RunOptions, matmul_precision
from experiments.files import _jsonable

ROOT = Path(__file__).resolve().parents[1]  # the checkout this code runs from
MTIME_SLACK_S = 2.0  # a file system's clock may trail the process's by up to this much


@functools.lru_cache(maxsize=1)
def _distributions_of_modules() -> dict:
    from importlib import metadata

    return metadata.packages_distributions()


def packages(modules=None) -> dict:
    """``{distribution: version}`` of every installed distribution that provides a module the
    process has imported (``modules``: the names of :data:`sys.modules` by default), sorted by
    name; this package's own distribution too. A module that belongs to no distribution (the
    standard library, a local file) is left out, so no version is ever unknown."""
    from importlib import metadata

    tops = {name.split(".")[0] for name in (list(sys.modules) if modules is None else modules)}
    names = {d for t in tops for d in _distributions_of_modules().get(t, ())}
    names.add("mp_jax")
    out = {}
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        out.setdefault(dist.metadata["Name"] or name, dist.version)
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def git_state(root: os.PathLike = ROOT) -> Optional[dict]:
    """``{"commit": sha, "dirty": bool}`` of the git checkout at ``root`` (dirty: a tracked
    file differs from the commit); None when ``root`` is not the top of a checkout or git is
    missing."""
    def git(*args) -> Optional[str]:
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != Path(root).resolve():
        return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    if commit is None:
        return None
    return {"commit": commit, "dirty": bool(status)}


def devices(ctx=None) -> dict:
    """The JAX devices of the run: platform, count, kinds, processes, and the devices every
    run was told to split its batches over (``--devices``; None: each run's default)."""
    import jax

    mesh = getattr(ctx, "mesh", None) if getattr(ctx, "mesh_explicit", False) else None
    return {"platform": jax.default_backend(), "count": jax.device_count(),
            "kinds": sorted({d.device_kind for d in jax.devices()}), "processes": jax.process_count(),
            "split_over": None if mesh is None else int(mesh.devices.size)}


def file_digest(path: os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def made_files(folder: os.PathLike, since: float) -> dict:
    """``{name: digest}`` of the files directly in ``folder`` written at ``since`` (a
    ``time.time()``) or later: what the run that started then wrote beside its
    ``metrics.json`` (hidden and temporary files aside)."""
    out = {}
    for p in sorted(Path(folder).iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.name != "metrics.json" and \
                p.stat().st_mtime >= since - MTIME_SLACK_S:
            out[p.name] = file_digest(p)
    return out


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).isoformat(timespec="seconds")


def record(config: RunOptions, question: str, *, data: Optional[str], ctx=None, folder: Optional[os.PathLike] = None,
           started: Optional[float] = None) -> dict:
    """The ``provenance`` entry of a question's ``metrics.json``: the run that made it.

    Args:
      config: the question's configuration (every field is recorded).
      question: "q1", "q2" or "q3".
      data: the data file's content digest.
      ctx: the question's :class:`mp_jax.protocols.runs.RunContext` (its devices, and when it started).
      folder: the results folder, whose files written since ``started`` are listed with their digests.
      started: when the run started (default: when ``ctx`` was made).
    """
    precision = matmul_precision()
    started = started if started is not None else getattr(ctx, "started", None)
    now = time.time()
    return {
        "run_id": f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{uuid.uuid4().hex[:8]}",
        "question": question,
        "folder": config.results_name(question, precision),
        "quick": bool(config.is_quick),
        "recipe": config.recipe,
        "differs": {k: _jsonable(v) for k, v in config.differences().items()},
        "config_type": type(config).__name__,
        "config": _jsonable(dataclasses.asdict(config)),
        "config_hash": config.config_hash(precision),
        "data_digest": data,
        "matmul_precision": precision,
        "devices": devices(ctx),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "packages": packages(),
        "git": git_state(),
        "started": None if started is None else _iso(started),
        "finished": _iso(now),
        "wall_seconds": None if started is None else now - started,
        "files": {} if folder is None or started is None else made_files(folder, started),
    }
