"""Q3 data: ``data3.h5`` in the course schema from real accelerometer recordings.

Two sources, both cut into windows of 150 consecutive 3-axis samples of one subject doing
one activity, split by subject (no subject in both sets), written as ``trX``/``tstX``
<float32>[N, 150, 3], one-hot ``trY``/``tstY`` <float32>[N, C], ``trSubject``/``tstSubject``
<int32>[N] and the attributes ``class_names``, ``source_kind``, ``source``, ``licence``,
``seed``, ``recipe`` (and counts).

* default: seglearn's bundled ``watch_dataset.npy`` (smartwatch, 50 Hz, 10 subjects,
  7 shoulder-exercise classes). The three accelerometer channels; the class with the
  fewest windows dropped; windows at stride 50 inside each recording; subjects 3 and 5
  for test. It is a pickled file, so it is read only from the installed package's folder
  (found with ``importlib.util.find_spec`` without importing seglearn, which needs
  pandas), never from a path a user passes.
* ``wisdm=PATH``: the WISDM v1.1 raw file (``user,activity,timestamp,x,y,z;`` records;
  malformed ones are skipped and counted). Windows at stride 50 inside each run of
  consecutive records of one user and one activity (a skipped record ends the run);
  500 training and 100 test windows per class where the data allow; classes in the
  course's order (downstairs, jogging, sitting, standing, upstairs, walking).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mp_jax.data.course import ACTIVITY_CLASSES, COURSE_FILES, DataError
from mp_jax.data.h5io import RefuseOverwrite, atomic_h5

log = logging.getLogger("mp_jax.data.build_q3")

WINDOW = 150
STRIDE = 50
WATCH_TEST_SUBJECTS = (3, 5)
WISDM_PER_CLASS = (500, 100)  # training, test windows per class


class Windows(NamedTuple):
    x: np.ndarray  # <float32>[N, WINDOW, 3]
    y: np.ndarray  # <int32>[N] class index
    subject: np.ndarray  # <int32>[N]


# ----------------------------------------------------------------------------- helpers
def _windows(series: np.ndarray, window: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    """All windows [K, window, D] of series [n, D] starting at 0, stride, 2·stride, …"""
    n = series.shape[0]
    if n < window:
        return np.zeros((0, window, series.shape[1]), np.float32)
    starts = np.arange(0, n - window + 1, stride)
    return np.stack([series[s: s + window] for s in starts]).astype(np.float32)


def _sha256(path: Path, n_hex: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n_hex]


def _one_hot(y: np.ndarray, c: int) -> np.ndarray:
    out = np.zeros((y.shape[0], c), np.float32)
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def _shuffle(w: Windows, rng: np.random.Generator) -> Windows:
    perm = rng.permutation(w.y.shape[0])
    return Windows(w.x[perm], w.y[perm], w.subject[perm])


# ----------------------------------------------------------------------------- seglearn watch
def watch_dataset_path() -> Path:
    """Where the installed seglearn keeps ``watch_dataset.npy`` (seglearn is not imported)."""
    spec = importlib.util.find_spec("seglearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the Q3 stand-in needs the seglearn package (its bundled watch_dataset.npy): expected it "
            "installed, found no 'seglearn' on the Python path. Install it with `pip install seglearn` "
            "(or `pip install -e .`), or pass --wisdm PATH with the WISDM v1.1 raw file."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "watch_dataset.npy"
    if not path.is_file():
        raise DataError(
            f"{path}: expected seglearn's bundled watch_dataset.npy, found no such file. Reinstall "
            f"seglearn (`pip install --force-reinstall seglearn==1.2.5`) or pass --wisdm PATH."
        )
    return path


def load_watch() -> dict:
    """The watch dataset dict, checked: ``X`` list of [n, 6], ``y``, ``subject``, labels."""
    path = watch_dataset_path()
    # Pickled object arrays: only ever loaded from the installed package, never a user path.
    data = np.load(path, allow_pickle=True).item()
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(data).__name__}. Reinstall seglearn.")
    missing = [k for k in ("X", "y", "subject", "X_labels", "y_labels") if k not in data]
    if missing:
        raise DataError(f"{path}: expected keys X, y, subject, X_labels, y_labels; missing {missing}. Reinstall seglearn.")
    labels = [str(v) for v in data["X_labels"]]
    if labels[:3] != ["ax", "ay", "az"]:
        raise DataError(f"{path}: expected the first channels ax, ay, az; found {labels}. Reinstall seglearn 1.2.5.")
    n = len(data["X"])
    if len(data["y"]) != n or len(data["subject"]) != n:
        raise DataError(f"{path}: expected X, y and subject of one length; found {n}, {len(data['y'])}, "
                        f"{len(data['subject'])}. Reinstall seglearn.")
    return data


def watch_windows(seed: int = 0) -> tuple[Windows, Windows, tuple[str, ...], dict]:
    """Training and test windows from the watch dataset, the class names and provenance."""
    data = load_watch()
    y_names = [str(v) for v in data["y_labels"]]
    y_all = np.asarray(data["y"], dtype=np.int64)
    subj_all = np.asarray(data["subject"], dtype=np.int64)
    per_rec = [_windows(np.asarray(x, np.float64)[:, :3]) for x in data["X"]]
    counts = np.bincount(y_all, weights=[w.shape[0] for w in per_rec], minlength=len(y_names)).astype(int)
    dropped = int(np.argmin(counts))  # ties: the first
    kept = [c for c in range(len(y_names)) if c != dropped]
    remap = {c: i for i, c in enumerate(kept)}
    parts = {"train": ([], [], []), "test": ([], [], [])}
    for w, c, s in zip(per_rec, y_all, subj_all):
        if c == dropped or w.shape[0] == 0:
            continue
        xs, ys, ss = parts["test" if s in WATCH_TEST_SUBJECTS else "train"]
        xs.append(w)
        ys.append(np.full(w.shape[0], remap[int(c)], np.int32))
        ss.append(np.full(w.shape[0], s, np.int32))
    rng = np.random.default_rng(seed)
    train, test = (_shuffle(Windows(np.concatenate(p[0]), np.concatenate(p[1]), np.concatenate(p[2])), rng)
                   for p in (parts["train"], parts["test"]))
    names = tuple(y_names[c] for c in kept)
    try:
        from importlib.metadata import version

        sl_version = version("seglearn")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        sl_version = "?"
    train_subjects = sorted(set(subj_all.tolist()) - set(WATCH_TEST_SUBJECTS))
    info = {
        "source": (f"seglearn {sl_version} bundled watch_dataset.npy (sha256 {_sha256(watch_dataset_path())}): "
                   f"smartwatch inertial recordings of shoulder-physiotherapy exercises, 50 Hz, 10 subjects "
                   f"(Burns et al. 2018, arXiv:1802.01489)"),
        "licence": "BSD-3-Clause (seglearn, Copyright (c) 2018 David M. Burns)",
        "recipe": (f"accelerometer channels ax, ay, az of each recording; class {y_names[dropped]} dropped "
                   f"(fewest windows, {counts[dropped]}); windows of {WINDOW} samples at stride {STRIDE} inside "
                   f"each recording; test subjects {list(WATCH_TEST_SUBJECTS)}, training subjects "
                   f"{train_subjects}; window order shuffled with the seed"),
        "dropped_class": y_names[dropped],
        "test_subject_ids": list(WATCH_TEST_SUBJECTS),
        "train_subject_ids": train_subjects,
    }
    return train, test, names, info


# ----------------------------------------------------------------------------- WISDM
def read_wisdm(path: os.PathLike) -> tuple[list[tuple[int, int, np.ndarray]], int, int]:
    """Parse a WISDM v1.1 raw file into runs.

    Records are ``user,activity,timestamp,x,y,z`` ended by ``;`` (one or more per line).
    Returns (runs, n_records, n_malformed): each run is (user, class index in
    ``ACTIVITY_CLASSES``, <float32>[n, 3]) — consecutive valid records of one user and one
    activity; a malformed record (wrong field count, unknown activity, non-numeric or
    non-finite values) is skipped, counted, and ends the current run.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: expected the WISDM v1.1 raw file (WISDM_ar_v1.1_raw.txt), found no such file.")
    lookup = {name: i for i, name in enumerate(ACTIVITY_CLASSES)}
    runs: list[tuple[int, int, np.ndarray]] = []
    cur_key, cur = None, []
    n_records = n_bad = 0

    def close():
        nonlocal cur_key, cur
        if cur:
            runs.append((cur_key[0], cur_key[1], np.asarray(cur, np.float32)))
        cur_key, cur = None, []

    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            for rec in line.split(";"):
                rec = rec.strip()
                if not rec:
                    continue
                n_records += 1
                fields = [v.strip() for v in rec.split(",")]
                try:
                    if len(fields) != 6:
                        raise ValueError
                    user = int(fields[0])
                    act = lookup[fields[1].lower()]
                    int(fields[2])
                    xyz = (float(fields[3]), float(fields[4]), float(fields[5]))
                    if not all(math.isfinite(v) for v in xyz):
                        raise ValueError
                except (ValueError, KeyError):
                    n_bad += 1
                    close()
                    continue
                if (user, act) != cur_key:
                    close()
                    cur_key = (user, act)
                cur.append(xyz)
    close()
    if not runs:
        raise DataError(f"{path}: expected WISDM records 'user,activity,timestamp,x,y,z;', found none that parse "
                        f"({n_records} records, {n_bad} malformed). Is this the WISDM v1.1 raw file?")
    return runs, n_records, n_bad


