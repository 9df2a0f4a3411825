"""Course-file loaders: round trips and one test per kind of bad input."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from mp_jax.data import DataError, load_activity, load_ngrams, load_patches
from mp_jax.data.__main__ import main as data_cli
from mp_jax.data.h5io import RefuseOverwrite, atomic_h5

RNG = np.random.default_rng(0)


def write_h5(path, datasets: dict, attrs: dict | None = None):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def q1_sets(n=8):
    return {"data": RNG.uniform(0, 1, (n, 3, 16, 16)).astype(np.float32),
            "invXForm": np.zeros((105, 768)), "xForm": np.zeros((768, 105))}


def q2_sets(v=6):
    words = np.array([f"w{i}".encode() for i in range(v)])
    def split(n):
        return RNG.integers(1, v + 1, (n, 3)), RNG.integers(1, v + 1, (n,))
    (tx, td), (vx, vd), (sx, sd) = split(20), split(5), split(4)
    return {"words": words, "trainx": tx, "traind": td, "valx": vx, "vald": vd, "testx": sx, "testd": sd}


def q3_sets(n=12, t=10):
    eye = np.eye(6)
    return {"trX": RNG.normal(size=(n, t, 3)), "trY": eye[RNG.integers(0, 6, n)],
            "tstX": RNG.normal(size=(4, t, 3)), "tstY": eye[RNG.integers(0, 6, 4)]}


# ----------------------------------------------------------------------------- round trips
def test_patches_round_trip(tmp_path):
    sets = q1_sets()
    d = load_patches(write_h5(tmp_path / "data1.h5", sets))
    assert d.patches.dtype == np.float32
    np.testing.assert_array_equal(d.patches, sets["data"])


def test_patches_do_not_require_xform(tmp_path):
    sets = q1_sets()
    del sets["invXForm"], sets["xForm"]
    assert load_patches(write_h5(tmp_path / "data1.h5", sets)).patches.shape == (8, 3, 16, 16)


def test_ngrams_round_trip_is_zero_based(tmp_path):
    sets = q2_sets()
    d = load_ngrams(write_h5(tmp_path / "data2.h5", sets))
    assert d.words == tuple(f"w{i}" for i in range(6))
    np.testing.assert_array_equal(d.train_x, sets["trainx"] - 1)
    np.testing.assert_array_equal(d.test_y, sets["testd"] - 1)
    assert d.train_x.dtype == np.int32 and d.train_x.min() >= 0 and d.train_x.max() <= 5


def test_ngrams_accept_integral_floats(tmp_path):
    sets = q2_sets()
    sets["trainx"] = sets["trainx"].astype(np.float64)
    d = load_ngrams(write_h5(tmp_path / "data2.h5", sets))
    assert d.train_x.dtype == np.int32


def test_activity_round_trip(tmp_path):
    sets = q3_sets()
    d = load_activity(write_h5(tmp_path / "data3.h5", sets))
    assert d.class_names[0] == "downstairs" and len(d.class_names) == 6
    np.testing.assert_array_equal(d.train_y, sets["trY"].argmax(1))
    assert d.train_x.dtype == np.float32 and d.train_subjects is None


def test_activity_reads_class_names_and_subjects(tmp_path):
    sets = q3_sets()
    sets["trSubject"] = np.arange(12) % 3
    sets["tstSubject"] = np.full(4, 7)
    names = np.array([f"c{i}".encode() for i in range(6)])
    d = load_activity(write_h5(tmp_path / "data3.h5", sets, {"class_names": names}))
    assert d.class_names == tuple(f"c{i}" for i in range(6))
    np.testing.assert_array_equal(d.train_subjects, np.arange(12) % 3)


# ----------------------------------------------------------------------------- bad input
def test_missing_file_says_where_and_how_to_build(tmp_path):
    with pytest.raises(DataError, match=r"file not found.*data1\.h5.*mp_jax\.data build --only q1"):
        load_patches(tmp_path / "data1.h5")


def test_not_hdf5(tmp_path):
    p = tmp_path / "data2.h5"
    p.write_text("hello, I am a CSV\n1,2,3\n")
    with pytest.raises(DataError, match=r"data2\.h5: expected an HDF5 file"):
        load_ngrams(p)


def test_truncated_file(tmp_path):
    p = write_h5(tmp_path / "data1.h5", {"data": RNG.uniform(0, 1, (400, 3, 16, 16))})
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"data1\.h5.*(truncated|corrupt)"):
        load_patches(p)


def test_missing_key(tmp_path):
    sets = q2_sets()
    del sets["vald"]
    with pytest.raises(DataError, match=r"dataset 'vald': expected a dataset of shape \(20,\)|dataset 'vald'.*no such key"):
        load_ngrams(write_h5(tmp_path / "data2.h5", sets))


def test_wrong_shape(tmp_path):
    sets = q1_sets()
    sets["data"] = RNG.uniform(0, 1, (8, 16, 16, 3))
    with pytest.raises(DataError, match=r"dataset 'data': expected shape \(N, 3, 16, 16\), found shape \(8, 16, 16, 3\)"):
        load_patches(write_h5(tmp_path / "data1.h5", sets))


def test_wrong_rank(tmp_path):
    sets = q3_sets()
    sets["trX"] = RNG.normal(size=(12, 30))
    with pytest.raises(DataError, match=r"dataset 'trX': expected shape \(N, T, 3\), found shape \(12, 30\)"):
        load_activity(write_h5(tmp_path / "data3.h5", sets))


def test_mismatched_lengths(tmp_path):
    sets = q2_sets()
    sets["traind"] = sets["traind"][:-1]
    with pytest.raises(DataError, match=r"dataset 'traind': expected shape \(20,\), found shape \(19,\)"):
        load_ngrams(write_h5(tmp_path / "data2.h5", sets))


def test_non_numeric_dtype(tmp_path):
    sets = q2_sets()
    sets["testx"] = np.array([[b"a", b"b", b"c"]] * 4)
    with pytest.raises(DataError, match=r"dataset 'testx': expected numeric int values, found non-numeric dtype \|S1"):
        load_ngrams(write_h5(tmp_path / "data2.h5", sets))


def test_nan_values(tmp_path):
    sets = q1_sets()
    sets["data"][3, 1, 2, 2] = np.nan
    sets["data"][4, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"dataset 'data': expected finite values, found 2 NaN/inf values"):
        load_patches(write_h5(tmp_path / "data1.h5", sets))


def test_zero_based_indices_are_rejected(tmp_path):
    sets = q2_sets()
    sets["trainx"] = sets["trainx"] - 1  # someone saved 0-based indices
    sets["trainx"][0, 0] = 0
    with pytest.raises(DataError, match=r"dataset 'trainx': expected 1-based word indices in 1\.\.6 .*found values in 0\.\."):
        load_ngrams(write_h5(tmp_path / "data2.h5", sets))


def test_index_above_vocabulary(tmp_path):
    sets = q2_sets()
    sets["testd"][:2] = (1, 7)  # both ends set: the other draws depend on the tests run before
    with pytest.raises(DataError, match=r"dataset 'testd'.*1\.\.6.*found values in 1\.\.7"):
        load_ngrams(write_h5(tmp_path / "data2.h5", sets))


def test_labels_not_one_hot(tmp_path):
    sets = q3_sets()
    sets["tstY"] = sets["tstY"] * 0.5
    with pytest.raises(DataError, match=r"dataset 'tstY': expected one-hot labels .* found 4 rows that are not one-hot"):
        load_activity(write_h5(tmp_path / "data3.h5", sets))


def test_integer_class_labels_instead_of_one_hot(tmp_path):
    sets = q3_sets()
    sets["trY"] = sets["trY"].argmax(1)
    with pytest.raises(DataError, match=r"dataset 'trY': expected shape \(12, 6\), found shape \(12,\)"):
        load_activity(write_h5(tmp_path / "data3.h5", sets))


def test_empty_array(tmp_path):
    sets = q1_sets()
    sets["data"] = np.zeros((0, 3, 16, 16), np.float32)
    with pytest.raises(DataError, match=r"dataset 'data': expected a non-empty array"):
        load_patches(write_h5(tmp_path / "data1.h5", sets))


def test_files_are_opened_read_only(tmp_path):
    p = write_h5(tmp_path / "data1.h5", q1_sets())
    p.chmod(0o444)
    before = p.read_bytes()
    load_patches(p)
    assert p.read_bytes() == before


# ----------------------------------------------------------------------------- writing & CLI
def test_atomic_write_refuses_overwrite_and_cleans_up(tmp_path):
    p = write_h5(tmp_path / "data1.h5", q1_sets())
    before = p.read_bytes()
    with pytest.raises(RefuseOverwrite, match="--force"):
        with atomic_h5(p):
            pass
    with pytest.raises(RuntimeError):
        with atomic_h5(p, force=True) as f:
            f.create_dataset("data", data=np.zeros(3))
            raise RuntimeError("interrupted")
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["data1.h5"]


def test_check_cli_reports_each_file(tmp_path, capsys):
    write_h5(tmp_path / "assign3_data1.h5", q1_sets())
    bad = q3_sets()
    bad["tstY"] = bad["tstY"] * 2
    write_h5(tmp_path / "data3.h5", bad)
    assert data_cli(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("q1: OK") and "(8, 3, 16, 16)" in out[0]
    assert out[1].startswith("q2: MISSING")
    assert out[2].startswith("q3: ERROR") and "one-hot" in out[2]


def test_test_windows_must_have_the_training_length(tmp_path):
    sets = q3_sets(t=10)
    sets["tstX"] = RNG.normal(size=(4, 8, 3))
    with pytest.raises(DataError, match=r"dataset 'tstX': expected shape \(N, 10, 3\), found shape \(4, 8, 3\)"):
        load_activity(write_h5(tmp_path / "data3.h5", sets))


def test_data_errors_are_user_errors():
    from mp_jax.runtime.errors import UserError

    assert issubclass(DataError, UserError) and issubclass(DataError, ValueError)


def test_check_cli_takes_the_folder_as_data_dir_or_positional(tmp_path, capsys):
    write_h5(tmp_path / "data1.h5", q1_sets())
    for argv in (["check", "--data-dir", str(tmp_path)], ["check", str(tmp_path)],
                 ["check", str(tmp_path), "--data-dir", str(tmp_path)]):
        assert data_cli(argv) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith(f"q1: OK {tmp_path / 'data1.h5'}") and out[1].startswith("q2: MISSING")


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        data_cli(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m mp_jax.data") and err[0].endswith(" --help)")
    return err[0].rsplit(" (see ", 1)[0]


def test_check_cli_bad_folders_are_usage_errors(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert usage_error(["check", "--data-dir", str(missing)], capsys) == (
        f"python -m mp_jax.data check: error: argument --data-dir: expected a folder holding the data files, found "
        f"no such folder at '{missing}' (build stand-ins there with: python -m mp_jax.data build --out {missing})")
    (tmp_path / "f").write_text("")
    assert "found a file at" in usage_error(["check", str(tmp_path / "f")], capsys)
    assert "two folders given" in usage_error(["check", str(tmp_path), "--data-dir", str(missing)], capsys)


def test_build_cli_bad_arguments_are_usage_errors(tmp_path, capsys):
    assert usage_error(["build", "--only", "q1,q7"], capsys) == (
        "python -m mp_jax.data build: error: argument --only: unknown question(s) ['q7']; choose from q1,q2,q3")
    assert usage_error(["build", "--seed", "-2"], capsys).endswith(
        "argument --seed: expected a non-negative integer (0, 1, 2, ...), found '-2'")
    assert usage_error(["build", "--corpus", str(tmp_path / "none.txt")], capsys).endswith(
        f"argument --corpus: expected an existing file, found no such file at '{tmp_path / 'none.txt'}'")
    (tmp_path / "f").write_text("")
    assert "argument --out: expected a folder" in usage_error(["build", "--out", str(tmp_path / "f")], capsys)
    assert (tmp_path / "f").read_text() == ""


def test_cli_process_exit_status(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mp_jax.data", "check", "--data-dir", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        "python -m mp_jax.data check: error: argument --data-dir")
    write_h5(tmp_path / "data1.h5", {"data": np.zeros((2, 3, 16, 16))})
    (tmp_path / "data3.h5").write_text("not hdf5")
    proc = subprocess.run([sys.executable, "-m", "mp_jax.data", "check", str(tmp_path)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[2].startswith(f"q3: ERROR — {tmp_path / 'data3.h5'}: expected an HDF5 file")
