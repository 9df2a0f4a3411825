"""Atomic save and exact resume of a training run (:class:`mp_jax.engine.train.FitState`).

A checkpoint is one HDF5 file: every array leaf of ``(params, opt_state, key,
best_params)`` as a dataset ``leaves/<i>``, the scalars and the history as attributes,
and a ``meta`` JSON attribute (the run's configuration, its hash, whether it finished).
It is built in memory and written with :func:`mp_jax.runtime.atomic.write_bytes` (a temporary
file, synced, then renamed), so a crash or a full disk leaves the previous one intact; an
``OSError`` is raised as :class:`mp_jax.runtime.errors.StorageError` naming the file's folder.
Loading checks the file against a template state (same tree, shapes and dtypes) and
raises :class:`CheckpointError` on any mismatch or corruption: never a silent reuse.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mp_jax.runtime import atomic
from mp_jax.runtime.errors import UserError
from mp_jax.engine.train import FitState

FORMAT_VERSION = 1


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used (corrupt, or of another run)."""

    hint = "Move that file aside (or delete it) to start its run over."


def _arrays(state: FitState) -> list:
    return jax.tree.leaves((state.params, state.opt_state, state.key, state.best_params))


def save_state(path: os.PathLike, state: FitState, meta: dict) -> Path:
    """Write ``state`` and ``meta`` to ``path`` atomically (replacing an older checkpoint)."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        g = f.create_group("leaves")
        for i, leaf in enumerate(_arrays(state)):
            g.create_dataset(f"{i:05d}", data=np.asarray(leaf))
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["n_leaves"] = len(g)
        f.attrs["epoch"] = int(state.epoch)
        f.attrs["best_loss"] = float(state.best_loss)
        f.attrs["best_epoch"] = int(state.best_epoch)
        f.attrs["bad_epochs"] = int(state.bad_epochs)
        f.attrs["history"] = json.dumps(state.history)
        f.attrs["meta"] = json.dumps(meta, sort_keys=True)
    return atomic.write_bytes(path, buf.getbuffer())


def read_meta(path: os.PathLike) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["meta"])
    except Exception as e:  # noqa: BLE001 - any failure means an unusable file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None


def load_state(path: os.PathLike, template: FitState, expect_meta: dict | None = None) -> tuple[FitState, dict]:
    """Read a checkpoint written by :func:`save_state` into the structure of ``template``.

    ``expect_meta``: keys whose values must match the stored meta (e.g. the config hash).
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
                raise CheckpointError(f"{path}: format version {f.attrs.get('format_version')} != {FORMAT_VERSION}")
            meta = json.loads(f.attrs["meta"])
            stored = [f["leaves"][f"{i:05d}"][()] for i in range(int(f.attrs["n_leaves"]))]
            scalars = {k: f.attrs[k] for k in ("epoch", "best_loss", "best_epoch", "bad_epochs")}
            history = json.loads(f.attrs["history"])
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated, not HDF5, missing keys...
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    for k, v in (expect_meta or {}).items():
        if meta.get(k) != v:
            raise CheckpointError(f"{path}: belongs to another run ({k} = {meta.get(k)!r}, expected {v!r})")
    want = _arrays(template)
    if len(stored) != len(want):
        raise CheckpointError(f"{path}: {len(stored)} arrays stored, the run has {len(want)}")
    for i, (a, b) in enumerate(zip(stored, want)):
        if a.shape != b.shape or a.dtype != np.dtype(b.dtype):
            raise CheckpointError(
                f"{path}: array {i} is {a.shape} {a.dtype}, the run expects {tuple(b.shape)} {np.dtype(b.dtype)}")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise CheckpointError(f"{path}: array {i} holds non-finite values")
    tree = jax.tree.structure((template.params, template.opt_state, template.key, template.best_params))
    params, opt_state, key, best_params = jax.tree.unflatten(tree, [jnp.asarray(a) for a in stored])
    state = FitState(params=params, opt_state=opt_state, key=key, epoch=int(scalars["epoch"]),
                     best_params=best_params, best_loss=float(scalars["best_loss"]),
                     best_epoch=int(scalars["best_epoch"]), bad_epochs=int(scalars["bad_epochs"]),
                     history=history)
    return state, meta


def config_hash(obj: Any, n_hex: int = 12) -> str:
    """A stable hash of a JSON-serialisable configuration."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n_hex]


def run_key(config: Any, excluded: Mapping[str, str], *, data: str, split: Any, **run: Any) -> dict:
    """What identifies a run, for :func:`config_hash`: every field of the frozen dataclass
    ``config`` (:func:`dataclasses.asdict`) except those of ``excluded`` (``{field: why it
    cannot change a result}``, e.g. where results are written), the data's digest ``data``,
    the ``split`` of it the run trains on, and the run's own settings ``run`` (its model,
    seed, stage...). A field of the configuration that shapes a run therefore always changes
    its key: no field has to be remembered in a list of keyed settings.

    Raises ValueError when ``excluded`` names a field ``config`` does not have (a stale
    exclusion would hide nothing and mislead the reader)."""
    import dataclasses

    fields = dataclasses.asdict(config)
    stale = sorted(set(excluded) - set(fields))
    if stale:
        raise ValueError(f"excluded from the run key but not fields of {type(config).__name__}: {stale}")
    return {"config": {k: v for k, v in fields.items() if k not in excluded}, "type": type(config).__name__,
            "data": data, "split": split, "run": run}
