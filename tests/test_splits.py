"""Held-out splits: random, by subject; the channel statistics; Q1's and Q3's prepared sets."""
import numpy as np
import pytest

from mp_jax.data import splits
from mp_jax.data.course import ActivityData, PatchData


def test_holdout_split():
    tr, held = splits.holdout_split(50, 0.1, np.random.default_rng(0))
    assert held.size == 5 and tr.size == 45 and sorted(np.concatenate([tr, held]).tolist()) == list(range(50))
    a, b = splits.holdout_split(50, 0.1, np.random.default_rng(0))
    np.testing.assert_array_equal(b, held)  # a seed fixes it
    with pytest.raises(ValueError, match="fraction"):
        splits.holdout_split(50, 1.5, np.random.default_rng(0))


def test_validation_split_by_subject_and_random():
    rng = np.random.default_rng(0)
    subjects = np.repeat([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 30)
    tr, va, how = splits.validation_split(subjects, subjects.size, 0.1, rng)
    assert how["kind"] == "subject" and len(how["subjects"]) == 1 and how["n_val"] == 30
    assert va.size == 30 and not set(subjects[tr]) & set(subjects[va])
    tr, va, how = splits.validation_split(None, 200, 0.1, rng)
    assert how["kind"] == "random" and va.size == 20 and tr.size == 180
    assert not set(tr.tolist()) & set(va.tolist())
    # the subject set closest to the fraction: here two subjects of 10 % each for 20 %
    tr, va, how = splits.validation_split(subjects, subjects.size, 0.2, np.random.default_rng(1))
    assert len(how["subjects"]) == 2 and va.size == 60
    with pytest.raises(ValueError, match="subject ids"):
        splits.validation_split(subjects[:10], subjects.size, 0.1, rng)


def test_channel_stats():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(40, 30, 3))
    mean, std = splits.channel_stats(x)
    assert mean.shape == std.shape == (3,)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(std, x.reshape(-1, 3).std(axis=0) + 1e-8)


def test_activity_sets_standardize_with_the_training_statistics():
    rng = np.random.default_rng(0)
    n, t = 120, 10
    data = ActivityData(("a", "b"), rng.normal(5.0, 3.0, (n, t, 3)).astype(np.float32), rng.integers(0, 2, n),
                        rng.normal(5.0, 3.0, (30, t, 3)).astype(np.float32), rng.integers(0, 2, 30),
                        np.repeat(np.arange(12), 10), None, {})
    s = splits.activity_sets(data, 0.1, np.random.default_rng(1), n_train=100, n_test=20, batch_size=16)
    assert s.how["kind"] == "subject" and s.train[0].shape[0] % 16 == 0
    assert s.test[0].shape[0] == 20 and s.train[0].dtype == np.float32
    np.testing.assert_allclose(s.train[0].mean(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.train[0].std(axis=(0, 1)), 1.0, atol=1e-4)
    assert s.train[0].shape[0] + s.val[0].shape[0] <= 100


def test_patch_sets():
    rgb = np.random.default_rng(0).uniform(0, 1, (60, 3, 16, 16)).astype(np.float32)
    s = splits.patch_sets(PatchData(rgb, {}), 0.1, np.random.default_rng(0), n_patches=50, n_shown=8)
    assert s.x_train.shape == (45, 256) and s.x_held.shape == (5, 256)
    assert s.shown_rgb.shape == (8, 3, 16, 16) and s.shown.shape == (8, 256) and s.sigma > 0
    assert 0.1 - 1e-6 <= s.x_train.min() and s.x_train.max() <= 0.9 + 1e-6


def _activity(seed=0, n=120, t=10, test_shift=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(5.0, 3.0, (n, t, 3)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x_te = (rng.normal(5.0, 3.0, (30, t, 3)) + test_shift).astype(np.float32)
    return ActivityData(("a", "b"), x, y, x_te, rng.integers(0, 2, 30), np.repeat(np.arange(12), 10),
                        np.repeat([20, 21, 22], 10), {})


def test_activity_sets_protocol_subjects_disjoint_and_the_test_windows_choose_nothing():
    data = _activity()
    s = splits.activity_sets(data, 0.2, np.random.default_rng(3))
    subj = data.train_subjects
    val_subjects = set(s.how["subjects"])
    assert len(val_subjects) == 2 and s.how["n_val"] == len(s.val[1]) == 20
    # the training part and the validation subjects partition the training windows
    assert len(s.train[1]) + len(s.val[1]) == len(s.train_all[1]) == len(data.train_y)
    # standardization: the selection view with the training part's statistics, the refit view with all of them
    np.testing.assert_allclose(s.train[0].mean(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.train_all[0].mean(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.mean_all, data.train_x.mean(axis=(0, 1)), rtol=1e-5)
    part = ~np.isin(subj, list(val_subjects))
    np.testing.assert_allclose(s.mean, data.train_x[part].mean(axis=(0, 1)), rtol=1e-5)
    # no window of a validation subject in the training part: their windows are exactly the held-out ones
    np.testing.assert_allclose(np.sort(s.val[0].ravel()),
                               np.sort(((data.train_x[~part] - s.mean) / s.std).ravel()), rtol=1e-5, atol=1e-5)
    # the test windows change nothing that is trained on or validated on
    other = splits.activity_sets(_activity(test_shift=50.0)._replace(test_y=data.test_y[::-1].copy()), 0.2,
                                 np.random.default_rng(3))
    for a, b in ((s.train, other.train), (s.val, other.val), (s.train_all, other.train_all)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert s.how == other.how and not np.array_equal(s.test[0], other.test[0])
    np.testing.assert_allclose(s.test_all[0], (data.test_x - s.mean_all) / s.std_all, rtol=1e-5, atol=1e-5)