def _pick_test_users(per_user: dict[int, np.ndarray], n_test: int, n_train: int, rng) -> list[int]:
    """Users for the test set: in a seeded random order, add a user while some class is
    short of its test target min(n_test, ⌈share · its windows⌉) (share = n_test / (n_train +
    n_test)) and the user has windows of such a class, never leaving a class without
    training windows."""
    users = sorted(per_user)
    total = sum(per_user.values())
    share = n_test / (n_train + n_test)
    target = np.minimum(n_test, np.ceil(share * total)).astype(int)
    test_count = np.zeros_like(total)
    chosen = []
    for u in rng.permutation(users):
        short = test_count < target
        if not short.any():
            break
        cu = per_user[int(u)]
        if not (cu[short] > 0).any():
            continue
        train_after = total - test_count - cu
        if ((train_after <= 0) & (total > 0)).any():
            continue
        chosen.append(int(u))
        test_count = test_count + cu
    return sorted(chosen)


def wisdm_windows(path: os.PathLike, seed: int = 0, per_class: tuple[int, int] = WISDM_PER_CLASS):
    """Training and test windows from a WISDM v1.1 raw file, the class names and provenance."""
    path = Path(path)
    runs, n_records, n_bad = read_wisdm(path)
    c = len(ACTIVITY_CLASSES)
    xs, ys, ss = [], [], []
    for user, act, series in runs:
        w = _windows(series)
        if w.shape[0]:
            xs.append(w)
            ys.append(np.full(w.shape[0], act, np.int32))
            ss.append(np.full(w.shape[0], user, np.int32))
    if not xs:
        raise DataError(f"{path}: expected runs of at least {WINDOW} consecutive records of one user and one "
                        f"activity, found none (longest run {max(r[2].shape[0] for r in runs)}).")
    allw = Windows(np.concatenate(xs), np.concatenate(ys), np.concatenate(ss))
    per_user = {int(u): np.bincount(allw.y[allw.subject == u], minlength=c) for u in np.unique(allw.subject)}
    n_train, n_test = per_class
    rng = np.random.default_rng(seed)
    test_users = _pick_test_users(per_user, n_test, n_train, rng)
    is_test = np.isin(allw.subject, test_users)
    missing = [ACTIVITY_CLASSES[k] for k in range(c)
               if not np.any((allw.y == k) & ~is_test) or not np.any((allw.y == k) & is_test)]
    if missing:
        raise DataError(f"{path}: expected windows of every class for users in both the training and the test "
                        f"set, found none for {missing} on one side ({len(per_user)} users with windows). "
                        f"The file looks incomplete: use the full WISDM v1.1 raw file.")
    sel = {"train": [], "test": []}
    for k in range(c):
        for side, mask, want in (("train", ~is_test, n_train), ("test", is_test, n_test)):
            idx = np.flatnonzero((allw.y == k) & mask)
            sel[side].append(rng.choice(idx, size=min(want, idx.size), replace=False))
    train = _shuffle(Windows(*(a[np.concatenate(sel["train"])] for a in allw)), rng)
    test = _shuffle(Windows(*(a[np.concatenate(sel["test"])] for a in allw)), rng)
    train_users = sorted(set(np.unique(allw.subject).tolist()) - set(test_users))
    info = {
        "source": f"WISDM v1.1 raw accelerometer file {path.name} (sha256 {_sha256(path)}); Kwapisz, Weiss and "
                  f"Moore 2010, phone accelerometer, 20 Hz",
        "licence": "WISDM Lab, Fordham University: free for research use, cite Kwapisz, Weiss and Moore (2010); "
                   "not redistributed with this project",
        "recipe": (f"records parsed ({n_records} records, {n_bad} malformed skipped); windows of {WINDOW} consecutive "
                   f"samples at stride {STRIDE} inside runs of one user and one activity; test users "
                   f"{test_users} picked in seeded order until each class has "
                   f"min({n_test}, its share) test windows; then up to {n_train} training / {n_test} test "
                   f"windows per class drawn at random with the seed"),
        "malformed_records": n_bad,
        "records": n_records,
        "test_subject_ids": test_users,
        "train_subject_ids": train_users,
    }
    return train, test, ACTIVITY_CLASSES, info


