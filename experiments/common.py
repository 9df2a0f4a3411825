"""What every experiment entry point shares: arguments, logging, result files."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np


MATMUL_PRECISIONS = ("highest", "default")


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags every experiment takes."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where the .h5 files are (default data/)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="where results go (default results/)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p.add_argument("--quick", action="store_true", help="every step and output with tiny settings (< 1 min)")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of progress bars")
    p.add_argument("--devices", type=int, default=None,
                   help="train data-parallel over N local devices (default: all; the batch size must divide by N)")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="on a CPU, expose N devices to JAX (default: one per core); the recurrences (Q3) split each "
                        "batch over them, since their scans run on one core each; 1 turns this off")
    p.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
                   help="float32 matmuls at full float32 precision (highest, the default), or at JAX's default, "
                        "which on NVIDIA GPUs from Ampere on is TensorFloat-32 (10-bit mantissa: gradients off by "
                        "1e-3 to 2e-2 relative); no difference on a CPU")
    p.add_argument("--fresh", action="store_true",
                   help="start over: move earlier results of this question aside (nothing is deleted)")
    return p


def move_aside(path: os.PathLike) -> Optional[Path]:
    """Rename an existing results folder to ``<name>.old-<timestamp>`` (never deletes)."""
    import time

    path = Path(path)
    if not path.exists():
        return None
    aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    path.rename(aside)
    logging.getLogger("experiments").info("--fresh: moved %s aside to %s", path, aside)
    return aside


@contextlib.contextmanager
def session(args, question: str):
    """What every experiment's ``run`` trains inside: the device mesh (``--devices``) and
    per-epoch checkpoints in ``<results-dir>/<question>/checkpoints`` (``--fresh`` moves the
    question's earlier results aside first). Yields the question's results folder."""
    from experiments import runner

    qdir = Path(args.results_dir) / question
    if getattr(args, "fresh", False):
        move_aside(qdir)
    qdir.mkdir(parents=True, exist_ok=True)
    with runner.devices(getattr(args, "devices", None)), runner.checkpointing(qdir / "checkpoints") as store:
        yield qdir, store


def start_devices(args) -> int:
    """First thing after parsing, before any JAX computation: the CPU as ``--cpu-devices``
    devices (default one per core; see :mod:`mp_jax.parallel`), and float32 matmuls at
    ``--matmul-precision`` (see :func:`set_matmul_precision`). Returns the CPU device count."""
    from mp_jax import parallel

    n = parallel.use_cpu_cores(getattr(args, "cpu_devices", None))
    set_matmul_precision(getattr(args, "matmul_precision", "highest"))
    return n


def set_matmul_precision(name: str) -> None:
    """Every float32 matmul of the process at full precision (``"highest"``) or at JAX's
    default (``"default"``).

    JAX's default on NVIDIA GPUs from Ampere on is TensorFloat-32: operands rounded to a
    10-bit mantissa. Measured on an H200 (jax 0.11.2), manual against ``jax.grad`` float32
    gradients of the LSTM at T = 150, N = 64: 3e-3 to 6e-3 in the cell's leaves and 2.1e-2
    in the MLP head's bias under TensorFloat-32, at most 7.8e-7 at full precision, as on a
    CPU. A CPU computes float32 either way (the compiled programs differ only in the
    attribute).
    """
    import jax

    if name not in MATMUL_PRECISIONS:
        raise ValueError(f"--matmul-precision must be one of {MATMUL_PRECISIONS}, found {name!r}")
    jax.config.update("jax_default_matmul_precision", None if name == "default" else "highest")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("jax", "absl", "matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress_flag(args) -> bool | None:
    return False if getattr(args, "no_progress", False) else None


def question_dir(results_dir: os.PathLike, question: str) -> Path:
    d = Path(results_dir) / question
    d.mkdir(parents=True, exist_ok=True)
    return d


def _jsonable(x: Any):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):  # numpy / jax arrays and scalars
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_json(path: os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600
    with os.fdopen(fd, "w") as f:
        json.dump(_jsonable(obj), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_json(path: os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def file_digest(path: os.PathLike, n_hex: int = 16) -> str:
    """A content hash of a data file (keys checkpoints to the exact data used)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n_hex]


def resolve_data(question: str, data_dir: os.PathLike) -> Path:
    """The question's data file: the course file in ``data_dir`` when present, else the
    stand-in, built there on the fly (never overwriting anything). Logs which one."""
    from mp_jax.data import builders
    from mp_jax.data.course import find_course_file

    log = logging.getLogger(f"experiments.{question}")
    path = find_course_file(data_dir, question)
    if path is None:
        log.info("%s: no course file in %s/; building the stand-in from public data", question, data_dir)
        path = builders.build(question, data_dir)
    return path


def describe_source(attrs: dict) -> str:
    """One line on where the data came from (stand-in attributes or the course file)."""
    if attrs.get("source_kind") == "stand-in":
        return f"stand-in: {attrs.get('source', '?')} (licence: {attrs.get('licence', '?')})"
    return "course file"
