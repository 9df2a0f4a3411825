import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mp_jax.data import build_q3
from mp_jax.data.course import ACTIVITY_CLASSES, DataError, load_activity
from mp_jax.data.h5io import RefuseOverwrite
from wisdm_cases import write_wisdm as _write_wisdm

def _check_windows(x, y, subjects):
    # x channel: consecutive record indices (no gap, no skipped record inside a window)
    assert np.all(np.diff(x[:, :, 0], axis=1) == 1)
    # y channel: one user per window, the one recorded as the subject
    assert np.all(x[:, :, 1] == subjects[:, None])
    # z channel: one activity per window, the labelled one
    assert np.all(x[:, :, 2] == y[:, None])


def test_wisdm_build(tmp_path):
    raw = tmp_path / "WISDM_ar_v1.1_raw.txt"
    facts = _write_wisdm(raw)
    out = build_q3.build(tmp_path / "out", wisdm=raw, seed=3)
    d = load_activity(out)
    assert d.class_names == ACTIVITY_CLASSES
    assert d.train_x.shape[1:] == (150, 3) and d.train_x.dtype == np.float32
    assert d.attrs["malformed_records"] == facts["malformed"]
    assert d.attrs["source_kind"] == "stand-in"
    for key in ("source", "licence", "recipe", "seed"):
        assert key in d.attrs
    assert not set(d.train_subjects.tolist()) & set(d.test_subjects.tolist())
    tr, te = np.bincount(d.train_y, minlength=6), np.bincount(d.test_y, minlength=6)
    assert np.all(tr > 0) and np.all(te > 0)
    # the caps (500 / 100) do not bind on this small file: every window is used
    np.testing.assert_array_equal(tr + te, [facts["available"][c] for c in ACTIVITY_CLASSES])
    for x, y, s in ((d.train_x, d.train_y, d.train_subjects), (d.test_x, d.test_y, d.test_subjects)):
        _check_windows(x, y, s)
    assert sorted(d.attrs["test_subject_ids"]) == sorted(set(d.test_subjects.tolist()))


def test_wisdm_caps_per_class(tmp_path):
    raw = tmp_path / "raw.txt"
    _write_wisdm(raw)
    train, test, names, info = build_q3.wisdm_windows(raw, seed=0, per_class=(10, 3))
    assert names == ACTIVITY_CLASSES
    np.testing.assert_array_equal(np.bincount(train.y, minlength=6), 10)
    np.testing.assert_array_equal(np.bincount(test.y, minlength=6), 3)
    assert not set(train.subject.tolist()) & set(test.subject.tolist())
    _check_windows(train.x, train.y, train.subject)


def test_wisdm_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        build_q3.build(tmp_path, wisdm=tmp_path / "missing.txt")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\n1,2,3\n")
    with pytest.raises(DataError, match="found none that parse"):
        build_q3.build(tmp_path, wisdm=junk)
    short = tmp_path / "short.txt"
    short.write_text("".join(f"1,Walking,{i},0.1,0.2,0.3;\n" for i in range(100)))
    with pytest.raises(DataError, match="at least 150 consecutive"):
        build_q3.build(tmp_path, wisdm=short)
    assert not (tmp_path / "data3.h5").exists()


@pytest.fixture(scope="module")
def watch_file(tmp_path_factory):
    if importlib.util.find_spec("seglearn") is None:
        pytest.skip("seglearn is not installed (pip install seglearn): the default Q3 stand-in needs it")
    return build_q3.build(tmp_path_factory.mktemp("q3") / "data")


def test_watch_default(watch_file):
    d = load_activity(watch_file)
    assert d.class_names == ("ABD", "FEL", "IR", "ER", "TRAP", "ROW")  # from the data; PEN dropped
    assert d.attrs["dropped_class"] == "PEN"
    assert d.train_x.shape == (3376, 150, 3) and d.test_x.shape == (679, 150, 3)
    assert set(d.test_subjects.tolist()) == {3, 5}
    assert not set(d.train_subjects.tolist()) & {3, 5}
    assert np.all(np.bincount(d.train_y, minlength=6) > 300) and np.all(np.bincount(d.test_y, minlength=6) > 80)
    assert np.all(np.isfinite(d.train_x)) and 0.1 < float(d.train_x.std()) < 10
    for key in ("source", "licence", "recipe", "seed"):
        assert key in d.attrs
    assert "seglearn" in d.attrs["source"] and "BSD" in d.attrs["licence"]
    # the windows are real recordings, not noise: neighbouring samples are strongly correlated
    x = d.train_x[:200]
    r = np.corrcoef(x[:, :-1, 0].ravel(), x[:, 1:, 0].ravel())[0, 1]
    assert r > 0.9


def test_watch_reads_only_the_installed_package(watch_file):
    path = build_q3.watch_dataset_path()
    pkg = Path(list(importlib.util.find_spec("seglearn").submodule_search_locations)[0])
    assert path == pkg / "data" / "watch_dataset.npy"


def test_refuses_overwrite_and_force(watch_file):
    before = watch_file.stat().st_mtime_ns
    with pytest.raises(RefuseOverwrite, match="--force"):
        build_q3.build(watch_file.parent)
    assert watch_file.stat().st_mtime_ns == before
    out = build_q3.build(watch_file.parent, force=True, seed=1)
    assert load_activity(out).attrs["seed"] == 1
    assert not list(watch_file.parent.glob("*.tmp"))
