"""Q1 preprocessing: luminance, per-patch mean, σ over the whole set, clip, [0.1, 0.9]."""
from __future__ import annotations

import numpy as np
import pytest

from mp_jax import preprocess as pp

RNG = np.random.default_rng(0)


def numpy_reference(rgb):
    gray = 0.2126 * rgb[:, 0] + 0.7152 * rgb[:, 1] + 0.0722 * rgb[:, 2]
    gray = gray.reshape(len(gray), -1)
    gray = gray - gray.mean(axis=1, keepdims=True)
    s = 3 * gray.std()
    return (np.clip(gray, -s, s) / s + 1) * 0.4 + 0.1


def patches(n=50):
    # heavy tails so that clipping happens
    return (0.5 + 0.15 * RNG.standard_t(3, size=(n, 3, 16, 16))).astype(np.float32)


@pytest.mark.slow
def test_matches_numpy_reference():
    rgb = patches()
    np.testing.assert_allclose(np.asarray(pp.preprocess(rgb)), numpy_reference(rgb.astype(np.float64)), atol=2e-6)


def test_luminance_weights():
    rgb = np.zeros((3, 3, 2, 2), np.float32)
    for c in range(3):
        rgb[c, c] = 1.0
    np.testing.assert_allclose(np.asarray(pp.to_gray(rgb))[:, 0, 0], [0.2126, 0.7152, 0.0722], rtol=1e-6)


def test_range_shape_and_clipping():
    rgb = patches(80)
    x = np.asarray(pp.preprocess(rgb))
    assert x.shape == (80, 256)
    assert x.min() >= 0.1 - 1e-7 and x.max() <= 0.9 + 1e-7
    # the heavy tails reach the bounds: clipping happened on both sides
    assert np.isclose(x.min(), 0.1) and np.isclose(x.max(), 0.9)
    assert 0 < np.mean((x <= 0.1 + 1e-6) | (x >= 0.9 - 1e-6)) < 0.05


def test_linear_map_endpoints():
    c = np.array([[-6.0, -3.0, 0.0, 1.5, 3.0, 6.0]])
    np.testing.assert_allclose(np.asarray(pp.clip_and_rescale(c, 1.0)), [[0.1, 0.1, 0.5, 0.7, 0.9, 0.9]], atol=1e-7)


@pytest.mark.slow
def test_patch_mean_removed_before_clipping():
    rgb = patches(20)
    shifted = rgb.copy()
    shifted[3] += 0.7  # a brighter copy of one patch (all channels): same content
    a, b = np.asarray(pp.preprocess(rgb)), np.asarray(pp.preprocess(shifted))
    np.testing.assert_allclose(a, b, atol=1e-5)
    flat = np.full((2, 3, 16, 16), 0.3, np.float32)
    flat[1] = 0.8
    mixed = np.concatenate([rgb, flat])
    np.testing.assert_allclose(np.asarray(pp.preprocess(mixed))[-2:], 0.5, atol=1e-6)  # flat patch → 0.5


def test_sigma_is_over_the_whole_set():
    rgb = patches(30)
    whole = np.asarray(pp.preprocess(rgb))
    alone = np.asarray(pp.preprocess(rgb[:1]))
    assert not np.allclose(whole[:1], alone, atol=1e-3)  # σ of one patch differs from the set's
    np.testing.assert_allclose(np.asarray(pp.preprocess(rgb[:1], sigma=pp.patch_sigma(rgb))), whole[:1], atol=1e-6)
    gray = np.asarray(pp.remove_patch_mean(pp.to_gray(rgb)))
    assert np.isclose(float(pp.patch_sigma(rgb)), gray.std(), rtol=1e-5)


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*\(4, 16, 16\)"):
        pp.preprocess(np.zeros((4, 16, 16)))
