"""Loaders for the course's three HDF5 files, with validation.

Schema (the course's files; data/README.md describes them and their stand-ins):

* ``data1.h5``: ``data`` <float>[N, 3, 16, 16] RGB patches (``invXForm``/``xForm`` ignored).
* ``data2.h5``: ``words`` <bytes>[V]; ``trainx``/``traind``, ``valx``/``vald``,
  ``testx``/``testd`` <int>[N, 3] / [N], **1-based** word indices.
* ``data3.h5``: ``trX``/``trY``, ``tstX``/``tstY`` <float>[N, T, 3] / one-hot [N, C];
  optional ``trSubject``/``tstSubject`` <int>[N] subject ids (stand-ins carry them).

Files are opened read-only. Every problem raises :class:`DataError` naming the file,
the dataset key, what was expected, what was found and what to do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from mp_jax.runtime.errors import UserError

COURSE_FILES = {
    "q1": ("data1.h5", "assign3_data1.h5"),
    "q2": ("data2.h5", "assign2_data2.h5"),
    "q3": ("data3.h5", "assign3_data3.h5"),
}
QUESTIONS = ("q1", "q2", "q3")
ACTIVITY_CLASSES = ("downstairs", "jogging", "sitting", "standing", "upstairs", "walking")

BUILD_HINT = {
    "q1": "python -m mp_jax.data build --only q1",
    "q2": "python -m mp_jax.data build --only q2",
    "q3": "python -m mp_jax.data build --only q3",
}


class DataError(UserError, ValueError):
    """A data file that cannot be used, with a message saying why and what to do."""


class PatchData(NamedTuple):
    patches: np.ndarray  # <float32>[N, 3, 16, 16] RGB, channels first
    attrs: dict


class NgramData(NamedTuple):
    words: tuple[str, ...]  # vocabulary, V entries
    train_x: np.ndarray  # <int32>[N, 3], 0-based
    train_y: np.ndarray  # <int32>[N], 0-based
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    attrs: dict


class ActivityData(NamedTuple):
    class_names: tuple[str, ...]
    train_x: np.ndarray  # <float32>[N, T, 3]
    train_y: np.ndarray  # <int32>[N], class index
    test_x: np.ndarray
    test_y: np.ndarray
    train_subjects: Optional[np.ndarray]  # <int32>[N] or None
    test_subjects: Optional[np.ndarray]
    attrs: dict


# ----------------------------------------------------------------------------- helpers
def parse_questions(text: Optional[str]) -> list[str]:
    """``"q1,q3"`` -> ``["q1", "q3"]``; empty or None -> all; ValueError on unknown names."""
    if not text:
        return list(QUESTIONS)
    qs = [q.strip() for q in text.split(",") if q.strip()]
    bad = [q for q in qs if q not in QUESTIONS]
    if bad:
        raise ValueError(f"--only: unknown question(s) {bad}; choose from {','.join(QUESTIONS)}")
    return qs


def find_course_file(data_dir: os.PathLike, question: str) -> Optional[Path]:
    """The first existing file among the question's names in ``data_dir``, else None."""
    for name in COURSE_FILES[question]:
        p = Path(data_dir) / name
        if p.exists():
            return p
    return None


def _describe_found(arr) -> str:
    return f"shape {tuple(arr.shape)} dtype {arr.dtype}"


class _Reader:
    """Reads and validates datasets of one open file."""

    def __init__(self, path: Path, f, question: str):
        self.path, self.f, self.question = path, f, question

    def fail(self, key: Optional[str], expected: str, found: str, todo: Optional[str] = None) -> DataError:
        where = f"{self.path}" + (f": dataset '{key}'" if key else "")
        todo = todo or (
            f"Replace the file with the course's {COURSE_FILES[self.question][0]} or rebuild the "
            f"stand-in with `{BUILD_HINT[self.question]} --force`."
        )
        return DataError(f"{where}: expected {expected}, found {found}. {todo}")

    def read(self, key: str, shape: tuple, kind: str) -> np.ndarray:
        """Read ``key``, check rank/shape and dtype kind.

        shape: one entry per axis: an int (that size), None (any size, shown as "N") or a
        name (any size, shown as the name, e.g. "T" for the time steps).

        kind: "float" (any real number), "int" (integers, or floats holding integers),
        "bytes" (strings).
        """
        import h5py

        expected_shape = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        sizes = [s if isinstance(s, (int, np.integer)) else None for s in shape]
        if key not in self.f:
            raise self.fail(key, f"a dataset of shape {expected_shape}", f"no such key (keys: {sorted(self.f.keys())})")
        ds = self.f[key]
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(key, f"a dataset of shape {expected_shape}", "a group")
        if len(ds.shape) != len(shape) or any(s is not None and s != d for s, d in zip(sizes, ds.shape)):
            raise self.fail(key, f"shape {expected_shape}", _describe_found(ds))
        if ds.size == 0:
            raise self.fail(key, f"a non-empty array of shape {expected_shape}", f"an empty array ({_describe_found(ds)})")
        dkind = ds.dtype.kind
        if kind == "bytes":
            if dkind not in "SOU":
                raise self.fail(key, "strings (bytes)", f"dtype {ds.dtype}")
        elif dkind not in "biuf":
            raise self.fail(key, f"numeric {kind} values", f"non-numeric dtype {ds.dtype}")
        try:
            arr = ds[()]
        except (OSError, RuntimeError) as e:  # truncated / corrupt chunk
            raise self.fail(key, "a readable dataset", f"a read error ({e}); the file looks truncated or corrupt")
        if kind in ("float", "int") and dkind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise self.fail(key, "finite values", f"{bad} NaN/inf values")
        if kind == "int" and dkind == "f":
            if not np.all(arr == np.round(arr)):
                raise self.fail(key, "integer values", f"non-integer floats ({_describe_found(arr)})")
        return arr