# ----------------------------------------------------------------------------- build
def build(out_dir: os.PathLike, *, force: bool = False, seed: int = 0, wisdm: os.PathLike | None = None) -> Path:
    """Write ``out_dir/data3.h5``; refuses to overwrite unless ``force``; atomic."""
    out = Path(out_dir) / COURSE_FILES["q3"][0]
    if out.exists() and not force:
        raise RefuseOverwrite(f"{out} already exists; not overwriting it (pass --force to replace it)")
    if wisdm is None:
        train, test, names, info = watch_windows(seed)
    else:
        train, test, names, info = wisdm_windows(wisdm, seed)
    c = len(names)
    with atomic_h5(out, force=force) as f:
        f.create_dataset("trX", data=train.x, compression="gzip", shuffle=True)
        f.create_dataset("trY", data=_one_hot(train.y, c))
        f.create_dataset("tstX", data=test.x, compression="gzip", shuffle=True)
        f.create_dataset("tstY", data=_one_hot(test.y, c))
        f.create_dataset("trSubject", data=train.subject.astype(np.int32))
        f.create_dataset("tstSubject", data=test.subject.astype(np.int32))
        f.attrs["class_names"] = np.array([n.encode("utf-8") for n in names])
        f.attrs["source_kind"] = "stand-in"
        f.attrs["seed"] = int(seed)
        f.attrs["window"] = WINDOW
        f.attrs["stride"] = STRIDE
        f.attrs["train_per_class"] = np.bincount(train.y, minlength=c).astype(np.int64)
        f.attrs["test_per_class"] = np.bincount(test.y, minlength=c).astype(np.int64)
        for k, v in info.items():
            f.attrs[k] = np.array(v, np.int64) if isinstance(v, list) else v
    log.info("q3: %d training / %d test windows, classes %s -> %s", train.y.size, test.y.size, list(names), out)
    return out
