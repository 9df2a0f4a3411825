"""What the entry points read and write: each question's results folder, JSON and text
files written atomically by the writing process only (:mod:`mp_jax.runtime.atomic`,
:mod:`mp_jax.engine.distributed`), the data file (the course's or the stand-in, its content
digest) and the lines that say where the data came from."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mp_jax.runtime import atomic
from mp_jax.engine import distributed
from mp_jax.runtime.errors import storage_error


def question_dir(results_dir: os.PathLike, question: str) -> Path:
    d = Path(results_dir) / question
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, d, doing="creating") from e
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
    """Write JSON (arrays as lists, non-finite floats as null) atomically
    (:func:`mp_jax.runtime.atomic.write_json`: a reader sees the old file or the new one, never a
    part; no space left raises a one-line error naming the folder). Only the writing
    process of a distributed run writes (:func:`mp_jax.engine.distributed.is_writer`)."""
    path = Path(path)
    if not distributed.is_writer():
        return path
    return atomic.write_json(path, _jsonable(obj))


def write_text(path: os.PathLike, text: str) -> Path:
    """Write a text file atomically (:func:`mp_jax.runtime.atomic.write_text`); process 0 only."""
    path = Path(path)
    if not distributed.is_writer():
        return path
    return atomic.write_text(path, text)


def write_metrics(folder: os.PathLike, metrics: dict, config, question: str, *, data: Optional[str], ctx=None) -> Path:
    """Write ``<folder>/metrics.json``: ``metrics`` and, under ``"provenance"``, what made them
    (:func:`experiments.provenance.record`: the configuration, its hash, the data's digest
    ``data``, the devices, the matmul precision, the packages imported, the git commit, and
    the digest of every file the run wrote in ``folder`` since ``ctx`` started). Call it last,
    after the figures and tables. Process 0 only, atomically (:func:`write_json`)."""
    if not distributed.is_writer():
        return Path(folder) / "metrics.json"
    from experiments import provenance

    record = provenance.record(config, question, data=data, ctx=ctx, folder=folder)
    return write_json(Path(folder) / "metrics.json", {**metrics, "provenance": record})


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
    """Where the data came from, in full (stand-in attributes with their credits and
    licence, or the course file): for ``metrics.json`` and REPORT.md."""
    if attrs.get("source_kind") == "stand-in":
        return f"stand-in: {attrs.get('source', '?')} (licence: {attrs.get('licence', '?')})"
    return "course file"


def short_source(attrs: dict, limit: int = 100) -> str:
    """Where the data came from in a few words: "course file", or "stand-in from" the
    names of the stand-in's sources (a file path shortened to its stem; credits dropped)."""
    if attrs.get("source_kind") != "stand-in":
        return "course file"
    names = []
    for part in str(attrs.get("source", "")).split("; "):
        name = part.split(" (")[0].split(": ")[0].strip()
        if "/" in name:
            name = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if name:
            names.append(name)
    text = "stand-in from " + (", ".join(names) or "?")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def announce_data(question: str, path: os.PathLike, attrs: dict) -> str:
    """Print (and return) the one line a question says about its data."""
    line = f"{question} data: {path} ({short_source(attrs)}" + \
        ("; credits in REPORT.md and data/README.md)" if attrs.get("source_kind") == "stand-in" else ")")
    print(line, flush=True)
    return line