def _open(path: os.PathLike, question: str):
    import h5py

    path = Path(path)
    if not path.exists():
        names = " or ".join(COURSE_FILES[question])
        raise DataError(
            f"{path}: file not found. Put the course file ({names}) in {path.parent}/, or build the "
            f"stand-in from public data with `{BUILD_HINT[question]} --out {path.parent}`."
        )
    if not h5py.is_hdf5(path):
        raise DataError(
            f"{path}: expected an HDF5 file, found {path.stat().st_size} bytes that are not HDF5. "
            f"Replace it with the course's {COURSE_FILES[question][0]} or rebuild the stand-in with "
            f"`{BUILD_HINT[question]} --force`."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(
            f"{path}: expected a readable HDF5 file, found one that cannot be opened ({e}); it looks truncated "
            f"or corrupt. Copy it again or rebuild the stand-in with `{BUILD_HINT[question]} --force`."
        ) from None
    return f


def _attrs(f) -> dict:
    out = {}
    for k, v in f.attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        elif isinstance(v, np.ndarray):
            v = [x.decode("utf-8") if isinstance(x, bytes) else x.item() if hasattr(x, "item") else x for x in v]
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _decode(items) -> tuple[str, ...]:
    return tuple(x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.asarray(items).reshape(-1))


# ----------------------------------------------------------------------------- loaders
def load_patches(path: os.PathLike) -> PatchData:
    """Q1 patches <float32>[N, 3, 16, 16] (RGB, channels first)."""
    path = Path(path)
    with _open(path, "q1") as f:
        r = _Reader(path, f, "q1")
        data = r.read("data", (None, 3, 16, 16), "float")
        return PatchData(data.astype(np.float32), _attrs(f))


def load_ngrams(path: os.PathLike) -> NgramData:
    """Q2 4-grams with 0-based word indices <int32> and the vocabulary."""
    path = Path(path)
    with _open(path, "q2") as f:
        r = _Reader(path, f, "q2")
        words = _decode(r.read("words", (None,), "bytes"))
        vocab = len(words)
        out = {}
        for xk, yk in (("trainx", "traind"), ("valx", "vald"), ("testx", "testd")):
            x = r.read(xk, (None, 3), "int")
            y = r.read(yk, (x.shape[0],), "int")
            for k, a in ((xk, x), (yk, y)):
                lo, hi = a.min(), a.max()
                if lo < 1 or hi > vocab:
                    raise r.fail(k, f"1-based word indices in 1..{vocab} (the file's vocabulary size)",
                                 f"values in {int(lo)}..{int(hi)}")
            out[xk] = (x - 1).astype(np.int32)
            out[yk] = (y - 1).astype(np.int32)
        return NgramData(words, out["trainx"], out["traind"], out["valx"], out["vald"], out["testx"], out["testd"], _attrs(f))


def load_activity(path: os.PathLike) -> ActivityData:
    """Q3 accelerometer windows <float32>[N, T, 3] with integer labels <int32>[N]."""
    path = Path(path)
    with _open(path, "q3") as f:
        r = _Reader(path, f, "q3")
        attrs = _attrs(f)
        names = tuple(attrs.get("class_names", ACTIVITY_CLASSES))
        c = len(names)
        tr_x = r.read("trX", (None, "T", 3), "float")
        tr_y = r.read("trY", (tr_x.shape[0], c), "float")
        te_x = r.read("tstX", (None, tr_x.shape[1], 3), "float")
        te_y = r.read("tstY", (te_x.shape[0], c), "float")
        labels = {}
        for k, y in (("trY", tr_y), ("tstY", te_y)):
            ok_values = np.all((y == 0) | (y == 1))
            row_sums = y.sum(axis=1)
            if not ok_values or not np.all(row_sums == 1):
                bad = int(np.sum(~np.all((y == 0) | (y == 1), axis=1) | (row_sums != 1)))
                raise r.fail(k, f"one-hot labels (each row one 1 and {c - 1} zeros)", f"{bad} rows that are not one-hot")
            labels[k] = np.argmax(y, axis=1).astype(np.int32)
        subjects = {}
        for k, n in (("trSubject", tr_x.shape[0]), ("tstSubject", te_x.shape[0])):
            subjects[k] = r.read(k, (n,), "int").astype(np.int32) if k in f else None
        return ActivityData(names, tr_x.astype(np.float32), labels["trY"], te_x.astype(np.float32), labels["tstY"],
                            subjects["trSubject"], subjects["tstSubject"], attrs)


LOADERS = {"q1": load_patches, "q2": load_ngrams, "q3": load_activity}


def describe(question: str, data) -> str:
    """One line of shapes for ``check``."""
    src = data.attrs.get("source_kind", "course file")
    if question == "q1":
        return f"data {data.patches.shape} [{src}]"
    if question == "q2":
        return (f"V={len(data.words)} train {data.train_x.shape} val {data.val_x.shape} "
                f"test {data.test_x.shape} [{src}]")
    return (f"train {data.train_x.shape} test {data.test_x.shape} classes {len(data.class_names)}"
            f"{' +subjects' if data.train_subjects is not None else ''} [{src}]")
