"""Q1 stand-in builder: schema, provenance, determinism, no overwrite, atomic writes."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from mp_jax.data import build_q1, load_patches
from mp_jax.data.__main__ import main as data_cli
from mp_jax.data.h5io import RefuseOverwrite


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_q1.build(tmp_path_factory.mktemp("q1"), seed=0)


def test_schema_and_range(built):
    d = load_patches(built)
    assert d.patches.shape == (10240, 3, 16, 16) and d.patches.dtype == np.float32
    assert d.patches.min() >= 0.0 and d.patches.max() <= 1.0
    assert d.patches.std() > 0.1  # real images, not a constant


def test_provenance_attributes(built):
    attrs = load_patches(built).attrs
    assert attrs["source_kind"] == "stand-in"
    assert attrs["seed"] == 0
    for photo in build_q1.PHOTOS:
        name = photo.relpath.rsplit("/", 1)[-1]
        assert name in attrs["source"] and name in attrs["licence"]
    assert "Lanczos" in attrs["recipe"] and "default_rng" in attrs["recipe"]
    assert "motorcycle" not in attrs["source"]  # no stated licence: left out


def test_every_photo_and_scale_contributes(built):
    with h5py.File(built, "r") as f:
        origin = f["origin"][()]
    photos, scales = np.unique(origin[:, 0]), np.unique(origin[:, 1], return_counts=True)
    assert list(photos) == list(range(len(build_q1.PHOTOS)))
    assert len(scales[0]) == len(build_q1.SCALES) and scales[1].min() >= 10240 // len(build_q1.SCALES)


def test_smaller_scales_give_more_structure(built):
    with h5py.File(built, "r") as f:
        origin, data = f["origin"][()], f["data"][()]
    gray = data.mean(axis=1).reshape(len(data), -1)
    contrast = [np.median(gray[origin[:, 1] == s].std(axis=1)) for s in range(len(build_q1.SCALES))]
    assert contrast[-1] > 1.5 * contrast[0], contrast  # 1/4-size photos: more edges per 16×16 window


def test_patches_are_windows_of_the_photos(built):
    with h5py.File(built, "r") as f:
        origin, data = f["origin"][:50], f["data"][:50]
    photos = [build_q1.load_photo(build_q1.photo_path(p)) for p in build_q1.PHOTOS]
    for (k, s, r, c), patch in zip(origin, data):
        img = build_q1.rescale(photos[k], build_q1.SCALES[s])
        np.testing.assert_array_equal(patch, img[r:r + 16, c:c + 16].transpose(2, 0, 1))


def test_seed_fixes_the_draw():
    a, oa = build_q1.make_patches(seed=3, n=300)
    b, ob = build_q1.make_patches(seed=3, n=300)
    c, _ = build_q1.make_patches(seed=4, n=300)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(a, c)


def test_refuses_overwrite_and_force_replaces(tmp_path, monkeypatch):
    out = tmp_path / "data1.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(RefuseOverwrite, match="--force"):
        build_q1.build(tmp_path)
    assert out.read_bytes() == b"keep me"
    monkeypatch.setattr(build_q1, "make_patches", lambda seed: (np.zeros((4, 3, 16, 16), np.float32), np.zeros((4, 4), np.int64)))
    build_q1.build(tmp_path, force=True, seed=7)
    with h5py.File(out, "r") as f:
        assert f["data"].shape == (4, 3, 16, 16) and f.attrs["seed"] == 7


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_q1, "recipe", boom)  # fails while the temporary file is open
    monkeypatch.setattr(build_q1, "make_patches", lambda seed: (np.zeros((4, 3, 16, 16), np.float32), np.zeros((4, 4), np.int64)))
    with pytest.raises(KeyboardInterrupt):
        build_q1.build(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_package_is_a_clear_error(monkeypatch):
    bad = build_q1.Photo("no_such_package_q1", "data/x.png", "CC0", "nobody")
    with pytest.raises(FileNotFoundError, match="no_such_package_q1.*not installed"):
        build_q1.photo_path(bad)


def test_cli_builds_q1(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(build_q1, "make_patches", lambda seed: (np.full((4, 3, 16, 16), 0.5, np.float32), np.zeros((4, 4), np.int64)))
    assert data_cli(["build", "--only", "q1", "--out", str(tmp_path)]) == 0
    assert "q1: wrote" in capsys.readouterr().out
    assert data_cli(["build", "--only", "q1", "--out", str(tmp_path)]) == 0
    assert "q1: SKIPPED" in capsys.readouterr().out
